// npm run bench -- stage [--json]: forward + backward (with recompute) of one pipeline stage at
// batch 8 x seq 128 x d_model 256, in GFLOP/s counted on its matmuls, against onnxruntime's own
// rate for a plain 1024^3 MatMul measured in the same run (interleaved), so that
// the ratio says how much the graph loses to everything that is not a matmul.
import ort from 'onnxruntime-node'
import { intOption, parse } from '../node/cli/args.js'
import { UsageError } from '../node/cli/errors.js'
import { buildStageGraphs, initParams, matmulFlops, ParamLayout, paramCount, stageLayout, stageParams, type ModelConfig, type StageLayout } from '../node/model/index.js'
import { Graph } from '../node/model/graph.js'

const sessionOptions: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 2,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  extra: { session: { intra_op: { allow_spinning: '0' } } }
}

type Feeds = Record<string, ort.Tensor>

function randomFloats (n: number, seed: number): Float32Array {
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.sin(i * 12.9898 + seed) * 0.5
  return out
}

function tokens (n: number, vocab: number, shift: number): BigInt64Array {
  return BigInt64Array.from({ length: n }, (_, i) => BigInt((i * 31 + shift) % vocab))
}

async function stageRunner (config: ModelConfig, layout: StageLayout, B: number, T: number): Promise<() => Promise<void>> {
  const graphs = buildStageGraphs(config, layout, 'float32')
  const forward = await ort.InferenceSession.create(graphs.forward, sessionOptions)
  const backward = await ort.InferenceSession.create(graphs.backward, sessionOptions)
  const params = new ParamLayout(graphs.params)
  const flat = initParams(params, 1)
  const feeds: Feeds = {}
  for (const slot of params.slots) feeds[slot.name] = new ort.Tensor('float32', params.view(flat, slot), slot.shape)
  const d = config.dModel
  feeds.x = layout.stage === 0
    ? new ort.Tensor('int64', tokens(B * T, config.vocabSize, 0), [B, T])
    : new ort.Tensor('float32', randomFloats(B * T * d, 1), [B, T, d])
  const last = layout.stage === layout.nStages - 1
  if (last) feeds.targets = new ort.Tensor('int64', tokens(B * T, config.vocabSize, 1), [B, T])
  const backwardFeeds: Feeds = last ? feeds : { ...feeds, gy: new ort.Tensor('float32', randomFloats(B * T * d, 2), [B, T, d]) }
  return async () => {
    await forward.run(feeds)
    await backward.run(backwardFeeds)
  }
}

async function matmulRunner (n: number): Promise<() => Promise<void>> {
  const g = new Graph('float32')
  g.output(g.matmul(g.input('a', [n, n]), g.input('b', [n, n])), 'c')
  const session = await ort.InferenceSession.create(g.toModel('matmul'), sessionOptions)
  const feeds = { a: new ort.Tensor('float32', randomFloats(n * n, 3), [n, n]), b: new ort.Tensor('float32', randomFloats(n * n, 4), [n, n]) }
  return async () => { await session.run(feeds) }
}

async function timeOnce (run: () => Promise<void>): Promise<number> {
  const start = performance.now()
  await run()
  return (performance.now() - start) / 1000
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

export async function run (argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    json: { type: 'boolean' },
    blocks: { type: 'string' },
    stage: { type: 'string' },
    iterations: { type: 'string' }
  })
  const kind = values.stage ?? 'middle'
  if (!['first', 'middle', 'last'].includes(kind)) throw new UsageError(`--stage must be first, middle or last, got '${kind}'`)
  const blocks = intOption('blocks', values.blocks, 2, 1, 64)
  const iterations = intOption('iterations', values.iterations, 10, 1, 1000)
  const B = 8
  const T = 128
  // A 3-stage model with `blocks` blocks per stage; the middle stage is blocks only.
  const config: ModelConfig = { vocabSize: 256, dModel: 256, nLayers: 3 * blocks, nHeads: 4, seqLen: T }
  const layout = stageLayout(config, { first: 0, middle: 1, last: 2 }[kind] as number, 3)
  const stage = await stageRunner(config, layout, B, T)
  const matmul = await matmulRunner(1024)
  const stageFlops = 4 * matmulFlops(config, B, T, layout) // forward, then backward = recompute + 2x
  const matmulFlopCount = 2 * 1024 ** 3

  // Warm up, then alternate: one stage pass, then as many MatMuls as take about as long, so
  // each pair of timings sees the same load from whatever else runs on the machine; the
  // ratio is the median of the per-pair ratios.
  for (let i = 0; i < 2; i++) { await stage(); await matmul() }
  const reps = Math.max(1, Math.round(await timeOnce(stage) / await timeOnce(matmul)))
  const stageRates: number[] = []
  const matmulRates: number[] = []
  const ratios: number[] = []
  for (let i = 0; i < iterations; i++) {
    const stageRate = stageFlops / await timeOnce(stage) / 1e9
    const matmulRate = reps * matmulFlopCount / await timeOnce(async () => { for (let r = 0; r < reps; r++) await matmul() }) / 1e9
    stageRates.push(stageRate)
    matmulRates.push(matmulRate)
    ratios.push(stageRate / matmulRate)
  }
  const gflops = median(stageRates)
  const matmulGflops = median(matmulRates)
  const ratio = median(ratios)
  const ms = stageFlops / gflops / 1e6
  const params = paramCount(stageParams(config, layout))
  if (values.json === true) {
    console.log(JSON.stringify({ bench: 'stage', gflops: round(gflops), matmul_gflops: round(matmulGflops), ratio: round(ratio, 3), stage: kind, blocks, ms: round(ms) }))
    return
  }
  console.log(`stage ${kind} (${layout.endLayer - layout.firstLayer} blocks, ${(params / 1e6).toFixed(2)}M params), batch ${B} x seq ${T} x d_model ${config.dModel}, forward + backward with recompute`)
  console.log(`${'what'.padEnd(28)}${'ms (median)'.padStart(12)}${'GFLOP/s'.padStart(10)}`)
  console.log(`${'stage fwd+bwd'.padEnd(28)}${ms.toFixed(1).padStart(12)}${gflops.toFixed(1).padStart(10)}`)
  console.log(`${'MatMul 1024^3'.padEnd(28)}${(matmulFlopCount / matmulGflops / 1e6).toFixed(1).padStart(12)}${matmulGflops.toFixed(1).padStart(10)}`)
  console.log(`ratio ${ratio.toFixed(3)} (target >= 0.75)`)
}

function round (x: number, digits = 1): number {
  return Number(x.toFixed(digits))
}
