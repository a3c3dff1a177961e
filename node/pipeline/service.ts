// What a stage server does with one request, independent of the network: validate it against the
// stage's shapes and limits, wait for a slot in a bounded queue, run the engine, and encode the
// reply. Every problem becomes an error reply. Gradients accumulate in the engine; once they
// cover the target batch, the engine takes an inner optimizer step (between calls).
import { defaultLogger } from '@libp2p/logger'
import type { ComponentLogger, Logger } from '@libp2p/interface'
import { DType, StageMessageError, StageRequest, StageResponse, checkTensor, decodeRequest, type Tensor } from '../../protocols/stage-codec.js'
import { TensorError, type FloatTensor, type Tensor as EngineTensor, type TokenTensor } from '../runtime/tensor.js'
import type { StageEngine } from '../runtime/stage-engine.js'
import type { StageCaller } from './chain.js'
import { decodeActivations, decodeTokens, encodeActivations } from './activations.js'

/** The engine operations a stage server uses (node/runtime's StageEngine has them). */
export type StageCompute = Pick<StageEngine, 'forward' | 'backward' | 'loss' | 'lossBackward' | 'step' | 'accumulatedTokens'>

export interface StageServiceInit {
  stage: number
  nStages: number
  dModel: number
  seqLen: number
  vocabSize: number
  /** Largest microbatch (B * T tokens) a call may carry. */
  maxTokens: number
  /** Take an inner step once this many tokens have accumulated. */
  stepTokens: number
  /** Calls handed to the engine at once (it runs them in turn; 2 overlaps decoding with compute), and calls waiting beyond those before we answer BUSY. */
  concurrency?: number
  maxQueue?: number
  /** Test only: stretch every call's compute time by this factor, as a slower machine would. */
  slowdown?: number
}

/** Load as reported in the registry's info record. */
export interface StageLoad {
  /** Calls waiting or running. */
  queueLength: number
  /** Tokens processed per second (backward calls count as the tokens they trained), recent moving average. */
  tokensPerSecond: number
}

/** One computed call: the output (y, or gx for backward), the loss on the last stage, and timings. */
export interface StageResult {
  y?: FloatTensor
  loss?: number
  computeMs: number
  waitMs: number
}

export interface StageServiceStats {
  forward: number
  backward: number
  errors: number
  busy: number
  steps: number
}

const activationDTypes = [DType.F16, DType.INT8, DType.F32]

export class StageService implements StageCaller {
  readonly init: Required<StageServiceInit>
  private readonly engine: StageCompute
  private readonly log: Logger
  private readonly waiting: Array<() => void> = []
  private running = 0
  private stepping = false
  private rate = 0
  private rateAt = Date.now()
  readonly stats: StageServiceStats = { forward: 0, backward: 0, errors: 0, busy: 0, steps: 0 }

  constructor (components: { engine: StageCompute, logger?: ComponentLogger }, init: StageServiceInit) {
    this.engine = components.engine
    this.log = (components.logger ?? defaultLogger()).forComponent('swarmtrain:pipeline:service')
    this.init = { ...init, concurrency: init.concurrency ?? 2, maxQueue: init.maxQueue ?? 16, slowdown: init.slowdown ?? 1 }
  }

  load (): StageLoad {
    this.decayRate(0)
    return { queueLength: this.waiting.length + this.running, tokensPerSecond: this.rate }
  }

  /** Handles one encoded request and returns the encoded response; never throws. */
  async handle (bytes: Uint8Array): Promise<Uint8Array> {
    let id = 0
    try {
      const request = decodeRequest(bytes)
      id = request.id
      return StageResponse.encode(await this.serve(request))
    } catch (err) {
      const status = err instanceof BusyError ? StageResponse.Status.BUSY : err instanceof StageMessageError || err instanceof TensorError || err instanceof RangeError ? StageResponse.Status.BAD_REQUEST : StageResponse.Status.FAILED
      if (status === StageResponse.Status.BUSY) this.stats.busy++
      else this.stats.errors++
      if (status === StageResponse.Status.FAILED) this.log.error('stage %d call failed: %e', this.init.stage, err)
      else this.log('refused a call: %s', (err as Error).message)
      return StageResponse.encode({ id: id !== 0 ? id : ((err as { id?: number }).id ?? 0), status, error: (err as Error).message, computeMs: 0, waitMs: 0, queueLength: this.load().queueLength })
    }
  }

  private async serve (request: StageRequest): Promise<StageResponse> {
    const { stage, nStages, dModel, vocabSize } = this.init
    const last = stage === nStages - 1
    if (request.stage !== stage) throw new StageMessageError(`this server serves stage ${stage}, not ${request.stage}`)
    if (!activationDTypes.includes(request.replyDtype)) throw new StageMessageError(`cannot reply with ${request.replyDtype} activations`)
    const shape = this.inputShape(request.x)
    const tokens = shape[0] * shape[1]
    const x: EngineTensor = stage === 0 ? decodeTokens(request.x as Tensor, vocabSize) : decodeActivations(request.x as Tensor)
    const backward = request.kind === StageRequest.Kind.BACKWARD
    let targets: TokenTensor | undefined
    let gy: FloatTensor | undefined
    if (last) {
      checkTensor('targets', request.targets, [DType.I32], shape, tokens)
      targets = decodeTokens(request.targets as Tensor, vocabSize)
    } else if (backward) {
      checkTensor('gy', request.gy, activationDTypes, [...shape, dModel], tokens * dModel)
      gy = decodeActivations(request.gy as Tensor)
    }

    const result = await this.run(backward, x, last ? targets : gy)
    return {
      id: request.id,
      status: StageResponse.Status.OK,
      error: '',
      y: result.y === undefined ? undefined : encodeActivations(result.y.data, result.y.shape, request.replyDtype),
      loss: result.loss,
      computeMs: result.computeMs,
      waitMs: result.waitMs,
      queueLength: this.load().queueLength
    }
  }

  /**
   * Runs one validated call on the engine: a queue slot, the computation, the statistics, and an
   * optimizer step once enough gradients have accumulated. `extra` is gy, or the targets on the
   * last stage. Local calls (the node driving its own stage) come here directly.
   */
  async run (backward: boolean, x: EngineTensor, extra?: FloatTensor | TokenTensor): Promise<StageResult> {
    const last = this.init.stage === this.init.nStages - 1
    const queued = performance.now()
    await this.slot()
    const started = performance.now()
    let y: FloatTensor | undefined
    let loss: number | undefined
    let computeMs: number
    try {
      if (last && backward) ({ loss, gx: y } = await this.engine.lossBackward(x, extra as TokenTensor))
      else if (last) loss = await this.engine.loss(x, extra as TokenTensor)
      else if (backward) y = await this.engine.backward(x, extra as FloatTensor)
      else y = await this.engine.forward(x)
      computeMs = performance.now() - started
      if (this.init.slowdown > 1) {
        await new Promise(resolve => setTimeout(resolve, (this.init.slowdown - 1) * computeMs))
        computeMs = performance.now() - started
      }
    } finally {
      this.release()
    }
    if (backward) {
      this.stats.backward++
      this.maybeStep()
    } else {
      this.stats.forward++
    }
    this.decayRate(backward ? x.shape[0] * x.shape[1] : 0)
    return { y, loss, computeMs, waitMs: started - queued }
  }

  // The StageCaller interface, for the node's own driver: its calls to its own stage skip the network.
  async forward (x: EngineTensor): Promise<FloatTensor> {
    return (await this.run(false, x)).y as FloatTensor
  }

  async backward (x: EngineTensor, gy: FloatTensor): Promise<FloatTensor | undefined> {
    return (await this.run(true, x, gy)).y
  }

  async lossBackward (x: EngineTensor, targets: TokenTensor): Promise<{ loss: number, gx?: FloatTensor }> {
    const { loss, y } = await this.run(true, x, targets)
    return { loss: loss as number, gx: y }
  }

  async loss (x: EngineTensor, targets: TokenTensor): Promise<number> {
    return (await this.run(false, x, targets)).loss as number
  }

  /** [B, T] of a valid stage input, or a StageMessageError. */
  private inputShape (x: Tensor | undefined): [number, number] {
    const { stage, dModel, seqLen, maxTokens } = this.init
    if (x === undefined) throw new StageMessageError('x is missing')
    const [b, t] = x.shape
    if (!(b >= 1 && t >= 1 && t <= seqLen && b * t <= maxTokens)) throw new StageMessageError(`x has shape [${x.shape.join(', ')}]: need B * T <= ${maxTokens} tokens and T <= ${seqLen}`)
    if (stage === 0) checkTensor('x', x, [DType.I32], [b, t], maxTokens)
    else checkTensor('x', x, activationDTypes, [b, t, dModel], maxTokens * dModel)
    return [b, t]
  }

  /** Waits for a compute slot, or throws BusyError when the queue is full. */
  private async slot (): Promise<void> {
    if (this.running < this.init.concurrency) {
      this.running++
      return
    }
    if (this.waiting.length >= this.init.maxQueue) throw new BusyError(`queue full (${this.waiting.length} waiting)`)
    await new Promise<void>(resolve => this.waiting.push(resolve))
  }

  /** Hands the slot to the next waiting call, if any. */
  private release (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.running--
  }

  /** Steps once the target batch has accumulated; the engine runs the step between calls. */
  private maybeStep (): void {
    if (this.stepping || this.engine.accumulatedTokens < this.init.stepTokens) return
    this.stepping = true
    this.engine.step().then(
      () => { this.stats.steps++ },
      err => this.log.error('stage %d optimizer step failed: %e', this.init.stage, err)
    ).finally(() => { this.stepping = false })
  }

  /** Exponential moving average of tokens per second with a ~5 s horizon. */
  private decayRate (tokens: number): void {
    const now = Date.now()
    const dt = Math.max(now - this.rateAt, 1) / 1000
    const keep = Math.exp(-dt / 5)
    this.rate = this.rate * keep + (tokens / 5)
    this.rateAt = now
  }
}

/** The queue is full: the caller should try another replica. */
export class BusyError extends Error {
  override name = 'BusyError'
}
