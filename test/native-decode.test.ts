// Decoder fuzzing: payloads come from the network. Random and mutated payloads must either
// decode exactly as the reference decodes them, or raise a RangeError and leave dst untouched.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as native from '../native/index.js'
import { HEADER_BYTES } from '../native/format.js'
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
  const out = new Uint8Array(native.payloadSize(n, chunk, k, bits))
  native.compress(e, delta, new Float32Array(native.chunkCount(n, chunk)), out, { beta: 0.9, chunk, k, bits })
  return out
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
      // A plausible header with random records, so the record checks get exercised too.
      const chunk = 1 + rng.int(64)
      const k = 1 + rng.int(chunk)
      const bits = rng.next() < 0.5 ? 2 : 8
      const n = rng.int(200)
      const size = native.payloadSize(n, chunk, k, bits)
      const p = new Uint8Array(size).map(() => rng.int(256))
      const view = new DataView(p.buffer)
      view.setUint32(0, 0x43545753, true); p[4] = 1; p[5] = bits
      view.setUint16(6, chunk, true); view.setUint16(8, k, true); view.setUint16(10, 0, true); view.setUint32(12, n, true)
      check(p, n)
    } else {
      check(payload, 10)
    }
  }
  // A header that announces a huge n is rejected on its size alone, before anything is allocated.
  const huge = new Uint8Array(HEADER_BYTES)
  const view = new DataView(huge.buffer)
  view.setUint32(0, 0x43545753, true); huge[4] = 1; huge[5] = 2; view.setUint16(6, 4096, true); view.setUint16(8, 64, true); view.setUint32(12, 0xffffffff, true)
  assert.throws(() => native.payloadNorm(huge), /bytes, expected/)
  assert.throws(() => native.readHeader(huge), /bytes, expected/)
})

test.run()
