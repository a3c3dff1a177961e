import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { buildStageGraphs, initParams, stageLayout, type ModelConfig } from '../node/model/index.js'
import { evaluateMicrobatch, trainMicrobatch } from '../node/pipeline/chain.js'
import { BatchSampler } from '../node/data/sampler.js'
import { encode } from '../node/data/tokenizer.js'
import { defaultOptimizerConfig } from '../node/runtime/optimizer-config.js'
import { StageEngine } from '../node/runtime/stage-engine.js'
import { TensorError } from '../node/runtime/tensor.js'
import { floats, int64, read, session, type Feeds } from './model-support.js'

const model: ModelConfig = { vocabSize: 256, dModel: 32, nLayers: 2, nHeads: 2, seqLen: 16 }
const optimizer = { ...defaultOptimizerConfig, warmupSteps: 0, lr: 1e-2 }
const text = encode('It was the best of times, it was the worst of times, it was the age of wisdom. '.repeat(20))

function engines (nStages: number, weightVersions = 1): Promise<StageEngine[]> {
  return Promise.all(Array.from({ length: nStages }, (_, s) => StageEngine.create({ model, layout: stageLayout(model, s, nStages), optimizer, seed: 3, threads: 1, weightVersions })))
}

async function trainStep (stages: StageEngine[], batch: ReturnType<BatchSampler['next']>): Promise<number> {
  const loss = await trainMicrobatch(stages, batch)
  const squares = await Promise.all(stages.map(e => e.gradNormSquared()))
  const norm = Math.sqrt(squares.reduce((a, b) => a + b, 0))
  for (const e of stages) await e.step(norm)
  return loss
}

function maxDiff (a: Float32Array, b: Float32Array): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

/** The engines' weights in the whole model's layout (stages lay their parameters out on their own). */
function wholeWeights (whole: StageEngine, parts: StageEngine[]): Float32Array {
  const out = new Float32Array(whole.params.size)
  for (const e of parts) for (const slot of e.params.slots) out.set(e.params.view(e.weights, slot), whole.params.slot(slot.name)!.offset)
  return out
}

test('two chained stages compute what one whole-model stage computes', async () => {
  const one = await engines(1)
  const two = await engines(2)
  try {
    // Same seed, so the same initial parameters whatever the split.
    assert.ok(Buffer.from(wholeWeights(one[0], two).buffer).equals(Buffer.from(one[0].weights.slice().buffer)), 'the split changed the initial parameters')
    const a = new BatchSampler(text, 16, 4, 1)
    const b = new BatchSampler(text, 16, 4, 1)
    for (let i = 0; i < 3; i++) {
      const l1 = await trainStep(one, a.next())
      const l2 = await trainStep(two, b.next())
      assert.ok(Math.abs(l1 - l2) < 1e-4, `step ${i}: loss ${l1} vs ${l2}`)
    }
    const w1 = one[0].weights
    const w2 = wholeWeights(one[0], two)
    let maxDiff = 0
    for (let i = 0; i < w1.length; i++) maxDiff = Math.max(maxDiff, Math.abs(w1[i] - w2[i]))
    assert.ok(maxDiff < 1e-4, `weights differ by ${maxDiff}`)
    assert.ok(one[0].steps === 3 && two[1].steps === 3)
  } finally {
    await Promise.all([...one, ...two].map(e => e.close()))
  }
})

test('a backward recomputes with the weights its forward ran on, two steps later', async () => {
  // `pipe` steps twice between a microbatch's forward and its backward; `still` never steps.
  const [pipe, last] = await engines(2, 3)
  const reference = await engines(2)
  const still = reference[0]
  try {
    const sampler = new BatchSampler(text, 16, 4, 5)
    const batch = sampler.next()
    const { y, version } = await pipe.forwardAt(batch.x)
    const { gx: gy } = await last.lossBackward(y, batch.targets)
    for (let i = 0; i < 2; i++) {
      const other = sampler.next()
      const { gx } = await last.lossBackward(await pipe.forward(other.x), other.targets)
      await pipe.backward(other.x, gx!)
      await pipe.step()
    }
    assert.is(pipe.weightsVersion.version, version.version + 2)
    assert.ok(maxDiff(pipe.weights, still.weights) > 1e-4, 'the weights moved on')

    const ran = await pipe.backwardAt(batch.x, gy!, version)
    assert.equal(ran.version, version, 'it ran on the stashed version')
    await still.backward(batch.x, gy!)
    const diff = maxDiff(await pipe.gradients(), await still.gradients())
    assert.ok(diff === 0, `the gradient is the one at the forward's weights (differs by ${diff})`)

    // Without the version it recomputes on today's weights: another gradient (what the stash prevents).
    const fresh = await pipe.backwardAt(batch.x, gy!)
    assert.equal(fresh.version, pipe.weightsVersion)
    const twice = await pipe.gradients()
    const stale = await still.gradients()
    assert.ok(twice.some((g, i) => Math.abs(g - 2 * stale[i]) > 1e-4), 'current weights give a different gradient')

    // A version of another engine (a restarted server) is never taken for one of ours.
    assert.equal((await pipe.backwardAt(batch.x, gy!, { epoch: pipe.epoch + 1, version: version.version })).version, pipe.weightsVersion)
  } finally {
    await Promise.all([pipe, last, ...reference].map(e => e.close()))
  }
})

test('the stash keeps the newest versions only', async () => {
  const [first, last] = await engines(2, 2)
  try {
    const sampler = new BatchSampler(text, 16, 4, 6)
    const batch = sampler.next()
    const { version } = await first.forwardAt(batch.x)
    for (let i = 0; i < 2; i++) {
      const other = sampler.next()
      const { gx } = await last.lossBackward(await first.forward(other.x), other.targets)
      await first.backward(other.x, gx!)
      await first.step()
    }
    const { gx: gy } = await last.lossBackward(await first.forward(batch.x), batch.targets)
    assert.equal((await first.backwardAt(batch.x, gy!, version)).version, first.weightsVersion, 'two steps later, a 2-version stash no longer has it')
  } finally {
    await Promise.all([first, last].map(e => e.close()))
  }
})

test('training lowers the loss; evaluation accumulates nothing', async () => {
  const stages = await engines(2)
  try {
    const sampler = new BatchSampler(text, 16, 8, 2)
    const probe = sampler.next()
    const before = await evaluateMicrobatch(stages, probe)
    assert.ok(Math.abs(before - Math.log(256)) < 0.3, `initial loss ${before}`)
    assert.is(stages[0].accumulatedTokens, 0)
    for (let i = 0; i < 30; i++) await trainStep(stages, sampler.next())
    const after = await evaluateMicrobatch(stages, probe)
    assert.ok(after < before - 1.5, `loss ${before} -> ${after}`)
    await trainMicrobatch(stages, probe)
    assert.is(stages[1].accumulatedTokens, 8 * 16)
    await assert.not.throws(async () => await stages[0].step())
  } finally {
    await Promise.all(stages.map(e => e.close()))
  }
})

test('weights changed between calls are used by the next call; state loads back', async () => {
  const [engine] = await engines(1)
  try {
    const batch = new BatchSampler(text, 16, 2, 5).next()
    const saved = engine.weights.slice()
    await engine.updateWeights(w => w.fill(0))
    // All-zero weights give zero logits: the loss is exactly ln(256).
    assert.ok(Math.abs(await engine.loss(batch.x, batch.targets) - Math.log(256)) < 1e-5)
    const state = { step: 7, m: new Float32Array(saved.length).fill(0.5), v: new Float32Array(saved.length).fill(0.25) }
    await engine.loadState(saved, state)
    const back = await engine.snapshot()
    assert.equal(back, { ...state, weights: saved })
    assert.is(engine.steps, 7)
    assert.ok(Math.abs(await engine.loss(batch.x, batch.targets) - Math.log(256)) > 1e-3)
  } finally {
    await engine.close()
  }
})

test('an averaging round\'s snapshot and apply go ahead of queued calls; a backward\'s tokens stay with its run', async () => {
  const [engine] = await engines(1)
  try {
    const sampler = new BatchSampler(text, 16, 2, 7)
    const order: string[] = []
    const trained: number[] = []
    engine.addEventListener('trained', event => { trained.push((event as CustomEvent<number>).detail) })
    const runs = Array.from({ length: 4 }, async (_, i) => {
      const batch = sampler.next()
      await engine.lossBackward(batch.x, batch.targets)
      order.push(`run ${i}`)
    })
    const into = new Float32Array(engine.weights.length)
    const snapshot = engine.weightsSnapshot(into).then(s => { order.push('snapshot'); return s })
    const apply = engine.updateWeights(() => { order.push('apply') })
    await Promise.all([...runs, snapshot, apply])
    // All were queued in one turn, the runs first.
    assert.equal(order, ['snapshot', 'apply', 'run 0', 'run 1', 'run 2', 'run 3'])
    assert.is((await snapshot).weights, into, 'the snapshot went into the buffer given')
    assert.ok(into.some(x => x !== 0))
    assert.throws(() => { void engine.weightsSnapshot(new Float32Array(3)) }, /does not fit/)
    assert.is(engine.accumulatedTokens, 4 * 2 * 16, 'every run\'s tokens counted once')
    assert.equal(trained, [2 * 16, 2 * 16, 2 * 16, 2 * 16], 'one trained event per backward, with its tokens')
  } finally {
    await engine.close()
  }
})

// onnxruntime 1.30's ScatterND with reduction 'add' loses adds to a repeated index on several
// threads (it once kept 148,661 of 200,000); the embedding gradients must not depend on it.
const wide: ModelConfig = { vocabSize: 256, dModel: 64, nLayers: 2, nHeads: 2, seqLen: 128 }

test('stage 0 embedding gradients on 2 threads: every add to a repeated token lands', async () => {
  const graphs = buildStageGraphs(wide, stageLayout(wide, 0, 2), 'float32')
  const backward = await session(graphs.backward, 2)
  const feeds: Feeds = {}
  const flat = initParams(graphs.params, 1)
  let offset = 0
  for (const p of graphs.params) {
    const n = p.shape.reduce((a, b) => a * b, 1)
    feeds[p.name] = floats('float32', flat.subarray(offset, offset += n), p.shape)
  }
  // Every token 7: all 4096 wte-gradient adds hit one row. x = wte[7] + wpe[t] gives both
  // tables the same gradient dx, so row 7 of grad.wte is the sum of the rows of grad.wpe.
  const [B, T, D] = [32, wide.seqLen, wide.dModel]
  const out = await backward.run({ ...feeds, x: int64(new Array(B * T).fill(7), [B, T]), gy: floats('float32', Array.from({ length: B * T * D }, (_, i) => Math.sin(i)), [B, T, D]) })
  const wte = read(out['grad.wte'])
  const wpe = read(out['grad.wpe'])
  const want = Array.from({ length: D }, (_, j) => Array.from({ length: T }, (_, t) => wpe[t * D + j]).reduce((a, b) => a + b, 0))
  const err = Math.sqrt(want.reduce((s, w, j) => s + (wte[7 * D + j] - w) ** 2, 0) / want.reduce((s, w) => s + w * w, 0))
  assert.ok(err < 1e-4, `grad.wte[7] is off from the sum of grad.wpe by ${err.toExponential(2)} (relative)`)
  assert.ok(wte.every((v, i) => v === 0 || Math.floor(i / D) === 7), 'gradient on a token that never occurs')
})

test('stage 0 gradients are reproducible on several threads', async () => {
  const x = { data: new BigInt64Array(32 * 128).fill(7n), shape: [32, 128] }
  const gy = { data: Float32Array.from({ length: 32 * 128 * 64 }, (_, i) => Math.sin(i)), shape: [32, 128, 64] }
  const norms = new Set<number>()
  for (let i = 0; i < 3; i++) {
    const engine = await StageEngine.create({ model: wide, layout: stageLayout(wide, 0, 2), seed: 1, threads: 2 })
    try {
      await engine.backward(x, gy)
      norms.add(await engine.gradNormSquared())
    } finally {
      await engine.close()
    }
  }
  assert.is(norms.size, 1, `different gradients from the same input: ${[...norms].join(', ')}`)
})

test('bad tensors are refused with TensorError before reaching onnxruntime', async () => {
  const [first, last] = await engines(2)
  try {
    const tokens = (data: number[], shape: number[]) => ({ data: BigInt64Array.from(data.map(BigInt)), shape })
    const x = tokens([1, 2, 3, 4], [1, 4])
    const bad: Array<[() => Promise<unknown>, RegExp]> = [
      [() => first.forward({ data: new Float32Array(4), shape: [1, 4] }), /x must be int64/],
      [() => first.forward(tokens([1, 2, 3], [1, 4])), /3 values for shape/],
      [() => first.forward(tokens([1, 2, 256, 4], [1, 4])), /token id 256/],
      [() => first.forward(tokens(new Array(17).fill(1), [1, 17])), /time <= 16/],
      [() => first.forward(tokens([1, 2], [2])), /expected \[\?, \?\]/],
      [() => first.backward(x, { data: new Float32Array(4 * 31), shape: [1, 4, 31] }), /gy has shape/],
      [() => first.backward(x, { data: new Float32Array(4 * 32).fill(Number.NaN), shape: [1, 4, 32] }), /gy holds a non-finite value \(NaN\)/],
      [() => last.loss({ data: new Float32Array(4 * 32).fill(-Infinity), shape: [1, 4, 32] }, x), /x holds a non-finite value/],
      [() => last.forward({ data: new Float32Array(4 * 32), shape: [1, 4, 32] }), /no forward output/],
      [() => last.lossBackward({ data: new Float32Array(4 * 32), shape: [1, 4, 32] }, tokens([1, 2], [1, 2])), /targets has shape/],
      [() => first.loss(x, x), /only the last stage/],
      [() => first.step(), /without accumulated gradients/]
    ]
    for (const [call, message] of bad) {
      try {
        await call()
        assert.unreachable(String(message))
      } catch (err) {
        assert.match((err as Error).message, message)
        if (!/accumulated/.test(String(message))) assert.instance(err, TensorError)
      }
    }
    // The engine still works after refusing bad input.
    assert.equal((await first.forward(x)).shape, [1, 4, 32])
  } finally {
    await Promise.all([first, last].map(e => e.close()))
  }
})

test.run()
