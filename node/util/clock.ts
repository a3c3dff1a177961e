// Time as components see it. Daemons use the system clock; the simulator (node/sim) passes its
// own, so the same policies run in simulated time.

export interface Clock {
  /** Unix milliseconds. */
  now(): number
  /** Milliseconds for measuring durations (sub-millisecond where the clock has it). */
  monotonic(): number
  setTimeout(callback: () => void, ms: number): TimerHandle
  clearTimeout(handle: TimerHandle | undefined): void
}

/** Opaque: whatever the clock's setTimeout returned. */
export type TimerHandle = unknown

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: handle => { clearTimeout(handle as NodeJS.Timeout | undefined) }
}
