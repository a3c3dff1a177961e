// The driver: pushes microbatches from this node's data shard through the pipeline, several at
// a time so that every stage has work, and evaluates the validation loss now and then. A
// microbatch, once issued, is followed until it completes (the stage callers retry on other
// replicas), so `issued` and `completed` only differ by what is in flight.
import { defaultLogger } from '@libp2p/logger'
import type { ComponentLogger, Logger } from '@libp2p/interface'
import { BatchSampler, evenBatches, type TokenBatch } from '../data/sampler.js'
import { evaluateMicrobatch, trainMicrobatch, type Microbatch, type StageCaller } from './chain.js'
import type { PipelineSignals } from './caller.js'
import { DepthControl } from './depth.js'
import { defaultOptimizerConfig } from '../runtime/optimizer-config.js'

export interface DriverComponents {
  /** One caller per stage, in order. */
  stages: readonly StageCaller[]
  /** Trains one microbatch, returning its loss (default: relayed through this node over `stages`; a Forwarder forwards it server to server). */
  train?: (batch: Microbatch) => Promise<number>
  /** The loss of one validation microbatch (default: relayed through this node over `stages`; a Forwarder forwards it server to server). */
  evaluate?: (batch: Microbatch) => Promise<number>
  /** What the stages' calls showed since the last call (for adaptive depth): their largest staleness and their queue waits. */
  signals?: () => PipelineSignals
  /** Names the node in log lines (default: unnamed). */
  logger?: ComponentLogger
}

export interface DriverInit {
  train: Uint8Array
  validation: Uint8Array
  seqLen: number
  batchSize: number
  /** Microbatches in flight: a fixed number, or undefined to adapt (see DepthControl), starting at stages + 1. */
  inFlight?: number
  /** Adaptive depth keeps backwards at most this many weight versions stale (default: maxStaleness of the default weightVersions). */
  maxStaleness?: number
  /**
   * Adaptive depth never exceeds what this says (default: no bound but staleness), asked again
   * as microbatches complete: the swarm's drivers come and go. See maxDepth.
   */
  maxInFlight?: () => number
  /** Seeds this node's shard of random windows. */
  seed: number | string
  /** Evaluate after every this many completed microbatches (0: never). */
  evalEvery?: number
  /** Validation microbatches per evaluation, the same ones each time (default: enough for 8192 tokens, at least 4). */
  evalBatches?: number
  /** Stop issuing after this many microbatches (default: run until stopped). */
  maxMicrobatches?: number
  onProgress?: (report: DriverReport) => void
}

export interface DriverReport {
  kind: 'train' | 'validation'
  /** Mean loss in nats per token (per byte for the byte-level model). */
  loss: number
  completed: number
  /** Training tokens of the completed microbatches so far. */
  tokens: number
  /** Training tokens per second over the last microbatches (so waiting for peers at the start does not count). */
  tokensPerSecond: number
}

export interface DriverStats {
  issued: number
  completed: number
  /** Microbatches whose calls gave up (no replica answered for a long time): counted, never silent. */
  failed: number
  /** Moving average of the training loss, and the latest validation loss. */
  trainLoss?: number
  validationLoss?: number
  validations: number[]
  tokens: number
  /** Wall time spent in evaluations (training throughput leaves it out). */
  evaluationMs: number
  /** A bounded run (maxMicrobatches) has finished, final validation included. */
  done: boolean
}

/**
 * The most microbatches a driver keeps in flight for a step of `microbatches` when `drivers`
 * drive the swarm: together a quarter of a step. The bound dates from when a microbatch in flight
 * across a step got a stale gradient (600 steps of the default model, one driver, 3 stages x 1
 * replica: depth 1 ended 1.1% above local, a quarter 1.2%, half 8.6%, nearly all 22%). Stage
 * servers now admit a replica's share of a step and make the rest wait for the step
 * (pipeline/service.ts), so depth beyond it only waits; a deeper bound is not measured yet. To
 * hide more latency, take more microbatches per step.
 */
export function maxDepth (microbatches: number, drivers = 1): number {
  return Math.max(1, Math.floor(microbatches / (4 * Math.max(1, drivers))))
}

/**
 * The staleness, in weight versions, a driver lets backwards have when stage servers keep
 * `weightVersions` of them: one fewer than the stash allows beyond the current, so that a depth
 * probe that overshoots by one still recomputes with exactly its forward's weights.
 */
export function maxStaleness (weightVersions: number): number {
  return weightVersions - 2
}

export class Driver {
  readonly stats: DriverStats = { issued: 0, completed: 0, failed: 0, validations: [], tokens: 0, evaluationMs: 0, done: false }
  private readonly stages: readonly StageCaller[]
  private readonly trainBatch: (batch: Microbatch) => Promise<number>
  private readonly evaluateBatch: (batch: Microbatch) => Promise<number>
  private readonly signals: () => PipelineSignals
  private readonly init: Required<Omit<DriverInit, 'inFlight' | 'maxInFlight' | 'maxMicrobatches' | 'onProgress'>> & Pick<DriverInit, 'inFlight' | 'maxInFlight' | 'maxMicrobatches' | 'onProgress'>
  private readonly sampler: BatchSampler
  private readonly evalSet: TokenBatch[]
  private readonly control?: DepthControl
  private running = false
  private readonly workers = new Set<Promise<void>>()
  /** Workers not yet leaving (a worker leaves synchronously, before its promise settles). */
  private active = 0
  private evaluating?: Promise<void>
  /** Evaluations started so far: a microbatch that overlapped one does not teach the depth control. */
  private evaluations = 0
  /** Completion times and tokens of the most recent microbatches, for the recent rate. */
  private readonly recent: Array<{ at: number, tokens: number }> = []
  private evaluatedAt = -1
  private readonly log: Logger

  constructor (components: DriverComponents, init: DriverInit) {
    this.stages = components.stages
    this.trainBatch = components.train ?? (async batch => await trainMicrobatch(this.stages, batch))
    this.evaluateBatch = components.evaluate ?? (async batch => await evaluateMicrobatch(this.stages, batch))
    this.log = (components.logger ?? defaultLogger()).forComponent('swarmtrain:pipeline:driver')
    this.signals = components.signals ?? (() => ({ staleness: 0, waitedMs: 0 }))
    this.init = { ...init, maxStaleness: init.maxStaleness ?? maxStaleness(defaultOptimizerConfig.weightVersions), evalEvery: init.evalEvery ?? 50, evalBatches: init.evalBatches ?? Math.max(4, Math.ceil(8192 / (init.batchSize * init.seqLen))) }
    if (init.inFlight === undefined) this.control = new DepthControl({ initial: components.stages.length + 1, maxStaleness: this.init.maxStaleness, max: init.maxInFlight?.() })
    this.sampler = new BatchSampler(init.train, init.seqLen, init.batchSize, init.seed)
    this.evalSet = this.init.evalEvery > 0 ? evenBatches(init.validation, init.seqLen, init.batchSize, this.init.evalBatches) : []
  }

  /** Microbatches kept in flight now. */
  get depth (): number { return this.control?.depth ?? this.init.inFlight! }

  start (): void {
    if (this.running) return
    this.running = true
    this.addWorkers()
    void this.finish()
  }

  /** Whether another microbatch may be issued. */
  private get issuing (): boolean {
    return this.running && (this.init.maxMicrobatches === undefined || this.stats.issued < this.init.maxMicrobatches)
  }

  /**
   * One worker per microbatch in flight; surplus workers end after their microbatch (see `work`).
   * Only while there is something to issue: a worker with nothing to do ends at once, in this loop.
   */
  private addWorkers (): void {
    while (this.issuing && this.active < this.depth) {
      this.active++
      const worker: Promise<void> = this.work().finally(() => this.workers.delete(worker))
      this.workers.add(worker)
    }
  }

  /** After a bounded run, one last evaluation so the run ends with a validation loss. */
  private async finish (): Promise<void> {
    await this.drained()
    await this.evaluating
    if (this.running && this.evalSet.length > 0 && this.evaluatedAt !== this.stats.completed) await this.evaluate().catch(err => { this.log.error('evaluation failed: %e', err) })
    this.running = false
    this.stats.done = true
  }

  /** Stops issuing; resolves when every microbatch in flight has completed. */
  async stop (): Promise<void> {
    this.running = false
    await this.drained()
    await this.evaluating
  }

  private async drained (): Promise<void> {
    while (this.workers.size > 0) await Promise.all(this.workers)
  }

  /** Mean validation loss over the fixed validation microbatches. */
  async evaluate (): Promise<number> {
    this.evaluations++
    const started = performance.now()
    let sum = 0
    for (const batch of this.evalSet) sum += await this.evaluateBatch(batch)
    const loss = sum / this.evalSet.length
    this.stats.evaluationMs += performance.now() - started
    this.evaluatedAt = this.stats.completed
    this.stats.validationLoss = loss
    this.stats.validations.push(loss)
    this.log('validation loss %s after %d microbatches', loss.toFixed(4), this.stats.completed)
    this.init.onProgress?.({ kind: 'validation', loss, completed: this.stats.completed, tokens: this.stats.tokens, tokensPerSecond: this.tokensPerSecond() })
    return loss
  }

  private async work (): Promise<void> {
    // `active` drops in the same tick the worker leaves, so exactly the surplus leaves when depth goes down.
    try {
      while (this.issuing) {
        // Depth went down: this worker is surplus.
        if (this.active > this.depth) return
        // New microbatches wait while an evaluation runs: its calls then find the fastest replicas
        // idle instead of spilling over to slow (or less trained) ones, so evaluations compare.
        if (this.evaluating !== undefined) {
          await this.evaluating
          continue
        }
        const batch = this.sampler.next()
        this.stats.issued++
        const issued = { at: performance.now(), evaluations: this.evaluations }
        try {
          const loss = await this.trainBatch(batch)
          this.adapt(issued)
          this.stats.completed++
          this.stats.tokens += batch.x.data.length
          this.recent.push({ at: Date.now(), tokens: batch.x.data.length })
          if (this.recent.length > 20) this.recent.shift()
          this.stats.trainLoss = this.stats.trainLoss === undefined ? loss : 0.9 * this.stats.trainLoss + 0.1 * loss
          this.init.onProgress?.({ kind: 'train', loss, completed: this.stats.completed, tokens: this.stats.tokens, tokensPerSecond: this.tokensPerSecond() })
          if (this.init.evalEvery > 0 && this.stats.completed % this.init.evalEvery === 0 && this.evaluating === undefined) {
            this.evaluating = this.evaluate().catch(err => { this.log.error('evaluation failed: %e', err) }).then(() => { this.evaluating = undefined })
          }
        } catch (err) {
          this.stats.failed++
          this.log.error('microbatch failed: %e', err)
        }
      }
    } finally {
      this.active--
    }
  }

  /** Teaches the depth control a completed microbatch's latency, unless an evaluation held the stages meanwhile. */
  private adapt (issued: { at: number, evaluations: number }): void {
    if (this.control === undefined) return
    const max = this.init.maxInFlight?.()
    if (max !== undefined) this.control.bound(max)
    const { staleness, waitedMs } = this.signals()
    if (issued.evaluations !== this.evaluations || this.evaluating !== undefined) return
    const before = this.control.depth
    if (this.control.completed(performance.now() - issued.at, waitedMs, staleness) > before) this.addWorkers()
    if (this.control.depth !== before) this.log('depth %d -> %d (staleness %d)', before, this.control.depth, staleness)
  }

  private tokensPerSecond (): number {
    if (this.recent.length < 2) return 0
    const tokens = this.recent.slice(1).reduce((a, r) => a + r.tokens, 0)
    return tokens / Math.max(1e-3, (this.recent[this.recent.length - 1].at - this.recent[0].at) / 1000)
  }
}
