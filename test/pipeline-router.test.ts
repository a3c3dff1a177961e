import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Router } from '../node/pipeline/router.js'

test('untried replicas are probed first, one probe at a time', () => {
  const router = new Router({ exploration: 0, seed: 1 })
  router.started('a')
  router.succeeded('a', { work: 10, computeMs: 10, queueLength: 0 })
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
    router.succeeded(peer, { work: 10, computeMs: ms, queueLength: 0 })
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
  r2.succeeded('x', { work: 1, computeMs: 1, queueLength: 5 })
  r2.started('y')
  r2.succeeded('y', { work: 1, computeMs: 2, queueLength: 0 })
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
    router.succeeded(peer, { work: 1, computeMs: speed[peer], queueLength: queue[peer] })
    issue()
  }
  const ratio = counts.fast / counts.slow
  assert.ok(ratio > 2 && ratio < 4.5, `fast/slow calls = ${ratio}`)
})

test('failures ban a peer with exponential backoff; success resets it', () => {
  let now = 0
  const router = new Router({ banBaseMs: 100, banMaxMs: 350, exploration: 0, now: () => now })
  for (const p of ['a', 'b']) { router.started(p); router.succeeded(p, { work: 1, computeMs: p === 'a' ? 1 : 5, queueLength: 0 }) }
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
  router.succeeded('a', { work: 1, computeMs: 1, queueLength: 0 })
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
  router.succeeded('p', { work: 100, computeMs: 100, queueLength: 0 })
  assert.is(router.timeoutMs('p', 100), 1000)
  assert.is(router.timeoutMs('p', 1000), 4000)
})

test.run()
