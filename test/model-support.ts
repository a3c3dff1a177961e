// Helpers shared by the model tests: onnxruntime sessions, deterministic data, and a
// finite-difference check of a forward graph against its backward graph.
import ort from 'onnxruntime-node'
import type { DType } from '../node/model/index.js'
import { fields } from '../node/runtime/onnx-info.js'

export type Floats = Float32Array | Float64Array
export type Feeds = Record<string, ort.Tensor>

export async function session (model: Uint8Array, threads = 1): Promise<ort.InferenceSession> {
  return await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    extra: { session: { intra_op: { allow_spinning: '0' } } }
  })
}

export function floats (dtype: DType, values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor(dtype, dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values), dims)
}

export function int64 (values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(values), v => BigInt(v)), dims)
}

/** Deterministic, varied values in about [-scale, scale]. */
export function wave (n: number, seed: number, scale = 1): number[] {
  return Array.from({ length: n }, (_, i) => scale * Math.sin(1 + i * 0.731 + seed * 2.17) * Math.cos(i * 0.177 + seed))
}

export function read (t: ort.Tensor): Float64Array {
  return Float64Array.from(t.data as Floats)
}

/**
 * Checks analytic gradients against central differences, in float64.
 * `loss(feeds)` evaluates the scalar the gradients belong to; `grads` maps each checked input
 * name to its analytic gradient. For each input, the derivatives along `directions` random
 * directions (or along every element, for small inputs) form a vector; returns the worst
 * relative error ||fd - analytic|| / ||analytic|| over the inputs, with its input's name.
 */
export async function finiteDifferenceError (
  feeds: Feeds,
  grads: Record<string, Float64Array>,
  loss: (feeds: Feeds) => Promise<number>,
  { eps = 1e-6, directions = 3, elementwiseUpTo = 48 } = {}
): Promise<{ error: number, name: string }> {
  let worst = { error: 0, name: '' }
  for (const [name, analytic] of Object.entries(grads)) {
    const base = feeds[name].data as Float64Array
    const dirs: Float64Array[] = []
    if (base.length <= elementwiseUpTo) {
      for (let i = 0; i < base.length; i++) dirs.push(Float64Array.from(base, (_, j) => j === i ? 1 : 0))
    } else {
      for (let k = 0; k < directions; k++) dirs.push(Float64Array.from(wave(base.length, 17 + k)))
    }
    let diff = 0
    let norm = 0
    for (const dir of dirs) {
      const shifted = async (sign: number): Promise<number> => await loss({
        ...feeds,
        [name]: new ort.Tensor('float64', Float64Array.from(base, (v, j) => v + sign * eps * dir[j]), feeds[name].dims as number[])
      })
      const fd = (await shifted(1) - await shifted(-1)) / (2 * eps)
      const an = analytic.reduce((s, g, j) => s + g * dir[j], 0)
      diff += (fd - an) ** 2
      norm += an ** 2
    }
    const error = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-12)
    if (error > worst.error || worst.name === '') worst = { error, name }
  }
  return worst
}

/** The op types of an encoded ONNX model's nodes, in order (ModelProto.graph.node[].op_type). */
export function opTypes (model: Uint8Array): string[] {
  const sub = (buf: Uint8Array, field: number): Uint8Array[] => fields(buf).flatMap(f => f.field === field && f.bytes !== undefined ? [f.bytes] : [])
  return sub(model, 7).flatMap(graph => sub(graph, 1)).flatMap(node => sub(node, 4)).map(b => new TextDecoder().decode(b))
}
