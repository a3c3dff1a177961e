import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getEventListeners } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Rng, hashString } from '../node/util/random.js'
import { writeFileAtomic } from '../node/util/fs.js'
import { settlesWithin, sleep, timeoutOrShutdown } from '../node/util/abort.js'

test('Rng is reproducible, resumable and roughly uniform', () => {
  const a = new Rng(42)
  const b = new Rng(42)
  const xs = Array.from({ length: 5 }, () => a.next())
  assert.equal(xs, Array.from({ length: 5 }, () => b.next()))
  assert.not.equal(xs, Array.from({ length: 5 }, () => new Rng(43).next()))
  const saved = a.state()
  const next = [a.next(), a.normal()]
  const c = new Rng(0)
  c.restore(saved)
  assert.equal([c.next(), c.normal()], next)
  let sum = 0
  for (let i = 0; i < 10000; i++) sum += a.next()
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02)
  assert.throws(() => c.restore([1, 2, 3]), /four uint32/)
  assert.not.equal(hashString('wte'), hashString('wpe'))
})

test('writeFileAtomic replaces the file and leaves no temporary behind', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-fs-'))
  const path = join(dir, 'state.bin')
  await writeFileAtomic(path, 'one')
  await writeFileAtomic(path, new Uint8Array([116, 119, 111]))
  assert.is(readFileSync(path, 'utf8'), 'two')
  await writeFileAtomic(path, [new Uint8Array([116]), new Uint8Array(0), new Uint8Array([104, 114, 101, 101])])
  assert.is(readFileSync(path, 'utf8'), 'three', 'parts are written one after another')
  assert.equal(readdirSync(dir), ['state.bin'])
  rmSync(dir, { recursive: true, force: true })
})

test('sleeps and timeouts end at once when the shutdown signal aborts', async () => {
  const stopping = new AbortController()
  const started = Date.now()
  const slept = sleep(60_000, stopping.signal)
  const query = timeoutOrShutdown(60_000, stopping.signal)
  setTimeout(() => stopping.abort(), 20)
  await slept
  assert.ok(Date.now() - started < 1000, 'the sleep outlived the shutdown')
  assert.ok(query.aborted)
  await sleep(60_000, stopping.signal)
  assert.ok(Date.now() - started < 1000, 'a sleep after the shutdown waited')
  assert.ok(timeoutOrShutdown(60_000).aborted === false)
  assert.is(await settlesWithin(new Promise(() => {}), 20), false)
  assert.is(await settlesWithin(Promise.reject(new Error('x')), 1000), true)
})

test('a timeout ends its signal with a TimeoutError, and a shutdown before it with the shutdown\'s reason', async () => {
  const stopping = new AbortController()
  const short = timeoutOrShutdown(20, stopping.signal)
  const long = timeoutOrShutdown(60_000, stopping.signal)
  await sleep(100)
  assert.ok(short.aborted)
  assert.is((short.reason as Error).name, 'TimeoutError')
  assert.not.ok(long.aborted)
  stopping.abort(new Error('stopping'))
  assert.ok(long.aborted)
  assert.is((long.reason as Error).message, 'stopping')
  assert.ok(timeoutOrShutdown(60_000, stopping.signal).aborted, 'after the shutdown, a new signal is aborted at once')
})

// Every inbound info stream and every registry query takes one of these signals: nothing of a
// finished one may stay behind in the node's shutdown signal, which lives as long as the node.
// (Node 20's AbortSignal.any([timeout, shutdown]) keeps a WeakRef per call in `shutdown` for ever.)
test('timeoutOrShutdown leaves nothing behind in the shutdown signal once its timeout passed', async () => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const heapUsed = (): number => { gc(); gc(); return process.memoryUsage().heapUsed }
  const stopping = new AbortController()
  // Waits until the last signal timed out, then a little more for the garbage to settle.
  const burst = async (n: number): Promise<void> => {
    let last: AbortSignal | undefined
    for (let i = 0; i < n; i++) last = timeoutOrShutdown(1, stopping.signal)
    while (last?.aborted === false) await sleep(20)
    await sleep(500)
  }
  // The first burst as large as the second: V8's tables (e.g. DOMException's, for the timeout
  // errors of 100,000 signals at once) keep their high-water size, which is not a leak.
  await burst(100_000)
  const before = heapUsed()
  await burst(100_000)
  const grown = heapUsed() - before
  // AbortSignal.any left ~58 bytes per call here (5.5 MiB).
  assert.ok(grown < 2 << 20, `the heap grew by ${(grown / 2 ** 20).toFixed(1)} MiB over 100,000 finished signals`)
  assert.ok(getEventListeners(stopping.signal, 'abort').length <= 1, 'abort listeners pile up on the shutdown signal')
})

test.run()
