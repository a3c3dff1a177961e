// Tokens trained during rounds against between them: each backward's tokens spread over the time
// since the one before, so the split does not depend on rounds starting right after a backward.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TrainingSplit } from '../node/averaging/training-split.js'

/** Backwards of 100 tokens every 10 ms from 0 to `until`, with rounds over `rounds` ([start, end]). */
function steady (until: number, rounds: Array<[number, number]>): TrainingSplit {
  const split = new TrainingSplit(0)
  const events: Array<[number, () => void]> = []
  for (let t = 10; t <= until; t += 10) events.push([t, () => { split.trained(t, 100) }])
  for (const [start, end] of rounds) events.push([start, () => { split.roundStarted(start) }], [end, () => { split.roundEnded(end) }])
  // At equal times a backward comes first: the round it triggers starts after it.
  for (const [, apply] of events.sort((a, b) => a[0] - b[0])) apply()
  return split
}

const rate = (t: { tokens: number, ms: number }): number => t.tokens / t.ms

test('a steady pipeline trains at the same rate during rounds as between them, wherever rounds start', () => {
  // Each round starts on a backward (as after a step) and ends between two.
  const split = steady(1000, [[100, 125], [300, 315], [500, 545], [700, 703]])
  assert.ok(Math.abs(rate(split.during) / rate(split.between) - 1) < 1e-9, `ratio ${rate(split.during) / rate(split.between)}`)
  assert.is(split.during.ms, 25 + 15 + 45 + 3)
  assert.is(split.during.ms + split.between.ms, 1000)
  assert.ok(Math.abs(split.during.tokens + split.between.tokens - 100 * 100) < 1e-6, 'every token counted once')
})

test('a pipeline that slows during rounds shows it', () => {
  const split = new TrainingSplit(0)
  split.trained(10, 100)
  split.roundStarted(10)
  split.trained(30, 100) // half the rate while the round runs
  split.roundEnded(30)
  split.trained(40, 100)
  assert.is(rate(split.during), 5)
  assert.is(rate(split.between), 10)
})

test('a round inside the span between two backwards takes its share of their tokens', () => {
  const split = new TrainingSplit(0)
  split.roundStarted(2)
  split.roundEnded(4)
  split.roundStarted(6)
  split.trained(10, 100) // rounds covered 2 + 4 of the 10 ms; the second is still running
  assert.equal(split.during, { tokens: 60, ms: 6 })
  assert.equal(split.between, { tokens: 40, ms: 4 })
})

test.run()
