// Checkpoints: safetensors files holding parameters (by their model-wide names) and AdamW
// moments, plus JSON metadata. A training checkpoint (`train --local`) holds every stage and
// everything needed to continue bit-exactly (model, optimizer config, step, seed, data source,
// sampler state); parameters are keyed by name, so it loads into any stage split of the same
// model. A stage checkpoint holds the one stage a daemon serves, tagged with run and stage.
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { UserError } from '../errors.js'
import { checkModelConfig, paramSize, type ModelConfig } from '../model/index.js'
import { writeFileAtomic } from '../util/fs.js'
import type { OptimizerConfig } from './optimizer-config.js'
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from './safetensors.js'
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

/** The stage a daemon served, in which run, after how many inner steps. */
export interface StageCheckpointState {
  runId: string
  stage: number
  step: number
}

/** Tensors keyed by parameter name; AdamW moments by `adamw.m.<name>` and `adamw.v.<name>`. */
export interface CheckpointTensors {
  weights: Map<string, Float32Array>
  m: Map<string, Float32Array>
  v: Map<string, Float32Array>
}

/** Parameters and moments of each engine, each engine's taken between its calls, and the step each was at. */
async function engineTensors (engines: readonly StageEngine[]): Promise<{ tensors: NamedTensor[], steps: number[] }> {
  const tensors: NamedTensor[] = []
  const moments: NamedTensor[] = []
  const steps: number[] = []
  for (const engine of engines) {
    const { weights, m, v, step } = await engine.snapshot()
    steps.push(step)
    let offset = 0
    for (const p of engine.params) {
      const n = paramSize(p)
      tensors.push({ name: p.name, shape: p.shape, data: weights.subarray(offset, offset + n) })
      moments.push({ name: `adamw.m.${p.name}`, shape: p.shape, data: m.subarray(offset, offset + n) })
      moments.push({ name: `adamw.v.${p.name}`, shape: p.shape, data: v.subarray(offset, offset + n) })
      offset += n
    }
  }
  return { tensors: [...tensors, ...moments], steps }
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
  const { tensors } = await engineTensors(engines)
  await writeFileAtomic(path, encodeSafetensors(tensors, { [metadataKey]: JSON.stringify(state) }))
  return path
}

/** Where a daemon in `dir` keeps its checkpoint of `stage`. */
export function stageCheckpointPath (dir: string, stage: number): string {
  return join(dir, `stage-${stage}.safetensors`)
}

/** Writes the stage a daemon serves to `path`, atomically; returns the step it saved. */
export async function saveStageCheckpoint (path: string, engine: StageEngine, of: { runId: string, stage: number }): Promise<number> {
  const { tensors, steps: [step] } = await engineTensors([engine])
  const state: StageCheckpointState = { ...of, step }
  await writeFileAtomic(path, encodeSafetensors(tensors, { [stageMetadataKey]: JSON.stringify(state) }))
  return step
}

/** Reads a stage checkpoint; undefined if there is none, a CheckpointError or SafetensorsError naming the damage otherwise. */
export async function readStageCheckpoint (path: string): Promise<{ state: StageCheckpointState } & CheckpointTensors | undefined> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new CheckpointError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  const { tensors, metadata } = decodeSafetensors(bytes, path)
  let state: StageCheckpointState
  try {
    state = JSON.parse(metadata[stageMetadataKey] ?? '') as StageCheckpointState
  } catch {
    throw new CheckpointError(`${path}: not a stage checkpoint (no '${stageMetadataKey}' metadata)`)
  }
  if (typeof state?.runId !== 'string' || !Number.isSafeInteger(state.stage) || state.stage < 0 || !Number.isSafeInteger(state.step) || state.step < 0) {
    throw new CheckpointError(`${path}: bad stage checkpoint metadata`)
  }
  return { state, ...splitTensors(tensors) }
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
    let offset = 0
    for (const p of engine.params) {
      const n = paramSize(p)
      for (const [map, out, kind] of [[checkpoint.weights, weights, ''], [checkpoint.m, m, 'adamw.m.'], [checkpoint.v, v, 'adamw.v.']] as const) {
        const values = map.get(p.name)
        if (values === undefined) throw new CheckpointError(`${what}: no tensor ${kind}${p.name}`)
        if (values.length !== n) throw new CheckpointError(`${what}: ${kind}${p.name} has ${values.length} values, the model needs ${n}`)
        out.set(values, offset)
      }
      offset += n
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
