// The compressed pseudo-gradient payload: what `compress` writes and `decodeAccumulate` reads.
// It travels over the network, so it is self-describing and every field is checkable:
//
//   header, 16 bytes, little-endian:
//     0  magic 'SWTC'        4  version (2)          5  value bits (2 or 8)
//     6  chunk (u16, 1..4096) 8  k per chunk (u16, 1..chunk)   10  reserved (0)
//     12 n (u32): number of elements
//   directory: per chunk, the byte length of its record (u16). Records vary in size; chunk c's
//     starts after the directory at the sum of the lengths before it, so chunks can be decoded
//     in parallel. The lengths sum exactly to the rest of the payload.
//   then one record per chunk of length L (the last chunk may be shorter), keeping kc = min(k, L)
//   values:
//     scales: 2-bit: two fp16 magnitudes (low, high, low <= high); 8-bit: one fp16 step
//     values: 2-bit: kc codes (bit 0 sign, bit 1 high magnitude); 8-bit: kc int8 in [-127, 127]
//     offsets: the strictly increasing in-chunk offsets o_j as a Rice code of their gaps
//       g_0 = o_0, g_j = o_j - o_(j-1) - 1, with b = riceBits(L, kc) (derived, not sent):
//       low parts: kc fields of b bits, g_j mod 2^b
//       high parts: per gap, g_j >> b zero bits then a one (unary); the record ends with the
//         byte that holds the kc-th one
//   Fields are packed LSB first, each starts on a byte, and the unused bits of its last byte are
//   zero. The gaps make every offset larger than the one before; o_(kc-1) < L is checked.
//
// The Rice parameter: top-k positions are close to uniformly random, so the gaps are close to
// geometric with mean L / kc, coded best with 2^b just under that mean. Measured (mean bits per
// offset, 400 random draws of kc offsets in 4096, against 12 in version 1; the positions'
// entropy in brackets): k 16: 9.44 (9.23), 64: 7.50 (7.36), 256: 5.47 (5.38), 1024: 3.28 (3.24).
// b = floor(log2(L / kc)) costs 0.07-0.18 bit more at those k; of the rules 2^b <= c L / kc,
// c = 7/8 came closest to the best b over k from 1 to L for L = 4096, 1000 and 256.
//
// The size bound: the high parts of kc sorted distinct offsets in L sum to at most (L - kc) >> b
// (the gaps sum to o_(kc-1) - (kc - 1) <= L - kc, and a sum of floors is at most the floor of the
// sum), which offsets packed at the end of the chunk reach.

export const MAGIC = 0x43545753 // 'SWTC' read as a little-endian u32
export const FORMAT_VERSION = 2
export const HEADER_BYTES = 16
export const MAX_CHUNK = 4096 // a record's length (4610 bytes at most) fits its u16 entry
export const DEFAULT_CHUNK = 4096
export const MAX_ELEMENTS = 0xffffffff

export type ValueBits = 2 | 8

export interface CompressOptions {
  /** Error-feedback decay: e <- beta * e + delta, in [0, 1]. */
  beta: number
  /** Elements per chunk, 1..4096 (default 4096). */
  chunk: number
  /** Values kept per chunk, 1..chunk (see `kForDensity`). */
  k: number
  /** 2: sign + two magnitudes per chunk; 8: int8 with one step per chunk. */
  bits: ValueBits
}

/** The fields of a payload header, as `readHeader` returns them after checking them. */
export interface PayloadHeader {
  n: number
  chunk: number
  k: number
  bits: ValueBits
}

/** k for a density (fraction of the elements kept), at least 1 and at most the chunk. */
export function kForDensity (density: number, chunk = DEFAULT_CHUNK): number {
  if (!(density > 0 && density <= 1)) throw new RangeError(`density must be in (0, 1], got ${density}`)
  checkChunk(chunk)
  return Math.min(chunk, Math.max(1, Math.round(density * chunk)))
}

export function chunkCount (n: number, chunk: number): number {
  return Math.ceil(n / chunk)
}

/** The Rice parameter of a chunk of `len` elements keeping kc: the largest b >= 0 with 2^b <= 7/8 len / kc. */
export function riceBits (len: number, kc: number): number {
  let b = 0
  while (8 * kc * 2 ** (b + 1) <= 7 * len) b++
  return b
}

/** Where a chunk record's fields start (scales at 0), and the smallest and largest record in bytes. */
export interface RecordLayout {
  /** The Rice parameter. */
  b: number
  values: number
  low: number
  high: number
  minBytes: number
  maxBytes: number
}

export function recordLayout (len: number, kc: number, bits: ValueBits): RecordLayout {
  const b = riceBits(len, kc)
  const values = bits === 2 ? 4 : 2
  const low = values + Math.ceil(kc * bits / 8)
  const high = low + Math.ceil(kc * b / 8)
  return { b, values, low, high, minBytes: high + Math.ceil(kc / 8), maxBytes: high + Math.ceil((kc + ((len - kc) >> b)) / 8) }
}

/** Where the chunk records start: after the header and the directory. */
export function recordsStart (n: number, chunk: number): number {
  return HEADER_BYTES + 2 * chunkCount(n, chunk)
}

/**
 * The largest payload (n, chunk, k, bits) can make, header and directory included: size output
 * buffers with it (`compress` returns the bytes it wrote), and refuse a larger one unread.
 */
export function maxPayloadSize (n: number, chunk: number, k: number, bits: ValueBits): number {
  checkShape(n, chunk, k, bits)
  const full = Math.floor(n / chunk)
  const rest = n - full * chunk
  return recordsStart(n, chunk) + full * recordLayout(chunk, k, bits).maxBytes + (rest > 0 ? recordLayout(rest, Math.min(k, rest), bits).maxBytes : 0)
}

/**
 * Checks a payload's header, its length against the bound and its directory (each record's
 * length within the bounds of its chunk, summing to the payload's length), not the records'
 * contents, and returns the header's fields.
 */
export function readHeader (payload: Uint8Array): PayloadHeader {
  if (!(payload instanceof Uint8Array)) throw new TypeError('payload must be a Uint8Array')
  if (payload.length < HEADER_BYTES) throw new RangeError(`invalid payload: ${payload.length} bytes is shorter than the header`)
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  if (view.getUint32(0, true) !== MAGIC) throw new RangeError('invalid payload: bad magic')
  if (view.getUint8(4) !== FORMAT_VERSION) throw new RangeError(`invalid payload: unsupported version ${view.getUint8(4)}`)
  const bits = view.getUint8(5)
  const chunk = view.getUint16(6, true)
  const k = view.getUint16(8, true)
  const n = view.getUint32(12, true)
  if (bits !== 2 && bits !== 8) throw new RangeError(`invalid payload: value bits ${bits}`)
  if (chunk < 1 || chunk > MAX_CHUNK) throw new RangeError(`invalid payload: chunk ${chunk}`)
  if (k < 1 || k > chunk) throw new RangeError(`invalid payload: k ${k} for chunk ${chunk}`)
  if (view.getUint16(10, true) !== 0) throw new RangeError('invalid payload: reserved field is not zero')
  const start = recordsStart(n, chunk)
  if (payload.length < start) throw new RangeError(`invalid payload: ${payload.length} bytes is shorter than the header and directory (${start} bytes)`)
  const bound = maxPayloadSize(n, chunk, k, bits)
  if (payload.length > bound) throw new RangeError(`invalid payload: ${payload.length} bytes, more than the ${bound} its shape allows`)
  const full = recordLayout(chunk, k, bits)
  let sum = 0
  for (let c = 0, at = HEADER_BYTES; at < start; c++, at += 2) {
    const len = Math.min(chunk, n - c * chunk)
    const { minBytes, maxBytes } = len === chunk ? full : recordLayout(len, Math.min(k, len), bits)
    const bytes = view.getUint16(at, true)
    if (bytes < minBytes || bytes > maxBytes) throw new RangeError(`invalid payload: chunk ${c} has a record of ${bytes} bytes, outside ${minBytes}..${maxBytes}`)
    sum += bytes
  }
  if (start + sum !== payload.length) throw new RangeError(`invalid payload: its records take ${sum} bytes, the payload has ${payload.length - start} after the directory`)
  return { n, chunk, k, bits }
}

export function writeHeader (out: Uint8Array, h: PayloadHeader): void {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  view.setUint32(0, MAGIC, true)
  view.setUint8(4, FORMAT_VERSION)
  view.setUint8(5, h.bits)
  view.setUint16(6, h.chunk, true)
  view.setUint16(8, h.k, true)
  view.setUint16(10, 0, true)
  view.setUint32(12, h.n, true)
}

function checkChunk (chunk: number): void {
  if (!Number.isInteger(chunk) || chunk < 1 || chunk > MAX_CHUNK) throw new RangeError(`chunk must be an integer from 1 to ${MAX_CHUNK}, got ${chunk}`)
}

export function checkShape (n: number, chunk: number, k: number, bits: number): asserts bits is ValueBits {
  if (!Number.isInteger(n) || n < 0 || n > MAX_ELEMENTS) throw new RangeError(`n must be an integer from 0 to ${MAX_ELEMENTS}, got ${n}`)
  checkChunk(chunk)
  if (!Number.isInteger(k) || k < 1 || k > chunk) throw new RangeError(`k must be an integer from 1 to the chunk size ${chunk}, got ${k}`)
  if (bits !== 2 && bits !== 8) throw new RangeError(`bits must be 2 or 8, got ${bits}`)
}
