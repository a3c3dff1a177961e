import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { axpy, isNative, reference } from '../native/index.js'

test('the addon builds and loads', () => {
  assert.ok(isNative, 'native addon did not load (is build/Release/swarmtrain_native.node there?)')
})

test('axpy matches the reference and rejects bad arguments', () => {
  const a = Float32Array.from([1, 2, 3])
  const b = Float32Array.from([1, 2, 3])
  const x = Float32Array.from([0.5, -1, 2])
  axpy(a, x, 2)
  reference.axpy(b, x, 2)
  assert.equal(Array.from(a), Array.from(b))
  assert.equal(Array.from(a), [2, 0, 7])
  assert.throws(() => axpy(a, new Float32Array(2), 1), /same length/)
  assert.throws(() => axpy(a, [1, 2, 3] as unknown as Float32Array, 1), /Float32Array/)
})

test.run()
