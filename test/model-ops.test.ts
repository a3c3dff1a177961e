// Finite-difference checks (float64) of every autodiff rule, one small graph per case.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { gradients, rules } from '../node/model/autodiff.js'
import { Graph, type Tensor } from '../node/model/graph.js'
import { finiteDifferenceError, floats, int64, read, session, wave, type Feeds } from './model-support.js'

interface InputSpec { shape: number[], ints?: number[] }
type Build = (g: Graph, xs: Tensor[]) => Tensor | Tensor[]

/** Builds `build` as forward and backward graphs; returns the worst FD relative error over float inputs. */
async function ruleError (inputs: InputSpec[], build: Build): Promise<{ error: number, name: string }> {
  const graph = (withBackward: boolean): Uint8Array => {
    const g = new Graph('float64')
    const xs = inputs.map((s, i) => g.input(`in${i}`, s.shape, s.ints === undefined ? 'float' : 'int64'))
    const outs = [build(g, xs)].flat()
    if (!withBackward) {
      outs.forEach((o, k) => g.output(o, `out${k}`))
      return g.toModel()
    }
    const seeds = outs.map((o, k): [Tensor, Tensor] => [o, g.input(`w${k}`, [...o.shape], 'float', false)])
    const grads = gradients(g, seeds, xs)
    xs.forEach((x, i) => { if (inputs[i].ints === undefined) g.output(grads[i] ?? g.zerosLike(x), `grad${i}`) })
    return g.toModel()
  }
  const forward = await session(graph(false))
  const backward = await session(graph(true))
  const feeds: Feeds = {}
  inputs.forEach((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1)
    feeds[`in${i}`] = s.ints === undefined ? floats('float64', wave(n, i), s.shape) : int64(s.ints, s.shape)
  })
  // The scalar being differentiated: sum_k <w_k, out_k> with fixed weights w_k.
  const outs = await forward.run(feeds)
  const weights: Feeds = {}
  forward.outputNames.forEach((name, k) => {
    const dims = outs[name].dims as number[]
    weights[`w${k}`] = floats('float64', wave(dims.reduce((a, b) => a * b, 1), 100 + k), dims)
  })
  const loss = async (f: Feeds): Promise<number> => {
    const o = await forward.run(f)
    return forward.outputNames.reduce((s, name, k) => s + read(o[name]).reduce((t, v, j) => t + v * (weights[`w${k}`].data as Float64Array)[j], 0), 0)
  }
  const g = await backward.run({ ...feeds, ...weights })
  const grads: Record<string, Float64Array> = {}
  inputs.forEach((s, i) => { if (s.ints === undefined) grads[`in${i}`] = read(g[`grad${i}`]) })
  return await finiteDifferenceError(feeds, grads, loss)
}

const cases: Array<[string, InputSpec[], Build]> = [
  ['matmul 2-D', [{ shape: [3, 4] }, { shape: [4, 5] }], (g, [a, b]) => g.matmul(a, b)],
  ['matmul transA', [{ shape: [4, 3] }, { shape: [4, 5] }], (g, [a, b]) => g.matmul(a, b, { transA: true })],
  ['matmul transB alpha', [{ shape: [3, 4] }, { shape: [5, 4] }], (g, [a, b]) => g.matmul(a, b, { transB: true, alpha: 0.37 })],
  ['matmul transA transB', [{ shape: [4, 3] }, { shape: [5, 4] }], (g, [a, b]) => g.matmul(a, b, { transA: true, transB: true })],
  ['matmul batched 4-D transB', [{ shape: [2, 2, 3, 4] }, { shape: [2, 2, 5, 4] }], (g, [a, b]) => g.matmul(a, b, { transB: true, alpha: 0.5 })],
  ['matmul batched by 2-D', [{ shape: [2, 3, 4] }, { shape: [4, 5] }], (g, [a, b]) => g.matmul(a, b)],
  ['matmul batched by 2-D transB', [{ shape: [2, 3, 4] }, { shape: [5, 4] }], (g, [a, b]) => g.matmul(a, b, { transB: true })],
  ['add same shape', [{ shape: [2, 3] }, { shape: [2, 3] }], (g, [a, b]) => g.add(a, b)],
  ['add broadcast leading', [{ shape: [2, 3, 4] }, { shape: [4] }], (g, [a, b]) => g.add(a, b)],
  ['add broadcast size-1 axis', [{ shape: [2, 1, 4] }, { shape: [2, 3, 4] }], (g, [a, b]) => g.add(a, b)],
  ['sub broadcast', [{ shape: [3, 1] }, { shape: [2, 3, 4] }], (g, [a, b]) => g.sub(a, b)],
  ['mul broadcast', [{ shape: [2, 3, 4] }, { shape: [3, 1] }], (g, [a, b]) => g.mul(a, b)],
  ['a tensor used twice', [{ shape: [2, 3] }], (g, [a]) => g.mul(g.add(a, a), a)],
  ['reshape', [{ shape: [2, 3, 4] }], (g, [a]) => g.mul(g.reshape(a, [0, -1]), g.constant(wave(12, 5), [12]))],
  ['transpose', [{ shape: [2, 3, 4] }], (g, [a]) => g.transpose(a, [1, 2, 0])],
  ['split with an unused part', [{ shape: [2, 6] }], (g, [a]) => g.split(a, 1, [1, 2, 3]).filter((_, i) => i !== 1)],
  ['concat', [{ shape: [2, 2] }, { shape: [2, 3] }], (g, [a, b]) => g.concat([a, b, a], 1)],
  ['layerNorm', [{ shape: [2, 3, 5] }, { shape: [5] }, { shape: [5] }], (g, [x, w, b]) => g.layerNorm(x, w, b)],
  ['causalSoftmax', [{ shape: [2, 2, 4, 4] }], (g, [s]) => g.causalSoftmax(g.mul(s, g.constant(3)), 6)],
  ['gelu', [{ shape: [4, 9] }], (g, [x]) => g.gelu(g.mul(x, g.constant(4)))],
  ['gather with repeated indices', [{ shape: [5, 3] }, { shape: [2, 4], ints: [0, 3, 3, 1, 4, 0, 0, 2] }], (g, [t, i]) => g.gather(t, i)],
  ['gather with negative indices', [{ shape: [4, 3] }, { shape: [5], ints: [-1, 3, 0, -4, 2] }], (g, [t, i]) => g.gather(t, i)],
  ['gather from a 3-D table', [{ shape: [4, 2, 3] }, { shape: [3, 2], ints: [1, 1, 3, 0, 1, 2] }], (g, [t, i]) => g.gather(t, i)],
  ['gather by a scalar index', [{ shape: [4, 3] }, { shape: [], ints: [2] }], (g, [t, i]) => g.gather(t, i)],
  ['crossEntropy', [{ shape: [6, 5] }, { shape: [6], ints: [0, 4, 2, 2, 1, 3] }], (g, [l, t]) => g.crossEntropy(g.mul(l, g.constant(2)), t)]
]

for (const [name, inputs, build] of cases) {
  test(`FD check (float64): ${name}`, async () => {
    const { error, name: input } = await ruleError(inputs, build)
    assert.ok(error < 1e-5, `relative error ${error.toExponential(2)} on ${input}`)
  })
}

test('every op type has a rule and a case above', () => {
  const covered = new Set<string>()
  for (const [, inputs, build] of cases) {
    const g = new Graph('float64')
    build(g, inputs.map((s, i) => g.input(`in${i}`, s.shape, s.ints === undefined ? 'float' : 'int64')))
    for (const entry of g.tape) covered.add(entry.op)
  }
  assert.equal([...covered].sort(), Object.keys(rules).sort())
})

test('a graph checks its inputs: matmul rank, unsupported transposed batching', () => {
  const g = new Graph('float32')
  assert.throws(() => g.matmul(g.input('v', [3]), g.input('m', [3, 3])), /rank/)
  assert.throws(() => g.matmul(g.input('a', [2, 3, 4]), g.input('b', [3, 5]), { transA: true }), /transA/)
})

test('the gather gradient refuses out-of-range indices, as the forward Gather does', async () => {
  const g = new Graph('float32')
  const table = g.input('table', [5, 2])
  const indices = g.input('indices', [2], 'int64')
  const [grad] = gradients(g, [[g.gather(table, indices), g.input('gy', [2, 2], 'float', false)]], [table])
  g.output(grad as Tensor, 'grad') // the forward Gather is pruned: only the gradient sees the indices
  const s = await session(g.toModel())
  const run = async (ids: number[]): Promise<number[]> => Array.from(read((await s.run({ table: floats('float32', new Array(10).fill(0), [5, 2]), indices: int64(ids, [2]), gy: floats('float32', [1, 2, 3, 4], [2, 2]) })).grad))
  assert.equal(await run([4, -1]), [0, 0, 0, 0, 0, 0, 0, 0, 4, 6])
  for (const bad of [[5, 0], [0, -6]]) {
    try {
      await run(bad)
      assert.unreachable(`indices ${bad.join(', ')} accepted`)
    } catch (err) {
      assert.match((err as Error).message, /out of data bounds/)
    }
  }
})

test('gradients ignore inputs that need none and tensors off the path', async () => {
  const g = new Graph('float64')
  const a = g.input('a', [2])
  const frozen = g.input('frozen', [2], 'float', false)
  const y = g.mul(a, frozen)
  const [ga, gf] = gradients(g, [[y, g.constant([1, 1])]], [a, frozen])
  assert.ok(ga !== undefined)
  assert.is(gf, undefined)
  g.output(ga, 'ga')
  const out = await (await session(g.toModel())).run({ a: floats('float64', [1, 2], [2]), frozen: floats('float64', [3, 4], [2]) })
  assert.equal(Array.from(read(out.ga)), [3, 4])
})

test.run()
