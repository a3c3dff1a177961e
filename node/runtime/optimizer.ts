// The inner optimizer: AdamW with decoupled weight decay on matrices only, global-norm
// gradient clipping, and a linear-warmup + cosine learning-rate schedule.
import { adamwAsync } from '../../native/index.js'
import type { ParamLayout } from '../model/index.js'
import type { OptimizerConfig } from './optimizer-config.js'

/** The learning rate of 1-based step `step`. */
export function learningRate (config: OptimizerConfig, step: number): number {
  if (step <= config.warmupSteps) return config.lr * step / Math.max(1, config.warmupSteps)
  const progress = Math.min(1, (step - config.warmupSteps) / Math.max(1, config.totalSteps - config.warmupSteps))
  return config.minLr + 0.5 * (config.lr - config.minLr) * (1 + Math.cos(Math.PI * progress))
}

/** The AdamW kernel (native/index.ts adamwAsync); injectable so tests can make it fail. */
export type AdamWKernel = typeof adamwAsync

/** AdamW moments over one flat parameter vector of a ParamLayout. */
export class AdamW {
  readonly m: Float32Array
  readonly v: Float32Array
  /** Steps taken: the schedule's position, and bias correction's. */
  step = 0
  private readonly kernel: AdamWKernel
  /** The ranges one kernel call each updates: the decayed tensors, then the rest. */
  private readonly ranges: Array<{ start: number, end: number, decay: boolean }>
  /** Weights and moments before the step in progress, to undo a step that fails halfway. */
  private readonly before: { weights: Float32Array, m: Float32Array, v: Float32Array }

  constructor (readonly config: OptimizerConfig, layout: ParamLayout, components: { kernel?: AdamWKernel } = {}) {
    this.kernel = components.kernel ?? adamwAsync
    this.m = new Float32Array(layout.size)
    this.v = new Float32Array(layout.size)
    this.before = { weights: new Float32Array(layout.size), m: new Float32Array(layout.size), v: new Float32Array(layout.size) }
    // A layout that does not group decayed tensors needs one call per tensor.
    this.ranges = layout.decayedSize > 0 || layout.slots.every(s => !s.decay)
      ? [{ start: 0, end: layout.decayedSize, decay: true }, { start: layout.decayedSize, end: layout.size, decay: false }].filter(r => r.end > r.start)
      : layout.slots.map(s => ({ start: s.offset, end: s.offset + s.size, decay: s.decay }))
  }

  /**
   * One step on `weights` from summed gradients `grads`: `gradScale` turns the sum into the
   * mean (times the clipping factor). Returns the learning rate used. All or nothing: if a
   * kernel call fails, weights, moments and the step count are as they were before, and the
   * error is thrown. The kernels run off the main thread; nothing may touch the arrays until
   * the promise settles.
   */
  async update (weights: Float32Array, grads: Float32Array, gradScale: number): Promise<number> {
    const step = this.step + 1
    const lr = learningRate(this.config, step)
    const { beta1, beta2, eps, weightDecay } = this.config
    this.before.weights.set(weights)
    this.before.m.set(this.m)
    this.before.v.set(this.v)
    try {
      for (const { start, end, decay } of this.ranges) {
        await this.kernel(weights.subarray(start, end), grads.subarray(start, end), this.m.subarray(start, end), this.v.subarray(start, end), {
          lr, beta1, beta2, eps, weightDecay: decay ? weightDecay : 0, step, gradScale
        })
      }
    } catch (err) {
      weights.set(this.before.weights)
      this.m.set(this.before.m)
      this.v.set(this.before.v)
      throw err
    }
    this.step = step
    return lr
  }
}

/** The factor that scales a gradient of global norm `norm` down to `clipNorm` (1 when it is within). */
export function clipFactor (norm: number, clipNorm: number): number {
  return clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1
}
