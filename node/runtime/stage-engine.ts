// One pipeline stage, ready to train: its forward and backward graphs in a worker thread, its
// parameters in one flat shared Float32Array, a gradient accumulator and AdamW. A StageEngine
// is a StageCaller (node/pipeline/chain.ts); the stage server serves one over the network. It
// emits `trained` as each backward's gradients reach the accumulator.
import { randomInt } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { sumSquaresAsync } from '../../native/index.js'
import { buildStageGraphs, initParams, ParamLayout, type ModelConfig, type StageLayout } from '../model/index.js'
import { AdamW, clipFactor } from './optimizer.js'
import { defaultOptimizerConfig, type OptimizerConfig } from './optimizer-config.js'
import { SessionHost } from './session-host.js'
import { WeightsGate } from './weights-gate.js'
import { TensorError, type FloatTensor, type Tensor, type TokenTensor } from './tensor.js'

export interface StageEngineInit {
  model: ModelConfig
  layout: StageLayout
  optimizer?: OptimizerConfig
  /** Parameter init seed (also used by the model for per-parameter streams). */
  seed?: number
  /** onnxruntime intra-op threads; defaults to the machine's cores. */
  threads?: number
  /** Weight versions kept so a backward can recompute with its forward's weights (default 1: none old). */
  weightVersions?: number
}

/**
 * Which weights a forward ran on: the engine instance (`epoch`, random, so a restarted server
 * never mistakes its new weights for old ones) and the version (one per weight change).
 */
export interface WeightsVersion {
  epoch: number
  version: number
}

/** The AdamW state of a stage, as a checkpoint stores it. */
export interface OptimizerState {
  step: number
  m: Float32Array
  v: Float32Array
}

/** An optimizer step: its learning rate, the gradient norm it clipped by, the tokens it stepped on. */
export interface StepResult {
  lr: number
  gradNorm: number
  tokens: number
}

/** A call may not carry more tokens than this (bounds the memory a peer can make us allocate). */
export const maxCallTokens = 1 << 16

/** A backward's gradients reached the accumulator (`detail`: its tokens). */
export type TrainedEvent = CustomEvent<number>

export class StageEngine extends EventTarget {
  /** All parameters, flat, laid out by `params` (the worker reads them; write via `updateWeights`). */
  readonly weights: Float32Array
  private readonly grads: Float32Array
  private readonly adam: AdamW
  private readonly gate = new WeightsGate()
  private tokens = 0
  /** Random per engine instance; see WeightsVersion. */
  readonly epoch = randomInt(1, 0xffffffff)
  /** Tokens of all inner steps taken by this engine (counted inside the step, so never out of order). */
  steppedTokens = 0

  private constructor (
    readonly model: ModelConfig,
    readonly layout: StageLayout,
    /** The flat layout of weights, gradients and optimizer state. */
    readonly params: ParamLayout,
    readonly optimizer: OptimizerConfig,
    private readonly host: SessionHost,
    weights: SharedArrayBuffer,
    grads: SharedArrayBuffer
  ) {
    super()
    this.weights = new Float32Array(weights)
    this.grads = new Float32Array(grads)
    this.adam = new AdamW(optimizer, params)
  }

  static async create (init: StageEngineInit): Promise<StageEngine> {
    const { model, layout } = init
    const graphs = buildStageGraphs(model, layout, 'float32')
    const params = new ParamLayout(graphs.params)
    const weights = new SharedArrayBuffer(params.size * 4)
    const grads = new SharedArrayBuffer(params.size * 4)
    initParams(params, init.seed ?? 0, new Float32Array(weights))
    const host = await SessionHost.create({
      graphs: { forward: graphs.forward, backward: graphs.backward },
      params: [...params.slots],
      weights,
      grads,
      threads: init.threads ?? availableParallelism(),
      keepVersions: init.weightVersions ?? 1
    })
    return new StageEngine(model, layout, params, init.optimizer ?? defaultOptimizerConfig, host, weights, grads)
  }

  get isFirst (): boolean { return this.layout.stage === 0 }
  get isLast (): boolean { return this.layout.stage === this.layout.nStages - 1 }

  /** Tokens whose gradients are accumulated and not yet stepped on. */
  get accumulatedTokens (): number { return this.tokens }

  /** The version of the current weights. */
  get weightsVersion (): WeightsVersion { return { epoch: this.epoch, version: this.host.weightsVersion } }

  /** Stage output activations for stage input `x` (every stage but the last). */
  async forward (x: Tensor): Promise<FloatTensor> {
    return (await this.forwardAt(x)).y
  }

  /** `forward`, also naming the weights it ran on (what a later `backwardAt` should recompute with). */
  async forwardAt (x: Tensor): Promise<{ y: FloatTensor, version: WeightsVersion }> {
    if (this.isLast) throw new TensorError('the last stage has no forward output; call loss or lossBackward')
    this.checkInput(x)
    const { outputs, version } = await this.host.run('forward', { x }, ['y'])
    return { y: outputs.y as FloatTensor, version: { epoch: this.epoch, version } }
  }

  /** Accumulates this stage's gradients for input `x` and output gradient `gy`; returns the input gradient (none on stage 0). */
  async backward (x: Tensor, gy: FloatTensor): Promise<FloatTensor | undefined> {
    return (await this.backwardAt(x, gy)).gx
  }

  /**
   * `backward`, recomputing with the weights of version `at` (its forward's) when they are still
   * stashed, else with the current ones; returns the version it used. The gradient accumulates
   * into the current step either way (a 1-stale update when the version is the previous one).
   */
  async backwardAt (x: Tensor, gy: FloatTensor, at?: WeightsVersion): Promise<{ gx?: FloatTensor, version: WeightsVersion }> {
    if (this.isLast) throw new TensorError('the last stage takes targets, not an output gradient; call lossBackward')
    const [b, t] = this.checkInput(x)
    checkShape('gy', gy, 'float32', [b, t, this.model.dModel])
    checkFinite('gy', gy)
    const { outputs, version } = await this.host.run('backward', { x, gy }, this.isFirst ? [] : ['gx'], { accumulate: b * t, at: at?.epoch === this.epoch ? at.version : undefined, done: () => { this.accumulated(b * t) } })
    return { gx: outputs.gx as FloatTensor | undefined, version: { epoch: this.epoch, version } }
  }

  /** Last stage: mean cross-entropy (nats per token) of `x` against `targets`; accumulates gradients. */
  async lossBackward (x: Tensor, targets: TokenTensor): Promise<{ loss: number, gx?: FloatTensor }> {
    const [b, t] = this.checkLast(x, targets)
    const { outputs } = await this.host.run('backward', { x, targets }, this.isFirst ? ['loss'] : ['loss', 'gx'], { accumulate: b * t, done: () => { this.accumulated(b * t) } })
    return { loss: outputs.loss.data[0] as number, gx: outputs.gx as FloatTensor | undefined }
  }

  /** Counts a backward's tokens toward the next step, in the turn its run ends, and emits `trained`. */
  private accumulated (tokens: number): void {
    this.tokens += tokens
    this.dispatchEvent(new CustomEvent('trained', { detail: tokens }))
  }

  /** Last stage: mean cross-entropy without gradients (evaluation). */
  async loss (x: Tensor, targets: TokenTensor): Promise<number> {
    this.checkLast(x, targets)
    const { outputs } = await this.host.run('forward', { x, targets }, ['loss'])
    return outputs.loss.data[0] as number
  }

  /** Squared L2 norm of the mean accumulated gradient (to combine stages into one global norm). */
  gradNormSquared (): Promise<number> {
    return this.host.exclusive(async () => this.tokens === 0 ? 0 : await sumSquaresAsync(this.grads) / (this.tokens * this.tokens))
  }

  /**
   * One AdamW step on the mean of the accumulated gradients, clipped by `gradNorm` (the global
   * norm across stages, in local training) or else by this stage's own norm (in the swarm each
   * stage clips its own slice). Zeroes the accumulator. Returns the learning rate and the norm
   * used. All or nothing: if the update fails, weights, optimizer state and the accumulated
   * gradients are as they were. Like every weight change, it waits for the microbatches that
   * hold the weights (`hold`), so it may take more tokens than had accumulated when it was
   * called: it returns the tokens it stepped on.
   */
  step (gradNorm?: number): Promise<StepResult> {
    return this.gate.change(async () => await this.host.exclusive(async () => {
      if (this.tokens === 0) throw new Error('step without accumulated gradients')
      const norm = gradNorm ?? Math.sqrt(await sumSquaresAsync(this.grads)) / this.tokens
      const lr = await this.adam.update(this.weights, this.grads, clipFactor(norm, this.optimizer.clipNorm) / this.tokens)
      const tokens = this.tokens
      this.steppedTokens += tokens
      this.grads.fill(0)
      this.tokens = 0
      return { lr, gradNorm: norm, tokens }
    }, { writes: true }))
  }

  /** A copy of the accumulated (summed, unscaled) gradients, taken between calls. */
  gradients (): Promise<Float32Array> {
    return this.host.exclusive(() => this.grads.slice())
  }

  /** Steps taken so far (the schedule position). */
  get steps (): number { return this.adam.step }

  /** A consistent copy of the weights and optimizer state, taken between calls (for checkpoints). */
  snapshot (): Promise<OptimizerState & { weights: Float32Array }> {
    return this.host.exclusive(() => ({ weights: this.weights.slice(), step: this.adam.step, m: this.adam.m.slice(), v: this.adam.v.slice() }))
  }

  /**
   * A copy of the weights (into `into`, if given), the tokens stepped on so far and the steps,
   * taken between calls (an averaging round's snapshot): ahead of the queued calls, which the
   * round would otherwise wait out.
   */
  weightsSnapshot (into?: Float32Array): Promise<{ weights: Float32Array, steppedTokens: number, steps: number }> {
    if (into !== undefined && into.length !== this.weights.length) throw new TensorError(`a snapshot of ${this.weights.length} weights does not fit in ${into.length}`)
    return this.host.exclusive(() => {
      const weights = into ?? new Float32Array(this.weights.length)
      weights.set(this.weights)
      return { weights, steppedTokens: this.steppedTokens, steps: this.adam.step }
    }, { urgent: true })
  }

  /** Replaces weights and optimizer state (resume, or joining a stage), dropping accumulated gradients. */
  loadState (weights: Float32Array, state: OptimizerState): Promise<void> {
    for (const [name, a] of [['weights', weights], ['m', state.m], ['v', state.v]] as const) {
      if (a.length !== this.weights.length) throw new TensorError(`${name} has ${a.length} values, the stage has ${this.weights.length}`)
    }
    return this.gate.change(async () => await this.host.exclusive(() => {
      this.weights.set(weights)
      this.adam.m.set(state.m)
      this.adam.v.set(state.v)
      this.adam.step = state.step
      this.grads.fill(0)
      this.tokens = 0
    }, { writes: true }))
  }

  /**
   * Changes the weights in place between calls (e.g. an outer averaging step), keeping the
   * optimizer's state; `schedule`, if given, moves the schedule from the steps taken to the
   * position it returns (a replica adopting the stage's progress).
   * Once no microbatch holds the weights (`hold`), it goes ahead of the queued calls: they then
   * run on the averaged weights, and the round ends sooner. `lazy` waits for the holders to end
   * on their own (by the replica's next step) instead of stopping new ones: for an update that
   * may land a little later, such as adding a round's result, which commutes with the steps.
   */
  updateWeights (fn: (weights: Float32Array) => void, options: { schedule?: (steps: number) => number, lazy?: boolean } = {}): Promise<void> {
    return this.gate.change(async () => await this.host.exclusive(() => {
      fn(this.weights)
      if (options.schedule !== undefined) this.adam.step = Math.max(0, options.schedule(this.adam.step))
    }, { writes: true, urgent: true }), { lazy: options.lazy })
  }

  /**
   * Holds the weights for one microbatch from before its forward until the returned release is
   * called after its backward: steps, rounds and loads wait meanwhile (see WeightsGate), so the
   * gradient is taken on the weights it updates.
   */
  hold (): Promise<() => void> {
    return this.gate.hold()
  }

  close (): Promise<void> {
    return this.host.close()
  }

  /** Validates a stage input; returns [batch, time]. */
  private checkInput (x: Tensor): [number, number] {
    if (this.isFirst) {
      checkShape('x', x, 'int64', [-1, -1])
      checkTokens('x', x as TokenTensor, this.model.vocabSize)
    } else {
      checkShape('x', x, 'float32', [-1, -1, this.model.dModel])
      checkFinite('x', x as FloatTensor)
    }
    const [b, t] = x.shape
    if (b < 1 || t < 1 || t > this.model.seqLen) throw new TensorError(`x has shape [${x.shape.join(', ')}]: need batch >= 1 and 1 <= time <= ${this.model.seqLen}`)
    if (b * t > maxCallTokens) throw new TensorError(`x has ${b * t} tokens; at most ${maxCallTokens} per call`)
    return [b, t]
  }

  private checkLast (x: Tensor, targets: TokenTensor): [number, number] {
    if (!this.isLast) throw new TensorError('only the last stage computes the loss')
    const [b, t] = this.checkInput(x)
    checkShape('targets', targets, 'int64', [b, t])
    checkTokens('targets', targets, this.model.vocabSize)
    return [b, t]
  }
}

/** `want` dims of -1 match any size. */
function checkShape (name: string, x: Tensor, type: 'int64' | 'float32', want: number[]): void {
  const ok = type === 'int64' ? x.data instanceof BigInt64Array : x.data instanceof Float32Array
  if (!ok) throw new TensorError(`${name} must be ${type}`)
  if (!Array.isArray(x.shape) || x.shape.length !== want.length || x.shape.some((d, i) => !Number.isSafeInteger(d) || d < 0 || (want[i] !== -1 && d !== want[i]))) {
    throw new TensorError(`${name} has shape [${String(x.shape)}], expected [${want.map(d => d === -1 ? '?' : d).join(', ')}]`)
  }
  if (x.data.length !== x.shape.reduce((a, b) => a * b, 1)) throw new TensorError(`${name} has ${x.data.length} values for shape [${x.shape.join(', ')}]`)
}

function checkTokens (name: string, x: TokenTensor, vocabSize: number): void {
  const limit = BigInt(vocabSize)
  for (const v of x.data) if (v < 0n || v >= limit) throw new TensorError(`${name} holds token id ${v}, outside [0, ${vocabSize})`)
}

/** One NaN or infinity from a peer would poison the accumulated gradients and then the weights. */
function checkFinite (name: string, x: FloatTensor): void {
  for (const v of x.data) if (!Number.isFinite(v)) throw new TensorError(`${name} holds a non-finite value (${v})`)
}
