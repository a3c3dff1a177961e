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

test('transfer time counts apart from compute: a slow link gets fewer calls, others\' queue does not multiply it', () => {
  const router = new Router({ exploration: 0 })
  // Same server speed; "far" spends 40 ms per call on the link, "near" 2 ms.
  router.started('near')
  router.succeeded('near', { work: 10, computeMs: 10, queueLength: 0, transferMs: 2 })
  router.started('far')
  router.succeeded('far', { work: 10, computeMs: 10, queueLength: 0, transferMs: 40 })
  assert.is(router.choose(['near', 'far'], 10), 'near')
  assert.is(router.expectedBusyMs('far', 10), 50)
  // Our own calls in flight share the link: two more to "near" make it 3 x (10 + 2) = 36 ms.
  router.started('near')
  router.started('near')
  assert.is(router.expectedBusyMs('near', 10), 36)
  assert.is(router.choose(['near', 'far'], 10), 'near')
  router.started('near')
  assert.is(router.expectedBusyMs('near', 10), 48)
  assert.is(router.choose(['near', 'far'], 10), 'near')
  router.started('near')
  assert.is(router.choose(['near', 'far'], 10), 'far')
  // Other callers' queue at the server delays its compute only, not our transfer.
  const r2 = new Router({ exploration: 0 })
  r2.started('p')
  r2.succeeded('p', { work: 1, computeMs: 1, queueLength: 3, transferMs: 10 })
  assert.is(r2.expectedBusyMs('p', 1), 1 * 4 + 10)
  // A non-finite transfer time (from a peer's bogus reported times) is ignored.
  r2.started('q')
  r2.succeeded('q', { work: 1, computeMs: 1, queueLength: 0, transferMs: Number.NaN })
  assert.is(r2.expectedBusyMs('q', 1), 1)
})

test('one call at a time: the equally fast server behind the faster link serves them', () => {
  // Servers report the same compute time; only the calls' transfer time tells them apart (listed
  // far first: counting compute alone, the tie would send every call there).
  const router = new Router({ exploration: 0 })
  const linkMs: Record<string, number> = { far: 20, near: 1 }
  const counts: Record<string, number> = { far: 0, near: 0 }
  for (let i = 0; i < 100; i++) {
    const peer = router.choose(['far', 'near'], 1) as string
    router.started(peer)
    counts[peer]++
    router.succeeded(peer, { work: 1, computeMs: 10, queueLength: 0, transferMs: linkMs[peer] })
  }
  // One probe each, then the near one.
  assert.equal(counts, { far: 1, near: 99 })
})

test.run()
