// The driver's depth control on made-up pipelines: a latency-bound one (depth hides the latency),
// a compute-bound one (depth stops where queueing starts), and a staleness bound that overrides both.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ActiveDrivers, DepthControl } from '../node/pipeline/depth.js'
import { maxDepth } from '../node/pipeline/driver.js'

/**
 * A pipeline whose bottleneck serves one microbatch per `serviceMs` after `baseMs` of latency
 * that depth can hide: with d in flight, each takes max(base, d x service) (Little's law), the
 * excess over the base waiting in the bottleneck's queue. `staleness(d)` is what its backwards
 * would report at depth d.
 */
function drive (control: DepthControl, baseMs: number, serviceMs: number, staleness: (d: number) => number, rounds: number): number[] {
  const depths: number[] = []
  for (let i = 0; i < rounds; i++) {
    const d = control.depth
    const latency = Math.max(baseMs, d * serviceMs)
    control.completed(latency, latency - baseMs, staleness(d))
    depths.push(control.depth)
  }
  return depths
}

test('far stages: depth grows until the latency is hidden, then holds', () => {
  // 1 s of latency, 100 ms at the bottleneck: about 10 in flight keep it busy.
  const control = new DepthControl({ initial: 4, maxStaleness: 100 })
  const depths = drive(control, 1000, 100, () => 0, 400)
  const final = depths[depths.length - 1]
  assert.ok(final >= 10 && final <= 13, `settled at ${final}`)
  assert.ok(depths.slice(-100).every(d => Math.abs(d - final) <= 1), 'it stays there')
})

test('near stages: depth shrinks to the queueing point and stays near it', () => {
  // 50 ms of latency, 40 ms at the bottleneck: past ~2 in flight, microbatches only queue.
  const control = new DepthControl({ initial: 8, maxStaleness: 100 })
  const depths = drive(control, 50, 40, () => 0, 400)
  const final = depths[depths.length - 1]
  assert.ok(final >= 2 && final <= 4, `settled at ${final}`)
  assert.ok(depths.slice(-200).every(d => Math.abs(d - final) <= 1), 'and it stays there')
})

test('staleness over the bound shrinks depth whatever the latency says', () => {
  // Latency would ask for ~10, but every microbatch over depth 3 comes back 2 versions stale.
  const control = new DepthControl({ initial: 6, maxStaleness: 1 })
  const depths = drive(control, 1000, 100, d => d > 3 ? 2 : 1, 400)
  assert.ok(depths.slice(-100).every(d => d <= 4), `depths ${depths.slice(-10).join(' ')}`)
  assert.ok(depths.slice(-100).some(d => d === 3), 'it probes up to the bound')
})

test('no staleness allowed: one microbatch at a time', () => {
  const control = new DepthControl({ initial: 3, maxStaleness: -1 })
  assert.is(drive(control, 1000, 100, () => 0, 50).pop(), 1)
})

test('the swarm\'s drivers share a quarter of a step in flight; a new bound applies at once', () => {
  assert.equal([maxDepth(8), maxDepth(8, 2), maxDepth(8, 4), maxDepth(32, 4), maxDepth(8, 100)], [2, 1, 1, 2, 1])
  const control = new DepthControl({ initial: 4, maxStaleness: 100, max: maxDepth(32) })
  drive(control, 1000, 100, () => 0, 100)
  assert.is(control.depth, 8, 'latency asks for more: held at the bound')
  control.bound(maxDepth(32, 4))
  assert.is(control.depth, 2, 'three more drivers came')
  assert.ok(drive(control, 1000, 100, () => 0, 100).every(d => d <= 2))
})

test('peers count as drivers while the tokens they drove grow, and no longer once they stop', () => {
  const drivers = new ActiveDrivers(30_000)
  const records = (a: number, b: number, c = 0) => [{ peerId: 'a', drivenTokens: a }, { peerId: 'b', drivenTokens: b }, { peerId: 'c', drivenTokens: c }]
  assert.is(drivers.count(records(100, 100), 0), 2, 'first seen with tokens: driving; never drove: not')
  assert.is(drivers.count(records(200, 100), 20_000), 2)
  assert.is(drivers.count(records(300, 100), 40_000), 1, 'b stopped 40 s ago')
  assert.is(drivers.count(records(400, 150, 10), 45_000), 3, 'b drives again, and c started')
  assert.is(drivers.count([{ peerId: 'a', drivenTokens: 500 }], 50_000), 1, 'peers gone from the view are forgotten')
  assert.is(drivers.count(records(600, 150), 60_000), 2, '... and counted afresh when they come back')
})

test.run()
