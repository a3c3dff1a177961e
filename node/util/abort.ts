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

/** A signal that aborts after `ms` or when `shutdown` aborts, whichever comes first. */
export function timeoutOrShutdown (ms: number, shutdown?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(ms)
  return shutdown === undefined ? timeout : AbortSignal.any([timeout, shutdown])
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
