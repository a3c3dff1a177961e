// What a stage server does with one request, independent of the network: validate it against the
// stage's shapes and limits, wait for a slot in a bounded queue, run the engine, and encode the
// reply. Every problem becomes an error reply. Gradients accumulate in the engine; once they
// cover the target batch, the engine takes an inner optimizer step (between calls).
// A TRAIN call is admitted toward the replica's next step and holds the engine's weights from its
// forward to its backward, so no step or averaging round changes them in between: its gradient
// is fresh, not merely consistent (a stale one stalls learning: runtime/weights-gate.ts). Calls
// beyond a step's share wait for the step. A backward sent on its own (a driver relaying) is not
// held: its forward reply names the weights it ran on, and the backward recomputes with those
// while the engine still stashes them (PipeDream's weight stashing), a consistent but stale gradient.
// A TRAIN call runs forward, hands the output to the next stage (`next`, server to server), and
// runs the backward when that call returns the output gradient. The stage input and the forward's
// weights version stay in this call's frame meanwhile: the "cache of forwarded inputs, keyed by
// microbatch and version" is the set of TRAIN calls waiting on their next hop, bounded by
// maxPending (BUSY beyond it), and it never misses, since the call that needs the input holds it.
// If this server dies, its caller still holds its own copy (the driver: the tokens) and retries
// the hop on another replica; no backward has run for a microbatch until its loss exists.
// An EVALUATE call travels the same way and runs no backward: the last stage's loss comes back.
import { defaultLogger } from '@libp2p/logger'
import type { ComponentLogger, Logger } from '@libp2p/interface'
import { DType, StageMessageError, StageRequest, StageResponse, checkRoute, checkTensor, decodeRequest, type Hop, type Tensor } from '../../protocols/stage-codec.js'
import { TensorError, type FloatTensor, type Tensor as EngineTensor, type TokenTensor } from '../runtime/tensor.js'
import type { StageEngine, WeightsVersion } from '../runtime/stage-engine.js'
import { decodeActivations, decodeTokens, encodeActivations } from './activations.js'
import { STAGE_ADMISSION_RECHECK_MS, STAGE_ADMISSION_TIMEOUT_MS } from '../timing.js'

/** The engine operations a stage server uses (node/runtime's StageEngine has them). */
export type StageCompute = Pick<StageEngine, 'forwardAt' | 'backwardAt' | 'loss' | 'lossBackward' | 'step' | 'accumulatedTokens' | 'weightsVersion' | 'hold'>

export interface StageServiceInit {
  stage: number
  nStages: number
  dModel: number
  seqLen: number
  vocabSize: number
  /** Largest microbatch (B * T tokens) a call may carry. */
  maxTokens: number
  /** Tokens of one step of the run: the stage's batch, which its replicas share (see replicas). */
  stepTokens: number
  /**
   * Calls handed to the engine at once (it runs them in turn), and calls waiting beyond those
   * before we answer BUSY. Default 1: a call handed over early waits inside the engine, where
   * its wait is not reported, and drivers size their depth by the waits replies report.
   */
  concurrency?: number
  maxQueue?: number
  /** Test only: stretch every call's compute time by this factor, as a slower machine would. */
  slowdown?: number
  /** TRAIN calls waiting on their next hop (each holds its stage input) before we answer BUSY. */
  maxPending?: number
  /** This node's peer id: a route through it again is a loop. */
  self?: string
}

/** What a TRAIN from some stage on returned: the loss, that stage's input gradient, and what every hop did. */
export interface ChainResult {
  loss: number
  gx?: FloatTensor
  /** One per stage from the called one on, in stage order. */
  hops: Hop[]
}

/** What a call forwarded server to server along a route does: train a microbatch (TRAIN), or only its loss (EVALUATE). */
export type ForwardedKind = 'train' | 'evaluate'

/** The next stage as a forwarded call reaches it (the node's caller of that stage, trying its replicas once each). */
export interface NextStage {
  hop(x: FloatTensor, targets: TokenTensor, route: readonly string[], kind: ForwardedKind): Promise<ChainResult>
}

/** No replica of the next stage could be reached: the microbatch must be relayed by its driver. */
export class UnroutableError extends Error {
  override name = 'UnroutableError'
}

/** Load as reported in the registry's info record. */
export interface StageLoad {
  /** Calls waiting or running. */
  queueLength: number
  /** Tokens processed per second (backward calls count as the tokens they trained), recent moving average. */
  tokensPerSecond: number
}

/** One computed call: the output (y, or gx for backward), the loss on the last stage, the weights it ran on, and timings. */
export interface StageResult {
  y?: FloatTensor
  loss?: number
  version?: WeightsVersion
  /** Backward: weight versions between the ones it ran on and the current ones. */
  staleness: number
  computeMs: number
  waitMs: number
  /** TRAIN: what the later stages' servers did, in stage order. */
  hops?: Hop[]
}

export interface StageServiceStats {
  forward: number
  backward: number
  /** Backwards that named their forward's weights but ran on others (evicted from the stash, or another engine's). */
  versionMisses: number
  errors: number
  busy: number
  steps: number
  /** TRAIN and EVALUATE calls served, and those answered UNROUTABLE (their driver relayed them). */
  trains: number
  evaluations: number
  unroutable: number
}

const activationDTypes = [DType.F16, DType.INT8, DType.F32]

/** The limits a stage call is checked against (a server's, or a caller's own view of the run). */
export type StageCallLimits = Pick<StageServiceInit, 'stage' | 'nStages' | 'dModel' | 'seqLen' | 'vocabSize' | 'maxTokens'>

/**
 * Checks and decodes a stage request against `limits`: its stage, shapes, dtypes and sizes, token
 * ids in the vocabulary and finite activations. Throws StageMessageError or TensorError naming the
 * problem. Servers run it on every request; callers run it on their own request when a server
 * refuses one, to tell their own bug from a peer's.
 */
export function decodeStageCall (request: StageRequest, limits: StageCallLimits & { self?: string }): { backward: boolean, x: EngineTensor, extra?: FloatTensor | TokenTensor, forwarded?: ForwardedKind } {
  const { stage, nStages, dModel, seqLen, vocabSize, maxTokens } = limits
  const forwarded: ForwardedKind | undefined = request.kind === StageRequest.Kind.TRAIN ? 'train' : request.kind === StageRequest.Kind.EVALUATE ? 'evaluate' : undefined
  const last = stage === nStages - 1
  if (request.stage !== stage) throw new StageMessageError(`this server serves stage ${stage}, not ${request.stage}`)
  if (forwarded !== undefined) checkRoute(request.route, stage, nStages, limits.self)
  else if (request.route.length > 0) throw new StageMessageError('only TRAIN and EVALUATE calls carry a route')
  if (!activationDTypes.includes(request.replyDtype)) throw new StageMessageError(`cannot reply with ${request.replyDtype} activations`)
  const x = request.x
  if (x === undefined) throw new StageMessageError('x is missing')
  const [b, t] = x.shape
  if (!(b >= 1 && t >= 1 && t <= seqLen && b * t <= maxTokens)) throw new StageMessageError(`x has shape [${x.shape.join(', ')}]: need B * T <= ${maxTokens} tokens and T <= ${seqLen}`)
  if (stage === 0) checkTensor('x', x, [DType.I32], [b, t], maxTokens)
  else checkTensor('x', x, activationDTypes, [b, t, dModel], maxTokens * dModel)
  const input: EngineTensor = stage === 0 ? decodeTokens(x, vocabSize) : decodeActivations(x)
  const backward = request.kind === StageRequest.Kind.BACKWARD || request.kind === StageRequest.Kind.TRAIN
  if (last || forwarded !== undefined) {
    checkTensor('targets', request.targets, [DType.I32], [b, t], b * t)
    return { backward, x: input, extra: decodeTokens(request.targets as Tensor, vocabSize), forwarded }
  }
  if (!backward) return { backward, x: input }
  checkTensor('gy', request.gy, activationDTypes, [b, t, dModel], b * t * dModel)
  return { backward, x: input, extra: decodeActivations(request.gy as Tensor) }
}

export class StageService {
  readonly init: Required<StageServiceInit>
  private readonly engine: StageCompute
  private readonly log: Logger
  private readonly waiting: Array<() => void> = []
  private running = 0
  private stepping = false
  private rate = 0
  private rateAt = Date.now()
  readonly stats: StageServiceStats = { forward: 0, backward: 0, versionMisses: 0, errors: 0, busy: 0, steps: 0, trains: 0, evaluations: 0, unroutable: 0 }
  private readonly next?: NextStage
  /** TRAIN and EVALUATE calls waiting on their next hop. */
  private pending = 0
  /** Tokens of the TRAIN calls admitted toward this replica's next step (see `admit`). */
  private admitted = 0
  private readonly admissionWaiters: Array<() => void> = []

  /** Replicas of this stage sharing its batch, this one included (default: alone). */
  private readonly replicas: () => number

  constructor (components: { engine: StageCompute, next?: NextStage, replicas?: () => number, logger?: ComponentLogger }, init: StageServiceInit) {
    this.engine = components.engine
    this.replicas = components.replicas ?? (() => 1)
    this.next = components.next
    this.log = (components.logger ?? defaultLogger()).forComponent('swarmtrain:pipeline:service')
    this.init = { ...init, concurrency: init.concurrency ?? 1, maxQueue: init.maxQueue ?? 16, slowdown: init.slowdown ?? 1, maxPending: init.maxPending ?? 32, self: init.self ?? '' }
  }

  load (): StageLoad {
    this.decayRate(0)
    return { queueLength: this.admissionWaiters.length + this.waiting.length + this.running, tokensPerSecond: this.rate }
  }

  /** Handles one encoded request and returns the encoded response; never throws. */
  async handle (bytes: Uint8Array): Promise<Uint8Array> {
    let id = 0
    try {
      const request = decodeRequest(bytes)
      id = request.id
      return StageResponse.encode(await this.serve(request))
    } catch (err) {
      // Only a request that fails validation is the caller's fault; anything else (a RangeError from a
      // bug of ours, a dead worker) is this server's failure, so a caller never blames itself for it.
      const status = err instanceof BusyError
        ? StageResponse.Status.BUSY
        : err instanceof UnroutableError ? StageResponse.Status.UNROUTABLE : err instanceof StageMessageError || err instanceof TensorError ? StageResponse.Status.BAD_REQUEST : StageResponse.Status.FAILED
      if (status === StageResponse.Status.BUSY) this.stats.busy++
      else if (status === StageResponse.Status.UNROUTABLE) this.stats.unroutable++
      else this.stats.errors++
      if (status === StageResponse.Status.FAILED) this.log.error('stage %d call failed: %e', this.init.stage, err)
      else this.log('refused a call: %s', (err as Error).message)
      return StageResponse.encode({ id: id !== 0 ? id : ((err as { id?: number }).id ?? 0), status, error: (err as Error).message, computeMs: 0, waitMs: 0, queueLength: this.load().queueLength })
    }
  }

  private async serve (request: StageRequest): Promise<StageResponse> {
    const { backward, x, extra, forwarded } = decodeStageCall(request, this.init)
    const result = forwarded !== undefined ? await this.forwarded(forwarded, x, extra as TokenTensor, request.route) : await this.run(backward, x, extra, request.at)
    return {
      id: request.id,
      status: StageResponse.Status.OK,
      error: '',
      y: result.y === undefined ? undefined : encodeActivations(result.y.data, result.y.shape, request.replyDtype),
      loss: result.loss,
      version: result.version,
      staleness: result.staleness,
      computeMs: result.computeMs,
      waitMs: result.waitMs,
      queueLength: this.load().queueLength,
      hops: result.hops ?? []
    }
  }

  /**
   * A TRAIN or EVALUATE call from this stage on (checked already): the last stage computes the
   * loss (and for TRAIN its gradient); any other runs its forward, hands the output to the next
   * stage along `route`, and for TRAIN runs its backward on the same weights with the gradient that
   * comes back. Local calls (the node driving through its own stage) come here directly.
   */
  async forwarded (kind: ForwardedKind, x: EngineTensor, targets: TokenTensor, route: readonly string[]): Promise<StageResult> {
    const train = kind === 'train'
    if (this.init.stage === this.init.nStages - 1) {
      const result = await this.run(train, x, targets)
      this.stats[train ? 'trains' : 'evaluations']++
      return { ...result, hops: [] }
    }
    if (this.next === undefined) throw new UnroutableError(`stage ${this.init.stage} does not forward to the next stage here`)
    if (this.pending >= this.init.maxPending) throw new BusyError(`${this.pending} microbatches wait on the next stage`)
    this.pending++
    const tokens = x.shape[0] * x.shape[1]
    let admittedMs = 0
    let release = (): void => {}
    let admitted = false
    let trained = false
    try {
      if (train) {
        const waited = performance.now()
        await this.admit(tokens)
        admitted = true
        release = await this.engine.hold()
        admittedMs = performance.now() - waited
      }
      const forward = await this.run(false, x)
      const downstream = await this.next.hop(forward.y as FloatTensor, targets, route, kind)
      if (!train) {
        this.stats.evaluations++
        return { loss: downstream.loss, version: forward.version, staleness: 0, computeMs: forward.computeMs, waitMs: forward.waitMs, hops: downstream.hops }
      }
      if (downstream.gx === undefined) throw new Error(`stage ${this.init.stage + 1} returned no input gradient`)
      const backward = await this.run(true, x, downstream.gx, forward.version)
      trained = true
      this.stats.trains++
      return { y: backward.y, loss: downstream.loss, version: backward.version, staleness: backward.staleness, computeMs: forward.computeMs + backward.computeMs, waitMs: admittedMs + forward.waitMs + backward.waitMs, hops: downstream.hops }
    } finally {
      this.pending--
      release()
      if (admitted && !trained) this.unadmit(tokens)
    }
  }

  /**
   * Waits until this replica's next step has room for a TRAIN call's tokens. A step takes the
   * replica's share of the stage's batch; once that much is admitted, further calls wait for the
   * step, so no microbatch is forwarded on weights that step before its backward (a stale
   * gradient: see runtime/weights-gate.ts). The last call admitted may overshoot the share, as
   * the step itself does when the share is not a whole number of microbatches.
   */
  private async admit (tokens: number): Promise<void> {
    const deadline = performance.now() + STAGE_ADMISSION_TIMEOUT_MS
    while (this.admitted > 0 && this.admitted >= this.share()) {
      if (performance.now() >= deadline) throw new BusyError(`no step in ${STAGE_ADMISSION_TIMEOUT_MS / 1000} s, and this replica's share of it is taken`)
      this.maybeStep() // the share shrinks when a replica joins, with nothing left in flight to step
      // Known and kept for now: a recheck leaves its waiter behind until the next step, so a call
      // that waits adds one to the published queue length every recheck. That steers calls to a
      // replica with room; removing it cost the sparse swarm 2-3% (docs/BENCHMARKS.md, session
      // 15) until a deliberate "share full" signal replaces it.
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, STAGE_ADMISSION_RECHECK_MS)
        this.admissionWaiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    this.admitted += tokens
  }

  /** A call admitted toward the next step ended without its backward: its room is free again. */
  private unadmit (tokens: number): void {
    this.admitted = Math.max(0, this.admitted - tokens)
    this.wakeAdmissions()
  }

  private wakeAdmissions (): void {
    for (const wake of this.admissionWaiters.splice(0)) wake()
  }

  /** This replica's share of the stage's batch, in tokens. */
  private share (): number {
    return this.init.stepTokens / this.replicas()
  }

  /**
   * Runs one validated call on the engine: a queue slot, the computation, the statistics, and an
   * optimizer step once enough gradients have accumulated. `extra` is gy, or the targets on the
   * last stage; `at` is the weights a backward's forward ran on. Local calls (the node driving its
   * own stage) come here directly.
   */
  async run (backward: boolean, x: EngineTensor, extra?: FloatTensor | TokenTensor, at?: WeightsVersion): Promise<StageResult> {
    const last = this.init.stage === this.init.nStages - 1
    const queued = performance.now()
    await this.slot()
    const started = performance.now()
    let y: FloatTensor | undefined
    let loss: number | undefined
    let version: WeightsVersion | undefined
    let computeMs: number
    try {
      if (last && backward) ({ loss, gx: y } = await this.engine.lossBackward(x, extra as TokenTensor))
      else if (last) loss = await this.engine.loss(x, extra as TokenTensor)
      else if (backward) ({ gx: y, version } = await this.engine.backwardAt(x, extra as FloatTensor, at))
      else ({ y, version } = await this.engine.forwardAt(x))
      computeMs = performance.now() - started
      if (this.init.slowdown > 1) {
        await new Promise(resolve => setTimeout(resolve, (this.init.slowdown - 1) * computeMs))
        computeMs = performance.now() - started
      }
    } finally {
      this.release()
    }
    let staleness = 0
    if (backward) {
      this.stats.backward++
      if (at !== undefined && version !== undefined && !sameWeights(at, version)) this.stats.versionMisses++
      const now = this.engine.weightsVersion
      if (version !== undefined && version.epoch === now.epoch) staleness = now.version - version.version
      this.maybeStep()
    } else {
      this.stats.forward++
    }
    this.decayRate(backward ? x.shape[0] * x.shape[1] : 0)
    return { y, loss, version, staleness, computeMs, waitMs: started - queued }
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

  /**
   * Steps once this replica's share of the stage's batch has accumulated (stepTokens / R with R
   * replicas), so that the stage takes as many steps per token as one machine would, and each
   * replica as many as the run's schedule has. The engine runs the step between calls.
   */
  private maybeStep (): void {
    if (this.stepping || this.engine.accumulatedTokens < this.share()) return
    this.stepping = true
    // The step waits for the calls holding the weights, whose backwards it takes too: it frees
    // the room of every token it took, or the room of those backwards would stay taken for good
    // once the share shrank meanwhile (a replica became ready), and nothing more was admitted.
    this.engine.step().then(
      ({ tokens }) => {
        this.stats.steps++
        this.admitted = Math.max(0, this.admitted - tokens)
      },
      err => this.log.error('stage %d optimizer step failed: %e', this.init.stage, err)
    ).finally(() => {
      this.stepping = false
      this.wakeAdmissions()
    })
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

/** Whether two weight versions name the same weights (absent: unknown, never the same). */
export function sameWeights (a?: WeightsVersion, b?: WeightsVersion): boolean {
  return a !== undefined && b !== undefined && a.epoch === b.epoch && a.version === b.version
}

/** The queue is full: the caller should try another replica. */
export class BusyError extends Error {
  override name = 'BusyError'
}
