// Keeps a stage's weights still while a microbatch is between its forward and its backward.
//
// A gradient taken on weights older than the ones it is applied to is stale, and on this
// model stale gradients are ruinous: in one process, with half of a step's microbatches
// computed on the previous step's weights (stashed, so each gradient is exact for its
// weights), the default model never left the loss plateau near 2.5 nats per byte (2.45
// after 600 steps; 2.01 without staleness). So a microbatch holds the weights from its
// forward to its backward, and a weight change (an optimizer step, an averaging round's
// result, a loaded state) waits until no microbatch holds them. New holds wait while a change
// is pending, so a stream of microbatches cannot starve it. A holder that never lets go (its
// next stage hangs) delays a change by at most `maxWaitMs`; after that the change goes ahead
// and that one microbatch's gradient is stale, as it would be without the gate.
import { WEIGHTS_HOLD_MAX_WAIT_MS } from '../timing.js'

export interface WeightsGateInit {
  /** Longest a change waits for holders (default WEIGHTS_HOLD_MAX_WAIT_MS). */
  maxWaitMs?: number
}

export class WeightsGate {
  private holders = 0
  /** Changes pending or running. */
  private changes = 0
  private readonly holdWaiters: Array<() => void> = []
  private readonly drainWaiters: Array<() => void> = []
  private readonly maxWaitMs: number

  constructor (init: WeightsGateInit = {}) {
    this.maxWaitMs = init.maxWaitMs ?? WEIGHTS_HOLD_MAX_WAIT_MS
  }

  /** Microbatches holding the weights now. */
  get held (): number { return this.holders }

  /** Waits for pending changes, then holds the weights until the returned release is called (once; later calls do nothing). */
  async hold (): Promise<() => void> {
    while (this.changes > 0) await new Promise<void>(resolve => this.holdWaiters.push(resolve))
    this.holders++
    let released = false
    return () => {
      if (released) return
      released = true
      this.holders--
      if (this.holders === 0) for (const wake of this.drainWaiters.splice(0)) wake()
    }
  }

  /**
   * Runs `change` once no microbatch holds the weights, or `maxWaitMs` passed. Holds asked for
   * meanwhile wait, unless the change is `lazy`: then it waits for the holders to drain on their
   * own (a stage's holders all end before each step, since calls beyond its share wait for the
   * step), which keeps the pipeline running where a change can wait that long. Either way no
   * hold starts while the change runs.
   */
  async change<T> (change: () => Promise<T>, options: { lazy?: boolean } = {}): Promise<T> {
    let counted = false
    const count = (): void => { this.changes++; counted = true }
    if (options.lazy !== true) count()
    try {
      const deadline = performance.now() + this.maxWaitMs
      // Lazy: a hold may start between the drain and this change resuming; wait for that one too.
      while (this.holders > 0 && performance.now() < deadline) {
        let timer: NodeJS.Timeout | undefined
        await new Promise<void>(resolve => {
          this.drainWaiters.push(resolve)
          timer = setTimeout(resolve, deadline - performance.now())
        })
        clearTimeout(timer)
      }
      if (!counted) count()
      return await change()
    } finally {
      if (counted) {
        this.changes--
        if (this.changes === 0) for (const wake of this.holdWaiters.splice(0)) wake()
      }
    }
  }
}
