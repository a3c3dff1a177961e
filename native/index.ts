// The native kernels, loaded from the addon built by binding.gyp. If the addon cannot load
// (not built, wrong platform), the JavaScript reference is used and one warning is printed.
import { createRequire } from 'node:module'
import * as reference from './reference.js'
import type { AdamWOptions } from './reference.js'

export type { AdamWOptions }

export interface Kernels {
  axpy(dst: Float32Array, src: Float32Array, weight: number): void
  adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, options: AdamWOptions): void
  sumSquares(x: Float32Array): number
}

function load(): { kernels: Kernels, isNative: boolean } {
  if (process.env.SWARMTRAIN_NATIVE === '0') return { kernels: reference, isNative: false }
  try {
    const require = createRequire(import.meta.url)
    // dist/native/index.js -> build/Release at the package root
    const addon = require('../../build/Release/swarmtrain_native.node') as Partial<Kernels>
    // Kernels the addon does not have yet fall back to the reference one by one.
    return { kernels: { ...reference, ...addon } as Kernels, isNative: true }
  } catch (err) {
    process.emitWarning(`swarmtrain: native addon unavailable, using the JavaScript reference (${(err as Error).message.split('\n')[0]})`)
    return { kernels: reference, isNative: false }
  }
}

const loaded = load()

/** True when the C++ addon is in use, false when the JavaScript reference stands in. */
export const isNative = loaded.isNative
export const { axpy, adamw, sumSquares } = loaded.kernels
export { reference }
