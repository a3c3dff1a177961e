// Dense kernels: AdamW and the outer step bit for bit against the reference (both code paths),
// async = sync, sumSquares to rounding, and argument checks.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as native from '../native/index.js'
import { Rng } from '../node/util/random.js'

const { reference } = native

function gaussian (n: number, rng: Rng, scale = 1): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale
  return a
}

function same (a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

for (const simd of native.isNative ? [true, false] : [false]) {
  test(`adamw, outerStep and axpy match the reference exactly (${simd ? 'avx2 if available' : 'portable'})`, () => {
    if (native.isNative) native.setSimd(simd)
    const rng = new Rng(1)
    const n = 10007
    const p1 = gaussian(n, rng)
    const g = gaussian(n, rng)
    const m1 = gaussian(n, rng, 0.1)
    const v1 = gaussian(n, rng, 0.01).map(Math.abs)
    const p2 = p1.slice(); const m2 = m1.slice(); const v2 = v1.slice()
    for (let step = 1; step < 2000; step += 97) {
      const o = { lr: 3e-4, beta1: 0.9, beta2: 0.95 + (step % 5) / 100, eps: 1e-8, weightDecay: 0.1, step, gradScale: 0.125 }
      native.adamw(p1, g, m1, v1, o)
      reference.adamw(p2, g, m2, v2, o)
      assert.ok(same(p1, p2) && same(m1, m2) && same(v1, v2), `adamw differs at step ${step}`)
    }
    for (const o of [{ lr: 1, momentum: 0, nesterov: false }, { lr: 0.7, momentum: 0.9, nesterov: true }, { lr: 0.7, momentum: 0.8, nesterov: false }]) {
      const q1 = gaussian(n, rng); const b1 = gaussian(n, rng)
      const q2 = q1.slice(); const b2 = b1.slice()
      native.outerStep(q1, g, o.momentum > 0 ? b1 : null, o)
      reference.outerStep(q2, g, o.momentum > 0 ? b2 : null, o)
      assert.ok(same(q1, q2) && same(b1, b2), `outerStep differs for ${JSON.stringify(o)}`)
    }
    const a1 = gaussian(n, rng); const a2 = a1.slice()
    native.axpy(a1, g, -0.3)
    reference.axpy(a2, g, -0.3)
    assert.ok(same(a1, a2))
    const s = native.sumSquares(g)
    assert.ok(Math.abs(s - reference.sumSquares(g)) <= 1e-12 * s)
    if (native.isNative) native.setSimd(true)
  })
}

test('async variants match the sync ones', async () => {
  const rng = new Rng(2)
  const n = 300007 // above the two-thread split
  const g = gaussian(n, rng)
  const p1 = gaussian(n, rng); const m1 = new Float32Array(n); const v1 = new Float32Array(n)
  const p2 = p1.slice(); const m2 = m1.slice(); const v2 = v1.slice()
  const o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3, gradScale: 1 }
  await native.adamwAsync(p1, g, m1, v1, o)
  native.adamw(p2, g, m2, v2, o)
  assert.ok(same(p1, p2) && same(m1, m2) && same(v1, v2))
  const b1 = gaussian(n, rng); const b2 = b1.slice()
  await native.outerStepAsync(p1, g, b1, { lr: 0.7, momentum: 0.9, nesterov: true })
  native.outerStep(p2, g, b2, { lr: 0.7, momentum: 0.9, nesterov: true })
  assert.ok(same(p1, p2) && same(b1, b2))
  await native.axpyAsync(p1, g, 2)
  native.axpy(p2, g, 2)
  assert.ok(same(p1, p2))
  const s = await native.sumSquaresAsync(g)
  assert.ok(Math.abs(s - native.sumSquares(g)) <= 1e-12 * s)
})

test('bad arguments raise TypeError or RangeError', async () => {
  const a = new Float32Array(4)
  const o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1, gradScale: 1 }
  for (const impl of [native, reference]) {
    assert.throws(() => impl.adamw(a, a, a, new Float32Array(3), o), /same length/)
    assert.throws(() => impl.adamw(a, a, a, a, { ...o, step: 0 }), RangeError)
    assert.throws(() => impl.adamw(a, a, a, a, { ...o, lr: NaN }), RangeError)
    assert.throws(() => impl.adamw(a, a, a, a, { ...o, beta2: 1 }), RangeError)
    assert.throws(() => impl.adamw(a, a, a, a, { ...o, eps: 0 }), RangeError)
    assert.throws(() => impl.adamw(a, a, [0, 0, 0, 0] as unknown as Float32Array, a, o), TypeError)
    assert.throws(() => impl.outerStep(a, a, null, { lr: 1, momentum: 0.9, nesterov: true }), /buffer/)
    assert.throws(() => impl.outerStep(a, a, new Float32Array(3), { lr: 1, momentum: 0.9, nesterov: true }), RangeError)
    assert.throws(() => impl.outerStep(a, a, null, { lr: Infinity, momentum: 0, nesterov: false }), RangeError)
    assert.throws(() => impl.axpy(a, new Float32Array(5), 1), /same length/)
    assert.throws(() => impl.axpy(a, a, NaN), RangeError)
    assert.throws(() => impl.sumSquares(new Float64Array(3) as unknown as Float32Array), TypeError)
  }
  await native.adamwAsync(a, a, a, a, { ...o, step: -1 }).then(() => assert.unreachable(), (err: Error) => assert.instance(err, RangeError))
})

test.run()
