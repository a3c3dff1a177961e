// swarmtrain export: a checkpoint's weights baked into one standalone ONNX inference graph
// (tokens int64 [B, T] -> logits [B, T, vocab]) that any ONNX runtime can load.
import { buildInferenceGraph, paramCount } from '../../model/index.js'
import { CheckpointError, readCheckpoint } from '../../runtime/checkpoint.js'
import { writeFileAtomic } from '../../util/fs.js'
import { parse } from '../args.js'
import { UsageError } from '../errors.js'

export const summary = 'write a checkpoint as one ONNX model (tokens -> logits) for inference'

export const usage = `usage: swarmtrain export --checkpoint D --out model.onnx

  --checkpoint D  a checkpoint directory (as given to train --checkpoint-dir) or its .safetensors file
  --out FILE      where to write the ONNX model (atomically)`

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, { checkpoint: { type: 'string' }, out: { type: 'string' } })
  if (values.checkpoint === undefined) throw new UsageError('export needs --checkpoint D')
  if (values.out === undefined) throw new UsageError('export needs --out FILE')
  const checkpoint = await readCheckpoint(values.checkpoint)
  const { model } = checkpoint.state
  let onnx: ReturnType<typeof buildInferenceGraph>
  try {
    onnx = buildInferenceGraph(model, 'float32', checkpoint.weights)
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
    `step ${checkpoint.state.step}, ${(onnx.model.length / 2 ** 20).toFixed(1)} MiB`)
  return 0
}
