// Microbatches of token windows: random windows of the training part (seeded, resumable) and
// a fixed set of evenly spaced windows of the validation part.
import { Rng } from '../util/random.js'

/** int64 tokens [batch, seqLen] and their next-token targets, as the stage graphs take them. */
export interface TokenBatch {
  x: { data: BigInt64Array, shape: number[] }
  targets: { data: BigInt64Array, shape: number[] }
}

export class BatchSampler {
  private readonly rng: Rng

  constructor (private readonly tokens: Uint8Array, readonly seqLen: number, readonly batchSize: number, seed: number | string) {
    if (tokens.length < seqLen + 1) throw new RangeError(`need at least ${seqLen + 1} tokens to sample windows of ${seqLen}, have ${tokens.length}`)
    this.rng = new Rng(seed)
  }

  next (): TokenBatch {
    const starts = Array.from({ length: this.batchSize }, () => this.rng.int(this.tokens.length - this.seqLen))
    return windows(this.tokens, starts, this.seqLen)
  }

  /** The sampler's position, to save in a checkpoint. */
  state (): number[] {
    return this.rng.state()
  }

  restore (state: readonly number[]): void {
    this.rng.restore(state)
  }
}

/** `count` batches of windows spread evenly over `tokens`: the same every time, so evaluations compare. */
export function evenBatches (tokens: Uint8Array, seqLen: number, batchSize: number, count: number): TokenBatch[] {
  const n = batchSize * count
  const span = tokens.length - seqLen - 1
  if (span < 0) throw new RangeError(`need at least ${seqLen + 1} tokens for windows of ${seqLen}, have ${tokens.length}`)
  const starts = Array.from({ length: n }, (_, i) => n === 1 ? 0 : Math.round(i * span / (n - 1)))
  return Array.from({ length: count }, (_, b) => windows(tokens, starts.slice(b * batchSize, (b + 1) * batchSize), seqLen))
}

function windows (tokens: Uint8Array, starts: number[], seqLen: number): TokenBatch {
  const x = new BigInt64Array(starts.length * seqLen)
  const targets = new BigInt64Array(starts.length * seqLen)
  for (const [row, start] of starts.entries()) {
    for (let t = 0; t < seqLen; t++) {
      x[row * seqLen + t] = BigInt(tokens[start + t])
      targets[row * seqLen + t] = BigInt(tokens[start + t + 1])
    }
  }
  const shape = [starts.length, seqLen]
  return { x: { data: x, shape }, targets: { data: targets, shape: [...shape] } }
}
