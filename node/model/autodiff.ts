// Reverse-mode autodiff over the Graph's tape: one vector-Jacobian rule per op, each emitting
// ordinary ONNX nodes (onnxruntime has no gradient kernels). A rule receives the op's inputs,
// outputs, attributes and the gradients of its outputs, and returns one gradient per input
// (undefined where an input has none, e.g. integer indices). Unused gradients cost nothing:
// Graph.toModel prunes whatever no output depends on.
import { geluC, geluK, type Graph, type MatMulAttrs, type OpType, type TapeEntry, type Tensor } from './graph.js'

export interface RuleContext extends TapeEntry {
  g: Graph
  /** The gradient of each output (zeros where an output has no consumer). */
  grads: Tensor[]
}

type Rule = (ctx: RuleContext) => Array<Tensor | undefined>

export const rules: Record<OpType, Rule> = {
  matmul: ({ g, inputs: [a, b], grads: [gc], attrs }) => matmulGrads(g, a, b, gc, attrs as unknown as MatMulAttrs),
  add: ({ g, inputs: [a, b], grads: [gy] }) => [unbroadcast(g, gy, a), unbroadcast(g, gy, b)],
  sub: ({ g, inputs: [a, b], grads: [gy] }) => [unbroadcast(g, gy, a), unbroadcast(g, g.unary('Neg', gy), b)],
  mul: ({ g, inputs: [a, b], grads: [gy] }) => [unbroadcast(g, g.mul(gy, b), a), unbroadcast(g, g.mul(gy, a), b)],
  reshape: ({ g, inputs: [a], grads: [gy] }) => [g.reshapeTo(gy, g.shapeOf(a), a.shape)],
  transpose: ({ g, grads: [gy], attrs }) => [g.transpose(gy, inversePermutation(attrs.perm as number[]))],
  split: ({ g, grads, attrs }) => [g.concat(grads, attrs.axis as number)],
  concat: ({ g, grads: [gy], attrs }) => g.split(gy, attrs.axis as number, attrs.sizes as number[]),
  // y = xhat * gamma + beta with xhat = (x - mean) * invStd:
  // dx = invStd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma.
  layerNorm: ({ g, inputs: [x, gamma, beta], grads: [gy], saved }) => {
    const xhat = saved.xhat ?? g.mul(g.sub(x, saved.mean), saved.invStd)
    const gxhat = g.mul(gy, gamma)
    const centered = g.sub(gxhat, g.reduceMean(gxhat, [-1], true))
    const gx = g.mul(g.sub(centered, g.mul(xhat, g.reduceMean(g.mul(gxhat, xhat), [-1], true))), saved.invStd)
    return [gx, unbroadcast(g, g.mul(gy, xhat), gamma), unbroadcast(g, gy, beta)]
  },
  // Masked entries have y = 0, so they get no gradient: dx = y * (dy - sum(dy * y)).
  causalSoftmax: ({ g, outputs: [y], grads: [gy] }) => [g.mul(y, g.sub(gy, g.reduceSum(g.mul(gy, y), [-1], true)))],
  // gelu = 0.5 x (1 + tanh u) = x s with s = sigmoid(2u), u = c (x + k x^3), so
  // gelu' = s + x s (1 - s) 2u' with 2u' = 2c (1 + 3k x^2): fewer passes than the tanh form.
  gelu: ({ g, inputs: [x], grads: [gy] }) => {
    const x2 = g.mul(x, x)
    const s = g.unary('Sigmoid', g.mul(x, g.add(g.mul(x2, g.constant(2 * geluC * geluK)), g.constant(2 * geluC))))
    const xdu = g.mul(x, g.add(g.mul(x2, g.constant(6 * geluC * geluK)), g.constant(2 * geluC)))
    return [g.mul(gy, g.add(s, g.mul(g.mul(s, g.sub(g.constant(1), s)), xdu)))]
  },
  // dtable = onehot(indices)^T @ dy, as a product (see gatherGrad).
  gather: ({ g, inputs: [table, indices], grads: [gy] }) => [gatherGrad(g, table, indices, gy), undefined],
  // loss = mean_i -log softmax(logits_i)[t_i]: dlogits = (softmax - onehot(t)) * dloss / N.
  // One scatter-add per row, never two to one element, so onnxruntime's race on repeated
  // indices (see gatherGrad) cannot bite.
  crossEntropy: ({ g, inputs: [logits, targets], grads: [gloss], saved }) => {
    const column = g.unsqueeze(targets, 1)
    const minusOne = g.fill(g.shapeOf(column), column.shape, -1)
    const residual = g.scatterElementsAdd(g.unary('Exp', saved.logProb), column, minusOne)
    return [g.mul(residual, g.binary('Div', gloss, g.dimAsFloat(logits, 0))), undefined]
  }
}

/**
 * For C = alpha op(A) op(B): dA and dB are again (transposed) products with dC. When B is 2-D
 * and A batched, dB sums over the batch, done as one product of A and dC flattened to 2-D.
 */
function matmulGrads (g: Graph, a: Tensor, b: Tensor, gc: Tensor, { transA, transB, alpha }: MatMulAttrs): Tensor[] {
  const mm = (x: Tensor, y: Tensor, tx: boolean, ty: boolean): Tensor => g.matmul(x, y, { transA: tx, transB: ty, alpha })
  const ga = transA
    ? mm(b, gc, transB, true)
    : mm(gc, b, false, !transB)
  let a2 = a
  let gc2 = gc
  if (b.shape.length === 2 && a.shape.length > 2) {
    const [k, n] = [a.shape[a.shape.length - 1], gc.shape[gc.shape.length - 1]]
    if (typeof k !== 'number' || typeof n !== 'number') throw new RangeError('matmul gradient: a batched a against a 2-D b needs static inner dims')
    a2 = g.reshape(a, [-1, k])
    gc2 = g.reshape(gc, [-1, n])
  }
  const gb = transB
    ? mm(gc2, a2, true, transA)
    : mm(a2, gc2, !transA, false)
  return [ga, gb]
}

/**
 * The rows of `table` picked by `indices` (any shape) collect their gradients, summed where an
 * index repeats: dtable = onehot(indices)^T @ dy with both flattened to [N, V] and [N, D]. One
 * deterministic product (cheap at a small vocabulary), not a ScatterND add: onnxruntime 1.30
 * runs that with a race on several threads, so adds to a repeated row get lost.
 */
function gatherGrad (g: Graph, table: Tensor, indices: Tensor, gy: Tensor): Tensor {
  const r = indices.shape.length
  const grad = g.matmul(g.flatten(g.oneHot(indices, table), r), g.flatten(gy, r), { transA: true })
  return table.shape.length === 2 ? grad : g.reshapeTo(grad, g.shapeOf(table), table.shape)
}

/** Sums a broadcast gradient back to `target`'s shape (over leading axes and size-1 axes). */
function unbroadcast (g: Graph, grad: Tensor, target: Tensor): Tensor {
  const extra = grad.shape.length - target.shape.length
  let out = extra > 0 ? g.reduceSum(grad, Array.from({ length: extra }, (_, i) => i), false) : grad
  const ones = target.shape.flatMap((d, i) => d === 1 && out.shape[i] !== 1 ? [i] : [])
  if (ones.length > 0) out = g.reduceSum(out, ones, true)
  return out
}

function inversePermutation (perm: number[]): number[] {
  const inv = new Array<number>(perm.length)
  perm.forEach((p, i) => { inv[p] = i })
  return inv
}

/**
 * Emits the backward pass: given seed gradients for some tensors (e.g. dloss = 1, or dy from
 * the next stage), returns the gradient of each tensor in `wrt` (undefined if it has none).
 */
export function gradients (g: Graph, seeds: Array<[Tensor, Tensor]>, wrt: Tensor[]): Array<Tensor | undefined> {
  const grads = new Map<string, Tensor>(seeds.map(([t, seed]) => [t.name, seed]))
  g.withoutTape(() => {
    for (let i = g.tape.length - 1; i >= 0; i--) {
      const entry = g.tape[i]
      if (!entry.outputs.some(o => grads.has(o.name))) continue
      const outGrads = entry.outputs.map(o => grads.get(o.name) ?? g.zerosLike(o))
      const inGrads = rules[entry.op]({ ...entry, g, grads: outGrads })
      entry.inputs.forEach((input, k) => {
        const grad = inGrads[k]
        if (grad === undefined || !g.requiresGrad(input)) return
        const previous = grads.get(input.name)
        grads.set(input.name, previous === undefined ? grad : g.add(previous, grad))
      })
    }
  })
  return wrt.map(t => grads.get(t.name))
}
