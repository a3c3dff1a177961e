// The inner optimizer: AdamW with decoupled weight decay on matrices only, global-norm
// gradient clipping, and a linear-warmup + cosine learning-rate schedule.
import { adamwAsync } from '../../native/index.js'
import { paramCount, paramSize, type ParamSpec } from '../model/index.js'
import type { OptimizerConfig } from './optimizer-config.js'

/** The learning rate of 1-based step `step`. */
export function learningRate (config: OptimizerConfig, step: number): number {
  if (step <= config.warmupSteps) return config.lr * step / Math.max(1, config.warmupSteps)
  const progress = Math.min(1, (step - config.warmupSteps) / Math.max(1, config.totalSteps - config.warmupSteps))
  return config.minLr + 0.5 * (config.lr - config.minLr) * (1 + Math.cos(Math.PI * progress))
}

/** AdamW moments over one flat parameter vector laid out as `params` (spec order). */
export class AdamW {
  readonly m: Float32Array
  readonly v: Float32Array
  /** Steps taken so far; the next step is number `step + 1` (for bias correction and the schedule). */
  step = 0

  constructor (readonly config: OptimizerConfig, private readonly params: readonly ParamSpec[]) {
    const size = paramCount(params)
    this.m = new Float32Array(size)
    this.v = new Float32Array(size)
  }

  /**
   * One step on `weights` from summed gradients `grads`: `gradScale` turns the sum into the
   * mean (times the clipping factor). Returns the learning rate used. The native kernel runs
   * off the main thread; nothing may touch the arrays until the promise settles.
   */
  async update (weights: Float32Array, grads: Float32Array, gradScale: number): Promise<number> {
    this.step++
    const lr = learningRate(this.config, this.step)
    const { beta1, beta2, eps, weightDecay } = this.config
    let offset = 0
    for (const spec of this.params) {
      const n = paramSize(spec)
      const slice = (a: Float32Array) => a.subarray(offset, offset + n)
      await adamwAsync(slice(weights), slice(grads), slice(this.m), slice(this.v), {
        lr, beta1, beta2, eps, weightDecay: spec.decay ? weightDecay : 0, step: this.step, gradScale
      })
      offset += n
    }
    return lr
  }
}

/** The factor that scales a gradient of global norm `norm` down to `clipNorm` (1 when it is within). */
export function clipFactor (norm: number, clipNorm: number): number {
  return clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1
}
