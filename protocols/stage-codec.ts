// Checked decoding of stage protocol messages (stage.proto). Everything here treats its input as
// hostile: sizes are bounded before anything is allocated, tensors are checked for consistent
// shape, dtype and byte length, and every problem becomes a StageMessageError that the server
// answers with an error reply instead of crashing.
import { DType, StageRequest, StageResponse, type Hop, type Tensor } from './stage.js'

export { DType, StageRequest, StageResponse, type Hop, type Tensor }

/** Most dimensions a tensor on this protocol has ([B, T, D] activations, [B, T] tokens). */
const MAX_TENSOR_RANK = 3

/** Most hops a TRAIN or EVALUATE route or reply names (stages after the first): far more than any run has. */
export const MAX_ROUTE_HOPS = 64

/** Longest peer id string on a route (an Ed25519 or RSA peer id in base58 is 46-53 characters). */
export const MAX_PEER_ID_CHARS = 128

/** A message that is not a valid stage request or response. */
export class StageMessageError extends Error {
  override name = 'StageMessageError'
}

function bytesPerElement (dtype: DType): number {
  switch (dtype) {
    case DType.F32: case DType.I32: return 4
    case DType.F16: return 2
    case DType.INT8: return 1
  }
}

/** Bytes a message carrying `elements` activation values as float32 needs, with room for framing. */
export function messageBytesFor (elements: number): number {
  return elements * 4 + 4096
}

/**
 * Decodes a request. On failure the error carries the request id when the message starts with a
 * readable one (we always encode it first), so the reply can still be matched by the caller.
 */
export function decodeRequest (bytes: Uint8Array): StageRequest {
  try {
    return StageRequest.decode(bytes, { limits: { x: { shape: MAX_TENSOR_RANK }, gy: { shape: MAX_TENSOR_RANK }, targets: { shape: MAX_TENSOR_RANK }, route: MAX_ROUTE_HOPS } })
  } catch (err) {
    throw Object.assign(new StageMessageError(`undecodable request: ${(err as Error).message}`), { id: leadingId(bytes) })
  }
}

export function decodeResponse (bytes: Uint8Array): StageResponse {
  try {
    return StageResponse.decode(bytes, { limits: { y: { shape: MAX_TENSOR_RANK }, hops: MAX_ROUTE_HOPS } })
  } catch (err) {
    throw new StageMessageError(`undecodable response: ${(err as Error).message}`)
  }
}

/** The id of a message whose first field is `uint32 id = 1`, or 0. */
export function leadingId (bytes: Uint8Array): number {
  if (bytes[0] !== 0x08) return 0
  let id = 0
  for (let i = 1, shift = 0; i < Math.min(bytes.length, 6); i++, shift += 7) {
    id += (bytes[i] & 0x7f) * 2 ** shift
    if ((bytes[i] & 0x80) === 0) return id <= 0xffffffff ? id : 0
  }
  return 0
}

/** Number of elements of a shape, or an error if a dimension is not a positive integer. */
function elementCount (shape: readonly number[], maxElements: number): number {
  let n = 1
  for (const d of shape) {
    if (!Number.isInteger(d) || d <= 0) throw new StageMessageError(`bad dimension ${d} in shape [${shape.join(', ')}]`)
    n *= d
    if (n > maxElements) throw new StageMessageError(`shape [${shape.join(', ')}] exceeds ${maxElements} elements`)
  }
  return n
}

/**
 * Checks that a tensor's bytes match its shape and dtype and that it is one of the expected
 * dtypes with the expected shape (null dimensions match anything). Returns the element count.
 */
export function checkTensor (name: string, t: Tensor | undefined, dtypes: readonly DType[], shape: ReadonlyArray<number | null>, maxElements: number): number {
  if (t === undefined) throw new StageMessageError(`${name} is missing`)
  if (!dtypes.includes(t.dtype)) throw new StageMessageError(`${name} has dtype ${t.dtype}, expected ${dtypes.join(' or ')}`)
  if (t.shape.length !== shape.length || shape.some((d, i) => d !== null && d !== t.shape[i])) {
    throw new StageMessageError(`${name} has shape [${t.shape.join(', ')}], expected [${shape.map(d => d ?? '*').join(', ')}]`)
  }
  const n = elementCount(t.shape, maxElements)
  if (t.data.byteLength !== n * bytesPerElement(t.dtype)) throw new StageMessageError(`${name} has ${t.data.byteLength} bytes, its shape and dtype need ${n * bytesPerElement(t.dtype)}`)
  const rows = n / t.shape[t.shape.length - 1]
  const scaleBytes = t.dtype === DType.INT8 ? rows * 4 : 0
  if (t.scales.byteLength !== scaleBytes) throw new StageMessageError(`${name} has ${t.scales.byteLength} bytes of scales, expected ${scaleBytes}`)
  return n
}

/**
 * Checks a TRAIN or EVALUATE route that reaches stage `stage` (of `nStages`) and names the replicas of the
 * stages after it: exactly one peer per later stage (nothing beyond the last stage), each a
 * plausible peer id, none twice and none `self` (a node serves one stage, so a repeat is a loop).
 */
export function checkRoute (route: readonly string[], stage: number, nStages: number, self?: string): void {
  const hops = nStages - 1 - stage
  if (route.length !== hops) throw new StageMessageError(`the route names ${route.length} hops, stage ${stage} of ${nStages} has ${hops} after it`)
  const seen = new Set<string>()
  for (const peer of route) {
    if (peer.length === 0 || peer.length > MAX_PEER_ID_CHARS || !/^[1-9A-HJ-NP-Za-km-z]+$/.test(peer)) throw new StageMessageError(`the route names an invalid peer id '${peer.slice(0, 64)}'`)
    if (peer === self || seen.has(peer)) throw new StageMessageError(`the route loops through ${peer}`)
    seen.add(peer)
  }
}
