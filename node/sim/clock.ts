// Simulated time for the discrete-event simulator: a Clock whose timers are events in a queue.
// `run` takes events in time order (ties in scheduling order) and, after each, lets every
// promise continuation it caused run before the next event, so async code (the stage caller,
// the assigner) behaves as under the real clock, only without waiting.
import type { Clock, TimerHandle } from '../util/clock.js'

interface Timer {
  at: number
  seq: number
  callback: () => void
  cancelled: boolean
}

export class SimClock implements Clock {
  private time = 0
  private seq = 0
  /** Binary min-heap on (at, seq). */
  private readonly heap: Timer[] = []

  now (): number {
    return this.time
  }

  monotonic (): number {
    return this.time
  }

  setTimeout (callback: () => void, ms: number): TimerHandle {
    const timer: Timer = { at: this.time + Math.max(0, ms), seq: this.seq++, callback, cancelled: false }
    this.push(timer)
    return timer
  }

  clearTimeout (handle: TimerHandle | undefined): void {
    if (handle !== undefined) (handle as Timer).cancelled = true
  }

  /** Runs events until simulated time `until` (ms); returns the number of events run. */
  async run (until: number): Promise<number> {
    let events = 0
    // A macrotask boundary: every microtask the last event queued has run when it resolves.
    const settle = async (): Promise<void> => { await new Promise<void>(resolve => { setImmediate(resolve) }) }
    await settle()
    while (this.heap.length > 0 && this.heap[0].at <= until) {
      const timer = this.pop()
      if (timer.cancelled) continue
      this.time = timer.at
      timer.callback()
      events++
      await settle()
    }
    this.time = Math.max(this.time, until)
    return events
  }

  private push (timer: Timer): void {
    const heap = this.heap
    heap.push(timer)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(heap[i], heap[parent])) break
      ;[heap[i], heap[parent]] = [heap[parent], heap[i]]
      i = parent
    }
  }

  private pop (): Timer {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop() as Timer
    if (heap.length > 0) {
      heap[0] = last
      let i = 0
      while (true) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < heap.length && before(heap[l], heap[m])) m = l
        if (r < heap.length && before(heap[r], heap[m])) m = r
        if (m === i) break
        ;[heap[i], heap[m]] = [heap[m], heap[i]]
        i = m
      }
    }
    return top
  }
}

function before (a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}
