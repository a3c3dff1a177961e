// Compression: the addon against the JS reference (bit exact, every code path), the
// error-feedback invariant, exactly k per chunk, the offsets' code and its bound, the size target,
// async = sync, bad arguments.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as native from '../native/index.js'
import { HEADER_BYTES, kForDensity, recordLayout, recordsStart, riceBits, type CompressOptions } from '../native/format.js'
import { Rng } from '../node/util/random.js'

const { reference } = native
// Every code path this CPU has (setSimd gives a lower one when it lacks the one asked for).
const paths = native.isNative ? native.SIMD_PATHS.filter(path => native.setSimd(path) === path) : ['js']
if (native.isNative) native.setSimd(true)
console.log(`native-compress: code paths tested against the reference: ${paths.join(', ')}`)

function gaussian (n: number, rng: Rng, scale = 1): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale
  return a
}

function bytesEqual (a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

/** The in-chunk offsets of every chunk record, read straight from the documented layout. */
function offsetsPerChunk (payload: Uint8Array, n: number, o: CompressOptions): number[][] {
  const result: number[][] = []
  const bit = (at: number, i: number): number => (payload[at + (i >> 3)] >> (i & 7)) & 1
  for (let start = 0, c = 0, pos = HEADER_BYTES + 2 * Math.ceil(n / o.chunk); start < n; start += o.chunk, c++) {
    const len = Math.min(o.chunk, n - start)
    const kc = Math.min(o.k, len)
    const b = riceBits(len, kc)
    const low = pos + (o.bits === 2 ? 4 : 2) + Math.ceil(kc * o.bits / 8)
    const high = low + Math.ceil(kc * b / 8)
    const offsets: number[] = []
    for (let j = 0, u = 0, next = 0; j < kc; j++) {
      let gap = 0
      while (bit(high, u++) === 0) gap += 2 ** b
      for (let i = 0; i < b; i++) gap += bit(low, j * b + i) << i
      offsets.push(next + gap)
      next += gap + 1
    }
    result.push(offsets)
    pos += payload[HEADER_BYTES + 2 * c] | (payload[HEADER_BYTES + 2 * c + 1] << 8)
  }
  return result
}

const shapes: Array<[number, CompressOptions]> = [
  [20000, { beta: 0.95, chunk: 4096, k: 64, bits: 2 }], // last chunk shorter
  [20000, { beta: 0.9, chunk: 4096, k: 64, bits: 8 }],
  [1000, { beta: 1, chunk: 100, k: 7, bits: 2 }], // odd k: padding nibbles and code bits
  [999, { beta: 0.5, chunk: 128, k: 128, bits: 8 }], // k = chunk: everything kept
  [70, { beta: 0.95, chunk: 64, k: 10, bits: 2 }], // last chunk of 6 < k
  [5, { beta: 0, chunk: 4096, k: 64, bits: 2 }], // one short chunk
  [3001, { beta: 0.95, chunk: 16, k: 3, bits: 8 }],
  [9000, { beta: 0.95, chunk: 1, k: 1, bits: 2 }],
  [2 * 4096 + 100, { beta: 0.5, chunk: 4096, k: 4096, bits: 8 }], // the largest chunk, all kept
  [30011, { beta: 0.95, chunk: 1000, k: 37, bits: 2 }], // chunks and tails not multiples of 16 lanes
  [200000, { beta: 0.95, chunk: 4096, k: 64, bits: 2 }], // the default shape, over many chunks
  // The offsets' Rice parameter from 11 (k 1) down to 0 (every offset kept), short last chunks.
  [3 * 4096 + 1000, { beta: 0.95, chunk: 4096, k: 1, bits: 2 }],
  [3 * 4096 + 1000, { beta: 0.95, chunk: 4096, k: 16, bits: 8 }],
  [3 * 4096 + 1000, { beta: 0.95, chunk: 4096, k: 256, bits: 2 }],
  [3 * 4096 + 1000, { beta: 0.95, chunk: 4096, k: 1024, bits: 2 }],
  [2 * 4096 + 1000, { beta: 0.95, chunk: 4096, k: 4096, bits: 2 }]
]

for (const path of paths) {
  test(`compress matches the reference bit for bit over several steps (${path})`, () => {
    if (native.isNative) assert.is(native.setSimd(path as native.SimdPath), path)
    const rng = new Rng(7)
    for (const [n, o] of shapes) {
      const e1 = gaussian(n, rng)
      const e2 = e1.slice()
      const hints = new Float32Array(native.chunkCount(n, o.chunk))
      const bound = native.maxPayloadSize(n, o.chunk, o.k, o.bits)
      const out1 = new Uint8Array(bound + 3) // larger than needed is fine
      const out2 = new Uint8Array(bound)
      let size = 0
      for (let step = 0; step < 9; step++) {
        // Heavy tails and a drifting scale exercise the threshold hints (too high and too low).
        const delta = gaussian(n, rng, step === 3 ? 0.01 : step === 4 ? 50 : 1)
        for (let i = 0; i < n; i += 97) delta[i] *= 30
        // Values on a coarse grid: ties at the cut, broken by offset.
        if (step === 6) {
          for (let i = 0; i < n; i++) delta[i] = Math.round(delta[i] * 2) / 2
          e1.fill(0)
          e2.fill(0)
        }
        // Zeros and magnitudes from 2^-40 to 2^20 among the picks (the 2-bit levels then sum in order).
        if (step === 7) {
          for (let i = 0; i < n; i++) delta[i] = i % 3 === 0 ? 0 : delta[i] * 2 ** Math.floor(rng.next() * 60 - 40)
          e1.fill(0)
          e2.fill(0)
        }
        size = native.compress(e1, delta, hints, out1, o)
        assert.ok(size <= bound, `n ${n} ${JSON.stringify(o)} step ${step}: ${size} bytes, above the bound ${bound}`)
        assert.is(reference.compress(e2, delta, new Float32Array(hints.length), out2, o), size)
        assert.ok(bytesEqual(out1.subarray(0, size), out2.subarray(0, size)), `payload differs: n ${n} ${JSON.stringify(o)} step ${step}`)
        assert.ok(bytesEqual(e1, e2), `e differs: n ${n} ${JSON.stringify(o)} step ${step}`)
      }
      const payload = out2.subarray(0, size)
      assert.is(native.payloadNorm(payload), reference.payloadNorm(payload))
      const d1 = gaussian(n, rng)
      const d2 = d1.slice()
      native.decodeAccumulate(d1, payload, -0.7)
      reference.decodeAccumulate(d2, payload, -0.7)
      assert.ok(bytesEqual(d1, d2), 'decodeAccumulate differs')
    }
    if (native.isNative) native.setSimd(true)
  })
}

for (const path of paths) {
  test(`compress matches the reference for views at every offset from a cache line (${path})`, () => {
    if (native.isNative) assert.is(native.setSimd(path as native.SimdPath), path)
    // The AVX-512 pass first goes up to a cache line boundary of e; delta is off by another amount.
    const rng = new Rng(5)
    for (const [n, o] of [[3 * 4096 + 37, { beta: 0.95, chunk: 4096, k: 64, bits: 2 }], [3000, { beta: 0.9, chunk: 1000, k: 20, bits: 8 }]] as const) {
      for (let at = 0; at < 16; at++) {
        const e1 = gaussian(n + 16, rng).subarray(at, at + n)
        const e2 = e1.slice()
        const delta = gaussian(n + 16, rng).subarray((at * 7) % 16, (at * 7) % 16 + n)
        const hints = new Float32Array(native.chunkCount(n, o.chunk))
        const out1 = new Uint8Array(native.maxPayloadSize(n, o.chunk, o.k, o.bits))
        const out2 = out1.slice()
        for (let step = 0; step < 2; step++) {
          const size = native.compress(e1, delta, hints, out1, o)
          assert.is(reference.compress(e2, delta, new Float32Array(hints.length), out2, o), size)
          assert.ok(bytesEqual(out1.subarray(0, size), out2.subarray(0, size)) && bytesEqual(e1, e2), `differs: offset ${at}, n ${n} ${JSON.stringify(o)} step ${step}`)
        }
      }
    }
    if (native.isNative) native.setSimd(true)
  })
}

test('error feedback invariant: beta * e_old + delta == e_new + decoded, element by element', () => {
  const rng = new Rng(3)
  for (const bits of [2, 8] as const) {
    const n = 50000
    const o = { beta: 0.9, chunk: 4096, k: kForDensity(1 / 64), bits }
    const e = gaussian(n, rng)
    const hints = new Float32Array(native.chunkCount(n, o.chunk))
    const out = new Uint8Array(native.maxPayloadSize(n, o.chunk, o.k, bits))
    for (let step = 0; step < 3; step++) {
      const before = e.slice()
      const delta = gaussian(n, rng)
      const size = native.compress(e, delta, hints, out, o)
      const decoded = new Float32Array(n)
      native.decodeAccumulate(decoded, out.subarray(0, size), 1)
      let sent = 0
      for (let i = 0; i < n; i++) {
        const updated = Math.fround(Math.fround(Math.fround(o.beta) * before[i]) + delta[i])
        if (decoded[i] !== 0) sent++
        // e_new = updated - decoded in float32: the identity holds to one rounding of updated.
        assert.ok(Math.abs(updated - (e[i] + decoded[i])) <= Math.abs(updated) * 2 ** -23, `element ${i}`)
        if (decoded[i] === 0) assert.is(e[i], updated) // unsent values are kept whole
      }
      assert.ok(sent > 0.9 * o.k * native.chunkCount(n, o.chunk), 'most picks decode to non-zero values')
    }
  }
})

test('exactly k per chunk, the largest magnitudes, ties to the lower offset, short last chunk', () => {
  const rng = new Rng(11)
  const n = 4096 * 3 + 100
  const o = { beta: 1, chunk: 4096, k: 64, bits: 2 as const }
  const out = new Uint8Array(native.maxPayloadSize(n, o.chunk, o.chunk, o.bits))
  for (const k of [1, 16, 64, 256, 4096]) {
    const delta = gaussian(n, rng)
    const size = native.compress(new Float32Array(n), delta, new Float32Array(4), out, { ...o, k })
    const chunks = offsetsPerChunk(out, n, { ...o, k })
    assert.equal(chunks.map(c => c.length), [k, k, k, Math.min(k, 100)])
    chunks.forEach((offsets, c) => {
      const start = c * o.chunk
      const len = Math.min(o.chunk, n - start)
      const picked = new Set(offsets)
      const minPicked = Math.min(...offsets.map(j => Math.abs(delta[start + j])))
      for (let j = 0; j < len; j++) if (!picked.has(j)) assert.ok(Math.abs(delta[start + j]) <= minPicked)
      assert.ok(offsets.every((j, i) => i === 0 || j > offsets[i - 1]), 'offsets increase')
    })
    // The values decode onto those offsets.
    const decoded = new Float32Array(n)
    native.decodeAccumulate(decoded, out.subarray(0, size), 1)
    const sent = new Set(chunks.flatMap((offsets, c) => offsets.map(j => c * o.chunk + j)))
    decoded.forEach((v, i) => { if (v !== 0) assert.ok(sent.has(i), `k ${k}: a value decoded at ${i}, not an offset sent`) })
  }
  // All magnitudes equal: the lowest offsets win, in every chunk.
  const flat = new Float32Array(n).map((_, i) => (i % 3 === 0 ? -1 : 1))
  native.compress(new Float32Array(n), flat, new Float32Array(4), out, { ...o, k: 5 })
  const tied = offsetsPerChunk(out, n, { ...o, k: 5 })
  assert.equal(tied, [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
})

test('offsets packed at each chunk\'s end make the largest payload, maxPayloadSize; at its start, the smallest', () => {
  const impls = [...paths.map(path => [path, native] as const), ['js', reference] as const]
  for (const [n, o] of [[3 * 4096 + 1000, { beta: 1, chunk: 4096, k: 64, bits: 2 }], [3 * 4096 + 1000, { beta: 1, chunk: 4096, k: 256, bits: 8 }],
    [3 * 4096 + 1000, { beta: 1, chunk: 4096, k: 1, bits: 2 }], [1000, { beta: 1, chunk: 100, k: 7, bits: 2 }], [77, { beta: 1, chunk: 16, k: 16, bits: 8 }]] as const) {
    const bound = native.maxPayloadSize(n, o.chunk, o.k, o.bits)
    for (const atEnd of [true, false]) {
      // The kc largest magnitudes of each chunk at its end (one long first gap), or at its start (no gaps).
      const delta = new Float32Array(n).map((_, i) => {
        const j = i % o.chunk
        const len = Math.min(o.chunk, n - (i - j))
        return 1 + (atEnd ? j : len - j)
      })
      const sizes = impls.map(([path, impl]) => {
        if (native.isNative && impl === native) native.setSimd(path as native.SimdPath)
        const out = new Uint8Array(bound)
        const size = impl.compress(new Float32Array(n), delta, new Float32Array(native.chunkCount(n, o.chunk)), out, o)
        impl.payloadNorm(out.subarray(0, size)) // decodes
        return size
      })
      if (native.isNative) native.setSimd(true)
      assert.ok(sizes.every(size => size === sizes[0]), `sizes ${sizes.join(', ')}`)
      let smallest = recordsStart(n, o.chunk)
      for (let start = 0; start < n; start += o.chunk) smallest += recordLayout(Math.min(o.chunk, n - start), Math.min(o.k, n - start), o.bits).minBytes
      assert.is(sizes[0], atEnd ? bound : smallest, `n ${n} ${JSON.stringify(o)} ${atEnd ? 'at the end' : 'at the start'}`)
    }
  }
})

test('density 1/64 with 2-bit values: at most 1/185 of dense float32, framing included', () => {
  for (const n of [2 ** 20, 16 * 2 ** 20, 1e6 + 7]) {
    const size = native.maxPayloadSize(n, 4096, kForDensity(1 / 64), 2)
    assert.ok(4 * n / size >= 185, `n ${n}: ratio ${4 * n / size}`)
  }
})

test('async variants give the same results as the sync ones', async () => {
  const rng = new Rng(5)
  const n = 300000
  const o = { beta: 0.95, chunk: 4096, k: 64, bits: 2 as const }
  const e1 = gaussian(n, rng)
  const e2 = e1.slice()
  const h1 = new Float32Array(native.chunkCount(n, o.chunk))
  const h2 = h1.slice()
  const bound = native.maxPayloadSize(n, o.chunk, o.k, o.bits)
  const out1 = new Uint8Array(bound)
  const out2 = new Uint8Array(bound)
  let size = 0
  for (let step = 0; step < 3; step++) {
    const delta = gaussian(n, rng)
    // Two threads write their blocks of records apart, then move them together.
    size = await native.compressAsync(e1, delta, h1, out1, o)
    assert.is(native.compress(e2, delta, h2, out2, o), size)
    assert.ok(bytesEqual(out1.subarray(0, size), out2.subarray(0, size)) && bytesEqual(e1, e2))
  }
  const d1 = gaussian(n, rng)
  const d2 = d1.slice()
  await native.decodeAccumulateAsync(d1, out1.subarray(0, size), 2)
  native.decodeAccumulate(d2, out1.subarray(0, size), 2)
  assert.ok(bytesEqual(d1, d2))
})

test('compressAsync leaves the event loop free while it runs', async () => {
  const n = 2 ** 21
  const o = { beta: 0.95, chunk: 4096, k: 64, bits: 2 as const }
  const e = gaussian(n, new Rng(6))
  const out = new Uint8Array(native.maxPayloadSize(n, o.chunk, o.k, o.bits))
  let ticked = false
  setImmediate(() => { ticked = true })
  await native.compressAsync(e, e.slice(), new Float32Array(native.chunkCount(n, o.chunk)), out, o)
  // A call that finished inline would resume here before any macrotask ran.
  assert.ok(ticked, 'the event loop did not turn during compressAsync')
})

test('bad arguments raise TypeError or RangeError, also as async rejections', async () => {
  const n = 10000
  const o = { beta: 0.9, chunk: 4096, k: 64, bits: 2 as const }
  const e = new Float32Array(n)
  const d = new Float32Array(n)
  const h = new Float32Array(3)
  const out = new Uint8Array(native.maxPayloadSize(n, 4096, 64, 2))
  for (const impl of [native, reference]) {
    assert.throws(() => impl.compress(e, d, h, out, { ...o, k: 0 }), (err: Error) => err instanceof RangeError && /k/.test(err.message))
    assert.throws(() => impl.compress(e, d, h, out, { ...o, k: 4097 }), RangeError)
    assert.throws(() => impl.compress(e, d, h, out, { ...o, chunk: 5000 }), RangeError)
    assert.throws(() => impl.compress(e, d, h, out, { ...o, bits: 4 as 2 }), RangeError)
    assert.throws(() => impl.compress(e, d, h, out, { ...o, beta: NaN }), RangeError)
    assert.throws(() => impl.compress(e, d, h, out, { ...o, beta: 1.5 }), RangeError)
    assert.throws(() => impl.compress(e, new Float32Array(n - 1), h, out, o), RangeError)
    assert.throws(() => impl.compress(e, d, new Float32Array(2), out, o), /hints/)
    assert.throws(() => impl.compress(e, d, h, out.subarray(1), o), /out/)
    assert.throws(() => impl.compress(e, new Float64Array(n) as unknown as Float32Array, h, out, o), TypeError)
    assert.throws(() => impl.compress(e, d, h, out, null as unknown as CompressOptions), TypeError)
    const bad = new Float32Array(n)
    bad[5000] = NaN
    assert.throws(() => impl.compress(new Float32Array(n), bad, new Float32Array(3), out, o), /non-finite/)
    bad[5000] = Infinity
    assert.throws(() => impl.compress(new Float32Array(n), bad, new Float32Array(3), out, o), /non-finite/)
    const valid = new Uint8Array(out.length)
    const size = impl.compress(new Float32Array(n), d, new Float32Array(3), valid, o)
    assert.throws(() => impl.decodeAccumulate(new Float32Array(5), valid.subarray(0, size), 1), (err: Error) => err instanceof RangeError && /dst has 5 elements/.test(err.message))
    assert.throws(() => impl.decodeAccumulate(e, valid, NaN), (err: Error) => err instanceof RangeError && /weight/.test(err.message))
  }
  await native.compressAsync(e, d, h, out, { ...o, k: 0 }).then(() => assert.unreachable(), (err: Error) => assert.instance(err, RangeError))
  const bad = new Float32Array(n).fill(NaN)
  await native.compressAsync(new Float32Array(n), bad, h, out, o).then(() => assert.unreachable(), (err: Error) => assert.match(err.message, /non-finite/))
  await native.decodeAccumulateAsync(e, new Uint8Array(3), 1).then(() => assert.unreachable(), (err: Error) => assert.instance(err, RangeError))
})

test.run()
