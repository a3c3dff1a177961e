// The averaging service: the replicas of a stage meet in rounds, with no coordinator.
// - When: each replica publishes the tokens it trained since the last round (info record); once
//   the stage's replicas at the same round together reach innerSteps x batch tokens (early in the
//   run, everyStepUntil, once this replica stepped), or another member's contribution for the
//   next round arrives, a replica starts the round. Checked after every step, when a round ends
//   and when a contribution arrives, so none waits for a timer.
// - What: its pseudo-gradient theta_at_last_sync - theta at the round's snapshot, through the
//   native error-feedback compressor (or dense, for comparison), signed.
// - The residual stays in the weights: what top-k did not send (the error-feedback buffer e)
//   is still part of this replica's weights, theta = theta_at_last_sync - e + progress, rather
//   than discarded from them as SparseLoCo does. The bytes sent are SparseLoCo's (the buffer
//   gets e = beta * e + progress, and the top-k of that leaves), but a replica never falls back
//   to the consensus minus most of its own progress: with one replica of a small model that
//   fallback cost the first round nearly all the learning so far (validation 2.7 to 5.2).
// - How: all-to-all pushes to the stage's ready replicas; after a bounded wait, members missing
//   a contribution ask the others for it (relay: signatures make relays safe).
// - Result: the same contributions in sorted sender order through the same rule (aggregate.ts),
//   then members exchange the hash of the new theta_at_last_sync; one that differs from the
//   majority, or that falls behind, fetches the state from the majority (state-sync.ts). What the
//   median clip held back of a member's values goes back into its residual, to be sent later.
// - No stall: the pipeline keeps training during the round; the result is applied when it
//   arrives as weights += (theta_new - e) - snapshot, keeping the progress made since the snapshot
//   (Streaming DiLoCo's overlap with a one-round delay, as Psyche does): the next round's
//   pseudo-gradient carries that progress, so nothing is lost and nothing waits.
// Every wait is bounded by the manifest's round timeout; a member that dies costs its
// contribution, not the round.
import { logger } from '@libp2p/logger'
import { peerIdFromMultihash, peerIdFromString } from '@libp2p/peer-id'
import * as Digest from 'multiformats/hashes/digest'
import type { Connection, Stream } from '@libp2p/interface'
import { axpy, compressAsync, chunkCount, decodeAccumulateAsync, kForDensity, type ValueBits } from '../../native/index.js'
import { AverageRequest, AverageResponse } from '../../protocols/averaging.js'
import { averageMessageLimit, averageProtocol } from '../../protocols/ids.js'
import type { SwarmComponents, SwarmService } from '../daemon/node.js'
import { applyStageState, tokensSinceSync, type ServedStage, type StageHost, type StageUser } from '../daemon/stage-host.js'
import type { AveragingSettings } from '../manifest/manifest.js'
import { MessageStream } from '../p2p/messages.js'
import type { TrainedEvent } from '../runtime/stage-engine.js'
import { aggregate } from './aggregate.js'
import { ContributionError, largestPayload, signContribution, verifyContribution, type ContributionScope, type VerifiedContribution } from './contribution.js'
import { StateServer, adoptSharedState, fetchReplicaState, fetchStageState, stateHash, type ServedState } from './state-sync.js'
import { TrainingSplit, type Training } from './training-split.js'
import { everyStep, roundCompression, roundDue, roundTokens } from './trigger.js'
import { AVERAGING_POLL_MS, ROUND_CHECKPOINT_MS } from '../timing.js'

const log = logger('swarmtrain:averaging')

/** Offences (forged or corrupted contributions or state chunks) after which a peer is ignored. */
const BAN_AFTER = 3
/** Contributions kept per round: bounds the memory a flood of new identities can take. */
const MAX_MEMBERS = 256
/** Rounds ahead of ours whose contributions are kept (a member may start the next round a bit earlier). */
const ROUNDS_AHEAD = 2

export interface AveragingOptions {
  /** How often the trigger is checked, ms. */
  pollMs?: number
  /** Told of every round this node completes (the CLI prints it). */
  onRound?: (stage: number, report: RoundReport) => void
  /** Told of a state download's progress, and of its end (the CLI prints it). */
  onSync?: (progress: SyncProgress) => void
}

/** A state download: a copy of one replica's whole state, or the shared state of the agreeing ones. */
export interface SyncProgress {
  stage: number
  part: 'replica' | 'shared'
  received: number
  total: number
  /** Set when it ended: whether it succeeded, how long it took, the round it got, from whom. */
  done?: { ok: boolean, ms: number, round: number, from: string[] }
}

export interface RoundReport {
  round: number
  /** Members whose contributions were used, and those dropped as non-finite. */
  members: number
  dropped: number
  /** Expected members whose contribution never arrived. */
  missing: number
  ms: number
  /** Bytes this node sent during the round (requests and responses, length prefixes included). */
  bytesSent: number
  /** Members whose hash matched ours, out of those that sent one. (ms: to agreement; the checkpoint follows.) */
  agreed: number
  hashes: number
  resynced: boolean
}

/** The averaging service's part of the status JSON (`services.averaging`). */
export interface AveragingStatus {
  stage?: number
  round: number
  stateHash: string
  /** Tokens the stage trained through the last round (OuterState.tokens). */
  stageTokens: number
  tokensSinceSync: number
  tokensPerRound: number
  /** Replicas of the stage (ready, at our round) whose state hash equals ours, and all of them. */
  agreeing: number
  replicas: number
  syncs: number
  /** The replica this one started the served stage as a copy of, if it did. */
  copiedFrom?: string
  bytesSent: number
  banned: string[]
  rounds: RoundReport[]
  /**
   * What this replica trained while its rounds ran, and between them, since it attached to the
   * stage: whether a round's work and bytes in flight slow the pipeline.
   */
  trainedDuringRounds: Training
  trainedBetweenRounds: Training
}

/**
 * A round's working copies of the served stage's vectors, kept from round to round: a round after
 * every step allocating them afresh spent more time in page faults and garbage collection than in
 * its arithmetic, on the cores the pipeline trains on.
 */
interface RoundBuffers {
  snapshot: Float32Array
  /** The pseudo-gradient sent, then the update applied. */
  delta: Float32Array<ArrayBuffer>
  /** The new theta_at_last_sync and outer momentum, until the round commits them. */
  theta: Float32Array
  momentum: Float32Array
  /** The contributions' weighted sum. */
  sum: Float32Array
  /** The compressor's per-chunk threshold hints, and its output sized for the densest payload the schedule makes (sparse only). */
  hints: Float32Array
  compressed: Uint8Array<ArrayBuffer>
}

function roundBuffers (n: number, settings: AveragingSettings): RoundBuffers {
  const sparse = settings.mode === 'sparse'
  const { chunkSize } = settings
  return {
    snapshot: new Float32Array(n),
    delta: new Float32Array(n),
    theta: new Float32Array(n),
    momentum: new Float32Array(n),
    sum: new Float32Array(n),
    hints: new Float32Array(sparse ? chunkCount(n, chunkSize) : 0),
    compressed: new Uint8Array(sparse ? largestPayload(n, settings) : 0)
  }
}

/** out = a - b - c, elementwise, in the native kernel (5x a JavaScript loop). */
function difference<T extends Float32Array> (out: T, a: Float32Array, b: Float32Array, c: Float32Array): T {
  out.set(a)
  axpy(out, b, -1)
  axpy(out, c, -1)
  return out
}

export function averagingService (options: AveragingOptions = {}): (components: SwarmComponents) => AveragingService {
  return components => new AveragingService(components, options)
}

export class AveragingService implements SwarmService, StageUser {
  private readonly components: SwarmComponents
  private readonly stageHost: StageHost
  private readonly self: string
  private readonly protocol: string
  private readonly options: Required<Pick<AveragingOptions, 'pollMs'>> & AveragingOptions
  /** Tokens of one inner step of the stage. */
  private readonly tokensPerStep: number
  private readonly stateServer: StateServer
  private served?: ServedStage
  private hash = ''
  /** Contributions and hashes received per round, for the served stage. */
  private readonly boxes = new Map<number, Map<string, VerifiedContribution>>()
  private readonly hashBoxes = new Map<number, Map<string, string>>()
  private readonly offences = new Map<string, number>()
  private running?: Promise<void>
  private timer?: NodeJS.Timeout
  /** No new round starts: the served stage is being detached, or the service stops. */
  private closing = false
  /** Allocated at the first round of the served stage. */
  private buffers?: RoundBuffers
  /** The members that took this replica's contribution, in its latest round. */
  private pushedTo = { round: 0, peers: new Set<string>() }
  private bytesSent = 0
  private syncs = 0
  private copiedFrom?: string
  /** Replicas behind our round (peer:round), and since when we have seen them so. */
  private readonly behindSince = new Map<string, number>()
  /** The round each replica is known to have reached from its own messages (fresher than the registry's view). */
  private readonly knownRounds = new Map<string, number>()
  private readonly rounds: RoundReport[] = []
  private readonly wakers = new Set<() => void>()
  /** When a round last wrote the stage's checkpoint. */
  private checkpointedAt = -Infinity
  private trained = new TrainingSplit(performance.now())

  constructor (components: SwarmComponents, options: AveragingOptions) {
    if (components.stageHost === undefined) throw new Error('averaging needs the node\'s stage host')
    this.components = components
    this.stageHost = components.stageHost
    this.self = components.host.peerId.toString()
    this.protocol = averageProtocol(components.runId)
    this.options = { ...options, pollMs: options.pollMs ?? AVERAGING_POLL_MS }
    const { optimizer, model } = components.manifest
    this.tokensPerStep = optimizer.batchSize * model.seqLen * optimizer.microbatches
    this.stateServer = new StateServer({ host: components.host }, { runId: components.runId }, () => this.sharedState())
    this.stageHost.use(this)
  }

  async start (): Promise<void> {
    await this.components.host.handle(this.protocol, async (stream: Stream, connection: Connection) => { await this.handle(stream, connection) }, { maxInboundStreams: 64 })
    await this.stateServer.start()
    // Checked after every inner step and whenever a round ends or another member's
    // contribution invites us to the next, so a round starts at once; the timer is the fallback.
    this.stageHost.addEventListener('step', this.onStep)
    this.timer = setInterval(() => { this.poll() }, this.options.pollMs)
  }

  async stop (): Promise<void> {
    this.closing = true
    this.stageHost.removeEventListener('step', this.onStep)
    clearInterval(this.timer)
    await this.running
    await this.components.host.unhandle(this.protocol)
    await this.stateServer.stop()
  }

  /** Before the stage serves: load the stage's state from its replicas if they are ahead of ours. */
  async attach (served: ServedStage): Promise<void> {
    this.closing = false
    this.boxes.clear()
    this.hashBoxes.clear()
    this.buffers = undefined
    this.copiedFrom = undefined
    this.knownRounds.clear()
    this.behindSince.clear()
    this.hash = stateHash(served.outer)
    this.trained = new TrainingSplit(performance.now())
    served.engine.addEventListener('trained', this.onTrained)
    this.served = served
    await this.components.registry.refresh().catch(() => {})
    const ahead = this.replicaRecords().filter(p => p.round > served.outer.round)
    // A replica that has trained nothing of its own (a newcomer, or a mover without a
    // checkpoint of this stage) starts as a copy of one replica; else, or if none serves it, it
    // takes the shared state and keeps its own progress.
    const fresh = served.engine.steps === 0 && served.outer.round === 0
    if (ahead.length > 0 && !(fresh && await this.copyReplica(served, ahead))) await this.resync(served, ahead.map(p => p.peerId), false)
    this.publish()
  }

  async detach (): Promise<void> {
    this.closing = true
    await this.running
    this.served?.engine.removeEventListener('trained', this.onTrained)
    this.served = undefined
  }

  status (): AveragingStatus {
    const served = this.served
    const peers = this.replicaRecords().filter(p => served !== undefined && p.round === served.outer.round)
    return {
      stage: served?.stage,
      round: served?.outer.round ?? 0,
      stateHash: this.hash,
      stageTokens: served?.outer.tokens ?? 0,
      tokensSinceSync: served === undefined ? 0 : tokensSinceSync(served),
      tokensPerRound: this.tokensPerRound(served, this.replicaRecords().length + 1),
      agreeing: peers.filter(p => p.stateHash === this.hash).length + (served === undefined ? 0 : 1),
      replicas: peers.length + (served === undefined ? 0 : 1),
      syncs: this.syncs,
      copiedFrom: this.copiedFrom,
      bytesSent: this.bytesSent,
      banned: [...this.offences].filter(([, n]) => n >= BAN_AFTER).map(([p]) => p),
      rounds: this.rounds.slice(-10),
      trainedDuringRounds: { ...this.trained.during },
      trainedBetweenRounds: { ...this.trained.between }
    }
  }

  /**
   * Runs a round now, whatever the tokens trained (benchmarks, operators), unless one is running
   * already; the other members join when its contribution reaches them. Resolves with the
   * report of the round once it ends.
   */
  async roundNow (): Promise<RoundReport | undefined> {
    const served = this.served
    const count = this.rounds.length
    if (this.running === undefined && served !== undefined) this.run(async () => { await this.round(served) })
    await this.running
    return this.rounds.length > count ? this.rounds.at(-1) : undefined
  }

  private run (task: () => Promise<void>): void {
    this.running = task().catch(err => {
      this.trained.roundEnded(performance.now()) // a failed round ends here (a no-op after a resync)
      log.error('round failed: %e', err)
    }).finally(() => {
      this.running = undefined
      this.poll()
    })
  }

  private readonly onStep = (): void => { this.poll() }
  private readonly onTrained = (event: Event): void => { this.trained.trained(performance.now(), (event as TrainedEvent).detail) }

  /** Starts a round (or a resync) when due; at most one runs at a time. */
  private poll (): void {
    const served = this.served
    if (served === undefined || this.running !== undefined || this.closing) return
    this.publish()
    const peers = this.replicaRecords()
    const ahead = peers.filter(p => p.round > served.outer.round)
    const canonical = this.canonicalHash(served.outer.round, peers)
    let task: (() => Promise<void>) | undefined
    if (ahead.length > 0) {
      task = async () => { await this.resync(served, ahead.map(p => p.peerId), true) }
    } else if (canonical !== this.hash) {
      // Members that finished a round with different sets (a partition, a late contribution)
      // converge on one state: the most common hash at this round, the smallest on a tie.
      const holders = peers.filter(p => p.round === served.outer.round && p.stateHash === canonical).map(p => p.peerId)
      task = async () => { await this.resync(served, holders, true) }
    } else if (this.waitingForLaggards(served)) {
      // A replica is catching up with our round: a round now would go on without it, leave it
      // behind again, and a replica that keeps missing rounds averages with nobody.
    } else {
      const invited = (this.boxes.get(served.outer.round + 1)?.size ?? 0) > 0
      const replicas = peers.length + 1
      if (roundDue({
        round: served.outer.round,
        tokensSinceSync: tokensSinceSync(served),
        peers,
        tokensPerRound: this.tokensPerRound(served, replicas),
        invited,
        everyStep: everyStep(this.components.manifest.averaging, served.engine.steps, replicas)
      })) task = async () => { await this.round(served) }
    }
    if (task !== undefined) this.run(task)
  }

  /** Tokens the stage trains between rounds now: one step's early in the run (everyStepUntil) if it has other replicas, else innerSteps'. */
  private tokensPerRound (served: ServedStage | undefined, replicas: number): number {
    return roundTokens(this.components.manifest.averaging, this.tokensPerStep, served?.engine.steps ?? 0, replicas)
  }

  /** The state hash the replicas at `round` converge on: the most common (ours included), the smallest on a tie. */
  private canonicalHash (round: number, peers: Array<{ round: number, stateHash: string }>): string {
    const counts = new Map<string, number>([[this.hash, 1]])
    for (const p of peers) if (p.round === round && p.stateHash !== '') counts.set(p.stateHash, (counts.get(p.stateHash) ?? 0) + 1)
    return [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))[0][0]
  }

  /**
   * Whether a replica of the stage is behind our round (it is syncing to it) and has been for
   * less than a third of the round timeout: then the next round waits for it. Not longer: a
   * replica that cannot catch up must not stall the others.
   */
  private waitingForLaggards (served: ServedStage): boolean {
    const now = performance.now()
    const behind = this.stageRecords().filter(p => this.roundOf(p) < served.outer.round).map(p => `${p.peerId}:${this.roundOf(p)}`)
    for (const key of [...this.behindSince.keys()]) if (!behind.includes(key)) this.behindSince.delete(key)
    for (const key of behind) if (!this.behindSince.has(key)) this.behindSince.set(key, now)
    const wait = this.components.manifest.averaging.roundTimeoutMs / 3
    return [...this.behindSince.values()].some(since => now - since < wait)
  }

  /** A replica's message showed it at `round` (or later); a claim past the rounds we accept is ignored. */
  private heard (peer: string, round: number): void {
    const current = this.served?.outer.round ?? 0
    if (Number.isSafeInteger(round) && round <= current + ROUNDS_AHEAD && round > (this.knownRounds.get(peer) ?? -1)) this.knownRounds.set(peer, round)
  }

  /** A replica's round: its record's, or a later one its messages showed. */
  private roundOf (p: { peerId: string, round: number }): number {
    return Math.max(p.round, this.knownRounds.get(p.peerId) ?? 0)
  }

  /** Replicas of the served stage in the registry's view, ready or not (syncing), except this node and banned peers. */
  private stageRecords (): Array<{ peerId: string, round: number, tokensSinceSync: number, stateHash: string, ready: boolean }> {
    const stage = this.served?.stage
    if (stage === undefined) return []
    return this.components.registry.view.stages[stage]?.peers.filter(p => p.peerId !== this.self && !this.banned(p.peerId)) ?? []
  }

  /** Ready replicas of the served stage in the registry's view, except this node and banned peers. */
  private replicaRecords (): Array<{ peerId: string, round: number, tokensSinceSync: number, stateHash: string }> {
    return this.stageRecords().filter(p => p.ready)
  }

  private publish (): void {
    const served = this.served
    if (served === undefined) return
    void this.components.registry.update({ round: served.outer.round, stateHash: this.hash, tokensSinceSync: tokensSinceSync(served) })
  }

  private sharedState (): ServedState | undefined {
    const served = this.served
    if (served === undefined) return undefined
    const { theta, momentum, round, tokens } = served.outer
    return {
      stage: served.stage,
      layout: served.engine.params,
      state: { round, tokens, step: served.engine.steps, theta, momentum },
      hash: this.hash,
      replica: async () => await this.stageHost.state(served)
    }
  }

  private scope (served: ServedStage, round: number): ContributionScope {
    const { runId, manifest } = this.components
    return { runId, stage: served.stage, round, params: served.engine.params.size, settings: manifest.averaging }
  }

  private box<T> (boxes: Map<number, Map<string, T>>, round: number): Map<string, T> {
    let box = boxes.get(round)
    if (box === undefined) {
      box = new Map()
      boxes.set(round, box)
    }
    return box
  }

  /** Waits until `done()` holds or `ms` pass; woken whenever a message arrives. */
  private async until (done: () => boolean, ms: number): Promise<void> {
    const deadline = Date.now() + ms
    while (!done() && Date.now() < deadline) {
      await new Promise<void>(resolve => {
        const wake = (): void => { clearTimeout(timer); this.wakers.delete(wake); resolve() }
        const timer = setTimeout(wake, Math.min(100, Math.max(0, deadline - Date.now())))
        this.wakers.add(wake)
      })
    }
  }

  private wake (): void {
    for (const wake of [...this.wakers]) wake()
  }

  /** One round: contribute, gather (with relays), aggregate, apply, compare hashes. */
  private async round (served: ServedStage): Promise<void> {
    const started = performance.now()
    this.trained.roundStarted(started)
    const sentBefore = this.bytesSent
    const { manifest, privateKey, host } = this.components
    const settings = manifest.averaging
    const round = served.outer.round + 1
    const scope = this.scope(served, round)
    const third = settings.roundTimeoutMs / 3
    const { engine, outer } = served
    const n = engine.params.size

    const buffers = this.buffers ??= roundBuffers(n, settings)
    const snapshot = await engine.weightsSnapshot(buffers.snapshot)
    // Progress since the last round: the residual already held in the weights is in the buffer.
    const delta = difference(buffers.delta, outer.theta, snapshot.weights, outer.error)
    const tokens = snapshot.steppedTokens - served.syncedTokens
    let payload: Uint8Array<ArrayBuffer>
    if (tokens === 0) {
      // Nothing trained since the last round (another replica's step started it): no values, so
      // the error feedback buffer keeps its residual rather than decaying it into a payload that
      // would weigh nothing.
      payload = new Uint8Array(0)
    } else if (settings.mode === 'dense') {
      payload = new Uint8Array(delta.buffer.slice(0))
    } else {
      const { density, beta } = roundCompression(settings, engine.steps)
      const size = await compressAsync(outer.error, delta, buffers.hints, buffers.compressed, { beta, chunk: settings.chunkSize, k: kForDensity(density, settings.chunkSize), bits: settings.valueBits as ValueBits })
      payload = buffers.compressed.slice(0, size)
    }
    const signed = await signContribution(scope, { privateKey, peerId: host.peerId }, tokens, settings.mode === 'dense', payload)
    log('stage %d round %d: contribution ready after %d ms', served.stage, round, Math.round(performance.now() - started))
    const box = this.box(this.boxes, round)
    box.set(this.self, { sender: this.self, tokens, dense: settings.mode === 'dense', payload, signed })

    // All-to-all: every replica we know of at our round (ready or still syncing: it can still
    // contribute), and anyone who already sent us theirs.
    const atOurRound = this.stageRecords().filter(p => this.roundOf(p) >= served.outer.round).map(p => p.peerId)
    const members = [...new Set([...atOurRound, ...box.keys()])].filter(p => p !== this.self)
    // Counted as sent from the start (so a member's own push that crosses ours is answered
    // without a copy of ours), and no longer if the push fails.
    this.pushedTo = { round, peers: new Set(members) }
    // Members that refused ours: one that finished this round without us (it started before we
    // were in its view) never sends its contribution, so waiting for it stalled this round for a
    // third of the timeout, and the other member meanwhile for us, the laggard.
    const refused = new Set<string>()
    const push = async (peer: string): Promise<void> => {
      this.pushedTo.peers.add(peer)
      const response = await this.request(peer, { stage: served.stage, round: BigInt(round), push: signed }, third, n)
      if (response?.ok !== true) this.pushedTo.peers.delete(peer)
      if (response?.ok === false) refused.add(peer)
      // A member that had no contribution of ours sends its own back with its answer.
      if (response?.contribution !== undefined && !box.has(peer)) await this.accept(response.contribution, scope, peer).catch(() => {})
    }
    await Promise.all(members.map(push))
    // A member that could not take ours (still starting) but sent us its own since gets ours again.
    await Promise.all(members.filter(p => !this.pushedTo.peers.has(p) && box.has(p)).map(push))
    await this.until(() => members.every(p => box.has(p) || refused.has(p)), third)
    // Relays: ask the members we heard from for the contributions we miss.
    const missing = members.filter(p => !box.has(p))
    await Promise.all(missing.map(async wanted => {
      for (const holder of [...box.keys()].filter(p => p !== this.self)) {
        const response = await this.request(holder, { stage: served.stage, round: BigInt(round), want: peerIdFromString(wanted).toMultihash().bytes }, third / 2, n)
        if (response?.contribution === undefined || box.has(wanted)) continue
        const relayed = await this.accept(response.contribution, scope, holder).catch(() => undefined)
        if (relayed?.sender === wanted) return
      }
    }))

    log('stage %d round %d: gathered %d of %d after %d ms', served.stage, round, box.size, members.length + 1, Math.round(performance.now() - started))
    const theta = buffers.theta
    theta.set(outer.theta)
    const momentum = buffers.momentum
    momentum.set(outer.momentum)
    const result = await aggregate([...box.values()], theta, momentum, settings, buffers.sum)
    // What the clip held back of our values goes back into the residual, to be sent later:
    // clipped to the median, an honest replica that trained more than the others defers part
    // of its progress rather than losing it (a dense run keeps no residual).
    const clip = result.clipped.get(this.self)
    if (clip !== undefined && settings.mode === 'sparse') await decodeAccumulateAsync(outer.error, payload, 1 - clip)
    // Apply, keeping the progress made since the snapshot and the residual not sent:
    // weights += (theta_new - e) - snapshot. An addition commutes with the steps (up to weight
    // decay), so it waits for the microbatches in flight to end by themselves, at the latest by
    // the replica's next step, rather than draining the pipeline.
    difference(delta, theta, outer.error, snapshot.weights)
    // The schedule moves to the stage's progress: one machine's step at the tokens the whole
    // stage trained, plus this replica's own steps since the snapshot. Replicas serve unequal
    // shares of the traffic; on their own step counts the busiest one's learning rate decayed
    // ahead of the run's while the idlest one's lagged, and their every-step phases ended apart.
    const stageTokens = outer.tokens + result.used.reduce((sum, sender) => sum + (box.get(sender)?.tokens ?? 0), 0)
    const aligned = Math.floor(stageTokens / this.tokensPerStep)
    await engine.updateWeights(weights => { axpy(weights, delta, 1) }, { lazy: true, schedule: steps => steps + aligned - snapshot.steps })
    outer.theta.set(theta)
    outer.momentum.set(momentum)
    outer.round = round
    outer.tokens = stageTokens
    served.syncedTokens = snapshot.steppedTokens
    this.hash = stateHash(outer)
    this.publish()
    for (const r of [...this.boxes.keys()]) if (r <= round) this.boxes.delete(r)

    log('stage %d round %d: applied after %d ms', served.stage, round, Math.round(performance.now() - started))
    // Hash exchange with the group; the minority resyncs from the majority.
    const group = [...box.keys()].filter(p => p !== this.self)
    const hashes = this.box(this.hashBoxes, round)
    const hashBytes = new Uint8Array(Buffer.from(this.hash, 'hex'))
    await Promise.all(group.map(async peer => await this.request(peer, { stage: served.stage, round: BigInt(round), stateHash: hashBytes }, third, n)))
    log('stage %d round %d: hashes sent after %d ms', served.stage, round, Math.round(performance.now() - started))
    await this.until(() => group.every(p => hashes.has(p)), third)
    const counts = new Map<string, string[]>([[this.hash, [this.self]]])
    for (const [peer, h] of hashes) counts.set(h, [...(counts.get(h) ?? []), peer])
    const [majority, holders] = [...counts.entries()].sort((a, b) => b[1].length - a[1].length || (a[0] === this.hash ? -1 : b[0] === this.hash ? 1 : 0))[0]
    let resynced = false
    if (majority !== this.hash) {
      log.error('round %d: our state hash %s differs from the majority %s; resyncing', round, this.hash, majority)
      resynced = await this.resync(served, holders, true)
    }
    for (const r of [...this.hashBoxes.keys()]) if (r <= round) this.hashBoxes.delete(r)
    const ended = performance.now()
    this.trained.roundEnded(ended)
    const report: RoundReport = {
      round,
      members: result.used.length,
      dropped: result.dropped.length,
      missing: missing.filter(p => !box.has(p)).length,
      ms: Math.round(ended - started),
      bytesSent: this.bytesSent - sentBefore,
      agreed: (counts.get(this.hash)?.length ?? 1) - 1,
      hashes: hashes.size,
      resynced
    }
    this.rounds.push(report)
    if (this.rounds.length > 100) this.rounds.shift()
    log('stage %d round %d: %o', served.stage, round, report)
    this.options.onRound?.(served.stage, report)
    // The round's state is on disk before the next round can start (atomic write), unless a
    // round's went there moments ago.
    if (performance.now() - this.checkpointedAt >= ROUND_CHECKPOINT_MS) {
      await this.stageHost.checkpoint()
      this.checkpointedAt = performance.now()
    }
  }

  /**
   * Becomes a copy of one replica of the newest round's most common state: its weights (with
   * the residual it has not sent yet), AdamW moments and step, and its error feedback, so the
   * swarm's model does not lose that replica's progress in this one, nor take a first step
   * with fresh moments at a late point of the schedule. Returns false if no replica served it.
   */
  private async copyReplica (served: ServedStage, ahead: Array<{ peerId: string, round: number, stateHash: string }>): Promise<boolean> {
    const { host, runId, manifest } = this.components
    const newest = Math.max(...ahead.map(p => p.round))
    const holders = new Map<string, string[]>()
    for (const p of ahead.filter(p => p.round === newest)) holders.set(p.stateHash, [...(holders.get(p.stateHash) ?? []), p.peerId])
    const [hash, peers] = [...holders.entries()].sort((a, b) => b[1].length - a[1].length)[0]
    const progress = this.syncProgress(served.stage, 'replica')
    try {
      const { state, peer } = await fetchReplicaState({ host }, {
        runId,
        stage: served.stage,
        layout: served.engine.params,
        peers,
        stateHash: hash,
        timeoutMs: manifest.averaging.roundTimeoutMs,
        onOffence: (peer, reason) => { this.offend(peer, reason) },
        onProgress: progress.chunk
      })
      await applyStageState(served, state)
      this.hash = hash
      this.syncs++
      this.copiedFrom = peer
      progress.end(true, state.round, [peer])
      this.announce(served)
      return true
    } catch (err) {
      log.error('could not copy a replica of stage %d; taking the shared state: %e', served.stage, err)
      progress.end(false, served.outer.round, peers)
      return false
    }
  }

  /** Reports a state download to onSync: each chunk, then its end. */
  private syncProgress (stage: number, part: SyncProgress['part']): { chunk: (received: number, total: number) => void, end: (ok: boolean, round: number, from: string[]) => void } {
    const started = performance.now()
    let last: SyncProgress = { stage, part, received: 0, total: 0 }
    return {
      chunk: (received, total) => { this.options.onSync?.(last = { stage, part, received, total }) },
      end: (ok, round, from) => { this.options.onSync?.({ ...last, done: { ok, ms: Math.round(performance.now() - started), round, from } }) }
    }
  }

  /** Loads the majority's shared state (see adoptSharedState: the replica's own progress stays). */
  private async resync (served: ServedStage, peers: string[], toggleReady: boolean): Promise<boolean> {
    const { host, registry, runId, manifest } = this.components
    if (toggleReady) await registry.update({ ready: false })
    const progress = this.syncProgress(served.stage, 'shared')
    try {
      const state = await fetchStageState({ host }, {
        runId,
        stage: served.stage,
        layout: served.engine.params,
        peers,
        timeoutMs: manifest.averaging.roundTimeoutMs,
        onOffence: (peer, reason) => { this.offend(peer, reason) },
        onProgress: progress.chunk
      })
      await adoptSharedState(served, state)
      this.hash = state.hash
      this.syncs++
      log('stage %d synced to round %d (%s) from %d replicas', served.stage, state.round, state.hash, peers.length)
      progress.end(true, state.round, peers)
      this.announce(served)
      await this.stageHost.checkpoint()
      return true
    } catch (err) {
      log.error('state sync of stage %d failed: %e', served.stage, err)
      progress.end(false, served.outer.round, peers)
      return false
    } finally {
      this.publish()
      if (toggleReady) await registry.update({ ready: true })
    }
  }

  /**
   * Tells the stage's replicas the round and hash we now hold (after a sync), so that their next
   * round counts us in at once rather than after their registry view refreshes.
   */
  private announce (served: ServedStage): void {
    const request = { stage: served.stage, round: BigInt(served.outer.round), stateHash: new Uint8Array(Buffer.from(this.hash, 'hex')) }
    const timeout = this.components.manifest.averaging.roundTimeoutMs / 3
    for (const peer of this.stageRecords().map(p => p.peerId)) void this.request(peer, request, timeout, served.engine.params.size)
  }

  /**
   * Largest message of a stage of `params` values: a sparse run's messages are read against its
   * densest payload, not a dense one: a length a stranger announces can claim only that much.
   */
  private messageLimit (params: number): number {
    return averageMessageLimit(largestPayload(params, this.components.manifest.averaging))
  }

  private banned (peer: string): boolean {
    return (this.offences.get(peer) ?? 0) >= BAN_AFTER
  }

  private offend (peer: string, reason: string): void {
    const count = (this.offences.get(peer) ?? 0) + 1
    this.offences.set(peer, count)
    log.error('offence %d by %s: %s%s', count, peer, reason, count >= BAN_AFTER ? ' (banned)' : '')
  }

  /** Verifies and stores a contribution (from its sender or relayed by `from`); undefined if refused. */
  private async accept (signed: AverageRequest['push'] & object, scope: ContributionScope, from: string): Promise<VerifiedContribution | undefined> {
    try {
      const verified = await verifyContribution(signed, scope)
      if (this.banned(verified.sender)) return undefined
      const box = this.box(this.boxes, scope.round)
      if (!box.has(verified.sender) && box.size >= MAX_MEMBERS) throw new Error(`round ${scope.round} already holds ${MAX_MEMBERS} contributions`)
      box.set(verified.sender, verified)
      this.wake()
      return verified
    } catch (err) {
      if (err instanceof ContributionError) this.offend(from, err.message)
      throw err
    }
  }

  /** One request on its own stream; undefined when the peer cannot be reached or refuses. */
  private async request (peer: string, request: AverageRequest, timeoutMs: number, params: number): Promise<AverageResponse | undefined> {
    const signal = AbortSignal.timeout(Math.max(1, Math.round(timeoutMs)))
    try {
      const stream = await this.components.host.dialProtocol(peerIdFromString(peer), this.protocol, { signal })
      const messages = new MessageStream(stream, this.messageLimit(params))
      try {
        const bytes = AverageRequest.encode(request)
        this.bytesSent += bytes.length + varintLength(bytes.length)
        await messages.write(rawBytes, bytes, { signal })
        const response = await messages.read(AverageResponse, { signal })
        await stream.close({ signal })
        if (!response.ok) log('%s refused a request: %s', peer, response.error)
        return response
      } catch (err) {
        stream.abort(err as Error)
        throw err
      }
    } catch (err) {
      log('averaging request to %s failed: %s', peer, (err as Error).message)
      return undefined
    }
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    const served = this.served
    if (served === undefined || this.banned(from)) {
      stream.abort(new Error(served === undefined ? 'not serving a stage' : 'banned'))
      return
    }
    const messages = new MessageStream(stream, this.messageLimit(served.engine.params.size))
    const reply = async (response: Omit<AverageResponse, 'ok' | 'error'> & Partial<AverageResponse>): Promise<void> => {
      const bytes = AverageResponse.encode({ ok: true, error: '', ...response })
      this.bytesSent += bytes.length + varintLength(bytes.length)
      await messages.write(rawBytes, bytes)
    }
    try {
      const request = await messages.read(AverageRequest, { signal: AbortSignal.timeout(this.components.manifest.averaging.roundTimeoutMs) })
      const round = Number(request.round)
      const current = served.outer.round
      if (request.stage !== served.stage) {
        await reply({ ok: false, error: `this node serves stage ${served.stage}` })
      } else if (request.push !== undefined) {
        this.heard(from, round - 1)
        if (round <= current || round > current + ROUNDS_AHEAD) {
          await reply({ ok: false, error: `round ${round} is not open here (at round ${current})` })
        } else {
          const refused = await this.accept(request.push, this.scope(served, round), from).then(() => undefined, (err: Error) => err)
          // Our contribution goes back with the answer unless this member took it already: a
          // round that started before the sender was in our view, or before it answered on this
          // protocol, would otherwise never reach it, and it would finish the round alone.
          const pushed = this.pushedTo.round === round && this.pushedTo.peers.has(from)
          const own = refused === undefined && !pushed ? this.boxes.get(round)?.get(this.self)?.signed : undefined
          if (own !== undefined && this.pushedTo.round === round) this.pushedTo.peers.add(from)
          await reply(refused === undefined ? { contribution: own } : { ok: false, error: refused.message })
          if (refused === undefined && round === current + 1) this.poll()
        }
      } else if (request.want !== undefined) {
        let wanted = ''
        try {
          wanted = peerIdFromMultihash(Digest.decode(request.want)).toString()
        } catch {
          // not a peer id: nothing to send back
        }
        await reply({ contribution: this.boxes.get(round)?.get(wanted)?.signed })
      } else if (request.stateHash !== undefined) {
        this.heard(from, round)
        if (round <= current + ROUNDS_AHEAD && round >= current && request.stateHash.length === 16) {
          this.box(this.hashBoxes, round).set(from, Buffer.from(request.stateHash).toString('hex'))
          this.wake()
        }
        await reply({})
      } else {
        await reply({ ok: false, error: 'empty request' })
      }
      await stream.close()
    } catch (err) {
      log('averaging request from %s failed: %e', from, err)
      stream.abort(err as Error)
    }
  }
}

const rawBytes = { encode: (b: Uint8Array) => b }

function varintLength (n: number): number {
  let length = 1
  while (n >= 0x80) {
    n = Math.floor(n / 0x80)
    length++
  }
  return length
}
