// The GPT: byte-level tokens, learned positions, pre-LN blocks (causal multi-head attention,
// 4x GELU MLP), final LN, separate output head. Parameters are listed per stage; the forward
// pass is written once against the Graph API and reused for stage graphs and export.
import type { ModelConfig, ParamSpec, StageLayout } from './config.js'
import type { Graph, Tensor } from './graph.js'

const initStd = 0.02

function normal (name: string, shape: number[], std = initStd, decay = true): ParamSpec {
  return { name, shape, init: { kind: 'normal', std }, decay }
}
const ones = (name: string, n: number): ParamSpec => ({ name, shape: [n], init: { kind: 'ones' }, decay: false })
const zeros = (name: string, n: number): ParamSpec => ({ name, shape: [n], init: { kind: 'zeros' }, decay: false })

export function embeddingParams (c: ModelConfig): ParamSpec[] {
  return [normal('wte', [c.vocabSize, c.dModel]), normal('wpe', [c.seqLen, c.dModel], initStd, false)]
}

export function blockParams (c: ModelConfig, layer: number): ParamSpec[] {
  const d = c.dModel
  const p = `h.${layer}.`
  // GPT-2: projections that write into the residual stream are scaled down by depth.
  const residualStd = initStd / Math.sqrt(2 * c.nLayers)
  return [
    ones(`${p}ln_1.weight`, d), zeros(`${p}ln_1.bias`, d),
    normal(`${p}attn.qkv.weight`, [d, 3 * d]), zeros(`${p}attn.qkv.bias`, 3 * d),
    normal(`${p}attn.proj.weight`, [d, d], residualStd), zeros(`${p}attn.proj.bias`, d),
    ones(`${p}ln_2.weight`, d), zeros(`${p}ln_2.bias`, d),
    normal(`${p}mlp.fc.weight`, [d, 4 * d]), zeros(`${p}mlp.fc.bias`, 4 * d),
    normal(`${p}mlp.proj.weight`, [4 * d, d], residualStd), zeros(`${p}mlp.proj.bias`, d)
  ]
}

export function headParams (c: ModelConfig): ParamSpec[] {
  return [ones('ln_f.weight', c.dModel), zeros('ln_f.bias', c.dModel), normal('head.weight', [c.dModel, c.vocabSize])]
}

/** The stage's parameters in graph-input order: embeddings, blocks, final LN and head. */
export function stageParams (c: ModelConfig, layout: StageLayout): ParamSpec[] {
  const specs: ParamSpec[] = []
  if (layout.stage === 0) specs.push(...embeddingParams(c))
  for (let l = layout.firstLayer; l < layout.endLayer; l++) specs.push(...blockParams(c, l))
  if (layout.stage === layout.nStages - 1) specs.push(...headParams(c))
  return specs
}

export type Params = ReadonlyMap<string, Tensor>

function param (p: Params, name: string): Tensor {
  const t = p.get(name)
  if (t === undefined) throw new Error(`missing parameter ${name}`)
  return t
}

/** Token and position embeddings of int64 tokens [B, T] -> [B, T, D]. */
export function embed (g: Graph, p: Params, tokens: Tensor): Tensor {
  return g.add(g.gather(param(p, 'wte'), tokens), g.gather(param(p, 'wpe'), g.arange(tokens, 1)))
}

function linear (g: Graph, p: Params, x: Tensor, name: string): Tensor {
  return g.add(g.matmul(x, param(p, `${name}.weight`)), param(p, `${name}.bias`))
}

function attention (g: Graph, c: ModelConfig, p: Params, x: Tensor, prefix: string): Tensor {
  const h = c.nHeads
  const hd = c.dModel / h
  // One projection for q, k and v; heads are batched as [B, H, T, hd] so each attention
  // product is a single MatMul over all heads.
  const qkv = g.transpose(g.reshape(linear(g, p, x, `${prefix}qkv`), [0, 0, 3 * h, hd]), [0, 2, 1, 3])
  const [q, k, v] = g.split(qkv, 1, [h, h, h])
  const weights = g.causalSoftmax(g.matmul(q, k, { transB: true, alpha: 1 / Math.sqrt(hd) }), c.seqLen)
  const heads = g.reshape(g.transpose(g.matmul(weights, v), [0, 2, 1, 3]), [0, 0, c.dModel])
  return linear(g, p, heads, `${prefix}proj`)
}

/** One pre-LN transformer block on [B, T, D]. */
export function block (g: Graph, c: ModelConfig, p: Params, x: Tensor, layer: number): Tensor {
  const n = `h.${layer}.`
  const ln = (t: Tensor, name: string): Tensor => g.layerNorm(t, param(p, `${n}${name}.weight`), param(p, `${n}${name}.bias`))
  const h = g.add(x, attention(g, c, p, ln(x, 'ln_1'), `${n}attn.`))
  return g.add(h, linear(g, p, g.gelu(linear(g, p, ln(h, 'ln_2'), `${n}mlp.fc`)), `${n}mlp.proj`))
}

/** Final LN and output head: [B, T, D] -> logits [B, T, V]. */
export function head (g: Graph, p: Params, x: Tensor): Tensor {
  return g.matmul(g.layerNorm(x, param(p, 'ln_f.weight'), param(p, 'ln_f.bias')), param(p, 'head.weight'))
}

/** Mean next-token cross-entropy of logits [B, T, V] against targets [B, T]. */
export function lmLoss (g: Graph, c: ModelConfig, logits: Tensor, targets: Tensor): Tensor {
  return g.crossEntropy(g.reshape(logits, [-1, c.vocabSize]), g.reshape(targets, [-1]))
}
