import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { DType, StageMessageError, StageRequest, checkTensor, decodeRequest, leadingId } from '../protocols/stage-codec.js'
import { decodeActivations, decodeTokens, encodeActivations, encodeTokens } from '../node/pipeline/activations.js'
import { Rng } from '../node/util/random.js'

function randomActivations (n: number, seed = 1): Float32Array {
  const rng = new Rng(seed)
  return Float32Array.from({ length: n }, () => rng.normal() * 3)
}

test('activations round-trip through f32, f16 and int8 within their precision', () => {
  const x = randomActivations(2 * 3 * 16)
  const shape = [2, 3, 16]
  for (const [dtype, tol] of [[DType.F32, 0], [DType.F16, 1e-3], [DType.INT8, 1 / 127]] as const) {
    const t = encodeActivations(x, shape, dtype)
    checkTensor('x', t, [dtype], shape, 1e6)
    const back = decodeActivations(t)
    assert.equal(back.shape, shape)
    for (let row = 0; row < 6; row++) {
      const slice = x.subarray(row * 16, row * 16 + 16)
      const max = Math.max(...Array.from(slice, Math.abs))
      for (let i = 0; i < 16; i++) {
        const err = Math.abs(back.data[row * 16 + i] - slice[i])
        assert.ok(err <= tol * (dtype === DType.INT8 ? max : Math.abs(slice[i])) + 1e-7, `${dtype}: error ${err} at ${row},${i}`)
      }
    }
  }
})

test('activations survive an unaligned position inside a decoded message, in a Uint8Array or a Buffer', () => {
  const x = randomActivations(4 * 8, 2)
  for (const dtype of [DType.F32, DType.F16, DType.INT8]) {
    const encoded = StageRequest.encode({ id: 7, stage: 1, x: encodeActivations(x, [1, 4, 8], dtype) })
    // Shifted by one byte so the data cannot sit at an aligned offset. The transport hands out
    // Node.js Buffers (whose slice() is a view, not a copy), so both kinds are checked.
    for (const chunk of [new Uint8Array(encoded.length + 1), Buffer.alloc(encoded.length + 1)]) {
      const bytes = chunk.subarray(1)
      bytes.set(encoded)
      const request = decodeRequest(bytes)
      assert.is(request.id, 7)
      assert.ok(request.x!.data.byteOffset % 2 !== 0, 'the data is unaligned')
      assert.equal(decodeActivations(request.x!).data, decodeActivations(StageRequest.decode(encoded).x!).data, `${dtype} in a ${chunk.constructor.name}`)
    }
  }
})

test('tokens round-trip and ids outside the vocabulary are refused', () => {
  const tokens = { data: BigInt64Array.from([0n, 5n, 255n, 17n]), shape: [2, 2] }
  const t = encodeTokens(tokens)
  assert.equal(decodeTokens(t, 256), tokens)
  assert.throws(() => decodeTokens(t, 100), (err: Error) => err instanceof StageMessageError && /outside the vocabulary/.test(err.message))
})

test('non-finite activations are refused', () => {
  const x = Float32Array.from([1, NaN, 3, 4])
  assert.throws(() => decodeActivations(encodeActivations(x, [1, 1, 4], DType.F32)), (err: Error) => err instanceof StageMessageError && /non-finite/.test(err.message))
})

test('checkTensor refuses wrong dtypes, shapes, byte counts and sizes', () => {
  const t = encodeActivations(randomActivations(12), [1, 3, 4], DType.F16)
  assert.is(checkTensor('x', t, [DType.F16], [null, null, 4], 100), 12)
  assert.throws(() => checkTensor('x', t, [DType.F32], [null, null, 4], 100), /dtype/)
  assert.throws(() => checkTensor('x', t, [DType.F16], [null, null, 8], 100), /shape/)
  assert.throws(() => checkTensor('x', t, [DType.F16], [null, null, 4], 10), /exceeds/)
  assert.throws(() => checkTensor('x', { ...t, data: t.data.subarray(2) }, [DType.F16], [null, null, 4], 100), /bytes/)
  assert.throws(() => checkTensor('x', { ...t, shape: [1, 0, 4] }, [DType.F16], [null, null, 4], 100), /bad dimension/)
  assert.throws(() => checkTensor('x', undefined, [DType.F16], [null, null, 4], 100), (err: Error) => err instanceof StageMessageError)
  const q = encodeActivations(randomActivations(12), [1, 3, 4], DType.INT8)
  assert.throws(() => checkTensor('x', { ...q, scales: q.scales.subarray(4) }, [DType.INT8], [1, 3, 4], 100), /scales/)
})

test('garbage requests fail with StageMessageError that keeps a readable id', () => {
  const good = StageRequest.encode({ id: 300, stage: 0 })
  assert.is(leadingId(good), 300)
  const broken = Uint8Array.from([...good, 0x22, 0x50, 1, 2])
  try {
    decodeRequest(broken)
    assert.unreachable()
  } catch (err) {
    assert.instance(err, StageMessageError)
    assert.is((err as { id?: number }).id, 300)
  }
  assert.throws(() => decodeRequest(Uint8Array.from([0x10, 99])), (err: Error) => err instanceof StageMessageError) // unknown enum value
  assert.is(leadingId(Uint8Array.from([0xff, 1])), 0)
})

test.run()
