import { UserError } from '../errors.js'
// The shape of a GPT and how it is cut into pipeline stages. Everything that builds graphs,
// allocates parameters or assigns peers to stages reads these types.

export interface ModelConfig {
  /** Vocabulary size: 256 for the byte-level default. */
  vocabSize: number
  /** Width of the residual stream. */
  dModel: number
  /** Number of transformer blocks. */
  nLayers: number
  /** Attention heads per block; must divide dModel. */
  nHeads: number
  /** Context length: learned positions exist for 0..seqLen-1. */
  seqLen: number
}

export const defaultModelConfig: ModelConfig = { vocabSize: 256, dModel: 192, nLayers: 4, nHeads: 6, seqLen: 128 }

export type DType = 'float32' | 'float64'

/** One parameter tensor of a stage, in the order the stage's graphs take them as inputs. */
export interface ParamSpec {
  /** Unique within the whole model, e.g. `wte`, `h.3.attn.qkv.weight`, `ln_f.bias`. */
  name: string
  shape: number[]
  /** How a fresh parameter is drawn: N(0, std^2), all zeros or all ones. */
  init: { kind: 'normal', std: number } | { kind: 'zeros' } | { kind: 'ones' }
  /** AdamW's weight decay applies to matrices, not to biases, gains or positions. */
  decay: boolean
}

/** Which blocks a stage owns; stage 0 also owns the embeddings, the last stage the final LN and head. */
export interface StageLayout {
  stage: number
  nStages: number
  /** Blocks [firstLayer, endLayer). */
  firstLayer: number
  endLayer: number
}

/**
 * The ONNX graphs of one stage. Tensor names on the graphs' boundaries:
 * - `x`: the stage input, int64 tokens [B, T] on stage 0, else activations [B, T, dModel];
 * - `targets`: int64 [B, T], next-token ids, on the last stage only;
 * - `gy`: gradient of the loss w.r.t. `y`, [B, T, dModel], on every stage but the last;
 * - parameters: their ParamSpec names, after the inputs above, in `params` order.
 * Outputs:
 * - forward: `y` [B, T, dModel]; on the last stage `loss` (scalar, mean cross-entropy in nats);
 * - backward: `gx` (not on stage 0), `loss` (last stage only), then `grad.<name>` for each param.
 * B and T are symbolic (T <= seqLen), so one session serves every batch shape.
 */
export interface StageGraphs {
  layout: StageLayout
  params: ParamSpec[]
  forward: Uint8Array
  backward: Uint8Array
}

/** A model shape that cannot be built (bad numbers from a command line, manifest or checkpoint). */
export class ModelConfigError extends UserError {
  override name = 'ModelConfigError'
}

/** Throws ModelConfigError unless every size is a positive integer and nHeads divides dModel. */
export function checkModelConfig (c: ModelConfig): void {
  for (const key of ['vocabSize', 'dModel', 'nLayers', 'nHeads', 'seqLen'] as const) {
    if (!Number.isSafeInteger(c[key]) || c[key] < 1) throw new ModelConfigError(`model ${key} must be a positive integer, got ${c[key]}`)
  }
  if (c.dModel % c.nHeads !== 0) throw new ModelConfigError(`model nHeads (${c.nHeads}) must divide dModel (${c.dModel})`)
}
