// The model cut into pipeline stages: which blocks each stage owns, its forward and backward
// ONNX graphs, and the whole-model inference graph for export.
import { gradients } from './autodiff.js'
import { checkModelConfig, type DType, type ModelConfig, type ParamSpec, type StageGraphs, type StageLayout } from './config.js'
import { block, embed, head, lmLoss, stageParams, embeddingParams, blockParams, headParams } from './gpt.js'
import { Graph, type Tensor } from './graph.js'
import { ParamLayout, paramSize } from './params.js'

/** Stage `stage` of `nStages`: a contiguous run of blocks; earlier stages take the remainder. */
export function stageLayout (config: ModelConfig, stage: number, nStages: number): StageLayout {
  checkModelConfig(config)
  if (!Number.isInteger(nStages) || nStages < 1 || nStages > config.nLayers) throw new RangeError(`nStages must be an integer from 1 to nLayers (${config.nLayers}), got ${nStages}`)
  if (!Number.isInteger(stage) || stage < 0 || stage >= nStages) throw new RangeError(`stage must be an integer from 0 to ${nStages - 1}, got ${stage}`)
  const base = Math.floor(config.nLayers / nStages)
  const extra = config.nLayers % nStages
  const firstLayer = stage * base + Math.min(stage, extra)
  return { stage, nStages, firstLayer, endLayer: firstLayer + base + (stage < extra ? 1 : 0) }
}

/** The flat parameter layout of stage `stage` of `nStages` (what its engine, checkpoints and averaging use). */
export function stageParamLayout (config: ModelConfig, stage: number, nStages: number): ParamLayout {
  return new ParamLayout(stageParams(config, stageLayout(config, stage, nStages)))
}

/** The forward and backward graphs of one stage, with the tensor names documented on StageGraphs. */
export function buildStageGraphs (config: ModelConfig, layout: StageLayout, dtype: DType = 'float32'): StageGraphs {
  checkLayout(config, layout)
  const params = stageParams(config, layout)
  return {
    layout,
    params,
    forward: stageGraph(config, layout, params, dtype, false),
    backward: stageGraph(config, layout, params, dtype, true)
  }
}

function stageGraph (c: ModelConfig, layout: StageLayout, specs: readonly ParamSpec[], dtype: DType, withBackward: boolean): Uint8Array {
  const g = new Graph(dtype)
  const first = layout.stage === 0
  const last = layout.stage === layout.nStages - 1
  const x = first ? g.input('x', ['B', 'T'], 'int64') : g.input('x', ['B', 'T', c.dModel])
  const targets = last ? g.input('targets', ['B', 'T'], 'int64') : undefined
  const gy = withBackward && !last ? g.input('gy', ['B', 'T', c.dModel], 'float', false) : undefined
  const params = new Map(specs.map(s => [s.name, g.input(s.name, s.shape)]))

  let h = first ? embed(g, params, x) : x
  for (let l = layout.firstLayer; l < layout.endLayer; l++) h = block(g, c, params, h, l)
  const loss = targets !== undefined ? lmLoss(g, c, head(g, params, h), targets) : undefined

  if (!withBackward) {
    if (loss !== undefined) g.output(loss, 'loss')
    else g.output(h, 'y')
    return g.toModel(`stage${layout.stage}-forward`)
  }
  const seed: [Tensor, Tensor] = loss !== undefined ? [loss, g.constant(1)] : [h, gy as Tensor]
  const wrt = [...params.values()]
  if (!first) wrt.unshift(x)
  const grads = gradients(g, [seed], wrt)
  // A tensor nothing depends on has a zero gradient (cannot happen for a GPT stage, but stay total).
  const gradOf = (i: number): Tensor => grads[i] ?? g.zerosLike(wrt[i])
  if (!first) g.output(gradOf(0), 'gx')
  if (loss !== undefined) g.output(loss, 'loss')
  specs.forEach((s, i) => g.output(gradOf(i + (first ? 0 : 1)), `grad.${s.name}`))
  return g.toModel(`stage${layout.stage}-backward`)
}

function checkLayout (config: ModelConfig, layout: StageLayout): void {
  const expected = stageLayout(config, layout.stage, layout.nStages)
  if (expected.firstLayer !== layout.firstLayer || expected.endLayer !== layout.endLayer) {
    throw new RangeError(`stage ${layout.stage}/${layout.nStages} owns blocks [${expected.firstLayer}, ${expected.endLayer}), not [${layout.firstLayer}, ${layout.endLayer})`)
  }
}

/** Every parameter of the model, in stage order (the union of all stages' lists). */
export function modelParams (config: ModelConfig): ParamSpec[] {
  checkModelConfig(config)
  const specs = embeddingParams(config)
  for (let l = 0; l < config.nLayers; l++) specs.push(...blockParams(config, l))
  return [...specs, ...headParams(config)]
}

/**
 * The whole model as one inference graph: input `tokens` int64 [B, T], output `logits`
 * [B, T, vocab], standard ONNX ops only. Without `weights` every parameter is an input after
 * `tokens` (in `params` order); with `weights` (all of them, by name) they are baked in as
 * initializers so the file loads standalone.
 */
export function buildInferenceGraph (config: ModelConfig, dtype: DType = 'float32', weights?: ReadonlyMap<string, Float32Array | Float64Array>): { params: ParamSpec[], model: Uint8Array } {
  const specs = modelParams(config)
  const g = new Graph(dtype, { portable: true })
  const tokens = g.input('tokens', ['B', 'T'], 'int64')
  const params = new Map(specs.map(s => {
    if (weights === undefined) return [s.name, g.input(s.name, s.shape)]
    const values = weights.get(s.name)
    const size = paramSize(s)
    if (values === undefined || values.length !== size) throw new RangeError(`weights: ${s.name} needs ${size} values, got ${values?.length ?? 'none'}`)
    return [s.name, g.initializer(s.name, s.shape, values)]
  }))
  let h = embed(g, params, tokens)
  for (let l = 0; l < config.nLayers; l++) h = block(g, config, params, h, l)
  g.output(head(g, params, h), 'logits')
  return { params: specs, model: g.toModel('swarmtrain-gpt') }
}

/**
 * Multiply-add FLOPs (2 per MAC) of the matmuls in one forward pass of a stage at batch B and
 * length T (attention counted over the full T x T square, as it is computed). A backward graph
 * recomputes the forward and then does two products per forward product: 3x this.
 */
export function matmulFlops (config: ModelConfig, B: number, T: number, layout: StageLayout): number {
  const d = config.dModel
  const tokens = B * T
  const perBlock = 2 * tokens * d * (3 * d + d + 8 * d) + 2 * 2 * B * T * T * d
  let flops = (layout.endLayer - layout.firstLayer) * perBlock
  if (layout.stage === layout.nStages - 1) flops += 2 * tokens * d * config.vocabSize
  return flops
}
