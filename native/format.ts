// The compressed pseudo-gradient payload: what `compress` writes and `decodeAccumulate` reads.
// It travels over the network, so it is self-describing and every field is checkable:
//
//   header, 16 bytes, little-endian:
//     0  magic 'SWTC'        4  version (1)          5  value bits (2 or 8)
//     6  chunk (u16, 1..4096) 8  k per chunk (u16, 1..chunk)   10  reserved (0)
//     12 n (u32): number of elements
//   then one record per chunk (the last chunk may be shorter; it keeps min(k, length) values):
//     scales: 2-bit: two fp16 magnitudes (low, high, low <= high); 8-bit: one fp16 step
//     offsets: kc 12-bit in-chunk offsets, strictly increasing, packed LSB first
//     values:  2-bit: kc codes (bit 0 sign, bit 1 high magnitude); 8-bit: kc int8 in [-127, 127]
//   Unused bits in the last byte of a packed field are zero.
// Every chunk record of a payload has the same size except maybe the last, so chunk c starts
// at a known offset and chunks can be encoded and decoded in parallel.

export const MAGIC = 0x43545753 // 'SWTC' read as a little-endian u32
export const FORMAT_VERSION = 1
export const HEADER_BYTES = 16
export const MAX_CHUNK = 4096 // offsets are 12 bits
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

/** Bytes of one chunk record holding kc values. */
export function chunkBytes (kc: number, bits: ValueBits): number {
  return (bits === 2 ? 4 : 2) + Math.ceil(kc * 12 / 8) + Math.ceil(kc * bits / 8)
}

/**
 * The exact payload size for (n, chunk, k, bits), header included: size reused output buffers
 * with it, and check a peer's announced size against it before allocating.
 */
export function payloadSize (n: number, chunk: number, k: number, bits: ValueBits): number {
  checkShape(n, chunk, k, bits)
  const full = Math.floor(n / chunk)
  const rest = n - full * chunk
  return HEADER_BYTES + full * chunkBytes(k, bits) + (rest > 0 ? chunkBytes(Math.min(k, rest), bits) : 0)
}

/** Checks a payload's header and total length (not the chunk records) and returns its fields. */
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
  const expected = payloadSize(n, chunk, k, bits)
  if (payload.length !== expected) throw new RangeError(`invalid payload: ${payload.length} bytes, expected ${expected}`)
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
