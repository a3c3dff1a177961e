// Tensors as they cross threads and the network: a flat typed array and its shape.

/** Activations and their gradients. */
export interface FloatTensor {
  data: Float32Array
  shape: number[]
}

/** Token ids (stage-0 inputs, targets). */
export interface TokenTensor {
  data: BigInt64Array
  shape: number[]
}

export type Tensor = FloatTensor | TokenTensor

/** A tensor whose data does not fit its shape or the stage (bad input, e.g. from a peer). */
export class TensorError extends Error {
  override name = 'TensorError'
}
