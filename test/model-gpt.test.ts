// The GPT as stage graphs and as one exported graph: layout, parameters, float64 gradient checks
// of whole stages and the whole model, causality, and stage chain vs export agreement.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type ort from 'onnxruntime-node'
import {
  buildInferenceGraph, buildStageGraphs, initParams, matmulFlops, modelParams, ModelConfigError, paramCount, paramSize, stageLayout, stageParams,
  type DType, type ModelConfig, type ParamSpec
} from '../node/model/index.js'
import { Graph } from '../node/model/graph.js'
import { block, head } from '../node/model/gpt.js'
import { finiteDifferenceError, floats, int64, opTypes, read, session, wave, type Feeds } from './model-support.js'

const tiny: ModelConfig = { vocabSize: 11, dModel: 8, nLayers: 3, nHeads: 2, seqLen: 5 }
const B = 2
const T = 5
const tokens = Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % tiny.vocabSize)
const targets = Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % tiny.vocabSize)

/** Parameter feeds from a flat array in spec order. */
function paramFeeds (dtype: DType, specs: ParamSpec[], flat: ArrayLike<number>): Feeds {
  const feeds: Feeds = {}
  let offset = 0
  for (const s of specs) {
    feeds[s.name] = floats(dtype, Array.from(flat).slice(offset, offset + paramSize(s)), s.shape)
    offset += paramSize(s)
  }
  return feeds
}

/** Initial values plus a deterministic perturbation, so LN gains and biases are not all 1 / 0. */
function perturbedParams (specs: ParamSpec[], seed: number): Float64Array {
  const flat = initParams(specs, seed, new Float64Array(paramCount(specs)))
  const noise = wave(flat.length, seed, 0.2)
  return flat.map((v, i) => v + noise[i])
}

test('stageLayout splits the blocks contiguously and evenly, and rejects bad splits', () => {
  const config = { ...tiny, nLayers: 7 }
  const layouts = [0, 1, 2].map(s => stageLayout(config, s, 3))
  assert.equal(layouts.map(l => [l.firstLayer, l.endLayer]), [[0, 3], [3, 5], [5, 7]])
  assert.equal(stageLayout(config, 0, 1), { stage: 0, nStages: 1, firstLayer: 0, endLayer: 7 })
  assert.throws(() => stageLayout(config, 0, 8), (e: unknown) => e instanceof RangeError)
  assert.throws(() => stageLayout(config, 0, 0), (e: unknown) => e instanceof RangeError)
  assert.throws(() => stageLayout(config, 3, 3), (e: unknown) => e instanceof RangeError)
  assert.throws(() => stageLayout({ ...tiny, nHeads: 3 }, 0, 1), (e: unknown) => e instanceof ModelConfigError)
  assert.throws(() => stageLayout({ ...tiny, seqLen: 0 }, 0, 1), (e: unknown) => e instanceof ModelConfigError)
  assert.throws(() => buildStageGraphs(config, { stage: 1, nStages: 3, firstLayer: 2, endLayer: 5 }), /owns blocks \[3, 5\)/)
})

test('stage params partition the model params; init depends only on seed and name', () => {
  const config = { ...tiny, nLayers: 4 }
  const all = modelParams(config)
  const split = [0, 1, 2].flatMap(s => stageParams(config, stageLayout(config, s, 3)))
  assert.equal(split.map(p => p.name), all.map(p => p.name))
  assert.is(new Set(all.map(p => p.name)).size, all.length)
  assert.equal(all.slice(0, 2).map(p => p.name), ['wte', 'wpe'])
  assert.equal(all.slice(-3).map(p => p.name), ['ln_f.weight', 'ln_f.bias', 'head.weight'])
  assert.is(paramCount(all), config.vocabSize * 8 * 2 + config.seqLen * 8 + 4 * (12 * 8 * 8 + 13 * 8) + 2 * 8)

  const whole = initParams(all, 5)
  const parts = [0, 1, 2].map(s => initParams(stageParams(config, stageLayout(config, s, 3)), 5))
  assert.equal(Array.from(whole), parts.flatMap(p => Array.from(p)))
  assert.not.equal(Array.from(initParams(all, 6)), Array.from(whole))

  // GPT-2 style: N(0, 0.02), residual projections scaled by 1/sqrt(2 nLayers), LN gains 1, biases 0.
  const big = { ...defaultish(), nLayers: 2 }
  const specs = stageParams(big, stageLayout(big, 0, 1))
  const values = initParams(specs, 1)
  const std = (name: string): number => {
    let offset = 0
    for (const s of specs) {
      if (s.name === name) {
        const v = values.subarray(offset, offset + paramSize(s))
        return Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length)
      }
      offset += paramSize(s)
    }
    throw new Error(name)
  }
  assert.ok(Math.abs(std('h.0.mlp.fc.weight') - 0.02) < 0.001)
  assert.ok(Math.abs(std('h.1.attn.proj.weight') - 0.01) < 0.001)
  assert.is(std('h.0.ln_1.weight'), 1)
  assert.is(std('h.0.mlp.fc.bias'), 0)
  assert.equal(specs.filter(s => s.decay).map(s => s.name), ['wte', 'h.0.attn.qkv.weight', 'h.0.attn.proj.weight', 'h.0.mlp.fc.weight', 'h.0.mlp.proj.weight',
    'h.1.attn.qkv.weight', 'h.1.attn.proj.weight', 'h.1.mlp.fc.weight', 'h.1.mlp.proj.weight', 'head.weight'])
  assert.throws(() => initParams(specs, 1, new Float32Array(3)), (e: unknown) => e instanceof RangeError)
})

function defaultish (): ModelConfig {
  return { vocabSize: 256, dModel: 64, nLayers: 2, nHeads: 4, seqLen: 32 }
}

/**
 * FD check of one stage in float64: the scalar is the loss on the last stage, else <gy, y>;
 * checked w.r.t. every parameter and, except on stage 0, the stage input.
 */
async function stageGradientError (config: ModelConfig, stage: number, nStages: number): Promise<{ error: number, name: string }> {
  const layout = stageLayout(config, stage, nStages)
  const graphs = buildStageGraphs(config, layout, 'float64')
  const forward = await session(graphs.forward)
  const backward = await session(graphs.backward)
  const first = stage === 0
  const last = stage === nStages - 1
  const d = config.dModel
  const feeds: Feeds = {
    x: first ? int64(tokens, [B, T]) : floats('float64', wave(B * T * d, 3), [B, T, d]),
    ...paramFeeds('float64', graphs.params, perturbedParams(graphs.params, stage + 1))
  }
  if (last) feeds.targets = int64(targets, [B, T])
  const gy = floats('float64', wave(B * T * d, 4), [B, T, d])
  const loss = async (f: Feeds): Promise<number> => {
    const out = await forward.run(f)
    return last ? read(out.loss)[0] : read(out.y).reduce((s, v, i) => s + v * (gy.data as Float64Array)[i], 0)
  }
  const out = await backward.run(last ? feeds : { ...feeds, gy })
  if (last) assert.ok(Math.abs(read(out.loss)[0] - await loss(feeds)) < 1e-12, 'backward reports the forward loss')
  const grads: Record<string, Float64Array> = {}
  if (!first) grads.x = read(out.gx)
  for (const p of graphs.params) grads[p.name] = read(out[`grad.${p.name}`])
  return await finiteDifferenceError(feeds, grads, loss, { directions: 2 })
}

test('FD check (float64) of the whole model as one stage: loss w.r.t. every parameter', async () => {
  const { error, name } = await stageGradientError({ ...tiny, nLayers: 2 }, 0, 1)
  assert.ok(error < 1e-5, `relative error ${error.toExponential(2)} on ${name}`)
})

test('FD check (float64) of each stage of a 3-stage split: first, middle (blocks only), last', async () => {
  for (const stage of [0, 1, 2]) {
    const { error, name } = await stageGradientError(tiny, stage, 3)
    assert.ok(error < 1e-5, `stage ${stage}: relative error ${error.toExponential(2)} on ${name}`)
  }
})

test('stage graph names follow the StageGraphs contract', async () => {
  const graphs = [0, 1, 2].map(s => buildStageGraphs(tiny, stageLayout(tiny, s, 3)))
  const names = await Promise.all(graphs.map(async g => {
    const [f, b] = await Promise.all([session(g.forward), session(g.backward)])
    return { fIn: f.inputNames, fOut: f.outputNames, bIn: b.inputNames, bOut: b.outputNames, params: g.params.map(p => p.name) }
  }))
  const grads = (p: string[]): string[] => p.map(n => `grad.${n}`)
  const [s0, s1, s2] = names
  assert.equal(s0.fIn, ['x', ...s0.params])
  assert.equal(s0.fOut, ['y'])
  assert.equal(s0.bIn, ['x', 'gy', ...s0.params])
  assert.equal(s0.bOut, grads(s0.params))
  assert.equal(s1.bIn, ['x', 'gy', ...s1.params])
  assert.equal(s1.bOut, ['gx', ...grads(s1.params)])
  assert.equal(s2.fIn, ['x', 'targets', ...s2.params])
  assert.equal(s2.fOut, ['loss'])
  assert.equal(s2.bIn, ['x', 'targets', ...s2.params])
  assert.equal(s2.bOut, ['gx', 'loss', ...grads(s2.params)])
  const single = buildStageGraphs(tiny, stageLayout(tiny, 0, 1))
  const b = await session(single.backward)
  assert.equal(b.inputNames, ['x', 'targets', ...single.params.map(p => p.name)])
  assert.equal(b.outputNames, ['loss', ...grads(single.params.map(p => p.name))])
})

test('no graph the model builds has a ScatterND node (onnxruntime 1.30 races its add on several threads)', () => {
  const models: Array<[string, Uint8Array]> = [['export', buildInferenceGraph(tiny).model]]
  for (const dtype of ['float32', 'float64'] as const) {
    for (const nStages of [1, 3]) {
      for (let s = 0; s < nStages; s++) {
        const g = buildStageGraphs(tiny, stageLayout(tiny, s, nStages), dtype)
        models.push([`${dtype} stage ${s}/${nStages} forward`, g.forward], [`${dtype} stage ${s}/${nStages} backward`, g.backward])
      }
    }
  }
  for (const [name, model] of models) {
    const ops = opTypes(model)
    assert.ok(ops.includes('Softmax'), `${name}: op types not read (${ops.join(' ')})`)
    assert.not.ok(ops.includes('ScatterND'), `${name} has a ScatterND node`)
  }
})

/** Logits of the exported graph for int tokens [b, t]. */
async function exportLogits (s: ort.InferenceSession, dtype: DType, flat: ArrayLike<number>, toks: number[], b: number, t: number, withParams = true): Promise<Float64Array> {
  const feeds: Feeds = { tokens: int64(toks, [b, t]) }
  const out = await s.run(withParams ? { ...feeds, ...paramFeeds(dtype, modelParams(tiny), flat) } : feeds)
  return read(out.logits)
}

test('causality: changing token t changes no logit before t, and some at or after t', async () => {
  const { model } = buildInferenceGraph(tiny, 'float64')
  const s = await session(model)
  const flat = perturbedParams(modelParams(tiny), 9)
  const base = await exportLogits(s, 'float64', flat, tokens, B, T)
  const V = tiny.vocabSize
  for (let t = 0; t < T; t++) {
    const changed = [...tokens]
    changed[t] = (changed[t] + 1) % V // batch row 0 only
    const logits = await exportLogits(s, 'float64', flat, changed, B, T)
    const before = Math.max(0, ...Array.from({ length: t * V }, (_, i) => Math.abs(logits[i] - base[i])))
    const after = Math.max(...Array.from({ length: (T - t) * V }, (_, i) => Math.abs(logits[t * V + i] - base[t * V + i])))
    const otherRow = Math.max(...Array.from({ length: T * V }, (_, i) => Math.abs(logits[T * V + i] - base[T * V + i])))
    assert.is(before, 0, `position ${t} leaked into earlier logits`)
    assert.is(otherRow, 0, 'batch rows are independent')
    assert.ok(after > 1e-6, `position ${t} has no effect`)
  }
})

test('causality of a stage graph: changing the input at position t changes no output before t', async () => {
  const graphs = buildStageGraphs(tiny, stageLayout(tiny, 1, 3), 'float64')
  const s = await session(graphs.forward)
  const d = tiny.dModel
  const params = paramFeeds('float64', graphs.params, perturbedParams(graphs.params, 2))
  const x = wave(B * T * d, 8)
  const y = async (input: number[]): Promise<Float64Array> => read((await s.run({ x: floats('float64', input, [B, T, d]), ...params })).y)
  const base = await y(x)
  for (let t = 0; t < T; t++) {
    const changed = x.map((v, i) => i >= t * d && i < (t + 1) * d ? v + 0.5 : v)
    const out = await y(changed)
    const diff = out.map((v, i) => Math.abs(v - base[i]))
    assert.is(Math.max(0, ...diff.subarray(0, t * d)), 0, `position ${t} leaked into earlier outputs`)
    assert.ok(Math.max(...diff.subarray(t * d, (t + 1) * d)) > 1e-3, `position ${t} has no effect`)
  }
})

test('chained float32 stage graphs, the single-stage graph and the exported model agree (1e-5)', async () => {
  const dtype = 'float32'
  const specs = modelParams(tiny)
  const flat = perturbedParams(specs, 3)
  const all = paramFeeds(dtype, specs, flat)
  const pick = (params: ParamSpec[]): Feeds => Object.fromEntries(params.map(p => [p.name, all[p.name]]))

  // Stage chain: y of each stage feeds the next; the last stage reports the loss.
  let x: ort.Tensor = int64(tokens, [B, T])
  let loss = NaN
  let lastInput = x
  const nStages = 3
  for (let s = 0; s < nStages; s++) {
    const graphs = buildStageGraphs(tiny, stageLayout(tiny, s, nStages), dtype)
    const out = await (await session(graphs.forward)).run({ x, ...pick(graphs.params), ...(s === nStages - 1 ? { targets: int64(targets, [B, T]) } : {}) })
    if (s === nStages - 1) loss = read(out.loss)[0]
    else x = lastInput = out.y
  }
  // The last stage's logits: its blocks and head on its input, from the same model code and the
  // same (fast, non-portable) ops as its stage graph.
  const last = stageLayout(tiny, nStages - 1, nStages)
  const lastSpecs = stageParams(tiny, last)
  const g = new Graph(dtype)
  const params = new Map(lastSpecs.map(p => [p.name, g.input(p.name, p.shape)]))
  let h = g.input('x', ['B', 'T', tiny.dModel])
  for (let l = last.firstLayer; l < last.endLayer; l++) h = block(g, tiny, params, h, l)
  g.output(head(g, params, h), 'logits')
  const chained = read((await (await session(g.toModel())).run({ x: lastInput, ...pick(lastSpecs) })).logits)

  const exported = buildInferenceGraph(tiny, dtype)
  const viaInputs = await exportLogits(await session(exported.model), dtype, flat, tokens, B, T)
  const weights = new Map(specs.map(p => [p.name, all[p.name].data as Float32Array]))
  const standalone = buildInferenceGraph(tiny, dtype, weights)
  const baked = await exportLogits(await session(standalone.model), dtype, flat, tokens, B, T, false)

  const maxDiff = (a: Float64Array, b: Float64Array): number => Math.max(...a.map((v, i) => Math.abs(v - b[i])))
  assert.ok(maxDiff(chained, viaInputs) < 1e-5, `chain vs export: ${maxDiff(chained, viaInputs)}`)
  assert.ok(maxDiff(viaInputs, baked) === 0, 'embedded weights give the same logits')

  // The chain's loss is the mean cross-entropy of the exported logits.
  const V = tiny.vocabSize
  let ce = 0
  for (let i = 0; i < B * T; i++) {
    const row = viaInputs.subarray(i * V, (i + 1) * V)
    const max = Math.max(...row)
    ce += Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) + max - row[targets[i]]
  }
  assert.ok(Math.abs(ce / (B * T) - loss) < 1e-5, `loss ${loss} vs ${ce / (B * T)}`)

  // The export is self-contained standard ONNX: no com.microsoft kernels, weights inside.
  assert.not.ok(Buffer.from(standalone.model).includes('com.microsoft'))
  assert.equal((await session(standalone.model)).inputNames, ['tokens'])
  assert.throws(() => buildInferenceGraph(tiny, dtype, new Map([...weights].slice(1))), /wte/)
})

test('float32 stage gradients match float64 ones; any B and T <= seqLen work', async () => {
  const layout = stageLayout(tiny, 0, 1)
  const specs = stageParams(tiny, layout)
  const flat = perturbedParams(specs, 4)
  const run = async (dtype: DType, b: number, t: number): Promise<Record<string, Float64Array>> => {
    const graphs = buildStageGraphs(tiny, layout, dtype)
    const out = await (await session(graphs.backward)).run({
      x: int64(tokens.slice(0, b * t), [b, t]), targets: int64(targets.slice(0, b * t), [b, t]), ...paramFeeds(dtype, specs, flat)
    })
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, read(v)]))
  }
  for (const [b, t] of [[2, 5], [1, 3]]) {
    const [f32, f64] = await Promise.all([run('float32', b, t), run('float64', b, t)])
    for (const name of Object.keys(f64)) {
      const norm = Math.sqrt(f64[name].reduce((s, v) => s + v * v, 0))
      const diff = Math.sqrt(f64[name].reduce((s, v, i) => s + (v - f32[name][i]) ** 2, 0))
      assert.ok(diff <= 1e-4 * norm + 1e-7, `${name} at B=${b}, T=${t}: ${diff} vs norm ${norm}`)
    }
  }
})

test('matmulFlops counts the products of a stage', () => {
  const config: ModelConfig = { vocabSize: 256, dModel: 256, nLayers: 2, nHeads: 4, seqLen: 128 }
  const d = 256
  const tokensN = 8 * 128
  const block = 2 * tokensN * (d * 3 * d + d * d + 2 * d * 4 * d) + 2 * 2 * 8 * 4 * 128 * 128 * (d / 4)
  assert.is(matmulFlops(config, 8, 128, stageLayout(config, 0, 2)), block)
  assert.is(matmulFlops(config, 8, 128, stageLayout(config, 1, 2)), block + 2 * tokensN * d * 256)
})

test.run()
