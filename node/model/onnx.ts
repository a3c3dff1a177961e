// A minimal writer for ONNX ModelProto: just the protobuf fields our graphs use (nodes with
// int/float/ints/tensor attributes, typed inputs/outputs with symbolic dims, initializers).
// Field numbers are from onnx/onnx.proto (IR version 8).

export const enum ElemType { Float = 1, Int64 = 7, Bool = 9, Double = 11 }

/** A dimension: a fixed size or a symbolic name such as 'B'. */
export type Dim = number | string

export interface ValueInfo { name: string, elemType: ElemType, dims?: Dim[] }

export interface TensorData {
  name?: string
  elemType: ElemType
  dims: number[]
  /** Little-endian raw values (Float32Array, Float64Array or BigInt64Array). */
  data: Float32Array | Float64Array | BigInt64Array
}

export type AttrValue =
  | { kind: 'int', value: number }
  | { kind: 'float', value: number }
  | { kind: 'ints', value: number[] }
  | { kind: 'string', value: string }
  | { kind: 'tensor', value: TensorData }

export interface NodeProto {
  opType: string
  domain?: string
  name: string
  inputs: string[]
  outputs: string[]
  attrs: Record<string, AttrValue>
}

export interface GraphProto {
  name: string
  nodes: NodeProto[]
  inputs: ValueInfo[]
  outputs: ValueInfo[]
  initializers: TensorData[]
}

export interface ModelOptions { opset: number, msOpset?: number, producer: string }

/** Protobuf encoding by appending fields to a growable byte buffer. */
class Writer {
  private buf = new Uint8Array(256)
  private len = 0

  private ensure (n: number): void {
    if (this.len + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.len + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.len))
    this.buf = next
  }

  private varint (v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v))
    this.ensure(10)
    while (x >= 0x80n) {
      this.buf[this.len++] = Number(x & 0x7fn) | 0x80
      x >>= 7n
    }
    this.buf[this.len++] = Number(x)
  }

  private tag (field: number, wire: number): void { this.varint((field << 3) | wire) }

  int (field: number, v: number): void { this.tag(field, 0); this.varint(v) }

  float (field: number, v: number): void {
    this.tag(field, 5)
    this.ensure(4)
    new DataView(this.buf.buffer).setFloat32(this.len, v, true)
    this.len += 4
  }

  bytes (field: number, data: Uint8Array): void {
    this.tag(field, 2)
    this.varint(data.length)
    this.ensure(data.length)
    this.buf.set(data, this.len)
    this.len += data.length
  }

  string (field: number, s: string): void { this.bytes(field, new TextEncoder().encode(s)) }

  message (field: number, build: (w: Writer) => void): void {
    const w = new Writer()
    build(w)
    this.bytes(field, w.finish())
  }

  finish (): Uint8Array { return this.buf.subarray(0, this.len) }
}

function writeTensor (w: Writer, t: TensorData): void {
  for (const d of t.dims) w.int(1, d)
  w.int(2, t.elemType)
  if (t.name !== undefined) w.string(8, t.name)
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))
}

function writeValueInfo (w: Writer, v: ValueInfo): void {
  w.string(1, v.name)
  w.message(2, type => type.message(1, tensor => {
    tensor.int(1, v.elemType)
    if (v.dims !== undefined) {
      const dims = v.dims
      tensor.message(2, shape => {
        for (const d of dims) shape.message(1, dim => typeof d === 'number' ? dim.int(1, d) : dim.string(2, d))
      })
    }
  }))
}

// AttributeProto.AttributeType values.
const attrType = { float: 1, int: 2, string: 3, tensor: 4, ints: 7 } as const

function writeNode (w: Writer, n: NodeProto): void {
  for (const i of n.inputs) w.string(1, i)
  for (const o of n.outputs) w.string(2, o)
  w.string(3, n.name)
  w.string(4, n.opType)
  for (const [name, a] of Object.entries(n.attrs)) {
    w.message(5, at => {
      at.string(1, name)
      switch (a.kind) {
        case 'float': at.float(2, a.value); break
        case 'int': at.int(3, a.value); break
        case 'string': at.string(4, a.value); break
        case 'tensor': at.message(5, t => writeTensor(t, a.value)); break
        case 'ints': for (const v of a.value) at.int(8, v); break
      }
      at.int(20, attrType[a.kind])
    })
  }
  if (n.domain !== undefined && n.domain !== '') w.string(7, n.domain)
}

export function encodeModel (graph: GraphProto, opts: ModelOptions): Uint8Array {
  const w = new Writer()
  w.int(1, 8) // ir_version
  w.string(2, opts.producer)
  w.message(7, g => {
    for (const n of graph.nodes) g.message(1, m => writeNode(m, n))
    g.string(2, graph.name)
    for (const t of graph.initializers) g.message(5, m => writeTensor(m, t))
    for (const v of graph.inputs) g.message(11, m => writeValueInfo(m, v))
    for (const v of graph.outputs) g.message(12, m => writeValueInfo(m, v))
  })
  w.message(8, o => { o.string(1, ''); o.int(2, opts.opset) })
  if (opts.msOpset !== undefined) {
    const version = opts.msOpset
    w.message(8, o => { o.string(1, 'com.microsoft'); o.int(2, version) })
  }
  return w.finish()
}
