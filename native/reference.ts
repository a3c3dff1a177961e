// Pure JavaScript reference implementations of the native kernels. They define what each
// kernel computes; tests compare the addon against them, and they stand in when the addon
// cannot load.

/** dst += weight * src, in place. */
export function axpy(dst: Float32Array, src: Float32Array, weight: number): void {
  if (dst.length !== src.length) throw new RangeError('axpy: dst and src must have the same length')
  for (let i = 0; i < dst.length; i++) dst[i] += weight * src[i]
}
