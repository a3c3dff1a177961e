// Decoder fuzzing: payloads come from the network. Random and mutated payloads must either
// decode exactly as the reference decodes them, or raise a RangeError and leave dst untouched.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as native from '../native/index.js'
import { HEADER_BYTES, MAGIC, recordLayout, riceBits } from '../native/format.js'
import { Rng } from '../node/util/random.js'

const { reference } = native

type Outcome = { ok: true, dst: Float32Array, norm: number } | { ok: false, message: string }

function attempt (impl: typeof native | typeof reference, payload: Uint8Array, n: number): Outcome {
  const dst = new Float32Array(n).fill(0.5)
  try {
    impl.decodeAccumulate(dst, payload, 3)
    return { ok: true, dst, norm: impl.payloadNorm(payload) }
  } catch (err) {
    assert.instance(err, RangeError, `decode threw ${String(err)}`)
    assert.ok(dst.every(v => v === 0.5), 'dst was touched by a payload that was rejected')
    return { ok: false, message: (err as Error).message }
  }
}

function check (payload: Uint8Array, n: number): boolean {
  const a = attempt(native, payload, n)
  const b = attempt(reference, payload, n)
  assert.is(a.ok, b.ok, `native ${a.ok ? 'accepted' : `rejected (${(a as { message: string }).message})`}, the reference ${b.ok ? 'accepted' : `rejected (${(b as { message: string }).message})`}`)
  if (a.ok && b.ok) {
    assert.ok(Buffer.from(a.dst.buffer).equals(Buffer.from(b.dst.buffer)), 'decoded values differ')
    assert.is(a.norm, b.norm)
  }
  return a.ok
}

function validPayload (rng: Rng, n: number, chunk: number, k: number, bits: 2 | 8): Uint8Array {
  const e = new Float32Array(n)
  const delta = new Float32Array(n).map(() => rng.normal())
  const out = new Uint8Array(native.maxPayloadSize(n, chunk, k, bits))
  const size = native.compress(e, delta, new Float32Array(native.chunkCount(n, chunk)), out, { beta: 0.9, chunk, k, bits })
  return out.subarray(0, size)
}

for (const simd of native.isNative ? [true, false] : [false]) {
  test(`mutated payloads decode correctly or are rejected (${simd ? 'avx2 if available' : 'portable'})`, () => {
    if (native.isNative) native.setSimd(simd)
    const rng = new Rng(simd ? 1 : 2)
    let accepted = 0
    let rejected = 0
    for (let round = 0; round < 1500; round++) {
      const bits = rng.next() < 0.5 ? 2 : 8
      const chunk = [16, 100, 4096][rng.int(3)]
      const k = 1 + rng.int(Math.min(chunk, 13))
      const n = 1 + rng.int(3 * chunk)
      const payload = validPayload(rng, n, chunk, k, bits).slice()
      assert.ok(check(payload, n), 'a valid payload was rejected')
      // Flip bits, set bytes, truncate or extend.
      const kind = rng.int(4)
      let mutated = payload
      if (kind === 0) {
        for (let f = 1 + rng.int(3); f > 0; f--) { const i = rng.int(payload.length); payload[i] ^= 1 << rng.int(8) }
      } else if (kind === 1) {
        payload[rng.int(Math.min(payload.length, HEADER_BYTES + 8))] = rng.int(256)
      } else if (kind === 2) {
        mutated = payload.subarray(0, rng.int(payload.length))
      } else {
        mutated = new Uint8Array(payload.length + 1 + rng.int(4))
        mutated.set(payload)
      }
      if (check(mutated, n)) accepted++
      else rejected++
    }
    // Both outcomes occur: many flips land in values (still valid), many break a field.
    assert.ok(accepted > 100 && rejected > 100, `accepted ${accepted}, rejected ${rejected}`)
    if (native.isNative) native.setSimd(true)
  })
}

test('random bytes and random headers are rejected or decoded like the reference', () => {
  const rng = new Rng(9)
  for (let round = 0; round < 3000; round++) {
    const length = rng.int(200)
    const payload = new Uint8Array(length).map(() => rng.int(256))
    if (length >= HEADER_BYTES && rng.next() < 0.7) {
      // A plausible header and directory with random records, so the record checks get exercised too.
      const chunk = 1 + rng.int(64)
      const k = 1 + rng.int(chunk)
      const bits = rng.next() < 0.5 ? 2 : 8
      const n = rng.int(200)
      const chunks = native.chunkCount(n, chunk)
      const lengths = Array.from({ length: chunks }, (_, c) => {
        const len = Math.min(chunk, n - c * chunk)
        const { minBytes, maxBytes } = recordLayout(len, Math.min(k, len), bits)
        return minBytes + rng.int(maxBytes - minBytes + 1)
      })
      const p = new Uint8Array(HEADER_BYTES + 2 * chunks + lengths.reduce((a, b) => a + b, 0)).map(() => rng.int(256))
      const view = new DataView(p.buffer)
      view.setUint32(0, MAGIC, true); p[4] = 2; p[5] = bits
      view.setUint16(6, chunk, true); view.setUint16(8, k, true); view.setUint16(10, 0, true); view.setUint32(12, n, true)
      lengths.forEach((bytes, c) => view.setUint16(HEADER_BYTES + 2 * c, bytes, true))
      check(p, n)
    } else {
      check(payload, 10)
    }
  }
  // A header that announces a huge n is rejected on its size alone, before anything is allocated.
  const huge = new Uint8Array(HEADER_BYTES)
  const view = new DataView(huge.buffer)
  view.setUint32(0, MAGIC, true); huge[4] = 2; huge[5] = 2; view.setUint16(6, 4096, true); view.setUint16(8, 64, true); view.setUint32(12, 0xffffffff, true)
  assert.throws(() => native.payloadNorm(huge), /shorter than the header and directory/)
  assert.throws(() => native.readHeader(huge), /shorter than the header and directory/)
})

/** Bits, LSB first, as bytes (zero padded). */
function pack (bits: number[]): number[] {
  const bytes = new Array<number>(Math.ceil(bits.length / 8)).fill(0)
  bits.forEach((b, i) => { bytes[i >> 3] |= b << (i & 7) })
  return bytes
}

/**
 * A payload of one chunk of `len` elements, k 7 and 2-bit values (scales 1, codes 0): the
 * offsets' fields as the format writes them, then `edit` may change them (bit arrays) and the
 * record (bytes) before the directory entry is written (its length, unless `length` is given).
 */
function oneChunk (len: number, offsets: number[], edit: (f: { low: number[], high: number[] }) => void = () => {}, record: (r: number[]) => void = () => {}, length?: (bytes: number) => number): Uint8Array {
  const kc = offsets.length
  const b = riceBits(len, kc)
  const low: number[] = []
  const high: number[] = []
  offsets.forEach((o, j) => {
    const gap = o - (j === 0 ? 0 : offsets[j - 1] + 1)
    for (let i = 0; i < b; i++) low.push((gap >> i) & 1)
    for (let q = gap >> b; q > 0; q--) high.push(0)
    high.push(1)
  })
  edit({ low, high })
  const r = [0x00, 0x3c, 0x00, 0x3c, ...new Array<number>(Math.ceil(kc / 4)).fill(0), ...pack(low), ...pack(high)]
  record(r)
  const p = new Uint8Array(HEADER_BYTES + 2 + r.length)
  const view = new DataView(p.buffer)
  view.setUint32(0, MAGIC, true); p[4] = 2; p[5] = 2
  view.setUint16(6, len, true); view.setUint16(8, kc, true); view.setUint32(12, len, true)
  view.setUint16(HEADER_BYTES, length?.(r.length) ?? r.length, true)
  p.set(r, HEADER_BYTES + 2)
  return p
}

// (Offsets cannot repeat or decrease in this format: each gap adds at least one.)
test('the offsets\' code: bad gaps, unary parts, padding, lengths and trailing bytes are refused, dst untouched', () => {
  const len = 100
  const offsets = [0, 5, 20, 21, 50, 80, 90] // b 3: gaps 0 4 14 0 28 29 9, 15 bits of high parts
  const good = oneChunk(len, offsets)
  assert.ok(check(good, len), 'the hand-made payload is valid')
  const decoded = new Float32Array(len)
  native.decodeAccumulate(decoded, good, 1)
  assert.equal([...decoded.keys()].filter(i => decoded[i] !== 0), offsets)
  assert.ok(check(oneChunk(len, [...offsets.slice(0, 6), 99]), len), 'the last offset of the chunk')
  assert.ok(check(oneChunk(len, [93, 94, 95, 96, 97, 98, 99]), len), 'packed at the end: the longest unary part')
  const refused: Array<[string, Uint8Array]> = [
    ['an offset at the chunk length', oneChunk(len, [...offsets.slice(0, 6), 100])],
    ['an offset past it by its unary part', oneChunk(len, offsets, f => { f.high.splice(f.high.length - 1, 0, 0, 0) })],
    ['a unary part running to the record\'s end', oneChunk(len, offsets, f => { f.high.pop(); f.high.push(0, 0) })],
    ['a unary part running past it', oneChunk(len, offsets, f => { f.high.pop() })],
    ['one offset too few', oneChunk(len, offsets, f => { f.high.pop(); f.low.splice(-3) }, undefined)],
    ['a one after the last offset', oneChunk(len, offsets, f => { f.high.push(1) })],
    ['a one in the high parts\' padding', oneChunk(len, offsets, f => { while (f.high.length % 8 !== 0) f.high.push(0); f.high[f.high.length - 1] = 1 })],
    ['a one in the low parts\' padding', oneChunk(len, offsets, f => { f.low.push(0, 0, 1) })],
    ['a zero byte after the high parts', oneChunk(len, offsets, undefined, r => { r.push(0) })],
    ['a directory entry one short', oneChunk(len, offsets, undefined, undefined, bytes => bytes - 1)],
    ['a directory entry one long', oneChunk(len, offsets, undefined, undefined, bytes => bytes + 1)],
    ['a record below the chunk\'s smallest', oneChunk(len, offsets, f => { f.high.length = 0 })],
    ['a directory entry above the chunk\'s largest record', oneChunk(len, offsets, undefined, r => { while (r.length <= recordLayout(len, 7, 2).maxBytes) r.push(0) })],
    ['a byte after the payload', new Uint8Array([...good, 0])],
    ['the payload truncated', good.subarray(0, good.length - 1)],
    ['a non-zero code padding bit', oneChunk(len, offsets, undefined, r => { r[5] |= 0x80 })]
  ]
  for (const [what, payload] of refused) {
    if (native.isNative) native.setSimd(false)
    assert.not.ok(check(payload, len), `${what}: accepted`)
    if (native.isNative) native.setSimd(true)
    assert.not.ok(check(payload, len), `${what}: accepted`)
  }
})

test.run()
