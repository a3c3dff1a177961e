// Self-assignment: on start, join the weakest stage that fits in memory (or the pinned one);
// then, at randomized intervals, re-read the swarm and move if Petals' rule says it clearly
// helps. Randomized intervals keep two replicas of a crowded stage from moving together.
import type { ComponentLogger, Logger } from '@libp2p/interface'
import type { StageRegistry, SwarmView } from '../registry/registry.js'
import { UserError } from '../errors.js'
import { sleep } from '../util/abort.js'
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js'
import { Rng } from '../util/random.js'
import { chooseStage, moverInSlot, rebalanceMove, rebalanceSlot, type Move, type Server, type StageLoad } from './policy.js'

export interface AssignerComponents {
  /** Lines for the operator (the command line prints them); default: the debug log. */
  notice?: (line: string) => void
  registry: Pick<StageRegistry, 'refresh' | 'update'>
  logger: ComponentLogger
  /** Ends the wait before a move at once when the node stops. */
  shutdown?: AbortSignal
  /** Default: the system clock (the simulator passes simulated time). */
  clock?: Clock
}

export interface AssignerInit {
  nStages: number
  /** This node's measured (or given) tokens/s. */
  throughput: number
  freeMemory: number
  /** Bytes a stage needs to train here; stages needing more than freeMemory are never chosen. */
  stageMemory: (stage: number) => number
  /** `--stage N`: serve this stage and never move. */
  pinnedStage?: number
  /** Mean time between rebalancing checks; each wait is uniform in [0.5, 1.5] times this. */
  rebalanceMs: number
  seed: string
  /** This node's peer id, to find itself in the registry's view. */
  peerId: string
  /** The stage this node holds a checkpoint of (from an earlier run of the daemon). */
  saved?: { stage: number, step: number, path: string }
}

export interface StageMove extends Move {
  at: number
}

export interface StageChangeDetail {
  stage: number
  /** Undefined for the initial choice. */
  move?: StageMove
}

/** Emits `stage` (CustomEvent<StageChangeDetail>) on the initial choice and on every move. */
export class StageAssigner extends EventTarget {
  private readonly registry: Pick<StageRegistry, 'refresh' | 'update'>
  private readonly shutdown?: AbortSignal
  private readonly clock: Clock
  private readonly log: Logger
  private readonly init: AssignerInit
  private readonly rng: Rng
  private current?: number
  private timer?: TimerHandle
  private running = false
  private checking?: Promise<void>
  readonly moves: StageMove[] = []

  private readonly notice: (line: string) => void

  constructor (components: AssignerComponents, init: AssignerInit) {
    super()
    this.registry = components.registry
    this.shutdown = components.shutdown
    this.clock = components.clock ?? systemClock
    this.log = components.logger.forComponent('swarmtrain:assignment')
    this.notice = components.notice ?? (line => { this.log(line) })
    this.init = init
    this.rng = new Rng(init.seed)
  }

  get stage (): number | undefined {
    return this.current
  }

  get pinned (): boolean {
    return this.init.pinnedStage !== undefined
  }

  /** Picks the initial stage from a fresh view, announces it and starts rebalancing. */
  async start (): Promise<number> {
    this.running = true
    let stage = this.init.pinnedStage
    if (stage === undefined) {
      // Records under our own peer id are a previous life of this node (a crash leaves them
      // valid for a while): counting them would make the stage we held look served.
      const stages = loads(await this.registry.refresh(true), this.init.peerId)
      const saved = this.init.saved
      stage = chooseStage(stages, s => this.fits(s), n => this.rng.int(n), saved?.stage)
      if (stage === undefined) {
        const least = Math.min(...Array.from({ length: this.init.nStages }, (_, s) => this.init.stageMemory(s)))
        throw new NoStageFitsError(`no stage of this run fits in free memory: the smallest needs ${gib(least)}, ${gib(this.init.freeMemory)} free (pin one with --stage N to try anyway)`)
      }
      // Visible without debug logging: whether the saved weights are used is the operator's question after a restart.
      if (saved !== undefined && saved.stage === stage) this.notice(`resuming stage ${stage} from ${saved.path} (step ${saved.step}): the stage needs a server`)
      else if (saved !== undefined) this.notice(`not resuming stage ${saved.stage} from ${saved.path}: stage ${stage} needs this node more (${describe(stages)}); the checkpoint stays for later`)
    }
    this.current = stage
    this.log('joining stage %d', stage)
    await this.registry.update({ stage, throughput: this.init.throughput, freeMemory: this.init.freeMemory })
    this.dispatchEvent(new CustomEvent<StageChangeDetail>('stage', { detail: { stage } }))
    if (this.init.pinnedStage === undefined) this.schedule()
    return stage
  }

  async stop (): Promise<void> {
    this.running = false
    this.clock.clearTimeout(this.timer)
    await this.checking
  }

  private fits (stage: number): boolean {
    return this.init.stageMemory(stage) <= this.init.freeMemory
  }

  private schedule (): void {
    if (!this.running) return
    const wait = this.init.rebalanceMs * (0.5 + this.rng.next())
    this.timer = this.clock.setTimeout(() => {
      this.checking = this.check().catch(err => { this.log.error('rebalance check failed: %e', err) }).finally(() => {
        this.checking = undefined
        this.schedule()
      })
    }, wait)
  }

  private decide (view: SwarmView): Move | undefined {
    const me = this.init.peerId
    return rebalanceMove(servers(view), this.init.nStages, me, (server, stage) => server.id !== me || this.fits(stage))
  }

  private async check (): Promise<void> {
    if (this.current === undefined) return
    const view = await this.registry.refresh()
    if (this.decide(view) === undefined) return
    // One mover at a time; the slot rotates the choice in case that one cannot move (pinned, or gone).
    const chosen = moverInSlot(servers(view), this.init.nStages, rebalanceSlot(this.clock.now(), this.init.rebalanceMs))
    if (chosen !== undefined && chosen.id !== this.init.peerId) return
    // Act only on an imbalance that persists: wait a moment, then decide again on a fresh view.
    await sleep(this.rng.next() * this.init.rebalanceMs / 2, this.shutdown, this.clock)
    if (!this.running || this.shutdown?.aborted === true) return
    const move = this.decide(await this.registry.refresh())
    if (move === undefined || !this.running) return
    const record: StageMove = { ...move, at: this.clock.now() }
    this.log('moving from stage %d to stage %d', move.from, move.to)
    this.current = move.to
    this.moves.push(record)
    await this.registry.update({ stage: move.to })
    this.dispatchEvent(new CustomEvent<StageChangeDetail>('stage', { detail: { stage: move.to, move: record } }))
  }
}

/** This machine cannot hold any stage of the run. */
export class NoStageFitsError extends UserError {
  override name = 'NoStageFitsError'
}

function gib (bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`
}

/** The servers in a view; memory of other peers is not modelled (they check their own fit). */
export function servers (view: SwarmView): Server[] {
  return view.stages.flatMap(s => s.peers.map(p => ({ id: p.peerId, stage: s.stage, throughput: p.throughput })))
}

/** Each stage's load; `except`'s records are left out. */
export function loads (view: SwarmView, except?: string): StageLoad[] {
  return view.stages.map(s => {
    const peers = s.peers.filter(p => p.peerId !== except)
    return { stage: s.stage, throughput: peers.reduce((sum, p) => sum + p.throughput, 0), servers: peers.length }
  })
}

function describe (stages: readonly StageLoad[]): string {
  return stages.map(s => `stage ${s.stage}: ${s.servers} server(s), ${s.throughput.toFixed(0)} tokens/s`).join('; ')
}
