// A swarm of simulated peers that runs the project's own policies in simulated time:
// - placement and moves: one StageAssigner per peer (policy.ts through assigner.ts), reading a
//   registry whose view is the live records, and whose departed peers' records linger until
//   they expire, as info records do;
// - routing: every microbatch goes through the stages with chain.ts's trainMicrobatch over
//   SwarmStage callers (caller.ts: the Router's choice, timeouts, bans and retries), each
//   driver keeping as many in flight as its DepthControl says;
// - averaging: each replica polls roundDue (averaging/trigger.ts) and runs all-to-all rounds.
// What is modelled rather than run: a server's compute (its queue, one call at a time, time =
// tokens / capacity), links (latency + bytes / bandwidth per pair, no contention except a
// sender's own uplink in averaging), and the round's messages (no relays, no hash exchange).
import { defaultLogger } from '@libp2p/logger'
import type { ComponentLogger } from '@libp2p/interface'
import { kForDensity, maxPayloadSize, type ValueBits } from '../../native/format.js'
import { DType, StageRequest, StageResponse, type Tensor as WireTensor } from '../../protocols/stage-codec.js'
import { StageAssigner } from '../assignment/assigner.js'
import { stageLoads } from '../assignment/policy.js'
import { defaultAveraging } from '../manifest/manifest.js'
import { encodeActivations } from '../pipeline/activations.js'
import { SwarmStage, combineSignals, type ReplicaSource } from '../pipeline/caller.js'
import { trainMicrobatch } from '../pipeline/chain.js'
import { StageCallError, StageClientStoppedError, type StageTransport } from '../pipeline/client.js'
import { DepthControl } from '../pipeline/depth.js'
import { Router } from '../pipeline/router.js'
import type { PeerInfoRecord } from '../registry/record.js'
import type { LocalInfo, SwarmView } from '../registry/registry.js'
import { defaultTiming } from '../timing.js'
import { Rng } from '../util/random.js'
import { SimAveraging, type AveragingPeer } from './averaging.js'
import { SimClock } from './clock.js'
import { SimNetwork } from './network.js'

export interface SimInit {
  peers: number
  /** Simulated hours. */
  hours: number
  seed: string
  nStages?: number
  /** Mean session length (exponential); joins come at the rate that keeps `peers` steady. Infinity: no churn. */
  meanSessionMs?: number
  /** Median tokens/s a peer trains of a stage, and the log-normal sigma around it (0: all equal). */
  medianCapacity?: number
  capacitySigma?: number
  /** Tokens of one microbatch (one inner step), and activation bytes per token on the wire. */
  microbatchTokens?: number
  activationBytesPerToken?: number
  /** Parameters of one stage: the size of averaging payloads and of the state a newcomer loads. */
  stageParams?: number
  /**
   * Share of peers that drive microbatches (the others run --no-drive). Every node drives by
   * default in the daemon, but each starts at depth stages + 1: with every peer driving, a large
   * swarm holds several times the microbatches its stages can serve, and busy replies storm.
   */
  drivers?: number
  /** How often each replica checks the round trigger (the daemon: AVERAGING_POLL_MS). */
  averagingPollMs?: number
  /** Peers killed at once at `at` ms (tests), beyond churn. */
  kill?: { at: number, count: number }
  /** Throughput samples are taken this often; the means leave out the first warmupMs. */
  sampleMs?: number
  warmupMs?: number
}

export interface ThroughputSample {
  /** Simulated minutes. */
  minute: number
  peers: number
  /** Weakest stage's capacity over the ideal split (every stage with total / nStages). */
  slowestVsIdeal: number
  /** Tokens/s the drivers completed over the ideal split's. */
  achievedVsIdeal: number
}

export interface SimReport {
  peers: number
  stages: number
  hours: number
  seed: string
  /** Means over the samples after the warm-up. */
  throughputVsIdeal: number
  achievedVsIdeal: number
  samples: ThroughputSample[]
  moves: number
  movesPerHour: number
  joins: number
  leaves: number
  microbatches: { issued: number, completed: number, retried: number, lost: number, abandoned: number }
  /** Completed microbatches that needed at least one call retried. */
  retriedFraction: number
  retries: Record<string, number>
  rounds: { started: number, completed: number, full: number, meanMembers: number, meanMs: number, resyncs: number }
  /** Member rounds that ended with every member's contribution. */
  roundCompletion: number
  events: number
  wallMs: number
}

const SIM_SHAPE = { batch: 1, time: 8 }
const MAX_QUEUE = 16

interface Job {
  backward: boolean
  stage: number
  arrived: number
  reply: (response: StageResponse) => void
}

interface Peer extends AveragingPeer {
  capacity: number
  /** It has announced a stage (the view shows it from then on). */
  announced: boolean
  shutdown: AbortController
  assigner?: StageAssigner
  router: Router
  depth: DepthControl
  inFlight: number
  drives: boolean
  /** Its stage client's calls in progress: stopping the client fails them (as StageClient.stop does). */
  calls: Set<() => void>
  driving: boolean
  // Server
  busy: boolean
  waiting: Job[]
}

export class SwarmSim {
  readonly clock = new SimClock()
  private readonly init: Required<Omit<SimInit, 'kill'>> & Pick<SimInit, 'kill'>
  private readonly rng: Rng
  readonly network: SimNetwork
  private readonly peers = new Map<string, Peer>()
  /** Every peer that ever joined, alive or not. */
  private readonly everyone = new Map<string, Peer>()
  private readonly dead: Peer[] = []
  private nextIndex = 0
  private viewCache?: SwarmView
  private readonly replicaCache = new Map<number, string[]>()
  private readonly reply: WireTensor
  private readonly averaging: SimAveraging
  /** One logger for every component: libp2p's makes a new debug instance per forComponent call, too slow per microbatch. */
  private readonly logger = sharedLogger()
  private completedTokens = 0
  private readonly counts = { issued: 0, completed: 0, retried: 0, lost: 0, abandoned: 0, joins: 0, leaves: 0, moves: 0 }
  private readonly retries: Record<string, number> = {}
  private readonly samples: ThroughputSample[] = []

  constructor (init: SimInit) {
    this.init = {
      nStages: 4,
      meanSessionMs: 30 * 60_000,
      medianCapacity: 2000,
      capacitySigma: 0.7,
      microbatchTokens: 4096,
      activationBytesPerToken: 256,
      stageParams: 25e6,
      drivers: 0.25,
      averagingPollMs: 2000,
      sampleMs: 60_000,
      warmupMs: 5 * 60_000,
      ...init
    }
    this.rng = new Rng(`sim:${init.seed}`)
    this.network = new SimNetwork({ seed: init.seed })
    this.reply = encodeActivations(new Float32Array(SIM_SHAPE.batch * SIM_SHAPE.time), [SIM_SHAPE.batch, SIM_SHAPE.time, 1], DType.F16)
    const a = defaultAveraging
    this.averaging = new SimAveraging(this, {
      tokensPerRound: a.innerSteps * this.init.microbatchTokens,
      // The bound: a real payload is a few percent smaller (its offsets' code varies).
      payloadBytes: maxPayloadSize(this.init.stageParams, a.chunkSize, kForDensity(a.topkDensity, a.chunkSize), a.valueBits as ValueBits),
      pollMs: this.init.averagingPollMs,
      roundTimeoutMs: a.roundTimeoutMs
    })
  }

  async run (): Promise<SimReport> {
    const started = performance.now()
    const { peers, hours, meanSessionMs, sampleMs } = this.init
    const end = hours * 3600_000
    // The swarm forms over the first minute, then churns.
    for (let i = 0; i < peers; i++) this.clock.setTimeout(() => { this.join() }, this.rng.next() * 60_000)
    if (Number.isFinite(meanSessionMs)) this.scheduleJoin(meanSessionMs / peers, end)
    if (this.init.kill !== undefined) {
      const { at, count } = this.init.kill
      this.clock.setTimeout(() => { for (const p of [...this.peers.values()].slice(0, count)) this.leave(p) }, at)
    }
    let last = { at: 0, tokens: 0 }
    const sample = (): void => {
      const now = this.clock.now()
      this.sample(now, (this.completedTokens - last.tokens) * 1000 / (now - last.at))
      last = { at: now, tokens: this.completedTokens }
      if (now + sampleMs <= end) this.clock.setTimeout(sample, sampleMs)
    }
    this.clock.setTimeout(sample, sampleMs)
    const events = await this.clock.run(end)
    // The end of the run: every peer stops (its microbatches in flight count as abandoned, not as churn).
    this.counts.leaves -= this.peers.size
    for (const p of [...this.peers.values()]) this.leave(p)
    await this.clock.run(end + 1)
    return this.report(events, performance.now() - started)
  }

  /** The registry view every peer reads: live records, and departed ones until they expire. */
  view (): SwarmView {
    const now = this.clock.now()
    if (this.viewCache !== undefined && this.dead.every(p => p.record.expiresAt > now)) return this.viewCache
    for (let i = this.dead.length - 1; i >= 0; i--) if (this.dead[i].record.expiresAt <= now) this.dead.splice(i, 1)
    const stages = Array.from({ length: this.init.nStages }, (_, stage) => ({ stage, peers: [] as PeerInfoRecord[], throughput: 0 }))
    for (const p of [...this.peers.values(), ...this.dead]) {
      if (!p.announced) continue
      stages[p.record.stage].peers.push(p.record)
      stages[p.record.stage].throughput += p.record.throughput
    }
    this.viewCache = { stages, updatedAt: now }
    this.replicaCache.clear()
    return this.viewCache
  }

  /** Every peer that ever joined, alive or not. */
  peer (id: string): Peer | undefined {
    return this.everyone.get(id)
  }

  private changed (): void {
    this.viewCache = undefined
    this.replicaCache.clear()
  }

  private scheduleJoin (meanGapMs: number, end: number): void {
    const gap = -Math.log(1 - this.rng.next()) * meanGapMs
    if (this.clock.now() + gap > end) return
    this.clock.setTimeout(() => {
      this.join()
      this.scheduleJoin(meanGapMs, end)
    }, gap)
  }

  private join (): void {
    const index = this.nextIndex++
    const id = `peer-${String(index).padStart(5, '0')}`
    const capacity = this.init.medianCapacity * Math.exp(this.init.capacitySigma * this.rng.normal())
    const now = this.clock.now()
    const record: PeerInfoRecord = { peerId: id, stage: 0, throughput: capacity, servedThroughput: 0, queueLength: 0, freeMemory: 1, round: 0, ready: false, tokensSinceSync: 0, stateHash: '', drivenTokens: 0, version: 'sim', issuedAt: now, expiresAt: Infinity }
    const peer: Peer = {
      index, id, capacity, alive: true, announced: false, diedAt: Infinity, shutdown: new AbortController(), record,
      router: new Router({ now: () => this.clock.now(), seed: this.rng.nextUint32() }),
      depth: new DepthControl({ initial: this.init.nStages + 1, maxStaleness: Infinity }),
      inFlight: 0, calls: new Set(), drives: this.rng.next() < this.init.drivers, driving: false, busy: false, waiting: [], trained: 0, synced: 0, inbox: new Map()
    }
    this.peers.set(id, peer)
    this.everyone.set(id, peer)
    this.counts.joins++
    const registry = {
      refresh: async () => this.view(),
      update: async (info: Partial<LocalInfo>) => { this.update(peer, info) }
    }
    const assigner = new StageAssigner({ registry, logger: this.logger, shutdown: peer.shutdown.signal, clock: this.clock }, {
      nStages: this.init.nStages, throughput: capacity, freeMemory: 1, stageMemory: () => 0, rebalanceMs: defaultTiming.rebalanceMs, seed: `${this.init.seed}:${id}`, peerId: id
    })
    assigner.addEventListener('stage', event => { this.attachPeer(peer, (event as CustomEvent<{ stage: number, move?: unknown }>).detail.move !== undefined) })
    peer.assigner = assigner
    void assigner.start().catch(() => {})
    if (Number.isFinite(this.init.meanSessionMs)) this.clock.setTimeout(() => { this.leave(peer) }, -Math.log(1 - this.rng.next()) * this.init.meanSessionMs)
  }

  update (peer: Peer, info: Partial<LocalInfo>): void {
    if (!peer.alive) return
    const moved = info.stage !== undefined && (!peer.announced || info.stage !== peer.record.stage)
    if (info.stage !== undefined) peer.announced = true
    Object.assign(peer.record, info)
    if (moved || info.ready !== undefined) this.changed()
  }

  /** A crash: the server stops answering, its driver's microbatches end, its record expires later. */
  private leave (peer: Peer): void {
    if (!peer.alive) return
    peer.alive = false
    peer.diedAt = this.clock.now()
    peer.shutdown.abort()
    for (const stop of [...peer.calls]) stop()
    void peer.assigner?.stop()
    this.clock.clearTimeout(peer.pollTimer)
    this.clock.clearTimeout(peer.inRound?.timer)
    peer.waiting = []
    this.peers.delete(peer.id)
    // Its last record was published within one refresh interval and lives out its TTL.
    peer.record.expiresAt = peer.diedAt + defaultTiming.recordTtlMs - this.rng.next() * defaultTiming.refreshMs
    this.dead.push(peer)
    this.counts.leaves++
    this.changed()
  }

  /** The stage host's part: load the stage's state from its replicas (if any), then serve and drive. */
  attach (peer: AveragingPeer, moved: boolean): void {
    this.attachPeer(peer as Peer, moved)
  }

  private attachPeer (peer: Peer, moved: boolean): void {
    if (moved) this.counts.moves++
    this.clock.clearTimeout(peer.inRound?.timer)
    peer.inRound = undefined
    peer.inbox.clear()
    this.update(peer, { ready: false })
    // State comes from a live replica at the newest round (fetchStageState moves on from dead ones).
    const replicas = this.replicaRecords(peer).filter(r => this.peers.has(r.peerId))
    const source = replicas.find(r => r.round === Math.max(...replicas.map(q => q.round)))
    const loadMs = source === undefined ? 0 : this.network.transferMs(this.index(source.peerId), peer.index, 8 * this.init.stageParams)
    const stage = peer.record.stage
    this.clock.setTimeout(() => {
      if (!peer.alive || peer.record.stage !== stage) return
      peer.synced = peer.trained
      this.update(peer, { ready: true, round: source?.round ?? peer.record.round, tokensSinceSync: 0 })
      if (source !== undefined) this.averaging.resyncs++
      this.averaging.poll(peer)
      this.drive(peer)
    }, loadMs)
  }

  private index (id: string): number {
    return Number(id.slice(5))
  }

  // ---- Pipeline: drivers over the real caller, servers as queues ----

  private drive (peer: Peer): void {
    if (peer.driving || !peer.drives) return
    peer.driving = true
    this.refill(peer)
  }

  private refill (peer: Peer): void {
    while (peer.alive && peer.inFlight < peer.depth.depth) {
      peer.inFlight++
      void this.microbatch(peer).finally(() => {
        peer.inFlight--
        this.refill(peer)
      })
    }
  }

  private async microbatch (peer: Peer): Promise<void> {
    const { nStages } = this.init
    const replicas: ReplicaSource = { replicas: stage => this.replicas(stage) }
    const client = this.transport(peer)
    const stages = Array.from({ length: nStages }, (_, stage) => new SwarmStage(
      { client, router: peer.router, replicas, shutdown: peer.shutdown.signal, logger: this.logger, clock: this.clock },
      { stage, nStages, dModel: 1, seqLen: SIM_SHAPE.time, vocabSize: 256, maxTokens: SIM_SHAPE.batch * SIM_SHAPE.time }
    ))
    const tokens = (): { data: BigInt64Array, shape: number[] } => ({ data: new BigInt64Array(SIM_SHAPE.batch * SIM_SHAPE.time), shape: [SIM_SHAPE.batch, SIM_SHAPE.time] })
    const issued = this.clock.now()
    this.counts.issued++
    try {
      await trainMicrobatch(stages, { x: tokens(), targets: tokens() })
    } catch (err) {
      if (err instanceof StageClientStoppedError) this.counts.abandoned++
      else this.counts.lost++
      return
    } finally {
      for (const s of stages) for (const [reason, n] of Object.entries(s.stats.retries)) this.retries[reason] = (this.retries[reason] ?? 0) + n
    }
    this.counts.completed++
    this.completedTokens += this.init.microbatchTokens
    if (stages.some(s => Object.values(s.stats.retries).some(n => n > 0))) this.counts.retried++
    const signals = combineSignals(stages)
    peer.depth.completed(this.clock.now() - issued, signals.waitedMs, 0)
  }

  /** Ready replicas of `stage` in the view (dead ones included until their records expire). */
  private replicas (stage: number): string[] {
    this.view()
    let ids = this.replicaCache.get(stage)
    if (ids === undefined) {
      ids = (this.viewCache as SwarmView).stages[stage].peers.filter(p => p.ready).map(p => p.peerId)
      this.replicaCache.set(stage, ids)
    }
    return ids.slice()
  }

  /** One caller's stage client: a request travels, queues, computes and travels back, or nothing answers. */
  private transport (from: Peer): StageTransport {
    const { nStages, microbatchTokens, activationBytesPerToken } = this.init
    const activations = microbatchTokens * activationBytesPerToken
    return {
      call: async (to: string, request: Omit<StageRequest, 'id'>, timeoutMs: number): Promise<StageResponse> => {
        if (!from.alive) throw new StageClientStoppedError('the stage client is stopped')
        const target = this.everyone.get(to)
        const backward = request.kind === StageRequest.Kind.BACKWARD
        const stage = request.stage
        const inBytes = stage === 0 ? microbatchTokens * 4 + (backward ? activations : 0) : activations * (backward && stage < nStages - 1 ? 2 : 1)
        const outBytes = (backward ? stage > 0 : stage < nStages - 1) ? activations : 64
        return await new Promise<StageResponse>((resolve, reject) => {
          let settled = false
          const finish = (fn: () => void): void => {
            if (settled) return
            settled = true
            this.clock.clearTimeout(timer)
            from.calls.delete(stop)
            fn()
          }
          const stop = (): void => { finish(() => { reject(new StageClientStoppedError('the stage client is stopped')) }) }
          from.calls.add(stop)
          // A crashed host does not answer: the caller learns at its timeout (no FIN over the internet).
          const timer = this.clock.setTimeout(() => { finish(() => { reject(new StageCallError(`${to} did not answer within ${Math.round(timeoutMs)} ms`, 'timeout')) }) }, timeoutMs)
          if (target === undefined) return
          const link = this.network.link(from.index, target.index)
          this.clock.setTimeout(() => {
            this.serve(target, { backward, stage, arrived: this.clock.now(), reply: response => {
              this.clock.setTimeout(() => { finish(() => {
                if (response.status === StageResponse.Status.OK) resolve(response)
                else reject(new StageCallError(`${to} answered ${response.status}`, response.status === StageResponse.Status.BUSY ? 'busy' : 'refused', response.queueLength))
              }) }, link.latencyMs + (response.status === StageResponse.Status.OK ? outBytes : 64) / link.bytesPerMs)
            } })
          }, link.latencyMs + inBytes / link.bytesPerMs)
        })
      }
    }
  }

  /** A stage server as service.ts runs it: one call at a time, a bounded queue, BUSY beyond it, a stage check. */
  private serve (peer: Peer, job: Job): void {
    if (!peer.alive) return
    const base = { id: 0, error: '', computeMs: 0, queueLength: peer.waiting.length, waitMs: 0, staleness: 0, hops: [] }
    if (job.stage !== peer.record.stage) {
      job.reply({ ...base, status: StageResponse.Status.BAD_REQUEST })
      return
    }
    if (peer.busy && peer.waiting.length >= MAX_QUEUE) {
      job.reply({ ...base, status: StageResponse.Status.BUSY })
      return
    }
    peer.waiting.push(job)
    this.next(peer)
  }

  private next (peer: Peer): void {
    if (peer.busy || !peer.alive) return
    const job = peer.waiting.shift()
    if (job === undefined) return
    peer.busy = true
    const start = this.clock.now()
    const computeMs = 1000 * this.init.microbatchTokens * (job.backward ? 0.75 : 0.25) / peer.capacity
    this.clock.setTimeout(() => {
      if (!peer.alive) return
      peer.busy = false
      if (job.backward) {
        peer.trained += this.init.microbatchTokens
        peer.record.tokensSinceSync = peer.trained - peer.synced
      }
      const last = job.stage === this.init.nStages - 1
      job.reply({
        id: 0, error: '', status: StageResponse.Status.OK, computeMs, queueLength: peer.waiting.length, waitMs: start - job.arrived, staleness: 0, hops: [],
        y: (job.backward ? job.stage > 0 : !last) ? this.reply : undefined,
        loss: last ? 1 : undefined
      })
      this.next(peer)
    }, computeMs)
  }

  // ---- Averaging (averaging.ts) ----

  replicaRecords (peer: AveragingPeer): PeerInfoRecord[] {
    return this.view().stages[peer.record.stage].peers.filter(p => p.ready && p.peerId !== peer.id)
  }

  // ---- Measures ----

  private sample (now: number, tokensPerSecond: number): void {
    const live = [...this.peers.values()].filter(p => p.announced)
    const loads = stageLoads(live.map(p => ({ id: p.id, stage: p.record.stage, throughput: p.capacity })), this.init.nStages)
    const ideal = loads.reduce((sum, l) => sum + l.throughput, 0) / this.init.nStages
    const slowest = Math.min(...loads.map(l => l.throughput))
    this.samples.push({ minute: now / 60_000, peers: live.length, slowestVsIdeal: ideal > 0 ? slowest / ideal : 0, achievedVsIdeal: ideal > 0 ? tokensPerSecond / ideal : 0 })
  }

  private report (events: number, wallMs: number): SimReport {
    const steady = this.samples.filter(s => s.minute * 60_000 > this.init.warmupMs)
    const mean = (f: (s: ThroughputSample) => number): number => steady.length === 0 ? 0 : steady.reduce((a, s) => a + f(s), 0) / steady.length
    const { issued, completed, retried, lost, abandoned, joins, leaves, moves } = this.counts
    const r = this.averaging
    return {
      peers: this.init.peers,
      stages: this.init.nStages,
      hours: this.init.hours,
      seed: this.init.seed,
      throughputVsIdeal: mean(s => s.slowestVsIdeal),
      achievedVsIdeal: mean(s => s.achievedVsIdeal),
      samples: this.samples,
      moves,
      movesPerHour: moves / this.init.hours,
      joins,
      leaves,
      microbatches: { issued, completed, retried, lost, abandoned },
      retriedFraction: completed === 0 ? 0 : retried / completed,
      retries: this.retries,
      rounds: { started: r.started, completed: r.completed, full: r.full, meanMembers: r.completed === 0 ? 0 : r.members / r.completed, meanMs: r.completed === 0 ? 0 : r.ms / r.completed, resyncs: r.resyncs },
      roundCompletion: r.completed === 0 ? 0 : r.full / r.completed,
      events,
      wallMs
    }
  }
}

function sharedLogger (): ComponentLogger {
  const log = defaultLogger().forComponent('swarmtrain:sim')
  return { forComponent: () => log }
}
