// The native kernels, loaded from the addon built by binding.gyp. If the addon cannot load
// (not built, wrong platform, out of date), the JavaScript reference is used and one warning is
// printed. Every kernel works in place on caller-supplied typed arrays (zero copy).
//
// The *Async variants run on the libuv thread pool (two threads inside) so the event loop stays
// free (the reference fallback: in a worker thread); use them from about a million elements on.
// While one runs, the JavaScript side must not read, write or transfer any of the arrays passed
// to it, until the promise settles.
//
// Compression (definitions in compress-reference.ts, payload layout in format.ts), per stage:
//   const o = { beta: 0.95, chunk: DEFAULT_CHUNK, k: kForDensity(1 / 64), bits: 2 }
//   e = new Float32Array(n); hints = new Float32Array(chunkCount(n, o.chunk))   // kept across rounds
//   out = new Uint8Array(maxPayloadSize(n, o.chunk, o.k, o.bits))               // reused
//   const bytes = await compressAsync(e, delta, hints, out, o)   // e <- beta e + delta - sent
//   send out.subarray(0, bytes)
//   receiver: readHeader(p) checks the size and the directory before anything else; decodeAccumulate(dst, p, w)
//   checks the whole payload before touching dst (RangeError otherwise); payloadNorm(p) for clipping.
// Non-finite values in e or delta make compress throw a RangeError with e partly updated.
import { createRequire } from 'node:module'
import * as reference from './reference.js'
import { inWorker } from './reference-async.js'
import type { AdamWOptions, OuterStepOptions } from './reference.js'
import type { CompressOptions } from './format.js'

export type { AdamWOptions, OuterStepOptions, CompressOptions }
export { chunkCount, kForDensity, maxPayloadSize, readHeader, DEFAULT_CHUNK, type PayloadHeader, type ValueBits } from './format.js'

/** The native code paths, best first. */
export const SIMD_PATHS = ['avx512', 'avx2', 'portable'] as const
export type SimdPath = typeof SIMD_PATHS[number]

export interface Kernels {
  axpy(dst: Float32Array, src: Float32Array, weight: number): void
  sumSquares(x: Float32Array): number
  adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, options: AdamWOptions): void
  outerStep(param: Float32Array, grad: Float32Array, momentumBuffer: Float32Array | null, options: OuterStepOptions): void
  compress(e: Float32Array, delta: Float32Array, hints: Float32Array, out: Uint8Array, options: CompressOptions): number
  decodeAccumulate(dst: Float32Array, payload: Uint8Array, weight: number): void
  payloadNorm(payload: Uint8Array): number
  f32ToF16(src: Float32Array, dst: Uint16Array): void
  f16ToF32(src: Uint16Array, dst: Float32Array): void
  f32ToBf16(src: Float32Array, dst: Uint16Array): void
  bf16ToF32(src: Uint16Array, dst: Float32Array): void
  f32ToInt8(src: Float32Array, dst: Int8Array, scales: Float32Array, rowLength: number): void
  int8ToF32(src: Int8Array, scales: Float32Array, dst: Float32Array, rowLength: number): void
  axpyAsync(dst: Float32Array, src: Float32Array, weight: number): Promise<void>
  sumSquaresAsync(x: Float32Array): Promise<number>
  adamwAsync(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, options: AdamWOptions): Promise<void>
  outerStepAsync(param: Float32Array, grad: Float32Array, momentumBuffer: Float32Array | null, options: OuterStepOptions): Promise<void>
  compressAsync(e: Float32Array, delta: Float32Array, hints: Float32Array, out: Uint8Array, options: CompressOptions): Promise<number>
  decodeAccumulateAsync(dst: Float32Array, payload: Uint8Array, weight: number): Promise<void>
  /** The code path in use: 'avx512' (F, BW, DQ, VL), 'avx2' (AVX2, FMA, F16C) or 'portable'; 'js' for the reference. */
  simdLevel(): string
  /**
   * Caps the code path, e.g. to test each one: true for the best the CPU has, false for
   * 'portable', or a path name for the best up to it the CPU has. Returns simdLevel().
   */
  setSimd(level: boolean | SimdPath): string
}

const kernelNames = ['axpy', 'sumSquares', 'adamw', 'outerStep', 'compress', 'decodeAccumulate', 'payloadNorm',
  'f32ToF16', 'f16ToF32', 'f32ToBf16', 'bf16ToF32', 'f32ToInt8', 'int8ToF32', 'axpyAsync', 'sumSquaresAsync',
  'adamwAsync', 'outerStepAsync', 'compressAsync', 'decodeAccumulateAsync', 'simdLevel', 'setSimd'] as const

// The reference as a Kernels: the async variants run it in a worker thread.
const referenceKernels: Kernels = {
  ...reference,
  axpyAsync: inWorker('axpy', [0]),
  sumSquaresAsync: inWorker('sumSquares', []),
  adamwAsync: inWorker('adamw', [0, 2, 3]),
  outerStepAsync: inWorker('outerStep', [0, 2]),
  compressAsync: inWorker('compress', [0, 3]),
  decodeAccumulateAsync: inWorker('decodeAccumulate', [0]),
  simdLevel: () => 'js',
  setSimd: () => 'js'
}

function load (): { kernels: Kernels, isNative: boolean } {
  if (process.env.SWARMTRAIN_NATIVE === '0') return { kernels: referenceKernels, isNative: false }
  try {
    const require = createRequire(import.meta.url)
    // dist/native/index.js -> build/Release at the package root
    const addon = require('../../build/Release/swarmtrain_native.node') as Record<string, unknown>
    const missing = kernelNames.filter(name => typeof addon[name] !== 'function')
    if (missing.length > 0) throw new Error(`the addon is out of date (no ${missing.join(', ')}): run npx node-gyp rebuild`)
    return { kernels: addon as unknown as Kernels, isNative: true }
  } catch (err) {
    console.warn(`swarmtrain: native addon unavailable, using the JavaScript reference (${(err as Error).message.split('\n')[0]})`)
    return { kernels: referenceKernels, isNative: false }
  }
}

const loaded = load()

/** True when the C++ addon is in use, false when the JavaScript reference stands in. */
export const isNative = loaded.isNative
export const {
  axpy, sumSquares, adamw, outerStep, compress, decodeAccumulate, payloadNorm,
  f32ToF16, f16ToF32, f32ToBf16, bf16ToF32, f32ToInt8, int8ToF32,
  axpyAsync, sumSquaresAsync, adamwAsync, outerStepAsync, compressAsync, decodeAccumulateAsync,
  simdLevel, setSimd
} = loaded.kernels
export { reference }
