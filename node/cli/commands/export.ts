// swarmtrain export: a checkpoint's weights baked into one standalone ONNX inference graph
// (tokens int64 [B, T] -> logits [B, T, vocab]) that any ONNX runtime can load. The weights come
// from a training checkpoint (`train --local`) or from a node directory holding a stage
// checkpoint of every stage of its run (daemons each keep the stage they serve).
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { MANIFEST_FILE, readManifest, runIdOf } from '../../manifest/manifest.js'
import { buildInferenceGraph, paramCount, stageParamLayout, type ModelConfig } from '../../model/index.js'
import { CheckpointError, checkpointFileName, readCheckpoint, readStageCheckpoint, stageCheckpointPath, stageWeights } from '../../runtime/checkpoint.js'
import { writeFileAtomic } from '../../util/fs.js'
import { parse } from '../args.js'
import { UsageError } from '../errors.js'

export const summary = 'write a checkpoint as one ONNX model (tokens -> logits) for inference'

export const usage = `usage: swarmtrain export --checkpoint D --out model.onnx

  --checkpoint D  a checkpoint directory (as given to train --checkpoint-dir) or its .safetensors
                  file, or a node directory with ${MANIFEST_FILE} and stage-<s>.safetensors for every
                  stage of the run (copy them there from the nodes that serve each stage)
  --out FILE      where to write the ONNX model (atomically)`

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

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, { checkpoint: { type: 'string' }, out: { type: 'string' } })
  if (values.checkpoint === undefined) throw new UsageError('export needs --checkpoint D')
  if (values.out === undefined) throw new UsageError('export needs --out FILE')
  const { model, weights, trained } = await loadWeights(values.checkpoint)
  let onnx: ReturnType<typeof buildInferenceGraph>
  try {
    onnx = buildInferenceGraph(model, 'float32', weights)
  } catch (err) {
    if (err instanceof RangeError) throw new CheckpointError(`${values.checkpoint}: ${err.message}`)
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
