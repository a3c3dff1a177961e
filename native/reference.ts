// Pure JavaScript reference implementations of the native kernels. They define what each
// kernel computes; tests compare the addon against them, and they stand in when the addon
// cannot load. Compression and activation codecs live in their own files, re-exported here.
export { compress, decodeAccumulate, payloadNorm } from './compress-reference.js'
export { f32ToF16, f16ToF32, f32ToBf16, bf16ToF32, f32ToInt8, int8ToF32 } from './codecs-reference.js'

function checkSameLength (name: string, arrays: Array<Float32Array | null>): void {
  const n = arrays[0]?.length
  for (const a of arrays) {
    if (a !== null && !(a instanceof Float32Array)) throw new TypeError(`${name}: arrays must be Float32Array`)
    if (a !== null && a.length !== n) throw new RangeError(`${name}: arrays must have the same length`)
  }
}

function checkNumber (name: string, value: unknown, min: number, max: number, minOpen = false): void {
  if (typeof value !== 'number' || !(minOpen ? value > min : value >= min) || !(value <= max)) {
    throw new RangeError(`${name} must be a number in ${minOpen ? '(' : '['}${min}, ${max}], got ${String(value)}`)
  }
}

/** dst += weight * src, in place. */
export function axpy (dst: Float32Array, src: Float32Array, weight: number): void {
  if (!(dst instanceof Float32Array) || !(src instanceof Float32Array)) throw new TypeError('axpy: dst and src must be Float32Array')
  if (dst.length !== src.length) throw new RangeError('axpy: dst and src must have the same length')
  checkNumber('axpy: weight', weight, -Number.MAX_VALUE, Number.MAX_VALUE)
  const w = Math.fround(weight)
  for (let i = 0; i < dst.length; i++) dst[i] += Math.fround(w * src[i])
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

function checkAdamWOptions (o: AdamWOptions): void {
  if (typeof o !== 'object' || o === null) throw new TypeError('adamw: options must be an object')
  checkNumber('adamw: lr', o.lr, 0, Number.MAX_VALUE)
  checkNumber('adamw: beta1', o.beta1, 0, 0.9999999999)
  checkNumber('adamw: beta2', o.beta2, 0, 0.9999999999)
  checkNumber('adamw: eps', o.eps, 0, Number.MAX_VALUE, true)
  checkNumber('adamw: weightDecay', o.weightDecay, 0, Number.MAX_VALUE)
  checkNumber('adamw: gradScale', o.gradScale, -Number.MAX_VALUE, Number.MAX_VALUE)
  if (!Number.isInteger(o.step) || o.step < 1) throw new RangeError(`adamw: step must be an integer >= 1, got ${String(o.step)}`)
}

/**
 * One AdamW step in place (decoupled weight decay, bias-corrected moments), computed in
 * float64 and stored as float32. Gradients are not scanned for NaN here: check the gradient
 * norm (sumSquares) first, as clipping needs it anyway.
 */
export function adamw (param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, o: AdamWOptions): void {
  checkSameLength('adamw', [param, grad, m, v])
  checkAdamWOptions(o)
  const n = param.length
  const c1 = 1 - o.beta1 ** o.step
  const c2 = 1 - o.beta2 ** o.step
  for (let i = 0; i < n; i++) {
    const g = grad[i] * o.gradScale
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g
    param[i] -= o.lr * ((m[i] / c1) / (Math.sqrt(v[i] / c2) + o.eps) + o.weightDecay * param[i])
  }
}

export interface OuterStepOptions {
  lr: number
  /** 0 for plain SGD (then the momentum buffer may be null). */
  momentum: number
  nesterov: boolean
}

/**
 * The outer step of the averaging round, in place, from the parameters at the last sync:
 * with momentum mu > 0, buf = mu * buf + g and the update is g + mu * buf (Nesterov) or buf;
 * without, the update is g. param -= lr * update. Float64 arithmetic, float32 storage.
 */
export function outerStep (param: Float32Array, grad: Float32Array, buf: Float32Array | null, o: OuterStepOptions): void {
  if (typeof o !== 'object' || o === null) throw new TypeError('outerStep: options must be an object')
  checkNumber('outerStep: lr', o.lr, 0, Number.MAX_VALUE)
  checkNumber('outerStep: momentum', o.momentum, 0, 1)
  if (o.momentum > 0 && buf === null) throw new TypeError('outerStep: momentum needs a buffer')
  checkSameLength('outerStep', [param, grad, o.momentum > 0 ? buf : null])
  const mu = o.momentum
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]
    let update = g
    if (mu > 0) {
      buf![i] = mu * buf![i] + g
      update = o.nesterov ? g + mu * buf![i] : buf![i]
    }
    param[i] -= o.lr * update
  }
}

/** Sum of squares, accumulated in float64 (for global-norm gradient clipping). */
export function sumSquares (x: Float32Array): number {
  if (!(x instanceof Float32Array)) throw new TypeError('sumSquares: x must be a Float32Array')
  let s = 0
  for (let i = 0; i < x.length; i++) s += x[i] * x[i]
  return s
}
