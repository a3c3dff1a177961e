// The weights gate: a weight change waits for the microbatches holding the weights, new holds
// wait for a pending change, and a holder that never lets go delays a change only so long.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WeightsGate } from '../node/runtime/weights-gate.js'

const tick = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }

test('a change runs once every holder released; holds asked for meanwhile wait for it', async () => {
  const gate = new WeightsGate()
  const events: string[] = []
  const first = await gate.hold()
  const second = await gate.hold()
  const change = gate.change(async () => { events.push('change') })
  const later = gate.hold().then(release => { events.push('hold'); return release })
  await tick()
  assert.equal(events, [], 'the change waits for both holders, the new hold for the change')
  first()
  first() // a second release changes nothing
  await tick()
  assert.equal([events, gate.held], [[], 1])
  second()
  await change
  ;(await later)()
  assert.equal([events, gate.held], [['change', 'hold'], 0])
})

test('with no holder a change runs at once; changes never wait for each other here', async () => {
  const gate = new WeightsGate()
  const order: number[] = []
  await Promise.all([gate.change(async () => { order.push(1) }), gate.change(async () => { order.push(2) })])
  assert.equal(order, [1, 2])
})

test('a lazy change lets new holds in and runs once the holders drain by themselves', async () => {
  const gate = new WeightsGate()
  const events: string[] = []
  const first = await gate.hold()
  const change = gate.change(async () => { events.push('change') }, { lazy: true })
  const second = await gate.hold() // not stopped by the lazy change
  first()
  await tick()
  assert.equal(events, [], 'one holder is left')
  second()
  await change
  assert.equal(events, ['change'])
  const third = await gate.hold()
  third()
  assert.is(gate.held, 0)
})

test('a holder that never lets go delays a change by maxWaitMs, not for ever', async () => {
  const gate = new WeightsGate({ maxWaitMs: 30 })
  await gate.hold()
  const started = performance.now()
  assert.is(await gate.change(async () => 'done'), 'done')
  const waited = performance.now() - started
  assert.ok(waited >= 25 && waited < 1000, `waited ${waited} ms`)
})

test('a change that throws still lets the waiting holds in', async () => {
  const gate = new WeightsGate()
  const release = await gate.hold()
  const failing = gate.change(async () => { throw new Error('kernel failed') })
  const next = gate.hold()
  release()
  assert.match(await failing.then(() => 'resolved', (err: Error) => err.message), /kernel failed/)
  ;(await next)()
  assert.is(gate.held, 0)
})

test.run()
