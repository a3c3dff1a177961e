import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SimClock } from '../node/sim/clock.js'
import { sleep } from '../node/util/abort.js'

test('events run in time order, ties in scheduling order; cancelled ones never', async () => {
  const clock = new SimClock()
  const seen: string[] = []
  clock.setTimeout(() => seen.push(`b@${clock.now()}`), 20)
  clock.setTimeout(() => seen.push(`a@${clock.now()}`), 10)
  clock.setTimeout(() => seen.push(`c@${clock.now()}`), 20)
  const gone = clock.setTimeout(() => seen.push('never'), 15)
  clock.clearTimeout(gone)
  clock.setTimeout(() => seen.push(`late@${clock.now()}`), 50)
  await clock.run(30)
  assert.equal(seen, ['a@10', 'b@20', 'c@20'])
  assert.is(clock.now(), 30)
  await clock.run(100)
  assert.equal(seen, ['a@10', 'b@20', 'c@20', 'late@50'])
})

test('async code waits in simulated time: each continuation runs before the next event', async () => {
  const clock = new SimClock()
  const seen: string[] = []
  const task = async (name: string, ms: number): Promise<void> => {
    await sleep(ms, undefined, clock)
    seen.push(`${name}@${clock.now()}`)
    await sleep(ms, undefined, clock)
    seen.push(`${name}@${clock.now()}`)
  }
  void task('x', 30)
  void task('y', 40)
  const started = performance.now()
  await clock.run(1_000_000)
  assert.equal(seen, ['x@30', 'y@40', 'x@60', 'y@80'])
  assert.ok(performance.now() - started < 1000, 'no real waiting')
})

test.run()
