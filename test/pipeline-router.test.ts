import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Router } from '../node/pipeline/router.js'
import { Rng } from '../node/util/random.js'

test('untried replicas are probed first, one probe at a time', () => {
  const router = new Router({ exploration: 0, seed: 1 })
  router.started('a')
  router.succeeded('a', { work: 10, computeMs: 10, queueLength: 0, transferMs: 0 })
  assert.is(router.choose(['a', 'b', 'c'], 10), 'b')
  router.started('b')
  assert.is(router.choose(['a', 'b', 'c'], 10), 'c')
  router.started('c')
  // Both newcomers have a probe in flight: the measured peer serves meanwhile.
  assert.is(router.choose(['a', 'b', 'c'], 10), 'a')
})

test('the least expected busy time wins: speed and queue both count', () => {
  const router = new Router({ exploration: 0 })
  for (const [peer, ms] of [['fast', 10], ['slow', 30]] as const) {
    router.started(peer)
    router.succeeded(peer, { work: 10, computeMs: ms, queueLength: 0, transferMs: 0 })
  }
  assert.is(router.choose(['fast', 'slow'], 10), 'fast')
  router.started('fast')
  router.started('fast')
  assert.is(router.expectedBusyMs('fast', 10), 30)
  router.started('fast')
  assert.is(router.choose(['fast', 'slow'], 10), 'slow')
  // Other callers' queue at a peer, as reported in replies, counts too.
  const r2 = new Router({ exploration: 0 })
  r2.started('x')
  r2.succeeded('x', { work: 1, computeMs: 1, queueLength: 5, transferMs: 0 })
  r2.started('y')
  r2.succeeded('y', { work: 1, computeMs: 2, queueLength: 0, transferMs: 0 })
  assert.is(r2.choose(['x', 'y'], 1), 'y')
})

test('load splits in proportion to speed under a closed loop of calls', () => {
  // Simulated time: two replicas, one 3x slower, serve FIFO; 6 calls are kept in flight.
  let now = 0
  const router = new Router({ exploration: 0, now: () => now })
  const speed: Record<string, number> = { fast: 10, slow: 30 }
  const freeAt: Record<string, number> = { fast: 0, slow: 0 }
  const queue: Record<string, number> = { fast: 0, slow: 0 }
  const counts: Record<string, number> = { fast: 0, slow: 0 }
  const inflight: Array<{ peer: string, done: number }> = []
  const issue = (): void => {
    const peer = router.choose(['fast', 'slow'], 1) as string
    router.started(peer)
    queue[peer]++
    freeAt[peer] = Math.max(freeAt[peer], now) + speed[peer]
    inflight.push({ peer, done: freeAt[peer] })
  }
  for (let i = 0; i < 6; i++) issue()
  for (let i = 0; i < 2000; i++) {
    inflight.sort((a, b) => a.done - b.done)
    const { peer, done } = inflight.shift() as { peer: string, done: number }
    now = done
    queue[peer]--
    counts[peer]++
    router.succeeded(peer, { work: 1, computeMs: speed[peer], queueLength: queue[peer], transferMs: 0 })
    issue()
  }
  const ratio = counts.fast / counts.slow
  assert.ok(ratio > 2 && ratio < 4.5, `fast/slow calls = ${ratio}`)
})

/**
 * Simulated time: calls sent every `gapMs` to two replicas of equal compute (10 ms a call, FIFO),
 * 'far' 40 ms away each way; each outcome reports what a caller measures (the wall time outside
 * the server's compute and queue wait is the transfer). Returns far's share of the calls, the
 * mean wall time of a call, and the router.
 */
function openLoop (gapMs: number, calls: number): { farShare: number, meanMs: number, router: Router } {
  let now = 0
  const router = new Router({ exploration: 0, now: () => now })
  const order = new Rng(7)
  const computeMs = 10
  const oneWayMs: Record<string, number> = { near: 0, far: 40 }
  const freeAt: Record<string, number> = { near: 0, far: 0 }
  const counts: Record<string, number> = { near: 0, far: 0 }
  const pending: Array<{ peer: string, sent: number, arrived: number, started: number, done: number, replied: number }> = []
  let wallMs = 0
  const settle = (until: number): void => {
    pending.sort((a, b) => a.replied - b.replied)
    while (pending.length > 0 && pending[0].replied <= until) {
      const call = pending.shift() as typeof pending[number]
      now = call.replied
      const queueLength = pending.filter(c => c.peer === call.peer && c.arrived <= call.done).length
      const waitMs = call.started - call.arrived
      router.succeeded(call.peer, { work: 1, computeMs, queueLength, transferMs: call.replied - call.sent - computeMs - waitMs })
      wallMs += call.replied - call.sent
    }
  }
  for (let i = 0; i < calls; i++) {
    settle(i * gapMs)
    now = i * gapMs
    // Either order, so that ties between the replicas favour neither.
    const peer = router.choose(order.next() < 0.5 ? ['near', 'far'] : ['far', 'near'], 1) as string
    router.started(peer)
    counts[peer]++
    const arrived = now + oneWayMs[peer]
    const started = Math.max(arrived, freeAt[peer])
    freeAt[peer] = started + computeMs
    pending.push({ peer, sent: now, arrived, started, done: freeAt[peer], replied: freeAt[peer] + oneWayMs[peer] })
  }
  settle(Infinity)
  return { farShare: counts.far / calls, meanMs: wallMs / calls, router }
}

test('a replica behind a slow link gets fewer calls while the near one keeps up, and takes the overflow', () => {
  // Light load (the near replica alone is busy 40% of the time): counting only compute, the far
  // replica looks as good whenever both are idle, and every call it gets waits 80 ms on the wire.
  const light = openLoop(25, 2000)
  assert.ok(Math.abs((light.router.transferEstimates().get('far') ?? 0) - 80) < 1e-6, "the far link's transfer is learned")
  assert.is(light.router.transferEstimates().get('near'), 0)
  assert.ok(light.farShare < 0.02, `far got ${(100 * light.farShare).toFixed(1)}% of the calls`)
  assert.ok(light.meanMs < 15, `mean call ${light.meanMs.toFixed(1)} ms`)
  // Heavy load (more than the near replica can compute): the far one serves what would otherwise queue.
  const heavy = openLoop(6, 2000)
  assert.ok(heavy.farShare > 0.25 && heavy.farShare < 0.5, `far got ${(100 * heavy.farShare).toFixed(1)}% of the calls`)
  // The calls on the far link are not also counted as the far server's backlog (that made it 118 ms).
  assert.ok(heavy.meanMs < 100, `mean call ${heavy.meanMs.toFixed(1)} ms`)
  // Its timeout covers the wire too.
  assert.ok(heavy.router.timeoutMs('far', 1) >= heavy.router.expectedBusyMs('far', 1))
  assert.ok(heavy.router.expectedBusyMs('far', 1) > 80)
})

test('failures ban a peer with exponential backoff; success resets it', () => {
  let now = 0
  const router = new Router({ banBaseMs: 100, banMaxMs: 350, exploration: 0, now: () => now })
  for (const p of ['a', 'b']) { router.started(p); router.succeeded(p, { work: 1, computeMs: p === 'a' ? 1 : 5, queueLength: 0, transferMs: 0 }) }
  router.started('a')
  router.failed('a')
  assert.ok(router.isBanned('a'))
  assert.is(router.choose(['a', 'b'], 1), 'b')
  now = 100
  assert.is(router.choose(['a', 'b'], 1), 'a')
  router.started('a')
  router.failed('a')
  now = 299
  assert.ok(router.isBanned('a'))
  now = 300
  router.started('a')
  router.failed('a') // third: 400 capped to 350
  now = 649
  assert.ok(router.isBanned('a'))
  now = 650
  assert.not.ok(router.isBanned('a'))
  router.started('a')
  router.succeeded('a', { work: 1, computeMs: 1, queueLength: 0, transferMs: 0 })
  router.started('a')
  router.failed('a')
  now = 750
  assert.not.ok(router.isBanned('a'))
  // Excluded and banned peers leave nothing to choose.
  router.started('b')
  router.failed('b')
  assert.is(router.choose(['a', 'b'], 1, new Set(['a'])), undefined)
})

test('timeouts scale with the expected busy time, with a floor and a default for unknown peers', () => {
  const router = new Router({ minTimeoutMs: 1000, timeoutFactor: 4, unknownTimeoutMs: 9000 })
  assert.is(router.timeoutMs('new', 100), 9000)
  router.started('p')
  router.succeeded('p', { work: 100, computeMs: 100, queueLength: 0, transferMs: 0 })
  assert.is(router.timeoutMs('p', 100), 1000)
  assert.is(router.timeoutMs('p', 1000), 4000)
})

test.run()
