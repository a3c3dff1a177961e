// swarmtrain export: a checkpoint's weights baked into one standalone ONNX inference graph
// (tokens int64 [B, T] -> logits [B, T, vocab]) that any ONNX runtime can load. The weights come
// from a training checkpoint (`train --local`), from a node directory holding a stage
// checkpoint of every stage of its run (daemons each keep the stage they serve), or from the
// swarm as it trains (--swarm: a running daemon gathers every stage's weights from replicas).
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { SWARM_WEIGHTS_PATH, swarmWeightsKey, type SwarmWeightsTag } from '../../averaging/swarm-weights.js'
import { defaultNodeDir } from '../../daemon/dir.js'
import { controlGet } from '../../daemon/process.js'
import { MANIFEST_FILE, readManifest, runIdOf } from '../../manifest/manifest.js'
import { buildInferenceGraph, modelParams, paramCount, stageParamLayout, type ModelConfig } from '../../model/index.js'
import { CheckpointError, checkpointFileName, readCheckpoint, readStageCheckpoint, stageCheckpointPath, stageWeights } from '../../runtime/checkpoint.js'
import { decodeSafetensors } from '../../runtime/safetensors.js'
import { writeFileAtomic } from '../../util/fs.js'
import { parse } from '../args.js'
import { daemonControlPort } from '../daemon-port.js'
import { UsageError } from '../errors.js'

export const summary = 'write a checkpoint as one ONNX model (tokens -> logits) for inference'

export const usage = `usage: swarmtrain export --checkpoint D --out model.onnx
       swarmtrain export --swarm [--dir D] [--control-port P] --out model.onnx

  --checkpoint D    a checkpoint directory (as given to train --checkpoint-dir) or its .safetensors
                    file, or a node directory with ${MANIFEST_FILE} and stage-<s>.safetensors for every
                    stage of the run (copy them there from the nodes that serve each stage)
  --swarm           the swarm's model as it trains now: the daemon running in --dir takes its own
                    stage's weights from its engine and every other stage's from one of its replicas
  --dir D           with --swarm: the node directory of a running daemon (default ${defaultNodeDir()})
  --control-port P  with --swarm: ask the daemon on 127.0.0.1:P (its run must be --dir's)
  --out FILE        where to write the ONNX model (atomically)`

interface Weights {
  model: ModelConfig
  weights: Map<string, Float32Array>
  /** How far it trained, for the summary line. */
  trained: string
}

const exists = async (path: string): Promise<boolean> => await access(path).then(() => true, () => false)

/** Every stage's checkpoint in a node directory, checked against the directory's run. */
async function fromStageCheckpoints (dir: string): Promise<Weights> {
  const manifest = await readManifest(dir)
  const runId = runIdOf(manifest)
  const weights = new Map<string, Float32Array>()
  const steps: number[] = []
  const missing: number[] = []
  for (let stage = 0; stage < manifest.nStages; stage++) {
    const path = stageCheckpointPath(dir, stage)
    const layout = stageParamLayout(manifest.model, stage, manifest.nStages)
    // Refuses a checkpoint of another run, stage or layout, naming what it holds.
    const saved = await readStageCheckpoint(path, { runId, stage, layout })
    if (saved === undefined) {
      missing.push(stage)
      continue
    }
    for (const [name, values] of stageWeights(saved, layout)) weights.set(name, values)
    steps.push(saved.step)
  }
  if (missing.length > 0) {
    throw new CheckpointError(`${dir} has no checkpoint of stage ${missing.join(', ')} (of ${manifest.nStages}): a daemon keeps only the stages it served; ` +
      `copy stage-<s>.safetensors from nodes that serve ${missing.length === 1 ? 'it' : 'them'} into ${dir}`)
  }
  return { model: manifest.model, weights, trained: `stage steps ${steps.join('/')}` }
}

async function loadWeights (path: string): Promise<Weights> {
  if (await exists(join(path, MANIFEST_FILE)) && !await exists(join(path, checkpointFileName))) return await fromStageCheckpoints(path)
  const checkpoint = await readCheckpoint(path)
  return { model: checkpoint.state.model, weights: checkpoint.weights, trained: `step ${checkpoint.state.step}` }
}

/** The swarm's weights now, gathered by the daemon running in `dir` (or on `port`), checked against `dir`'s run. */
async function fromSwarm (dir: string, port?: string): Promise<Weights> {
  const manifest = await readManifest(dir)
  const runId = runIdOf(manifest)
  const controlPort = await daemonControlPort(dir, port)
  // Each stage may come from another replica, each fetch bounded by the run's round timeout.
  const timeoutMs = manifest.nStages * manifest.averaging.roundTimeoutMs + 10_000
  console.log(`asking the daemon on 127.0.0.1:${controlPort} for the swarm's weights: its own stage from its engine, the others from a replica each`)
  const bytes = await controlGet(controlPort, SWARM_WEIGHTS_PATH, { maxBytes: 4 * paramCount(modelParams(manifest.model)) + (1 << 20), timeoutMs })
  const { tensors, metadata } = decodeSafetensors(bytes, `the swarm weights from 127.0.0.1:${controlPort}`)
  let tag: SwarmWeightsTag
  try {
    tag = JSON.parse(metadata[swarmWeightsKey] ?? '') as SwarmWeightsTag
  } catch {
    throw new CheckpointError(`127.0.0.1:${controlPort} did not answer with swarm weights`)
  }
  if (tag.runId !== runId) throw new CheckpointError(`the daemon on 127.0.0.1:${controlPort} trains run ${tag.runId}, not ${dir}'s run ${runId}`)
  const short = (peer: string): string => peer.slice(-6)
  return {
    model: manifest.model,
    weights: new Map([...tensors].map(([name, t]) => [name, t.data])),
    trained: `stage steps ${tag.stages.map(s => s.step).join('/')}, rounds ${tag.stages.map(s => s.round).join('/')} (from ${tag.stages.map(s => short(s.peer)).join(', ')})`
  }
}

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, { checkpoint: { type: 'string' }, swarm: { type: 'boolean' }, dir: { type: 'string' }, 'control-port': { type: 'string' }, out: { type: 'string' } })
  const swarm = values.swarm === true
  if (swarm && values.checkpoint !== undefined) throw new UsageError('export takes --checkpoint D or --swarm, not both')
  if (!swarm && values.checkpoint === undefined) throw new UsageError('export needs --checkpoint D or --swarm')
  if (!swarm && (values.dir !== undefined || values['control-port'] !== undefined)) throw new UsageError('--dir and --control-port go with --swarm')
  if (values.out === undefined) throw new UsageError('export needs --out FILE')
  const source = values.checkpoint ?? values.dir ?? defaultNodeDir()
  const { model, weights, trained } = swarm ? await fromSwarm(source, values['control-port']) : await loadWeights(source)
  let onnx: ReturnType<typeof buildInferenceGraph>
  try {
    onnx = buildInferenceGraph(model, 'float32', weights)
  } catch (err) {
    if (err instanceof RangeError) throw new CheckpointError(`${swarm ? 'the swarm\'s weights' : source}: ${err.message}`)
    throw err
  }
  try {
    await writeFileAtomic(values.out, onnx.model)
  } catch (err) {
    throw new UsageError(`cannot write ${values.out} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  console.log(`wrote ${values.out}: ${model.nLayers} layers x d${model.dModel}, ${paramCount(onnx.params)} parameters, ` +
    `${trained}, ${(onnx.model.length / 2 ** 20).toFixed(1)} MiB`)
  return 0
}
