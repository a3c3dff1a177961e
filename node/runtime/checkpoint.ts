// Checkpoints: safetensors files holding parameters (by their model-wide names) and AdamW
// moments, plus JSON metadata. A training checkpoint (`train --local`) holds every stage and
// everything needed to continue bit-exactly (model, optimizer config, step, seed, data source,
// sampler state); parameters are keyed by name, so it loads into any stage split of the same
// model. A stage checkpoint holds the one stage a daemon serves as named state groups (flat
// vectors in the stage's ParamLayout), tagged with run, stage, step, round, the stage's tokens
// and layout hash: the same bytes state sync streams to a replica that joins the stage.
import { mkdir, readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { UserError } from '../errors.js'
import { checkModelConfig, stageParamLayout, type ModelConfig, type ParamLayout } from '../model/index.js'
import type { RunManifest } from '../manifest/manifest.js'
import { writeFileAtomic } from '../util/fs.js'
import type { OptimizerConfig } from './optimizer-config.js'
import { decodeSafetensors, encodeSafetensors, safetensorsParts, type NamedTensor } from './safetensors.js'
import type { StageEngine } from './stage-engine.js'

/** A checkpoint that is missing, unreadable or does not fit the model. */
export class CheckpointError extends UserError {
  override name = 'CheckpointError'
}

/** Where `--checkpoint-dir D` keeps the latest checkpoint. */
export const checkpointFileName = 'checkpoint.safetensors'

export interface TrainingState {
  model: ModelConfig
  optimizer: OptimizerConfig
  /** Optimizer steps taken. */
  step: number
  seed: number
  /** The Corpus source the run trains on. */
  data: string
  /** The training sampler's Rng state after `step` steps. */
  sampler: number[]
}

export interface Checkpoint extends CheckpointTensors {
  state: TrainingState
}

const metadataKey = 'swarmtrain'
const stageMetadataKey = 'swarmtrain.stage'

/** The named state groups of a stage replica, each a flat vector in the stage's ParamLayout. */
export const stageGroups = ['weights', 'adamw.m', 'adamw.v', 'theta_at_last_sync', 'outer_momentum', 'error_feedback'] as const
export type StageGroup = typeof stageGroups[number]

/** Which stage a stage state is of, in which run, and where it stands. */
export interface StageStateTag {
  runId: string
  stage: number
  /** Inner (AdamW) steps taken. */
  step: number
  /** Averaging rounds completed: theta_at_last_sync is the result of round `round`. */
  round: number
  /** Tokens the stage trained through round `round`, summed over its members: the replicas' common schedule position. */
  tokens: number
  layoutHash: string
}

export interface StageState extends StageStateTag {
  groups: Record<StageGroup, Float32Array>
}

/** Tensors keyed by parameter name; AdamW moments by `adamw.m.<name>` and `adamw.v.<name>`. */
export interface CheckpointTensors {
  weights: Map<string, Float32Array>
  m: Map<string, Float32Array>
  v: Map<string, Float32Array>
}

/** Parameters and moments of each engine, each engine's taken between its calls, by parameter name. */
async function engineTensors (engines: readonly StageEngine[]): Promise<NamedTensor[]> {
  const tensors: NamedTensor[] = []
  const moments: NamedTensor[] = []
  for (const engine of engines) {
    const { weights, m, v } = await engine.snapshot()
    for (const slot of engine.params.slots) {
      const view = (a: Float32Array) => engine.params.view(a, slot)
      tensors.push({ name: slot.name, shape: slot.shape, data: view(weights) })
      moments.push({ name: `adamw.m.${slot.name}`, shape: slot.shape, data: view(m) })
      moments.push({ name: `adamw.v.${slot.name}`, shape: slot.shape, data: view(v) })
    }
  }
  return [...tensors, ...moments]
}

function splitTensors (tensors: Iterable<[string, { data: Float32Array }]>): CheckpointTensors {
  const weights = new Map<string, Float32Array>()
  const m = new Map<string, Float32Array>()
  const v = new Map<string, Float32Array>()
  for (const [name, t] of tensors) {
    if (name.startsWith('adamw.m.')) m.set(name.slice(8), t.data)
    else if (name.startsWith('adamw.v.')) v.set(name.slice(8), t.data)
    else weights.set(name, t.data)
  }
  return { weights, m, v }
}

/** Writes the engines' parameters and optimizer state with `state` to `dir`/checkpoint.safetensors, atomically. */
export async function saveCheckpoint (dir: string, engines: readonly StageEngine[], state: TrainingState): Promise<string> {
  await mkdir(dir, { recursive: true })
  const path = join(dir, checkpointFileName)
  await writeFileAtomic(path, safetensorsParts(await engineTensors(engines), { [metadataKey]: JSON.stringify(state) }))
  return path
}

/** Where a daemon in `dir` keeps its checkpoint of `stage`. */
export function stageCheckpointPath (dir: string, stage: number): string {
  return join(dir, `stage-${stage}.safetensors`)
}

/** A stage state as safetensors: one tensor per group, the tag as metadata. */
function stageStateFile (state: StageState): [NamedTensor[], Record<string, string>] {
  const { groups, ...tag } = state
  return [stageGroups.map(name => ({ name, shape: [groups[name].length], data: groups[name] })), { [stageMetadataKey]: JSON.stringify(tag) }]
}

/** A stage state as bytes. */
export function encodeStageState (state: StageState): Uint8Array {
  return encodeSafetensors(...stageStateFile(state))
}

/**
 * Decodes a stage state and checks it is of run `expect.runId`, stage `expect.stage` and laid
 * out as `expect.layout`; throws a CheckpointError or SafetensorsError naming the problem.
 */
export function decodeStageState (bytes: Uint8Array, what: string, expect: { runId: string, stage: number, layout: ParamLayout }): StageState {
  const { tensors, metadata } = decodeSafetensors(bytes, what)
  let tag: StageStateTag
  try {
    tag = JSON.parse(metadata[stageMetadataKey] ?? '') as StageStateTag
  } catch {
    throw new CheckpointError(`${what}: not a stage state (no '${stageMetadataKey}' metadata)`)
  }
  const isCount = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0
  if (typeof tag !== 'object' || tag === null || typeof tag.runId !== 'string' || !isCount(tag.stage) || !isCount(tag.step) || !isCount(tag.round) || typeof tag.layoutHash !== 'string') {
    throw new CheckpointError(`${what}: bad stage state metadata`)
  }
  if (!isCount(tag.tokens)) throw new CheckpointError(`${what}: no count of the stage's tokens (a stage state of an older swarmtrain?)`)
  if (tag.runId !== expect.runId || tag.stage !== expect.stage) throw new CheckpointError(`${what}: a state of run ${tag.runId} stage ${tag.stage}, not run ${expect.runId} stage ${expect.stage}`)
  if (tag.layoutHash !== expect.layout.hash) throw new CheckpointError(`${what}: parameter layout ${tag.layoutHash} differs from this stage's ${expect.layout.hash}`)
  if (tensors.size !== stageGroups.length) throw new CheckpointError(`${what}: ${tensors.size} groups, expected ${stageGroups.join(', ')}`)
  const groups = {} as Record<StageGroup, Float32Array>
  for (const name of stageGroups) {
    const data = tensors.get(name)?.data
    if (data === undefined) throw new CheckpointError(`${what}: no group ${name}`)
    if (data.length !== expect.layout.size) throw new CheckpointError(`${what}: group ${name} has ${data.length} values, the stage has ${expect.layout.size}`)
    groups[name] = data
  }
  const { runId, stage, step, round, tokens, layoutHash } = tag
  return { runId, stage, step, round, tokens, layoutHash, groups }
}

/** Writes a stage state to `path`, atomically. */
export async function saveStageCheckpoint (path: string, state: StageState): Promise<void> {
  await writeFileAtomic(path, safetensorsParts(...stageStateFile(state)))
}

/** A stage state's weights by parameter name (views into its weights group). */
export function stageWeights (state: StageState, layout: ParamLayout): Map<string, Float32Array> {
  return new Map(layout.slots.map(slot => [slot.name, layout.view(state.groups.weights, slot)]))
}

/** Reads a stage checkpoint; undefined if there is none, a CheckpointError or SafetensorsError naming the damage otherwise. */
export async function readStageCheckpoint (path: string, expect: { runId: string, stage: number, layout: ParamLayout }): Promise<StageState | undefined> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new CheckpointError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  return decodeStageState(bytes, path, expect)
}

/** Reads a checkpoint from a directory (its checkpoint.safetensors) or a file path. */
export async function readCheckpoint (path: string): Promise<Checkpoint> {
  let bytes: Uint8Array
  let file = path
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EISDIR') throw new CheckpointError(`cannot read checkpoint ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    file = join(path, checkpointFileName)
    try {
      bytes = await readFile(file)
    } catch (err) {
      throw new CheckpointError(`no checkpoint in ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message} for ${checkpointFileName})`)
    }
  }
  const { tensors, metadata } = decodeSafetensors(bytes, file)
  return { state: parseState(metadata[metadataKey], file), ...splitTensors(tensors) }
}

/** Loads a checkpoint's weights and AdamW state into engines (any stage split of the checkpoint's model). */
export async function restoreEngines (engines: readonly StageEngine[], checkpoint: CheckpointTensors & { state: { step: number } }, what = 'checkpoint'): Promise<void> {
  for (const engine of engines) {
    const size = engine.weights.length
    const weights = new Float32Array(size)
    const m = new Float32Array(size)
    const v = new Float32Array(size)
    for (const slot of engine.params.slots) {
      for (const [map, out, kind] of [[checkpoint.weights, weights, ''], [checkpoint.m, m, 'adamw.m.'], [checkpoint.v, v, 'adamw.v.']] as const) {
        const values = map.get(slot.name)
        if (values === undefined) throw new CheckpointError(`${what}: no tensor ${kind}${slot.name}`)
        if (values.length !== slot.size) throw new CheckpointError(`${what}: ${kind}${slot.name} has ${values.length} values, the model needs ${slot.size}`)
        out.set(values, slot.offset)
      }
    }
    await engine.loadState(weights, { step: checkpoint.state.step, m, v })
  }
}

function parseState (json: string | undefined, file: string): TrainingState {
  if (json === undefined) throw new CheckpointError(`${file}: not a swarmtrain checkpoint (no '${metadataKey}' metadata)`)
  let state: TrainingState
  try {
    state = JSON.parse(json) as TrainingState
  } catch {
    throw new CheckpointError(`${file}: the '${metadataKey}' metadata is not JSON`)
  }
  const isCount = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0
  if (typeof state !== 'object' || state === null) throw new CheckpointError(`${file}: bad metadata`)
  if (typeof state.model !== 'object' || state.model === null) throw new CheckpointError(`${file}: metadata has no model`)
  try {
    checkModelConfig(state.model)
  } catch (err) {
    throw new CheckpointError(`${file}: ${(err as Error).message}`)
  }
  if (typeof state.optimizer !== 'object' || state.optimizer === null || Object.values(state.optimizer).some(x => typeof x !== 'number' || !Number.isFinite(x))) {
    throw new CheckpointError(`${file}: metadata has a bad optimizer config`)
  }
  if (!isCount(state.step) || !Number.isSafeInteger(state.seed) || typeof state.data !== 'string' ||
    !Array.isArray(state.sampler) || state.sampler.length !== 4 || !state.sampler.every(x => isCount(x) && x <= 0xffffffff)) {
    throw new CheckpointError(`${file}: metadata has a bad step, seed, data or sampler field`)
  }
  return state
}

/** A stage this node checkpointed for its run: what a restart should resume. */
export interface SavedStage {
  stage: number
  step: number
  path: string
}

/**
 * The newest usable `stage-<s>.safetensors` of run `runId` in `dir` (a node that moved keeps
 * the older ones: the newest is the stage it served last).
 */
export async function findSavedStage (dir: string, runId: string, manifest: RunManifest, onUnusable: (path: string, err: Error) => void = () => {}): Promise<SavedStage | undefined> {
  const names = (await readdir(dir).catch(() => [])).filter(name => /^stage-\d+\.safetensors$/.test(name))
  const files = await Promise.all(names.map(async name => ({ stage: Number(/\d+/.exec(name)![0]), path: join(dir, name), mtime: (await stat(join(dir, name)).catch(() => undefined))?.mtime.getTime() ?? 0 })))
  for (const { stage, path } of files.sort((a, b) => b.mtime - a.mtime)) {
    if (stage >= manifest.nStages) continue
    try {
      const saved = await readStageCheckpoint(path, { runId, stage, layout: stageParamLayout(manifest.model, stage, manifest.nStages) })
      if (saved !== undefined) return { stage, step: saved.step, path }
    } catch (err) {
      onUnusable(path, err as Error)
    }
  }
  return undefined
}
