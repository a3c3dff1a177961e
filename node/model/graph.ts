// A small ONNX graph builder. Methods per op return typed tensor handles with static shapes
// (symbolic dims are strings such as 'B'). Differentiable ops are also recorded on a tape that
// autodiff.ts walks backwards; everything else (shape plumbing, constants) is plain nodes.
// `toModel` prunes every node that no output depends on, so gradient rules may emit freely.
import { ElemType, encodeModel, type AttrValue, type Dim, type NodeProto, type TensorData, type ValueInfo } from './onnx.js'
import type { DType } from './config.js'

export type Elem = 'float' | 'int64'

export interface Tensor {
  readonly name: string
  readonly elem: Elem
  readonly shape: readonly Dim[]
}

/** The differentiable ops; autodiff.ts has one vector-Jacobian rule for each. */
export type OpType = 'matmul' | 'add' | 'sub' | 'mul' | 'reshape' | 'transpose' | 'split' | 'concat' |
  'layerNorm' | 'causalSoftmax' | 'gelu' | 'gather' | 'crossEntropy'

export interface MatMulAttrs { transA: boolean, transB: boolean, alpha: number }

/** One differentiable op as recorded: its inputs, outputs, attributes and tensors saved for its rule. */
export interface TapeEntry {
  op: OpType
  inputs: Tensor[]
  outputs: Tensor[]
  attrs: Record<string, unknown>
  saved: Record<string, Tensor>
}

const opset = 17
const msOpset = 1
const msDomain = 'com.microsoft'
/** Large enough that exp() underflows to exactly 0, small enough not to overflow float32 sums. */
const maskValue = -1e9
/** GELU's tanh form: 0.5 x (1 + tanh(c (x + k x^3))). */
export const geluC = Math.sqrt(2 / Math.PI)
export const geluK = 0.044715

export interface GraphOptions {
  /** Standard ONNX ops only (no com.microsoft kernels), for files any runtime can load. */
  portable?: boolean
}

export class Graph {
  readonly dtype: DType
  readonly portable: boolean
  readonly tape: TapeEntry[] = []
  private readonly nodes: NodeProto[] = []
  private readonly inputs: ValueInfo[] = []
  private readonly outputs: ValueInfo[] = []
  private readonly initializers = new Map<string, TensorData>()
  private readonly differentiable = new Set<string>()
  private readonly cache = new Map<string, Tensor>()
  private counter = 0
  private recording = true

  constructor (dtype: DType, opts: GraphOptions = {}) {
    this.dtype = dtype
    this.portable = opts.portable ?? false
  }

  /** Runs `build` without recording on the tape (gradient rules use the same op methods). */
  withoutTape<T> (build: () => T): T {
    const was = this.recording
    this.recording = false
    try { return build() } finally { this.recording = was }
  }

  private get floatType (): ElemType { return this.dtype === 'float64' ? ElemType.Double : ElemType.Float }

  private elemType (elem: Elem): ElemType { return elem === 'int64' ? ElemType.Int64 : this.floatType }

  private fresh (hint: string): string { return `${hint}_${this.counter++}` }

  /** Emits one ONNX node and returns handles for its outputs. */
  node (opType: string, inputs: Tensor[], outputs: Array<{ elem: Elem, shape: readonly Dim[] }>, attrs: Record<string, AttrValue> = {}, domain?: string): Tensor[] {
    const handles = outputs.map(o => ({ name: this.fresh(opType), elem: o.elem, shape: o.shape }))
    this.nodes.push({ opType, domain, name: this.fresh(`n_${opType}`), inputs: inputs.map(t => t.name), outputs: handles.map(t => t.name), attrs })
    return handles
  }

  private node1 (opType: string, inputs: Tensor[], elem: Elem, shape: readonly Dim[], attrs: Record<string, AttrValue> = {}, domain?: string): Tensor {
    return this.node(opType, inputs, [{ elem, shape }], attrs, domain)[0]
  }

  // ---- graph boundary ---------------------------------------------------------------------

  /** A graph input. Float inputs are differentiable unless `grad` is false. */
  input (name: string, shape: Dim[], elem: Elem = 'float', grad = elem === 'float'): Tensor {
    this.inputs.push({ name, elemType: this.elemType(elem), dims: shape })
    if (grad) this.differentiable.add(name)
    return { name, elem, shape }
  }

  /** Marks `t` as the graph output `name` (through an Identity node when the names differ). */
  output (t: Tensor, name: string): void {
    if (t.name !== name) this.nodes.push({ opType: 'Identity', name: this.fresh('n_Identity'), inputs: [t.name], outputs: [name], attrs: {} })
    this.outputs.push({ name, elemType: this.elemType(t.elem), dims: [...t.shape] })
  }

  /** A named initializer (a constant baked into the model, e.g. an exported weight). */
  initializer (name: string, shape: number[], values: Float32Array | Float64Array): Tensor {
    const data = this.dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values)
    this.initializers.set(name, { name, elemType: this.floatType, dims: shape, data })
    return { name, elem: 'float', shape }
  }

  /** A constant in the graph's float type (deduplicated). */
  constant (values: number | number[], shape: number[] = typeof values === 'number' ? [] : [values.length]): Tensor {
    const list = typeof values === 'number' ? [values] : values
    return this.memo(`f:${shape.join(',')}:${list.join(',')}`, () => {
      const name = this.fresh('const')
      const data = this.dtype === 'float64' ? Float64Array.from(list) : Float32Array.from(list)
      this.initializers.set(name, { name, elemType: this.floatType, dims: shape, data })
      return { name, elem: 'float', shape }
    })
  }

  /** An int64 constant (shapes, axes, indices), deduplicated. */
  ints (values: number | number[]): Tensor {
    const list = typeof values === 'number' ? [values] : values
    const shape = typeof values === 'number' ? [] : [list.length]
    return this.memo(`i:${shape.join(',')}:${list.join(',')}`, () => {
      const name = this.fresh('ints')
      this.initializers.set(name, { name, elemType: ElemType.Int64, dims: shape, data: BigInt64Array.from(list, BigInt) })
      return { name, elem: 'int64', shape }
    })
  }

  /** Returns the cached tensor for `key`, building it on first use. */
  private memo (key: string, build: () => Tensor): Tensor {
    let t = this.cache.get(key)
    if (t === undefined) {
      t = build()
      this.cache.set(key, t)
    }
    return t
  }

  requiresGrad (t: Tensor): boolean { return this.differentiable.has(t.name) }

  private record (op: OpType, inputs: Tensor[], outputs: Tensor[], attrs: Record<string, unknown> = {}, saved: Record<string, Tensor> = {}): void {
    if (!this.recording || !inputs.some(t => this.differentiable.has(t.name))) return
    for (const o of outputs) this.differentiable.add(o.name)
    this.tape.push({ op, inputs, outputs, attrs, saved })
  }

  // ---- non-differentiable helpers ----------------------------------------------------------

  /** The runtime shape of `t` (dims [start, end)) as an int64 vector. */
  shapeOf (t: Tensor, start = 0, end = t.shape.length): Tensor {
    const attrs: Record<string, AttrValue> = {}
    if (start !== 0) attrs.start = { kind: 'int', value: start }
    if (end !== t.shape.length) attrs.end = { kind: 'int', value: end }
    return this.node1('Shape', [t], 'int64', [end - start], attrs)
  }

  reshapeTo (t: Tensor, shape: Tensor, staticShape: readonly Dim[]): Tensor {
    return this.node1('Reshape', [t, shape], t.elem, staticShape)
  }

  reduceSum (t: Tensor, axes: number[], keepdims: boolean): Tensor {
    const shape = reducedShape(t.shape, axes, keepdims)
    return this.node1('ReduceSum', [t, this.ints(axes)], t.elem, shape, { keepdims: { kind: 'int', value: keepdims ? 1 : 0 } })
  }

  reduceMean (t: Tensor, axes: number[], keepdims: boolean): Tensor {
    const shape = reducedShape(t.shape, axes, keepdims)
    return this.node1('ReduceMean', [t], t.elem, shape, { axes: { kind: 'ints', value: axes }, keepdims: { kind: 'int', value: keepdims ? 1 : 0 } })
  }

  /** An elementwise op that is never recorded on the tape (plumbing inside composite ops and rules). */
  binary (opType: 'Add' | 'Sub' | 'Mul' | 'Div', a: Tensor, b: Tensor): Tensor {
    return this.node1(opType, [a, b], a.elem, broadcastShape(a.shape, b.shape))
  }

  unary (opType: 'Tanh' | 'Exp' | 'Sqrt' | 'Neg' | 'Reciprocal' | 'Sigmoid', a: Tensor): Tensor {
    return this.node1(opType, [a], a.elem, a.shape)
  }

  unsqueeze (t: Tensor, axis: number): Tensor {
    const shape = [...t.shape]
    shape.splice(axis < 0 ? shape.length + 1 + axis : axis, 0, 1)
    return this.node1('Unsqueeze', [t, this.ints([axis])], t.elem, shape)
  }

  /** Zeros shaped like `t`, in the graph's float type. */
  zerosLike (t: Tensor): Tensor {
    return this.node1('ConstantOfShape', [this.shapeOf(t)], 'float', t.shape, { value: { kind: 'tensor', value: this.scalarTensor(0) } })
  }

  /** A float tensor of runtime shape `shape` filled with `value`. */
  fill (shape: Tensor, staticShape: readonly Dim[], value: number): Tensor {
    return this.node1('ConstantOfShape', [shape], 'float', staticShape, { value: { kind: 'tensor', value: this.scalarTensor(value) } })
  }

  private scalarTensor (value: number): TensorData {
    return { elemType: this.floatType, dims: [1], data: this.dtype === 'float64' ? Float64Array.of(value) : Float32Array.of(value) }
  }

  /** A dim of `t` at runtime as a float scalar (e.g. a token count to average over). */
  dimAsFloat (t: Tensor, axis: number): Tensor {
    const n = this.node1('Gather', [this.shapeOf(t), this.ints(axis)], 'int64', [])
    return this.node1('Cast', [n], 'float', [], { to: { kind: 'int', value: this.floatType } })
  }

  /** `t` as a matrix: [product of the dims before `axis`, product of the rest]. */
  flatten (t: Tensor, axis: number): Tensor {
    const shape = [dimProduct(t.shape.slice(0, axis)), dimProduct(t.shape.slice(axis))]
    return this.node1('Flatten', [t], t.elem, shape, { axis: { kind: 'int', value: axis } })
  }

  /**
   * One-hot rows over the rows of `table` [V, ...]: [...indices.shape, V] in the float type,
   * picked from a V x V identity by Gather, so indices follow the same rules as in `gather`
   * (negative ones count from the end, out-of-range ones are an error).
   */
  oneHot (indices: Tensor, table: Tensor): Tensor {
    const v = this.shapeOf(table, 0, 1)
    const square = this.node1('ConstantOfShape', [this.node1('Concat', [v, v], 'int64', [2], { axis: { kind: 'int', value: 0 } })],
      'float', [table.shape[0], table.shape[0]], { value: { kind: 'tensor', value: this.scalarTensor(0) } })
    const eye = this.node1('EyeLike', [square], 'float', square.shape)
    return this.node1('Gather', [eye, indices], 'float', [...indices.shape, table.shape[0]], { axis: { kind: 'int', value: 0 } })
  }

  /** data[i, indices[i, j]] += updates[i, j] along `axis` 1. */
  scatterElementsAdd (data: Tensor, indices: Tensor, updates: Tensor): Tensor {
    return this.node1('ScatterElements', [data, indices, updates], data.elem, data.shape, { axis: { kind: 'int', value: 1 }, reduction: { kind: 'string', value: 'add' } })
  }

  /** 0, 1, ..., n-1 (int64) where n is `like.shape[axis]` at runtime. */
  arange (like: Tensor, axis: number): Tensor {
    const n = this.node1('Gather', [this.shapeOf(like), this.ints(axis)], 'int64', [])
    return this.node1('Range', [this.ints(0), n, this.ints(1)], 'int64', [like.shape[axis]])
  }

  // ---- differentiable ops -------------------------------------------------------------------

  /** alpha * op(a) @ op(b), batched over leading dims; b may be 2-D against a batched a. */
  matmul (a: Tensor, b: Tensor, opts: Partial<MatMulAttrs> = {}): Tensor {
    const attrs: MatMulAttrs = { transA: opts.transA ?? false, transB: opts.transB ?? false, alpha: opts.alpha ?? 1 }
    const out = this.matmulNode(a, b, attrs)
    this.record('matmul', [a, b], [out], { ...attrs })
    return out
  }

  /** MatMul when plain, else FusedMatMul (or, portable, Transpose + MatMul + Mul). */
  private matmulNode (a: Tensor, b: Tensor, { transA, transB, alpha }: MatMulAttrs): Tensor {
    if (a.shape.length < 2 || b.shape.length < 2) throw new RangeError('matmul needs rank >= 2')
    if (b.shape.length > 2 && b.shape.length !== a.shape.length) throw new RangeError('matmul: batched b must match a\'s rank')
    if (transA && a.shape.length > 2 && b.shape.length === 2) throw new RangeError('matmul: transA of a batched a against a 2-D b is not supported')
    const ar = a.shape.length
    const m = a.shape[transA ? ar - 1 : ar - 2]
    const n = b.shape[transB ? b.shape.length - 2 : b.shape.length - 1]
    const shape = [...a.shape.slice(0, ar - 2), m, n]
    if (!transA && !transB && alpha === 1) return this.node1('MatMul', [a, b], 'float', shape)
    if (this.portable) {
      const swapLast = (t: Tensor): Tensor => {
        const perm = t.shape.map((_, i) => i)
        perm.splice(-2, 2, perm.length - 1, perm.length - 2)
        return this.node1('Transpose', [t], t.elem, perm.map(p => t.shape[p]), { perm: { kind: 'ints', value: perm } })
      }
      const product = this.node1('MatMul', [transA ? swapLast(a) : a, transB ? swapLast(b) : b], 'float', shape)
      return alpha === 1 ? product : this.binary('Mul', product, this.constant(alpha))
    }
    return this.node1('FusedMatMul', [a, b], 'float', shape, {
      alpha: { kind: 'float', value: alpha },
      transA: { kind: 'int', value: transA ? 1 : 0 },
      transB: { kind: 'int', value: transB ? 1 : 0 }
    }, msDomain)
  }

  add (a: Tensor, b: Tensor): Tensor { return this.elementwise('add', 'Add', a, b) }
  sub (a: Tensor, b: Tensor): Tensor { return this.elementwise('sub', 'Sub', a, b) }
  mul (a: Tensor, b: Tensor): Tensor { return this.elementwise('mul', 'Mul', a, b) }

  private elementwise (op: OpType, opType: 'Add' | 'Sub' | 'Mul', a: Tensor, b: Tensor): Tensor {
    const out = this.binary(opType, a, b)
    this.record(op, [a, b], [out])
    return out
  }

  /** Reshape to a constant shape; 0 copies the input's dim, -1 is inferred (as in ONNX). */
  reshape (a: Tensor, shape: number[]): Tensor {
    const out = this.reshapeTo(a, this.ints(shape), reshapeShape(a.shape, shape))
    this.record('reshape', [a], [out])
    return out
  }

  transpose (a: Tensor, perm: number[]): Tensor {
    const out = this.node1('Transpose', [a], a.elem, perm.map(p => a.shape[p]), { perm: { kind: 'ints', value: perm } })
    this.record('transpose', [a], [out], { perm })
    return out
  }

  split (a: Tensor, axis: number, sizes: number[]): Tensor[] {
    const ax = axis < 0 ? a.shape.length + axis : axis
    const outs = this.node('Split', [a, this.ints(sizes)], sizes.map(s => ({ elem: a.elem, shape: a.shape.map((d, i) => i === ax ? s : d) })), { axis: { kind: 'int', value: ax } })
    this.record('split', [a], outs, { axis: ax })
    return outs
  }

  concat (parts: Tensor[], axis: number): Tensor {
    const ax = axis < 0 ? parts[0].shape.length + axis : axis
    const total = parts.reduce<Dim>((s, p) => typeof s === 'number' && typeof p.shape[ax] === 'number' ? s + (p.shape[ax] as number) : '?', 0)
    const out = this.node1('Concat', parts, parts[0].elem, parts[0].shape.map((d, i) => i === ax ? total : d), { axis: { kind: 'int', value: ax } })
    this.record('concat', parts, [out], { axis: ax, sizes: parts.map(p => p.shape[ax]) })
    return out
  }

  /**
   * Layer normalization over the last axis. float32 uses the fused LayerNormalization op; in
   * float64 onnxruntime only computes its statistics in float32, so the float64 graphs (the
   * gradient-check reference) spell it out in plain ops.
   */
  layerNorm (x: Tensor, gamma: Tensor, beta: Tensor, epsilon = 1e-5): Tensor {
    const axis = x.shape.length - 1
    let y: Tensor
    const saved: Record<string, Tensor> = {}
    if (this.dtype === 'float32') {
      const statShape = x.shape.map((d, i) => i === axis ? 1 : d);
      [y, saved.mean, saved.invStd] = this.node('LayerNormalization', [x, gamma, beta],
        [{ elem: 'float', shape: x.shape }, { elem: 'float', shape: statShape }, { elem: 'float', shape: statShape }],
        { axis: { kind: 'int', value: -1 }, epsilon: { kind: 'float', value: epsilon } })
    } else {
      const mean = this.reduceMean(x, [-1], true)
      const centered = this.binary('Sub', x, mean)
      const variance = this.reduceMean(this.binary('Mul', centered, centered), [-1], true)
      const invStd = this.unary('Reciprocal', this.unary('Sqrt', this.binary('Add', variance, this.constant(epsilon))))
      saved.mean = mean
      saved.invStd = invStd
      saved.xhat = this.binary('Mul', centered, invStd)
      y = this.binary('Add', this.binary('Mul', saved.xhat, gamma), beta)
    }
    this.record('layerNorm', [x, gamma, beta], [y], {}, saved)
    return y
  }

  /**
   * Softmax over the last axis of attention scores [.., T, T], keys after the query masked out
   * by adding a large negative constant: a [seqLen, seqLen] initializer sliced to [T, T] once
   * per graph (every attention in a graph shares T).
   */
  causalSoftmax (scores: Tensor, seqLen: number): Tensor {
    const r = scores.shape.length
    const mask = this.memo(`mask:${seqLen}`, () => {
      const values = new Float64Array(seqLen * seqLen)
      for (let i = 0; i < seqLen; i++) for (let j = i + 1; j < seqLen; j++) values[i * seqLen + j] = maskValue
      const full = this.initializer(this.fresh('causal_mask'), [seqLen, seqLen], values)
      return this.node1('Slice', [full, this.ints([0, 0]), this.shapeOf(scores, r - 2, r), this.ints([0, 1])], 'float', scores.shape.slice(r - 2))
    })
    const out = this.node1('Softmax', [this.binary('Add', scores, mask)], 'float', scores.shape, { axis: { kind: 'int', value: -1 } })
    this.record('causalSoftmax', [scores], [out])
    return out
  }

  /**
   * GELU, tanh form. float32 uses com.microsoft FastGelu (one kernel); its float64 kernel is only
   * float-accurate, so float64 graphs (and portable ones) spell the formula out.
   */
  gelu (x: Tensor): Tensor {
    const out = this.portable || this.dtype === 'float64'
      ? this.binary('Mul', this.binary('Mul', x, this.constant(0.5)), this.binary('Add', this.constant(1),
        this.unary('Tanh', this.binary('Mul', x, this.binary('Add', this.constant(geluC),
          this.binary('Mul', this.binary('Mul', x, x), this.constant(geluC * geluK)))))))
      : this.node1('FastGelu', [x], 'float', x.shape, {}, msDomain)
    this.record('gelu', [x], [out])
    return out
  }

  /** Rows of `table` [N, D] at integer `indices` (any shape) -> [...indices.shape, D]. */
  gather (table: Tensor, indices: Tensor): Tensor {
    const out = this.node1('Gather', [table, indices], table.elem, [...indices.shape, ...table.shape.slice(1)], { axis: { kind: 'int', value: 0 } })
    this.record('gather', [table, indices], [out])
    return out
  }

  /** Mean cross-entropy in nats of `logits` [N, V] against int64 `targets` [N]; a scalar. */
  crossEntropy (logits: Tensor, targets: Tensor): Tensor {
    const [loss, logProb] = this.node('SoftmaxCrossEntropyLoss', [logits, targets],
      [{ elem: 'float', shape: [] }, { elem: 'float', shape: logits.shape }],
      { reduction: { kind: 'string', value: 'mean' } })
    this.record('crossEntropy', [logits, targets], [loss], {}, { logProb })
    return loss
  }

  // ---- serialization ----------------------------------------------------------------------

  /** The ONNX model, keeping only the nodes and initializers the outputs depend on. */
  toModel (name = 'swarmtrain'): Uint8Array {
    const needed = new Set(this.outputs.map(o => o.name))
    const kept: NodeProto[] = []
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i]
      if (!n.outputs.some(o => needed.has(o))) continue
      kept.push(n)
      for (const input of n.inputs) if (input !== '') needed.add(input)
    }
    kept.reverse()
    return encodeModel({
      name,
      nodes: kept,
      inputs: this.inputs,
      outputs: this.outputs,
      initializers: [...this.initializers.values()].filter(t => needed.has(t.name as string))
    }, { opset, msOpset: kept.some(n => n.domain === msDomain) ? msOpset : undefined, producer: 'swarmtrain' })
  }
}

function broadcastShape (a: readonly Dim[], b: readonly Dim[]): Dim[] {
  const n = Math.max(a.length, b.length)
  const out: Dim[] = []
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1
    const db = b[b.length - n + i] ?? 1
    out.push(da === 1 ? db : da)
  }
  return out
}

/** The product of static dims; symbolic as soon as one dim is (e.g. 'B*T'). */
function dimProduct (dims: readonly Dim[]): Dim {
  return dims.every(d => typeof d === 'number') ? (dims as number[]).reduce((p, d) => p * d, 1) : dims.join('*')
}

function reducedShape (shape: readonly Dim[], axes: number[], keepdims: boolean): Dim[] {
  const norm = new Set(axes.map(a => a < 0 ? shape.length + a : a))
  return keepdims ? shape.map((d, i) => norm.has(i) ? 1 : d) : shape.filter((_, i) => !norm.has(i))
}

function reshapeShape (input: readonly Dim[], shape: number[]): Dim[] {
  const out: Dim[] = shape.map((d, i) => d === 0 ? input[i] : d)
  const inferred = out.indexOf(-1)
  if (inferred < 0) return out
  // The inferred dim is what remains of the input once the known output dims are taken out:
  // a number when all dims are numbers, else a symbolic product such as 'B*T'.
  const known = out.filter((_, i) => i !== inferred)
  const remaining = [...input]
  for (const d of known) {
    const at = remaining.indexOf(d)
    if (at < 0) {
      out[inferred] = '?'
      return out
    }
    remaining.splice(at, 1)
  }
  out[inferred] = dimProduct(remaining)
  return out
}
