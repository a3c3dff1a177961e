// Waits that end early when the node shuts down. Every component gets the node's one shutdown
// signal (SwarmComponents.shutdown); sleeps and network waits use these so that stopping
// never waits out a timer.
import { systemClock, type Clock } from './clock.js'

/** Resolves after `ms` on `clock`, or at once when `signal` aborts (the caller then checks `signal.aborted`). */
export async function sleep (ms: number, signal?: AbortSignal, clock: Clock = systemClock): Promise<void> {
  if (signal?.aborted === true) return
  await new Promise<void>(resolve => {
    const done = (): void => {
      clock.clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = clock.setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** The signals of timeoutOrShutdown still running, with their timers, by the shutdown signal that ends them. */
const running = new WeakMap<AbortSignal, Map<AbortController, NodeJS.Timeout>>()

/**
 * A signal that aborts after `ms` (with a TimeoutError, like AbortSignal.timeout) or when
 * `shutdown` aborts, whichever comes first. Not AbortSignal.any([timeout, shutdown]): on Node 20
 * that keeps a WeakRef per call in `shutdown`, which lives as long as the node, so every inbound
 * info stream and every query leaked ~60 bytes. Here a signal is forgotten when its time is
 * up, and one listener per shutdown signal ends those still running.
 */
export function timeoutOrShutdown (ms: number, shutdown?: AbortSignal): AbortSignal {
  if (shutdown === undefined) return AbortSignal.timeout(ms)
  const controller = new AbortController()
  if (shutdown.aborted) {
    controller.abort(shutdown.reason)
    return controller.signal
  }
  let live = running.get(shutdown)
  if (live === undefined) {
    const signals = new Map<AbortController, NodeJS.Timeout>()
    live = signals
    running.set(shutdown, signals)
    shutdown.addEventListener('abort', () => {
      for (const [c, timer] of signals) {
        clearTimeout(timer)
        c.abort(shutdown.reason)
      }
      signals.clear()
    }, { once: true })
  }
  const signals = live
  const timer = setTimeout(() => {
    signals.delete(controller)
    controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))
  }, ms)
  // Like AbortSignal.timeout's, the timer does not keep the process alive.
  timer.unref()
  signals.set(controller, timer)
  return controller.signal
}

/** Waits for `promise` at most `ms`; true if it settled in time. Leaves no timer behind. */
export async function settlesWithin (promise: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (promise === undefined) return true
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<boolean>(resolve => { timer = setTimeout(() => resolve(false), ms) })
  try {
    return await Promise.race([promise.then(() => true, () => true), timedOut])
  } finally {
    clearTimeout(timer)
  }
}
