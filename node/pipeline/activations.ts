// Tensors on the stage protocol: activations and gradients as int8 with a scale per row
// (default), float16, or float32; token ids as int32. Decoding trusts nothing: the caller has already
// checked shape and byte length with protocols/stage-codec.ts `checkTensor`.
import { DType, StageMessageError, type Tensor } from '../../protocols/stage-codec.js'
import type { FloatTensor, TokenTensor } from '../runtime/tensor.js'
import { f16ToF32, f32ToF16, f32ToInt8, int8ToF32, sumSquares } from '../../native/index.js'

export type WireDType = 'f32' | 'f16' | 'int8'

export const wireDTypes: Record<WireDType, DType> = { f32: DType.F32, f16: DType.F16, int8: DType.INT8 }

/**
 * int8 with a scale per row: half of float16's bytes, at no loss at equal tokens (the pipeline's
 * runs repeat exactly: int8 2.0264, float16 2.0311, local 2.0087; docs/BENCHMARKS.md).
 */
export const defaultWire: WireDType = 'int8'

/** Encodes activations of the given shape (the last dimension is the row length for int8 scales). */
export function encodeActivations (values: Float32Array, shape: number[], dtype: DType): Tensor {
  const rowLength = shape[shape.length - 1]
  switch (dtype) {
    case DType.F32:
      return { dtype, shape, data: bytesOf(values), scales: new Uint8Array(0) }
    case DType.F16: {
      const half = new Uint16Array(values.length)
      f32ToF16(values, half)
      return { dtype, shape, data: bytesOf(half), scales: new Uint8Array(0) }
    }
    case DType.INT8: {
      const q = new Int8Array(values.length)
      const scales = new Float32Array(values.length / rowLength)
      f32ToInt8(values, q, scales, rowLength)
      return { dtype, shape, data: bytesOf(q), scales: bytesOf(scales) }
    }
    case DType.I32:
      throw new RangeError('activations cannot be encoded as I32')
  }
}

/** Decodes activations to float32. Non-finite values are refused: one NaN would poison a whole stage. */
export function decodeActivations (t: Tensor): FloatTensor {
  let out: Float32Array
  switch (t.dtype) {
    case DType.F32:
      out = view(t.data, Float32Array)
      break
    case DType.F16:
      out = new Float32Array(t.data.byteLength / 2)
      f16ToF32(view(t.data, Uint16Array), out)
      break
    case DType.INT8: {
      out = new Float32Array(t.data.byteLength)
      const rowLength = t.shape[t.shape.length - 1]
      int8ToF32(new Int8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), view(t.scales, Float32Array), out, rowLength)
      break
    }
    case DType.I32:
      throw new StageMessageError('I32 tensors are tokens, not activations')
  }
  // One fast native pass: the sum of squares (in float64) is finite exactly when every value is.
  if (!Number.isFinite(sumSquares(out))) throw new StageMessageError('activations hold non-finite values')
  return { data: out, shape: t.shape }
}

/** Token ids (int64, as the graphs take them) as an I32 tensor. */
export function encodeTokens (tokens: TokenTensor): Tensor {
  const ids = Int32Array.from(tokens.data, t => Number(t))
  return { dtype: DType.I32, shape: tokens.shape, data: bytesOf(ids), scales: new Uint8Array(0) }
}

/** Decodes token ids, refusing any outside [0, vocabSize). */
export function decodeTokens (t: Tensor, vocabSize: number): TokenTensor {
  const ids = view(t.data, Int32Array)
  const out = new BigInt64Array(ids.length)
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= vocabSize) throw new StageMessageError(`token id ${ids[i]} at index ${i} is outside the vocabulary of ${vocabSize}`)
    out[i] = BigInt(ids[i])
  }
  return { data: out, shape: t.shape }
}

/** The bytes of a typed array, in place (the protobuf encoder copies them into the message). */
function bytesOf (a: Float32Array | Uint16Array | Int8Array | Int32Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength)
}

type ViewType<T> = { new (buffer: ArrayBuffer, byteOffset: number, length: number): T, BYTES_PER_ELEMENT: number }

/**
 * A typed view of received bytes, in place when they are aligned for the element type (a copy
 * otherwise). The copy is `new Uint8Array(bytes)`, not `bytes.slice()`: received bytes are often a
 * Node.js Buffer (the socket's or the decipher's chunk, passed on zero-copy), whose slice() is a view,
 * so `.buffer` would be the whole chunk and offset 0 the wrong bytes.
 */
function view<T> (bytes: Uint8Array, Type: ViewType<T>): T {
  const n = bytes.byteLength / Type.BYTES_PER_ELEMENT
  if (bytes.byteOffset % Type.BYTES_PER_ELEMENT === 0) return new Type(bytes.buffer as ArrayBuffer, bytes.byteOffset, n)
  return new Type(new Uint8Array(bytes).buffer, 0, n)
}
