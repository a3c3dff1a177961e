// JavaScript reference of the activation codecs (stage activations on the wire): float32 to
// float16 / bfloat16 (round to nearest even, bit exact with the F16C instructions, NaN kept as
// a quiet NaN) and int8 with one scale per row (row = last dimension).

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** float32 bits -> float16 bits, round to nearest even; overflow gives infinity. */
function f32BitsToF16 (x: number): number {
  const sign = (x >>> 16) & 0x8000
  const abs = x & 0x7fffffff
  if (abs > 0x7f800000) return sign | 0x7e00 | ((abs >>> 13) & 0x3ff) // NaN: quiet, payload truncated
  if (abs >= 0x477ff000) return sign | 0x7c00 // >= 65520 rounds to infinity
  if (abs >= 0x38800000) { // normal in float16
    const m = (abs - 0x38000000) >>> 0 // rebias the exponent by 127 - 15
    return sign | ((m + 0xfff + ((m >>> 13) & 1)) >>> 13)
  }
  if (abs < 0x33000000) return sign // below half the smallest subnormal
  const e = abs >>> 23
  const mant = (abs & 0x7fffff) | 0x800000
  const shift = 126 - e
  let r = mant >>> shift
  const rem = mant & ((1 << shift) - 1)
  const half = 1 << (shift - 1)
  if (rem > half || (rem === half && (r & 1) === 1)) r++
  return sign | r
}

/** float16 bits -> float32 bits (exact). */
function f16ToF32Bits (h: number): number {
  const sign = (h & 0x8000) << 16
  const e = (h >>> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 0) {
    if (m === 0) return sign >>> 0
    f32[0] = m * 2 ** -24
    return (sign | u32[0]) >>> 0
  }
  if (e === 31) return (sign | 0x7f800000 | (m << 13) | (m !== 0 ? 0x400000 : 0)) >>> 0 // NaN comes back quiet
  return (sign | ((e + 112) << 23) | (m << 13)) >>> 0
}

/** A number rounded to float32, then to float16 bits. */
export function toF16 (x: number): number {
  f32[0] = x
  return f32BitsToF16(u32[0])
}

/** float16 bits as a number. */
export function fromF16 (h: number): number {
  u32[0] = f16ToF32Bits(h)
  return f32[0]
}

function sameLength (name: string, a: { length: number }, b: { length: number }): void {
  if (a.length !== b.length) throw new RangeError(`${name}: source and destination must have the same length (${a.length} != ${b.length})`)
}

export function f32ToF16 (src: Float32Array, dst: Uint16Array): void {
  sameLength('f32ToF16', src, dst)
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  for (let i = 0; i < src.length; i++) dst[i] = f32BitsToF16(bits[i])
}

export function f16ToF32 (src: Uint16Array, dst: Float32Array): void {
  sameLength('f16ToF32', src, dst)
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length)
  for (let i = 0; i < src.length; i++) bits[i] = f16ToF32Bits(src[i])
}

/** float32 -> bfloat16: round to nearest even; NaN stays a (quiet) NaN. */
export function f32ToBf16 (src: Float32Array, dst: Uint16Array): void {
  sameLength('f32ToBf16', src, dst)
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  for (let i = 0; i < src.length; i++) {
    const x = bits[i]
    dst[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16
  }
}

export function bf16ToF32 (src: Uint16Array, dst: Float32Array): void {
  sameLength('bf16ToF32', src, dst)
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length)
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16 >>> 0
}

/** Rows whose largest magnitude is below this encode as zeros (their 127/max would overflow). */
export const INT8_MIN_ROW_MAX = 1e-30

function roundHalfEven (y: number): number {
  let r = Math.round(y)
  if (r - y === 0.5 && r % 2 !== 0) r -= 1
  return r
}

function checkRows (name: string, length: number, rowLength: number, scales: Float32Array): number {
  if (!Number.isInteger(rowLength) || rowLength < 1) throw new RangeError(`${name}: rowLength must be a positive integer, got ${rowLength}`)
  if (length % rowLength !== 0) throw new RangeError(`${name}: length ${length} is not a multiple of rowLength ${rowLength}`)
  const rows = length / rowLength
  if (scales.length !== rows) throw new RangeError(`${name}: scales must have one entry per row (${rows}), got ${scales.length}`)
  return rows
}

/**
 * float32 -> int8 with one scale per row: scale = max|x| / 127 (float32),
 * q = roundHalfEven(x * (127 / max|x|)) in float32, clamped to [-127, 127]. Decoding is q * scale.
 * Non-finite inputs are rejected.
 */
export function f32ToInt8 (src: Float32Array, dst: Int8Array, scales: Float32Array, rowLength: number): void {
  sameLength('f32ToInt8', src, dst)
  const rows = checkRows('f32ToInt8', src.length, rowLength, scales)
  for (let r = 0; r < rows; r++) {
    const start = r * rowLength
    let max = 0
    for (let i = start; i < start + rowLength; i++) {
      const a = Math.abs(src[i])
      if (!(a <= 3.4028234663852886e38)) throw new RangeError(`f32ToInt8: non-finite value at index ${i}`)
      if (a > max) max = a
    }
    if (max < INT8_MIN_ROW_MAX) {
      scales[r] = 0
      dst.fill(0, start, start + rowLength)
      continue
    }
    scales[r] = Math.fround(max / 127)
    const inv = Math.fround(127 / max)
    for (let i = start; i < start + rowLength; i++) {
      const q = roundHalfEven(Math.fround(src[i] * inv))
      dst[i] = q > 127 ? 127 : q < -127 ? -127 : q
    }
  }
}

export function int8ToF32 (src: Int8Array, scales: Float32Array, dst: Float32Array, rowLength: number): void {
  sameLength('int8ToF32', src, dst)
  const rows = checkRows('int8ToF32', src.length, rowLength, scales)
  for (let r = 0; r < rows; r++) {
    const s = scales[r]
    for (let i = r * rowLength; i < (r + 1) * rowLength; i++) dst[i] = src[i] * s
  }
}
