// Activation number formats: IEEE float16 (round to nearest even) and symmetric int8 with one
// float32 scale per row.
const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

function toHalf (value: number): number {
  f32[0] = value
  const x = u32[0]
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  let mant = x & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    const half = mant >>> shift
    const rest = mant & ((1 << shift) - 1)
    const mid = 1 << (shift - 1)
    return sign | (half + (rest > mid || (rest === mid && (half & 1) === 1) ? 1 : 0))
  }
  const half = (e << 10) | (mant >>> 13)
  const rest = mant & 0x1fff
  // Rounding may carry into the exponent, which is the right result (up to infinity).
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1) ? 1 : 0))
}

const halfTable = new Float32Array(65536)
for (let h = 0; h < 65536; h++) {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  halfTable[h] = exp === 0 ? sign * mant * 2 ** -24 : exp === 0x1f ? (mant === 0 ? sign * Infinity : NaN) : sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

export function f32ToF16 (src: Float32Array, dst: Uint16Array): void {
  for (let i = 0; i < src.length; i++) dst[i] = toHalf(src[i])
}

export function f16ToF32 (src: Uint16Array, dst: Float32Array): void {
  for (let i = 0; i < src.length; i++) dst[i] = halfTable[src[i]]
}

/** q = round(x / scale) with scale = max|x| / 127 per row of `rowLength` values. */
export function f32ToInt8 (src: Float32Array, rowLength: number, dst: Int8Array, scales: Float32Array): void {
  for (let r = 0, at = 0; at < src.length; r++, at += rowLength) {
    let max = 0
    for (let i = at; i < at + rowLength; i++) max = Math.max(max, Math.abs(src[i]))
    const scale = max / 127
    scales[r] = scale
    const inv = scale === 0 ? 0 : 1 / scale
    for (let i = at; i < at + rowLength; i++) dst[i] = Math.round(src[i] * inv)
  }
}

export function int8ToF32 (src: Int8Array, scales: Float32Array, rowLength: number, dst: Float32Array): void {
  for (let i = 0; i < src.length; i++) dst[i] = src[i] * scales[Math.floor(i / rowLength)]
}
