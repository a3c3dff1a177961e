// The stage host: owns the engine of the stage this node serves, and its outer (averaging)
// state. It starts the engine, resumes it from the node's checkpoint, checkpoints it, swaps it
// on a move, and emits `step` per inner step. Every serve and unserve runs in one chain, so
// there is never more than one engine. The pipeline's stage server and the averaging service
// use it as `StageUser`s: attached in registration order once the engine is ready (averaging
// first: it syncs the stage's state before the server takes calls), detached in reverse.
import type { ComponentLogger, Logger } from '@libp2p/interface'
import type { StageAssigner, StageChangeDetail } from '../assignment/assigner.js'
import type { RunManifest } from '../manifest/manifest.js'
import { stageLayout } from '../model/index.js'
import type { StageRegistry } from '../registry/registry.js'
import { readStageCheckpoint, saveStageCheckpoint, stageCheckpointPath, type StageState } from '../runtime/checkpoint.js'
import { StageEngine, type StepResult } from '../runtime/stage-engine.js'


/** The averaging state of a replica, in the engine's ParamLayout. */
export interface OuterState {
  /** theta_at_last_sync: the parameters every member of the stage left the last round with. */
  theta: Float32Array
  momentum: Float32Array
  /** The error-feedback buffer of the compressor (this replica's own). */
  error: Float32Array
  /** Rounds completed. */
  round: number
  /**
   * Tokens the stage trained through the last round: the sum of every round's contributions, so
   * the same on every member. A replica's schedule position is this over the tokens of one step,
   * plus its own steps since (see AveragingService), as one machine's would be at those tokens.
   */
  tokens: number
}

/** The stage this node serves. */
export interface ServedStage {
  stage: number
  engine: StageEngine
  outer: OuterState
  /** The engine's steppedTokens at the last round's snapshot: the tokens since are the next round's. */
  syncedTokens: number
  /** Inner step and round of the last checkpoint written (or resumed). */
  savedStep: number
  savedRound: number
}

export interface StageUser {
  attach(served: ServedStage): Promise<void>
  detach(served: ServedStage): Promise<void>
}

export interface StepDetail {
  stage: number
  /** Inner steps taken. */
  step: number
  /** Tokens that step trained on. */
  tokens: number
}

export interface StageHostComponents {
  assigner: StageAssigner
  registry: StageRegistry
  manifest: RunManifest
  runId: string
  dir: string
  logger: ComponentLogger
}

export interface StageHostInit {
  /** onnxruntime threads of the engine (default: all cores). */
  threads?: number
  /** Checkpoint the served stage this often, ms (when it stepped or averaged since). */
  checkpointEveryMs: number
}

export interface StageHostStatus {
  stage?: number
  step?: number
  round?: number
  tokensSinceSync?: number
  /** Inner step of the last checkpoint written or resumed. */
  checkpointStep?: number
}

export class StageHost extends EventTarget {
  private readonly components: StageHostComponents
  private readonly log: Logger
  private readonly init: StageHostInit
  private readonly users: StageUser[] = []
  private current?: ServedStage
  private moving: Promise<void> = Promise.resolve()
  private saving: Promise<void> = Promise.resolve()
  private checkpointTimer?: NodeJS.Timeout
  private readonly onStage = (event: Event): void => {
    void this.serve((event as CustomEvent<StageChangeDetail>).detail.stage)
  }

  constructor (components: StageHostComponents, init: StageHostInit) {
    super()
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('swarmtrain:stage-host')
  }

  /** The stage served now, once its users are attached. */
  get served (): ServedStage | undefined {
    return this.current
  }

  use (user: StageUser): void {
    this.users.push(user)
  }

  async start (): Promise<void> {
    const { assigner } = this.components
    assigner.addEventListener('stage', this.onStage)
    this.checkpointTimer = setInterval(() => { void this.checkpoint() }, this.init.checkpointEveryMs)
    // The first serve's failure (e.g. the engine cannot load) fails the start; later ones are logged.
    const stage = assigner.stage
    if (stage !== undefined) await this.enqueue(async () => { await this.switchTo(stage) })
  }

  async stop (): Promise<void> {
    this.components.assigner.removeEventListener('stage', this.onStage)
    clearInterval(this.checkpointTimer)
    await this.enqueue(async () => { await this.unserve() })
  }

  /** Serves `stage` from now on; serves and unserves run one at a time, in call order. */
  serve (stage: number): Promise<void> {
    return this.enqueue(async () => { await this.switchTo(stage) }).catch(err => { this.log.error('could not serve stage %d: %e', stage, err) })
  }

  private async switchTo (stage: number): Promise<void> {
    if (this.current?.stage === stage) return
    await this.unserve()
    await this.load(stage)
  }

  /**
   * One inner step of the served engine (what the stage server calls once its share of the
   * stage's batch has accumulated); counts its tokens toward the next round and emits `step`.
   */
  async step (engine: StageEngine, gradNorm?: number): Promise<StepResult> {
    const before = engine.steppedTokens
    const served = this.current
    const result = await engine.step(gradNorm)
    if (served?.engine === engine) {
      this.dispatchEvent(new CustomEvent<StepDetail>('step', { detail: { stage: served.stage, step: engine.steps, tokens: engine.steppedTokens - before } }))
    }
    return result
  }

  /**
   * Ready replicas of `stage` in the swarm's view, this node included: they share the stage's
   * batch, so each steps on its share and the stage as a whole steps as one machine would.
   */
  replicas (stage: number): number {
    const self = this.components.registry.self?.peerId
    const others = this.components.registry.view.stages[stage]?.peers.filter(p => p.ready && p.peerId !== self).length ?? 0
    return others + 1
  }

  /** Saves the served stage if it stepped or averaged since the last save; saves never overlap. */
  async checkpoint (): Promise<void> {
    this.saving = this.saving.then(async () => {
      const served = this.current
      if (served === undefined || (served.engine.steps === served.savedStep && served.outer.round === served.savedRound)) return
      const path = stageCheckpointPath(this.components.dir, served.stage)
      try {
        const state = await this.state(served)
        await saveStageCheckpoint(path, state)
        served.savedStep = state.step
        served.savedRound = state.round
        this.log('checkpointed stage %d at step %d round %d', served.stage, state.step, state.round)
      } catch (err) {
        this.log.error('could not checkpoint stage %d to %s: %e', served.stage, path, err)
      }
    })
    await this.saving
  }

  /** The served stage's state groups, the engine's taken between its calls. */
  async state (served: ServedStage): Promise<StageState> {
    const { weights, m, v, step } = await served.engine.snapshot()
    const { theta, momentum, error, round, tokens } = served.outer
    return {
      runId: this.components.runId,
      stage: served.stage,
      step,
      round,
      tokens,
      layoutHash: served.engine.params.hash,
      groups: { weights, 'adamw.m': m, 'adamw.v': v, theta_at_last_sync: theta.slice(), outer_momentum: momentum.slice(), error_feedback: error.slice() }
    }
  }

  status (): StageHostStatus {
    const served = this.current
    if (served === undefined) return {}
    return { stage: served.stage, step: served.engine.steps, round: served.outer.round, tokensSinceSync: tokensSinceSync(served), checkpointStep: served.savedStep }
  }

  private enqueue (task: () => Promise<void>): Promise<void> {
    const run = this.moving.then(task)
    this.moving = run.catch(() => {})
    return run
  }

  private async load (stage: number): Promise<void> {
    const { manifest, registry } = this.components
    const { model, nStages, optimizer } = manifest
    await registry.update({ ready: false })
    const engine = await StageEngine.create({ model, layout: stageLayout(model, stage, nStages), optimizer, threads: this.init.threads, weightVersions: optimizer.weightVersions })
    const size = engine.params.size
    const served: ServedStage = {
      stage,
      engine,
      outer: { theta: engine.weights.slice(), momentum: new Float32Array(size), error: new Float32Array(size), round: 0, tokens: 0 },
      syncedTokens: 0,
      savedStep: 0,
      savedRound: 0
    }
    try {
      await this.resume(served)
      const attached: StageUser[] = []
      try {
        for (const user of this.users) {
          await user.attach(served)
          attached.push(user)
        }
      } catch (err) {
        for (const user of attached.reverse()) await user.detach(served).catch(e => this.log.error('detach failed: %e', e))
        throw err
      }
    } catch (err) {
      await engine.close()
      throw err
    }
    this.current = served
    await registry.update({ ready: true })
    this.log('serving stage %d from step %d round %d', stage, served.savedStep, served.outer.round)
  }

  private async unserve (): Promise<void> {
    const served = this.current
    if (served === undefined) return
    await this.components.registry.update({ ready: false })
    for (const user of [...this.users].reverse()) await user.detach(served).catch(err => this.log.error('detach failed: %e', err))
    await this.checkpoint()
    this.current = undefined
    await served.engine.close()
  }

  /** Loads this node's checkpoint of the stage if it is of this run and layout. */
  private async resume (served: ServedStage): Promise<void> {
    const path = stageCheckpointPath(this.components.dir, served.stage)
    try {
      const saved = await readStageCheckpoint(path, { runId: this.components.runId, stage: served.stage, layout: served.engine.params })
      if (saved === undefined) return
      await applyStageState(served, saved)
      this.log('resumed stage %d at step %d round %d from %s', served.stage, saved.step, saved.round, path)
    } catch (err) {
      // A damaged or foreign checkpoint must not keep the node from serving: start the stage fresh.
      this.log.error('ignoring unusable checkpoint %s: %e', path, err)
    }
  }
}

/** Loads a stage state into a served stage (engine and outer state). */
export async function applyStageState (served: ServedStage, state: StageState): Promise<void> {
  const g = state.groups
  await served.engine.loadState(g.weights, { step: state.step, m: g['adamw.m'], v: g['adamw.v'] })
  served.outer.theta.set(g.theta_at_last_sync)
  served.outer.momentum.set(g.outer_momentum)
  served.outer.error.set(g.error_feedback)
  served.outer.round = state.round
  served.outer.tokens = state.tokens
  served.syncedTokens = served.engine.steppedTokens
  served.savedStep = state.step
  served.savedRound = state.round
}

/** Tokens the replica trained since the last round's snapshot. */
export function tokensSinceSync (served: ServedStage): number {
  return served.engine.steppedTokens - served.syncedTokens
}
