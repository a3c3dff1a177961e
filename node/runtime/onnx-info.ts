// Reads the one fact `generate` needs from an exported model that the ONNX runtime does not
// expose: the context length, i.e. the row count of the `wpe` (learned positions) initializer.
// A bounded protobuf walk over ModelProto.graph (7) -> GraphProto.initializer (5) ->
// TensorProto.dims (1), name (8); every length is checked against the buffer.

/** Rows of the initializer named `name`, or undefined if the model has no such initializer. */
export function initializerDims (model: Uint8Array, name: string): number[] | undefined {
  const graph = fields(model).find(f => f.field === 7 && f.bytes !== undefined)?.bytes
  if (graph === undefined) return undefined
  for (const f of fields(graph)) {
    if (f.field !== 5 || f.bytes === undefined) continue
    const tensor = fields(f.bytes)
    const tensorName = tensor.find(t => t.field === 8 && t.bytes !== undefined)?.bytes
    if (tensorName === undefined || new TextDecoder().decode(tensorName) !== name) continue
    const dims: number[] = []
    for (const t of tensor) {
      if (t.field !== 1) continue
      if (t.value !== undefined) dims.push(t.value)
      else if (t.bytes !== undefined) dims.push(...packedVarints(t.bytes))
    }
    return dims
  }
  return undefined
}

export interface Field { field: number, value?: number, bytes?: Uint8Array }

/** The top-level fields of one protobuf message; fixed-width (wire types 1, 5) ones are skipped. */
export function fields (buf: Uint8Array): Field[] {
  const out: Field[] = []
  let at = 0
  const varint = (): number => {
    let v = 0
    for (let shift = 0; ; shift += 7) {
      if (at >= buf.length || shift > 63) throw new RangeError('truncated or overlong varint')
      const b = buf[at++]
      v += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return v
    }
  }
  while (at < buf.length) {
    const key = varint()
    const field = Math.floor(key / 8)
    const wire = key % 8
    if (wire === 0) out.push({ field, value: varint() })
    else if (wire === 1 || wire === 5) at += wire === 1 ? 8 : 4
    else if (wire === 2) {
      const n = varint()
      if (at + n > buf.length) throw new RangeError('length-delimited field runs past the end')
      out.push({ field, bytes: buf.subarray(at, at + n) })
      at += n
    } else throw new RangeError(`unsupported protobuf wire type ${wire}`)
    if (at > buf.length) throw new RangeError('field runs past the end')
  }
  return out
}

function packedVarints (buf: Uint8Array): number[] {
  const out: number[] = []
  let v = 0
  let shift = 0
  for (const b of buf) {
    v += (b & 0x7f) * 2 ** shift
    shift += 7
    if (b < 0x80) { out.push(v); v = 0; shift = 0 }
  }
  return out
}
