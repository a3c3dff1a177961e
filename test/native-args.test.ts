// Argument fuzzing: every kernel called with random mixes of wrong and right arguments either
// works or throws a TypeError/RangeError (async ones reject with one); the process never crashes.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as native from '../native/index.js'
import { Rng } from '../node/util/random.js'

const rng = new Rng(12)

function value (): unknown {
  const n = rng.int(9)
  const pick = [
    () => undefined, () => null, () => rng.int(5) - 1, () => NaN, () => Infinity, () => 'x', () => [1, 2],
    () => new Float32Array(n), () => new Float32Array(n).fill(NaN), () => new Uint8Array(n), () => new Int8Array(n),
    () => new Uint16Array(n), () => new Float64Array(n), () => Buffer.alloc(n), () => new Float32Array(new SharedArrayBuffer(4 * n)),
    () => ({ beta: rng.next(), chunk: rng.int(5), k: rng.int(5), bits: [2, 8, 3][rng.int(3)] }),
    () => ({ lr: rng.next(), beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, step: rng.int(3), gradScale: 1 }),
    () => ({ lr: 1, momentum: rng.next(), nesterov: rng.next() < 0.5 }),
    () => ({ get chunk () { throw new Error('getter') } })
  ]
  return pick[rng.int(pick.length)]()
}

const kernels = ['axpy', 'sumSquares', 'adamw', 'outerStep', 'compress', 'decodeAccumulate', 'payloadNorm', 'f32ToF16', 'f16ToF32',
  'f32ToBf16', 'bf16ToF32', 'f32ToInt8', 'int8ToF32', 'axpyAsync', 'sumSquaresAsync', 'adamwAsync', 'outerStepAsync',
  'compressAsync', 'decodeAccumulateAsync'] as const

function expected (err: unknown): boolean {
  return err instanceof TypeError || err instanceof RangeError || (err instanceof Error && err.message === 'getter')
}

test('random arguments never crash, only TypeError or RangeError', async () => {
  let calls = 0
  for (let round = 0; round < 4000; round++) {
    const name = kernels[rng.int(kernels.length)]
    const args = Array.from({ length: rng.int(7) }, value)
    const fn = native[name] as (...a: unknown[]) => unknown
    try {
      const result = fn(...args)
      if (result instanceof Promise) await result.catch((err: unknown) => { assert.ok(expected(err), `${name} rejected with ${String(err)}`) })
      calls++
    } catch (err) {
      assert.ok(expected(err), `${name} threw ${String(err)}`)
    }
  }
  assert.ok(calls > 0)
})

test.run()
