// Activation codecs: float16 and bfloat16 bit exact with the reference (every float16 value,
// random and special float32 bit patterns, both code paths); int8 with per-row scales.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as native from '../native/index.js'
import { Rng } from '../node/util/random.js'

const { reference } = native

function same (a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

/** Random float32 bit patterns plus the edge cases of float16 rounding. */
function patterns (rng: Rng): Float32Array {
  const bits = new Uint32Array(1 << 18).map(() => rng.nextUint32())
  const special = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffbfffff, 0x477fefff, 0x477ff000, 0x477fe000,
    0x38800000, 0x387fffff, 0x33000000, 0x33000001, 0x32ffffff, 0x33800000, 0x3f800fff, 0x3f801000, 0x3f803000, 0x7f7fffff]
  bits.set(special)
  for (let i = special.length; i < 4096; i++) bits[i] = (0x33000000 + rng.int(0x05800000)) | (rng.next() < 0.5 ? 0x80000000 : 0) // float16's range
  return new Float32Array(bits.buffer)
}

for (const simd of native.isNative ? [true, false] : [false]) {
  test(`float16 and bfloat16 match the reference bit for bit (${simd ? 'avx2 if available' : 'portable'})`, () => {
    if (native.isNative) native.setSimd(simd)
    const all = new Uint16Array(65536).map((_, i) => i)
    const f1 = new Float32Array(65536); const f2 = new Float32Array(65536)
    native.f16ToF32(all, f1)
    reference.f16ToF32(all, f2)
    assert.ok(same(f1, f2), 'f16ToF32')
    const back = new Uint16Array(65536)
    native.f32ToF16(f1, back)
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0
      assert.is(back[h], isNaN ? h | 0x200 : h, `float16 ${h.toString(16)} does not round-trip`)
    }
    const x = patterns(new Rng(4))
    const h1 = new Uint16Array(x.length); const h2 = new Uint16Array(x.length)
    native.f32ToF16(x, h1)
    reference.f32ToF16(x, h2)
    assert.ok(same(h1, h2), 'f32ToF16')
    native.f32ToBf16(x, h1)
    reference.f32ToBf16(x, h2)
    assert.ok(same(h1, h2), 'f32ToBf16')
    const y1 = new Float32Array(x.length); const y2 = new Float32Array(x.length)
    native.bf16ToF32(h1, y1)
    reference.bf16ToF32(h1, y2)
    assert.ok(same(y1, y2), 'bf16ToF32')
    // Known values: 1 + 2^-11 is a tie that rounds to even (1), 65520 overflows.
    native.f32ToF16(Float32Array.of(1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, -(2 ** -24)), h1.subarray(0, 6))
    assert.equal(Array.from(h1.subarray(0, 6)), [0x3c00, 0x3c00, 0x3c02, 0x7bff, 0x7c00, 0x8001])
    if (native.isNative) native.setSimd(true)
  })
}

for (const simd of native.isNative ? [true, false] : [false]) test(`int8 with per-row scales matches the reference and stays within half a step (${simd ? 'avx2 if available' : 'portable'})`, () => {
  if (native.isNative) native.setSimd(simd)
  const rng = new Rng(8)
  const rows = 33
  const width = 257
  const x = new Float32Array(rows * width).map((_, i) => rng.normal() * (1 + (i % 7)))
  x.fill(0, 5 * width, 6 * width) // an all-zero row
  const q1 = new Int8Array(x.length); const q2 = new Int8Array(x.length)
  const s1 = new Float32Array(rows); const s2 = new Float32Array(rows)
  native.f32ToInt8(x, q1, s1, width)
  reference.f32ToInt8(x, q2, s2, width)
  assert.ok(same(q1, q2) && same(s1, s2))
  const y = new Float32Array(x.length)
  native.int8ToF32(q1, s1, y, width)
  const y2 = new Float32Array(x.length)
  reference.int8ToF32(q1, s1, y2, width)
  assert.ok(same(y, y2))
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(y[i] - x[i]) <= s1[Math.floor(i / width)] * 0.5001)
  assert.is(s1[5], 0)
  // Exact halves round to even: with max 127 the step is 1.
  const halves = Float32Array.of(127, 0.5, 1.5, 2.5, -2.5, -0.5, 126.5, 3)
  const h8 = new Int8Array(8)
  native.f32ToInt8(halves, h8, new Float32Array(1), 8)
  assert.equal(Array.from(h8), [127, 0, 2, 2, -2, -0, 126, 3])
  if (native.isNative) native.setSimd(true)
})

test('bad arguments raise TypeError or RangeError', () => {
  for (const impl of [native, reference]) {
    assert.throws(() => impl.f32ToF16(new Float32Array(3), new Uint16Array(2)), RangeError)
    assert.throws(() => impl.f16ToF32(new Uint16Array(2), new Float32Array(3)), RangeError)
    assert.throws(() => impl.f32ToInt8(new Float32Array(6), new Int8Array(6), new Float32Array(2), 4), /multiple/)
    assert.throws(() => impl.f32ToInt8(new Float32Array(6), new Int8Array(6), new Float32Array(3), 3), /scales/)
    assert.throws(() => impl.f32ToInt8(Float32Array.of(1, NaN), new Int8Array(2), new Float32Array(1), 2), /non-finite/)
    assert.throws(() => impl.int8ToF32(new Int8Array(4), new Float32Array(2), new Float32Array(4), 0), RangeError)
  }
  assert.throws(() => native.f32ToF16(new Float32Array(2), new Int16Array(2) as unknown as Uint16Array), TypeError)
  assert.throws(() => native.f32ToInt8(new Float32Array(2), new Uint8Array(2) as unknown as Int8Array, new Float32Array(1), 2), TypeError)
})

test.run()
