// swarmtrain generate: continue a prompt with an exported model, sampling byte by byte with a
// temperature (seeded, so a seed reproduces the text). The model runs in a worker thread.
import { readFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { UserError } from '../../errors.js'
import { encode } from '../../data/tokenizer.js'
import { initializerDims } from '../../runtime/onnx-info.js'
import { SessionHost, SessionRunError } from '../../runtime/session-host.js'
import { Rng } from '../../util/random.js'
import { intOption, numberOption, parse } from '../args.js'
import { UsageError } from '../errors.js'

export const summary = 'continue a text prompt with an exported ONNX model'

export const usage = `usage: swarmtrain generate --model model.onnx --prompt TEXT [options]

  --model FILE       an ONNX model written by 'swarmtrain export'
  --prompt TEXT      the text to continue
  --tokens N         bytes to generate (default 200)
  --temperature T    sampling temperature; 0 picks the likeliest byte (default 0.8)
  --seed S           seed of the sampling (default 1)`

/** A model file that cannot be used: missing, not ONNX, not a swarmtrain export. */
export class ModelFileError extends UserError {
  override name = 'ModelFileError'
}

export async function run (argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    model: { type: 'string' }, prompt: { type: 'string' }, tokens: { type: 'string' }, temperature: { type: 'string' }, seed: { type: 'string' }
  })
  if (v.model === undefined) throw new UsageError('generate needs --model FILE')
  if (v.prompt === undefined || v.prompt === '') throw new UsageError('generate needs a non-empty --prompt TEXT')
  const count = intOption('tokens', v.tokens, 200, 1, 100_000)
  const temperature = numberOption('temperature', v.temperature, 0.8, 0, 100)
  const rng = new Rng(intOption('seed', v.seed, 1, 0, 0xffffffff))

  let bytes: Uint8Array
  try {
    bytes = new Uint8Array(await readFile(v.model))
  } catch (err) {
    throw new ModelFileError(`cannot read --model ${v.model} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  let context: number | undefined
  try {
    context = initializerDims(bytes, 'wpe')?.[0]
  } catch (err) {
    throw new ModelFileError(`--model ${v.model}: not an ONNX model (${(err as Error).message})`)
  }
  if (context === undefined) throw new ModelFileError(`--model ${v.model}: not a model written by 'swarmtrain export' (no position embedding)`)
  let host: SessionHost
  try {
    host = await SessionHost.create({ graphs: { model: bytes }, params: [], weights: new SharedArrayBuffer(0), threads: availableParallelism(), keepVersions: 1 })
  } catch (err) {
    if (err instanceof SessionRunError) throw new ModelFileError(`--model ${v.model}: ${err.message}`)
    throw err
  }
  try {
    const tokens = Array.from(encode(v.prompt))
    const decoder = new TextDecoder()
    process.stdout.write(v.prompt)
    for (let i = 0; i < count; i++) {
      const window = tokens.slice(-context)
      const { outputs: out } = await host.run('model', { tokens: { data: BigInt64Array.from(window, BigInt), shape: [1, window.length] } }, ['logits']).catch((err: Error) => {
        throw err instanceof SessionRunError ? new ModelFileError(`--model ${v.model}: ${err.message}`) : err
      })
      const vocab = out.logits.shape[2]
      const last = out.logits.data.subarray((window.length - 1) * vocab) as Float32Array
      const next = sample(last, temperature, rng)
      tokens.push(next)
      process.stdout.write(decoder.decode(Uint8Array.of(next), { stream: true }))
    }
    process.stdout.write(decoder.decode() + '\n')
  } finally {
    await host.close()
  }
  return 0
}

/** A token drawn from softmax(logits / temperature); temperature 0 is argmax. */
export function sample (logits: Float32Array, temperature: number, rng: Rng): number {
  let best = 0
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i
  if (temperature === 0) return best
  const weights = Array.from(logits, l => Math.exp((l - logits[best]) / temperature))
  let r = rng.next() * weights.reduce((a, b) => a + b, 0)
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i]
    if (r < 0) return i
  }
  return best
}
