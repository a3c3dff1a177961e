// JavaScript reference of the pseudo-gradient compression (SparseLoCo style): error feedback,
// exact chunked top-k, 2- or 8-bit values, Rice-coded offsets. It defines the result bit for bit;
// the native kernels must produce the same bytes and the same e. Payload layout: format.ts.
import { chunkCount, checkShape, HEADER_BYTES, maxPayloadSize, readHeader, recordLayout, recordsStart, writeHeader, type CompressOptions, type RecordLayout, type ValueBits } from './format.js'
import { fromF16, toF16 } from './codecs-reference.js'

const MAX_F16 = 0x7bff // 65504

/** A magnitude as an fp16 scale: float32 first, then round to nearest even, saturating. */
function scaleBits (x: number): number {
  const h = toF16(x)
  return h > MAX_F16 ? MAX_F16 : h
}

function checkCompressArgs (e: Float32Array, delta: Float32Array, hints: Float32Array, out: Uint8Array, o: CompressOptions): void {
  if (!(e instanceof Float32Array) || !(delta instanceof Float32Array) || !(hints instanceof Float32Array)) throw new TypeError('compress: e, delta and hints must be Float32Array')
  if (!(out instanceof Uint8Array)) throw new TypeError('compress: out must be a Uint8Array')
  if (typeof o !== 'object' || o === null) throw new TypeError('compress: options must be an object')
  checkShape(e.length, o.chunk, o.k, o.bits)
  if (!(o.beta >= 0 && o.beta <= 1)) throw new RangeError(`compress: beta must be in [0, 1], got ${o.beta}`)
  if (delta.length !== e.length) throw new RangeError('compress: e and delta must have the same length')
  const chunks = chunkCount(e.length, o.chunk)
  if (hints.length !== chunks) throw new RangeError(`compress: hints must have one entry per chunk (${chunks}), got ${hints.length}`)
  const size = maxPayloadSize(e.length, o.chunk, o.k, o.bits)
  if (out.length < size) throw new RangeError(`compress: out has ${out.length} bytes, the payload may need ${size}`)
}

/**
 * e <- beta * e + delta (float32), then per chunk keep exactly kc = min(k, chunk length) values
 * of largest |e| (ties: lower offset first), quantize them into `out` and leave the quantization
 * error in e (e[i] = v - dequant(v)). Returns the payload size in bytes; out must have room for
 * maxPayloadSize. `hints` is per-chunk state that only makes the native kernel faster; the
 * result never depends on it (unused here). Non-finite values raise a RangeError; e is then
 * partly updated and must be reset.
 */
export function compress (e: Float32Array, delta: Float32Array, hints: Float32Array, out: Uint8Array, o: CompressOptions): number {
  checkCompressArgs(e, delta, hints, out, o)
  const n = e.length
  const beta = Math.fround(o.beta)
  writeHeader(out, { n, chunk: o.chunk, k: o.k, bits: o.bits })
  const scratch = new Float32Array(o.chunk)
  const picked = new Uint16Array(o.k)
  let pos = recordsStart(n, o.chunk)
  for (let c = 0; c * o.chunk < n; c++) {
    const start = c * o.chunk
    const len = Math.min(o.chunk, n - start)
    const kc = Math.min(o.k, len)
    for (let i = start; i < start + len; i++) {
      const v = Math.fround(Math.fround(beta * e[i]) + delta[i])
      if (!(Math.abs(v) <= 3.4028234663852886e38)) throw new RangeError(`compress: non-finite value in e or delta at index ${i}`)
      e[i] = v
      scratch[i - start] = Math.abs(v)
    }
    const t = kthLargest(scratch, len, kc)
    let ties = kc
    for (let j = 0; j < len; j++) if (Math.abs(e[start + j]) > t) ties--
    for (let j = 0, m = 0; j < len; j++) {
      const a = Math.abs(e[start + j])
      if (a > t || (a === t && ties-- > 0)) picked[m++] = j
    }
    const bytes = quantizeChunk(e, start, picked, len, kc, o.bits, out, pos)
    out[HEADER_BYTES + 2 * c] = bytes & 0xff
    out[HEADER_BYTES + 2 * c + 1] = bytes >>> 8
    pos += bytes
  }
  return pos
}

/** The kc-th largest of a[0..len) (reorders a). */
function kthLargest (a: Float32Array, len: number, kc: number): number {
  const want = kc - 1
  let lo = 0
  let hi = len - 1
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]
    let i = lo
    let j = hi
    while (i <= j) {
      while (a[i] > pivot) i++
      while (a[j] < pivot) j--
      if (i <= j) { const t = a[i]; a[i] = a[j]; a[j] = t; i++; j-- }
    }
    if (want <= j) hi = j
    else if (want >= i) lo = i
    else return a[want]
  }
  return a[want]
}

/** Writes a chunk record at `pos` and returns its length. */
function quantizeChunk (e: Float32Array, start: number, picked: Uint16Array, len: number, kc: number, bits: ValueBits, out: Uint8Array, pos: number): number {
  const layout = recordLayout(len, kc, bits)
  const values = pos + layout.values
  out.fill(0, values, pos + layout.maxBytes)
  const bytes = writeOffsets(picked, kc, layout, out, pos)
  if (bits === 2) {
    const [lo, hi] = twoLevels(e, start, picked, kc)
    const loBits = scaleBits(lo)
    const hiBits = scaleBits(hi)
    out[pos] = loBits & 0xff; out[pos + 1] = loBits >>> 8; out[pos + 2] = hiBits & 0xff; out[pos + 3] = hiBits >>> 8
    const loF = fromF16(loBits)
    const hiF = fromF16(hiBits)
    for (let j = 0; j < kc; j++) {
      const i = start + picked[j]
      const v = e[i]
      const a = Math.abs(v)
      const high = a - loF > hiF - a
      const level = high ? hiF : loF
      out[values + (j >>> 2)] |= ((v < 0 ? 1 : 0) | (high ? 2 : 0)) << ((j & 3) * 2)
      e[i] = Math.fround(v - (v < 0 ? -level : level))
    }
  } else {
    let max = 0
    for (let j = 0; j < kc; j++) max = Math.max(max, Math.abs(e[start + picked[j]]))
    const stepBits = scaleBits(max / 127)
    out[pos] = stepBits & 0xff; out[pos + 1] = stepBits >>> 8
    const step = fromF16(stepBits)
    for (let j = 0; j < kc; j++) {
      const i = start + picked[j]
      const v = e[i]
      let q = step === 0 ? 0 : Math.min(127, Math.floor(Math.abs(v) / step + 0.5))
      if (v < 0) q = -q
      out[values + j] = q & 0xff
      e[i] = Math.fround(v - Math.fround(q * step))
    }
  }
  return bytes
}

/** The offsets' Rice code into a zeroed record at `pos` (layout in format.ts); returns the record's length. */
function writeOffsets (picked: Uint16Array, kc: number, { b, low, high }: RecordLayout, out: Uint8Array, pos: number): number {
  const setBit = (field: number, bit: number): void => { out[pos + field + (bit >>> 3)] |= 1 << (bit & 7) }
  let u = 0 // the next bit of the high parts
  for (let j = 0, next = 0; j < kc; j++) {
    const gap = picked[j] - next
    next = picked[j] + 1
    for (let i = 0; i < b; i++) if (((gap >>> i) & 1) === 1) setBit(low, j * b + i)
    u += gap >>> b
    setBit(high, u++)
  }
  return high + Math.ceil(u / 8)
}

/**
 * Two magnitudes for the 2-bit code: split at the midrange, then up to three Lloyd iterations
 * (each level the mean of the magnitudes nearer to it), stopping at a fixed point. Sums in
 * float64 as four partial sums by position mod 4, combined (s0 + s1) + (s2 + s3).
 */
function twoLevels (e: Float32Array, start: number, picked: Uint16Array, kc: number): [number, number] {
  let min = Infinity
  let max = 0
  for (let j = 0; j < kc; j++) {
    const a = Math.abs(e[start + picked[j]])
    if (a < min) min = a
    if (a > max) max = a
  }
  let lo = min
  let hi = max
  let lastHigh = -1
  for (let iter = 0; iter < 3; iter++) {
    const mid = (lo + hi) / 2
    const sumLo = [0, 0, 0, 0]
    const sumHi = [0, 0, 0, 0]
    let nHi = 0
    for (let j = 0; j < kc; j++) {
      const a = Math.abs(e[start + picked[j]])
      if (a >= mid) { sumHi[j & 3] += a; nHi++ } else sumLo[j & 3] += a
    }
    if (nHi === lastHigh) break // the high group is the nHi largest: same count, same split
    lastHigh = nHi
    hi = ((sumHi[0] + sumHi[1]) + (sumHi[2] + sumHi[3])) / nHi
    lo = nHi < kc ? ((sumLo[0] + sumLo[1]) + (sumLo[2] + sumLo[3])) / (kc - nHi) : hi
  }
  return [lo, hi]
}

interface Decoded { offset: number, value: number }

/**
 * Checks every chunk record of a payload whose header `readHeader` accepted and returns the
 * decoded values, in order. Throws a RangeError naming the first problem.
 */
function decodeAll (payload: Uint8Array): { n: number, values: Decoded[] } {
  const { n, chunk, k, bits } = readHeader(payload)
  const values: Decoded[] = []
  for (let c = 0, pos = recordsStart(n, chunk); c * chunk < n; c++) {
    const start = c * chunk
    const len = Math.min(chunk, n - start)
    const kc = Math.min(k, len)
    const layout = recordLayout(len, kc, bits)
    const bytes = payload[HEADER_BYTES + 2 * c] | (payload[HEADER_BYTES + 2 * c + 1] << 8)
    const scales = bits === 2 ? 2 : 1
    const levels: number[] = []
    for (let s = 0; s < scales; s++) {
      const h = payload[pos + 2 * s] | (payload[pos + 2 * s + 1] << 8)
      if (h > MAX_F16) throw new RangeError(`invalid payload: chunk ${c} has a negative or non-finite scale`)
      levels.push(fromF16(h))
    }
    if (bits === 2 && levels[0] > levels[1]) throw new RangeError(`invalid payload: chunk ${c} has its low magnitude above the high one`)
    const valuesAt = pos + layout.values
    if (bits === 2 && kc % 4 !== 0 && (payload[pos + layout.low - 1] >>> ((kc % 4) * 2)) !== 0) throw new RangeError(`invalid payload: chunk ${c} has non-zero padding bits`)
    readOffsets(payload, pos, bytes, len, kc, layout, c).forEach((o, j) => {
      let value: number
      if (bits === 2) {
        const code = (payload[valuesAt + (j >>> 2)] >>> ((j & 3) * 2)) & 3
        const level = levels[code >>> 1]
        value = (code & 1) === 1 ? -level : level
      } else {
        const q = (payload[valuesAt + j] << 24) >> 24
        if (q === -128) throw new RangeError(`invalid payload: chunk ${c} has the value -128`)
        value = Math.fround(q * levels[0])
      }
      values.push({ offset: start + o, value })
    })
    pos += bytes
  }
  return { n, values }
}

/** The checked offsets of the record of `bytes` bytes at `pos` (chunk c, of length len). */
function readOffsets (payload: Uint8Array, pos: number, bytes: number, len: number, kc: number, { b, low, high }: RecordLayout, c: number): number[] {
  const bit = (field: number, i: number): number => (payload[pos + field + (i >>> 3)] >>> (i & 7)) & 1
  const lowBits = kc * b
  if (lowBits % 8 !== 0 && (payload[pos + high - 1] >>> (lowBits % 8)) !== 0) throw new RangeError(`invalid payload: chunk ${c} has non-zero padding bits`)
  const highBits = (bytes - high) * 8 // readHeader checked bytes >= high + ceil(kc / 8)
  const offsets: number[] = []
  let u = 0 // the next bit of the high parts
  for (let j = 0, next = 0; j < kc; j++) {
    let q = 0
    while (u < highBits && bit(high, u) === 0) { q++; u++ }
    if (u === highBits) throw new RangeError(`invalid payload: chunk ${c} ends inside its offsets`)
    u++
    let rest = 0
    for (let i = 0; i < b; i++) rest |= bit(low, j * b + i) << i
    const o = next + q * 2 ** b + rest
    if (o >= len) throw new RangeError(`invalid payload: chunk ${c} has offset ${o} beyond its length ${len}`)
    offsets.push(o)
    next = o + 1
  }
  if (Math.ceil(u / 8) * 8 !== highBits) throw new RangeError(`invalid payload: chunk ${c} has bytes after its offsets`)
  for (; u < highBits; u++) if (bit(high, u) === 1) throw new RangeError(`invalid payload: chunk ${c} has non-zero padding bits`)
  return offsets
}

/** dst += weight * decode(payload) (float32). The payload is fully checked before dst is touched. */
export function decodeAccumulate (dst: Float32Array, payload: Uint8Array, weight: number): void {
  if (!(dst instanceof Float32Array)) throw new TypeError('decodeAccumulate: dst must be a Float32Array')
  if (typeof weight !== 'number' || !Number.isFinite(weight)) throw new RangeError(`decodeAccumulate: weight must be a finite number, got ${String(weight)}`)
  const { n, values } = decodeAll(payload)
  if (dst.length !== n) throw new RangeError(`decodeAccumulate: dst has ${dst.length} elements, the payload ${n}`)
  const w = Math.fround(weight)
  for (const { offset, value } of values) dst[offset] += Math.fround(w * value)
}

/** The L2 norm of the decoded payload (sum of squares in float64, in payload order). */
export function payloadNorm (payload: Uint8Array): number {
  let sum = 0
  for (const { value } of decodeAll(payload).values) sum += value * value
  return Math.sqrt(sum)
}
