// Pure JavaScript reference implementations of the native kernels. They define what each
// kernel computes; tests compare the addon against them, and they stand in when the addon
// cannot load.

/** dst += weight * src, in place. */
export function axpy(dst: Float32Array, src: Float32Array, weight: number): void {
  if (dst.length !== src.length) throw new RangeError('axpy: dst and src must have the same length')
  for (let i = 0; i < dst.length; i++) dst[i] += weight * src[i]
}

export interface AdamWOptions {
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  /** 1-based step number, for bias correction. */
  step: number
  /** Multiplies the gradient first: 1 / (microbatches accumulated), times a clipping factor. */
  gradScale: number
}

/** One AdamW step in place (decoupled weight decay, bias-corrected moments). */
export function adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, o: AdamWOptions): void {
  const n = param.length
  if (grad.length !== n || m.length !== n || v.length !== n) throw new RangeError('adamw: param, grad, m and v must have the same length')
  const c1 = 1 - o.beta1 ** o.step
  const c2 = 1 - o.beta2 ** o.step
  for (let i = 0; i < n; i++) {
    const g = grad[i] * o.gradScale
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g
    param[i] -= o.lr * ((m[i] / c1) / (Math.sqrt(v[i] / c2) + o.eps) + o.weightDecay * param[i])
  }
}

/** Sum of squares, accumulated in float64 (for global-norm gradient clipping). */
export function sumSquares(x: Float32Array): number {
  let s = 0
  for (let i = 0; i < x.length; i++) s += x[i] * x[i]
  return s
}
