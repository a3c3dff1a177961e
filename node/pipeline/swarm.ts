// The pipeline as a daemon service: serves this node's stage (the stage host's engine behind a
// StageServer), routes calls to every stage's ready replicas found in the registry, and, unless
// told only to serve, drives microbatches from this node's data shard. Plugged into SwarmNode as
// a service; the stage host owns the engine, its checkpoints and its moves.
import { loadDataset } from '../data/corpus.js'
import type { SwarmComponents, SwarmService } from '../daemon/node.js'
import type { ServedStage, StageHost, StageUser } from '../daemon/stage-host.js'
import { DRIVER_IDLE_MS, LOAD_REPORT_MS, STOP_DRAIN_MS } from '../timing.js'
import { settlesWithin } from '../util/abort.js'
import type { StageEngine } from '../runtime/stage-engine.js'
import { LossHistory, type LossHistoryJSON } from '../metrics/loss-history.js'
import { SwarmStage, combineSignals, type CallStats, type ReplicaSource } from './caller.js'
import { StageClient, type StageTraffic } from './client.js'
import { Forwarder, type ForwardStats } from './forward.js'
import { ActiveDrivers } from './depth.js'
import { Driver, maxDepth, maxStaleness, type DriverReport, type DriverStats } from './driver.js'
import { wireDTypes, type WireDType } from './activations.js'
import { Router } from './router.js'
import { stageProtocol } from '../../protocols/ids.js'
import { StageServer, stageMessageLimit } from './server.js'
import type { StageCompute, StageLoad, StageService, StageServiceStats } from './service.js'

export interface PipelineOptions {
  /** Drive microbatches from this node's data (false: only serve). */
  drive: boolean
  /** Activation encoding on the wire. */
  wire: WireDType
  /** Microbatches in flight from this driver (default: stages + 1). */
  inFlight?: number
  /** Stop driving after this many microbatches (default: never). */
  maxMicrobatches?: number
  /** Validation every N microbatches. */
  evalEvery?: number
  /** onnxruntime threads of the stage's engine (default: all cores); the daemon gives it to the stage host. */
  threads?: number
  /** Test only: this node's stage computes this many times slower. */
  slowdown?: number
  onProgress?: (report: DriverReport) => void
}

/** The pipeline's part of the daemon's status JSON (`services.pipeline`). */
export interface PipelineStatus {
  /** The stage this node serves, if any yet. */
  stage?: number
  /** The inner step of the stage's last checkpoint (or the one it resumed from). */
  checkpointStep?: number
  server?: StageServiceStats
  load?: StageLoad
  driver?: DriverStats
  /** Microbatches the driver keeps in flight now (adaptive unless --in-flight). */
  depth?: number
  /** Per stage: calls made, retried and failed through the router. */
  calls: CallStats[]
  /** Calls routed to each peer. */
  routed: Record<string, number>
  /** The router's estimate of each measured peer's transfer time per call (ms on the wire and in serialization, outside its compute and queue). */
  transferMs: Record<string, number>
  /** Peers the router avoids for now after failed calls. */
  banned: string[]
  /** This node's microbatches trained server to server, and those it relayed. */
  forwarding: ForwardStats
  /** Stage protocol bytes this node's calls sent and received (its own microbatches and the hops it forwarded). */
  traffic: StageTraffic
  /** This node's training and validation loss against the tokens it drove (bounded). */
  history: LossHistoryJSON
}

/** A service factory for SwarmNode's `services`. */
export function pipelineService (options: PipelineOptions): (components: SwarmComponents) => PipelineService {
  return components => new PipelineService(components, options)
}

export class PipelineService implements SwarmService, ReplicaSource, StageUser {
  private readonly components: SwarmComponents
  private readonly stageHost: StageHost
  private readonly options: PipelineOptions
  private readonly self: string
  private readonly client: StageClient
  private readonly activeDrivers = new ActiveDrivers(DRIVER_IDLE_MS)
  readonly router = new Router()
  readonly stages: SwarmStage[]
  readonly forwarder: Forwarder
  driver?: Driver
  readonly history = new LossHistory()
  private serving?: { stage: number, server: StageServer }
  private loadTimer?: NodeJS.Timeout

  constructor (components: SwarmComponents, options: PipelineOptions) {
    if (components.stageHost === undefined) throw new Error('the pipeline needs the node\'s stage host')
    this.components = components
    this.stageHost = components.stageHost
    this.options = options
    this.self = components.host.peerId.toString()
    const { model, nStages, optimizer } = components.manifest
    const maxMessageBytes = stageMessageLimit(optimizer.batchSize * model.seqLen, model.dModel)
    this.client = new StageClient({ dialer: components.host, shutdown: components.shutdown, logger: components.logger }, { protocol: stageProtocol(components.runId), maxMessageBytes })
    const local = { peer: this.self, service: (stage: number): StageService | undefined => this.serving?.stage === stage ? this.serving.server.service : undefined }
    this.stages = Array.from({ length: nStages }, (_, stage) => new SwarmStage(
      { client: this.client, router: this.router, replicas: this, local, shutdown: components.shutdown, logger: components.logger },
      { stage, nStages, dModel: model.dModel, seqLen: model.seqLen, vocabSize: model.vocabSize, maxTokens: optimizer.batchSize * model.seqLen, wireDType: wireDTypes[options.wire] }
    ))
    this.forwarder = new Forwarder({ stages: this.stages, router: this.router, replicas: this, local, logger: components.logger })
    this.stageHost.use(this)
  }

  /** Ready peers serving `stage` in the registry's view, except this node (its own replica is called directly). */
  replicas (stage: number): string[] {
    return this.components.registry.view.stages[stage]?.peers.filter(p => p.ready && p.peerId !== this.self).map(p => p.peerId) ?? []
  }

  /**
   * Nodes driving the swarm, this one included: peers whose records show the tokens they drove
   * growing (the depth each may keep shrinks as they come, so that the stages' staleness does not
   * grow, and grows back as they stop).
   */
  private drivers (): number {
    const peers = this.components.registry.view.stages.flatMap(s => s.peers).filter(p => p.peerId !== this.self)
    return this.activeDrivers.count(peers, Date.now()) + 1
  }

  async start (): Promise<void> {
    const { manifest, registry } = this.components
    // What its record tells the swarm (a node that serves no stage publishes none): its load,
    // and if it drives, its tokens and losses, so that any node can show the swarm's loss.
    this.loadTimer = setInterval(() => {
      if (this.serving === undefined) return
      const load = this.serving.server.load()
      const driven = this.driver?.stats
      void registry.update({
        queueLength: load.queueLength,
        servedThroughput: load.tokensPerSecond,
        ...driven === undefined ? {} : { drivenTokens: driven.tokens, trainLoss: driven.trainLoss, validationLoss: driven.validationLoss }
      })
    }, LOAD_REPORT_MS)
    if (!this.options.drive) return
    const corpus = await loadDataset(manifest.datasetId)
    this.driver = new Driver({ stages: this.stages, train: async batch => await this.forwarder.train(batch), evaluate: async batch => await this.forwarder.evaluate(batch), signals: () => combineSignals(this.stages), logger: this.components.logger }, {
      train: corpus.train,
      validation: corpus.validation,
      seqLen: manifest.model.seqLen,
      batchSize: manifest.optimizer.batchSize,
      seed: this.self,
      inFlight: this.options.inFlight,
      maxStaleness: maxStaleness(manifest.optimizer.weightVersions),
      maxInFlight: () => maxDepth(manifest.optimizer.microbatches, this.drivers()),
      maxMicrobatches: this.options.maxMicrobatches,
      evalEvery: this.options.evalEvery,
      onProgress: report => {
        this.history.add(report.kind, report.tokens, report.loss)
        this.options.onProgress?.(report)
      }
    })
    this.driver.start()
  }

  async stop (): Promise<void> {
    clearInterval(this.loadTimer)
    // Microbatches in flight get a bounded time to complete; then the client stops and they end.
    const drained = this.driver?.stop()
    await settlesWithin(drained, STOP_DRAIN_MS)
    await this.client.stop()
    await drained
  }

  status (): PipelineStatus {
    return {
      stage: this.serving?.stage,
      checkpointStep: this.stageHost.served?.savedStep,
      server: this.serving?.server.stats(),
      load: this.serving?.server.load(),
      driver: this.driver?.stats,
      depth: this.driver?.depth,
      calls: this.stages.map(s => s.stats),
      routed: Object.fromEntries(this.router.callCounts()),
      transferMs: Object.fromEntries(this.router.transferEstimates()),
      banned: [...this.router.callCounts().keys()].filter(peer => this.router.isBanned(peer)),
      forwarding: this.forwarder.stats,
      traffic: this.client.traffic,
      history: this.history.toJSON()
    }
  }

  /** Serves the stage host's engine (called by the stage host once the stage's state is loaded). */
  async attach (served: ServedStage): Promise<void> {
    const { manifest, host, runId } = this.components
    const { model, nStages, optimizer } = manifest
    // TRAIN calls go on to the next stage through this node's caller of it (its router, its client).
    const next = served.stage < nStages - 1 ? this.stages[served.stage + 1] : undefined
    const server = new StageServer({ registrar: host, engine: this.compute(served.engine), next, replicas: () => this.stageHost.replicas(served.stage), logger: this.components.logger }, {
      runId,
      self: this.self,
      stage: served.stage,
      nStages,
      dModel: model.dModel,
      seqLen: model.seqLen,
      vocabSize: model.vocabSize,
      maxTokens: optimizer.batchSize * model.seqLen,
      stepTokens: optimizer.batchSize * model.seqLen * optimizer.microbatches,
      slowdown: this.options.slowdown
    })
    await server.start()
    this.serving = { stage: served.stage, server }
  }

  async detach (): Promise<void> {
    const serving = this.serving
    this.serving = undefined
    await serving?.server.stop()
  }

  /** The engine as the server uses it: its inner steps go through the stage host. */
  private compute (engine: StageEngine): StageCompute {
    const stageHost = this.stageHost
    return {
      forwardAt: (...args: Parameters<StageEngine['forwardAt']>) => engine.forwardAt(...args),
      backwardAt: (...args: Parameters<StageEngine['backwardAt']>) => engine.backwardAt(...args),
      loss: (...args: Parameters<StageEngine['loss']>) => engine.loss(...args),
      lossBackward: (...args: Parameters<StageEngine['lossBackward']>) => engine.lossBackward(...args),
      step: (gradNorm?: number) => stageHost.step(engine, gradNorm),
      hold: () => engine.hold(),
      get accumulatedTokens () { return engine.accumulatedTokens },
      get weightsVersion () { return engine.weightsVersion }
    }
  }
}
