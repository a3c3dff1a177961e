// Without the addon (SWARMTRAIN_NATIVE=0, in a child process), the *Async kernels run the
// reference in a worker thread: the event loop keeps turning during a large call, the results
// and the arrays written are those of the synchronous reference, errors are typed rejections,
// and the idle worker does not keep the process alive.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const index = join(dirname(fileURLToPath(import.meta.url)), '..', 'native', 'index.js')

// Prints one JSON line; every comparison is made here and reported as a boolean.
const probe = `const k = await import(process.argv[1]);
const same = (a, b) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
let seed = 1;
const random = n => Float32Array.from({ length: n }, () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 - 0.5 });
const n = 1 << 21, o = { beta: 0.95, chunk: 4096, k: 64, bits: 2 };
const e = random(n), delta = random(n), eSync = e.slice();
const out = new Uint8Array(k.maxPayloadSize(n, o.chunk, o.k, o.bits)), outSync = out.slice();
let turns = 0, done = false;
const turn = () => { turns++; if (!done) setImmediate(turn) };
setImmediate(turn);
const size = await k.compressAsync(e, delta, new Float32Array(k.chunkCount(n, o.chunk)), out, o);
done = true;
const sizeSync = k.reference.compress(eSync, delta, new Float32Array(k.chunkCount(n, o.chunk)), outSync, o);
const compress = size === sizeSync && same(out, outSync) && same(e, eSync);
const payload = out.subarray(0, size);
// Each kernel: the arrays it writes, written in place as by the sync reference.
const m = 1000, p = random(m), g = random(m), m1 = random(m), v1 = random(m).map(Math.abs), b1 = random(m);
const p2 = p.slice(), m2 = m1.slice(), v2 = v1.slice(), b2 = b1.slice();
const adamOptions = { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, step: 3, gradScale: 0.5 };
await k.adamwAsync(p, g, m1, v1, adamOptions); k.reference.adamw(p2, g, m2, v2, adamOptions);
const adamw = same(p, p2) && same(m1, m2) && same(v1, v2);
const outerOptions = { lr: 0.7, momentum: 0.9, nesterov: true };
await k.outerStepAsync(p, g, b1, outerOptions); k.reference.outerStep(p2, g, b2, outerOptions);
const outerStep = same(p, p2) && same(b1, b2);
await k.axpyAsync(p, g, -3); k.reference.axpy(p2, g, -3);
const axpy = same(p, p2);
const dst = random(n), dst2 = dst.slice();
await k.decodeAccumulateAsync(dst, payload, 0.5); k.reference.decodeAccumulate(dst2, payload, 0.5);
const decodeAccumulate = same(dst, dst2);
const sumSquares = (await k.sumSquaresAsync(g)) === k.reference.sumSquares(g);
const errors = await Promise.all([
  k.compressAsync(e, delta, new Float32Array(3), out, o).catch(err => err instanceof RangeError && /hints/.test(err.message)),
  k.axpyAsync(p, [1, 2], 1).catch(err => err instanceof TypeError),
  k.decodeAccumulateAsync(dst, new Uint8Array(3), 1).catch(err => err instanceof RangeError)
]);
console.log(JSON.stringify({ isNative: k.isNative, turns, compress, adamw, outerStep, axpy, decodeAccumulate, sumSquares, errors }))`

test('without the addon, the async kernels run the reference off the event loop', () => {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', probe, index], {
    encoding: 'utf8', timeout: 120_000, env: { ...process.env, SWARMTRAIN_NATIVE: '0' }
  })
  assert.is(child.status, 0, `the probe did not exit by itself: ${child.stderr}`)
  const r = JSON.parse(child.stdout)
  assert.is(r.isNative, false)
  // The reference takes ~1 s on 2M elements; run inline, no turn would happen before it settles.
  assert.ok(r.turns >= 10, `the event loop turned ${r.turns} times during compressAsync`)
  assert.equal({ ...r, turns: 0 }, {
    isNative: false, turns: 0, compress: true, adamw: true, outerStep: true, axpy: true, decodeAccumulate: true, sumSquares: true, errors: [true, true, true]
  })
})

test.run()
