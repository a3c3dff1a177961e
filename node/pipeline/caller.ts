// A StageCaller for one stage of the swarm: each call goes to the replica the router picks; an
// error, a timeout or a busy reply sends it to another replica (the calls are stateless, so any
// replica can serve it), until it succeeds or no replica answers for CALL_GIVE_UP_MS. When this node
// serves the stage itself, its own service is one of the replicas, called without the network.
// A backward goes back to the replica that ran its forward, naming the weights that forward ran
// on, so the recomputation matches what the later stages saw; a retry elsewhere recomputes on
// that replica's current weights, and is counted (`versionMisses`).
// A TRAIN or EVALUATE call (`train`, `evaluate`, `hop`) carries the route of the later stages and
// returns the loss and what every hop did; the router learns each hop's replica from that, as if
// it had called it. Each hop's transfer time is measured by the server that called it (its call's
// wall time minus what the hop reports for its compute, queue wait and own onward calls) and
// reported upstream, so the driver learns the links between servers too, and its own link's share
// of a forwarded call is what the later hops leave of its wall time.
import { defaultLogger } from '@libp2p/logger'
import type { ComponentLogger, Logger } from '@libp2p/interface'
import { DType, MAX_PEER_ID_CHARS, StageMessageError, StageRequest, checkTensor, type Hop, type StageResponse } from '../../protocols/stage-codec.js'
import type { FloatTensor, Tensor, TokenTensor } from '../runtime/tensor.js'
import { decodeActivations, defaultWire, encodeActivations, encodeTokens, wireDTypes } from './activations.js'
import type { StageCaller } from './chain.js'
import { StageCallError, StageClientStoppedError, type StageTransport, type StageCallFailure } from './client.js'
import type { Router } from './router.js'
import { BusyError, UnroutableError, decodeStageCall, sameWeights, type ChainResult, type ForwardedKind, type StageCallLimits, type StageService } from './service.js'
import { TensorError } from '../runtime/tensor.js'
import type { WeightsVersion } from '../runtime/stage-engine.js'
import { CALL_GIVE_UP_MS, CALL_RETRY_PAUSE_MS } from '../timing.js'
import { sleep } from '../util/abort.js'
import { systemClock, type Clock } from '../util/clock.js'

/** Where the replicas of each stage are (the registry, in a daemon). */
export interface ReplicaSource {
  replicas(stage: number): string[]
}

/** Counters of one stage's calls, as the tests and the progress output read them. */
export interface CallStats {
  calls: number
  local: number
  /** Calls sent again to another replica, by what went wrong. */
  retries: Record<StageCallFailure, number>
  /** Compute time reported by servers, and the rest of the calls' time (serialization, transport; a TRAIN's later hops not counted), summed. */
  computeMs: number
  overheadMs: number
  /** Backwards that could not recompute with their forward's weights (a retry on another replica, or evicted). */
  versionMisses: number
  /** Backwards by staleness: how many weight versions the stage moved on between their forward and them. */
  staleness: number[]
}

export interface SwarmStageComponents {
  client: StageTransport
  router: Router
  replicas: ReplicaSource
  /** This node's peer id and its own service for a stage, when it serves that stage now. */
  local?: { peer: string, service: (stage: number) => StageService | undefined }
  /** When it aborts, a call that has no replica to try ends instead of waiting for one. */
  shutdown?: AbortSignal
  /** Names the node in log lines (default: unnamed). */
  logger?: ComponentLogger
  /** Default: the system clock (the simulator passes simulated time). */
  clock?: Clock
}

/** The stage's limits (what a server checks every request against), and the wire encoding. */
export interface SwarmStageInit extends StageCallLimits {
  /** Activation encoding on the wire (both directions). */
  wireDType?: DType
}

/**
 * A call this node should never have made: its own request fails the checks every server runs.
 * A bug of ours, not a peer's: it fails at once, and no replica is banned for it.
 */
export class StageRequestError extends Error {
  override name = 'StageRequestError'
}

/** What a stage's calls tell the driver's depth control (see depth.ts). */
export interface PipelineSignals {
  /** Largest staleness of a backward, in weight versions. */
  staleness: number
  /** Time calls waited in servers' queues, summed. */
  waitedMs: number
}

/** The signals of every stage of a chain, taken at once: the largest staleness, the summed waits. */
export function combineSignals (stages: readonly SwarmStage[]): PipelineSignals {
  const all = stages.map(s => s.takeSignals())
  return { staleness: Math.max(0, ...all.map(s => s.staleness)), waitedMs: all.reduce((a, s) => a + s.waitedMs, 0) }
}

/** The replicas of `stage` a node can call: the registry's, and itself while it serves that stage. */
export function replicasOf (components: Pick<SwarmStageComponents, 'replicas' | 'local'>, stage: number): string[] {
  const candidates = components.replicas.replicas(stage)
  if (components.local?.service(stage) !== undefined) candidates.push(components.local.peer)
  return candidates
}

/** Staleness above this is counted as this. */
const MAX_STALENESS_COUNTED = 64

/** The cost of a call in router work units: tokens, times ~3 for a backward (recompute + gradients). */
function work (tokens: number, backward: boolean): number {
  return tokens * (backward ? 3 : 1)
}

/** The router work units of one stage's part of a forwarded call: its forward, and for TRAIN its backward. */
export function forwardedWork (tokens: number, kind: ForwardedKind): number {
  return work(tokens, false) + (kind === 'train' ? work(tokens, true) : 0)
}

/** A forwarded call's kind, its route past the called stage, and whether to give up once every replica failed it (a server's hop). */
interface Onward {
  kind: ForwardedKind
  route: readonly string[]
  once: boolean
}

export class SwarmStage implements StageCaller {
  readonly stats: CallStats = { calls: 0, local: 0, retries: { timeout: 0, closed: 0, dial: 0, busy: 0, failed: 0, misbehaved: 0, refused: 0 }, computeMs: 0, overheadMs: 0, versionMisses: 0, staleness: [] }
  private readonly init: Required<SwarmStageInit>
  /** Which replica computed the forward of a stage input, on which weights (the chain passes the same object to backward). */
  private readonly forwards = new WeakMap<Tensor, { peer: string, version?: WeightsVersion }>()
  private signals: PipelineSignals = { staleness: 0, waitedMs: 0 }
  private readonly log: Logger
  private readonly clock: Clock

  constructor (private readonly components: SwarmStageComponents, init: SwarmStageInit) {
    this.init = { ...init, wireDType: init.wireDType ?? wireDTypes[defaultWire] }
    this.clock = components.clock ?? systemClock
    this.log = (components.logger ?? defaultLogger()).forComponent('swarmtrain:pipeline:caller')
  }

  async forward (x: Tensor): Promise<FloatTensor> {
    return (await this.call(false, x)).y as FloatTensor
  }

  async backward (x: Tensor, gy: FloatTensor): Promise<FloatTensor | undefined> {
    return (await this.call(true, x, gy)).y
  }

  async lossBackward (x: Tensor, targets: TokenTensor): Promise<{ loss: number, gx?: FloatTensor }> {
    const r = await this.call(true, x, targets)
    return { loss: r.loss as number, gx: r.y }
  }

  async loss (x: Tensor, targets: TokenTensor): Promise<number> {
    return (await this.call(false, x, targets)).loss as number
  }

  /**
   * Trains a microbatch from this stage on, forwarded server to server along `route` (one
   * replica per stage from this one on: the first is preferred for this stage, the rest travel
   * on). Retries this stage's call on other replicas until CALL_GIVE_UP_MS; an UnroutableError
   * means a server found no replica of a later stage, and nothing was trained.
   */
  async train (x: Tensor, targets: TokenTensor, route: readonly string[]): Promise<ChainResult> {
    return await this.chain('train', x, targets, route, false)
  }

  /** As train, forward only: the microbatch's loss, no gradient anywhere (an EVALUATE call). */
  async evaluate (x: Tensor, targets: TokenTensor, route: readonly string[]): Promise<ChainResult> {
    return await this.chain('evaluate', x, targets, route, false)
  }

  /** A server's hop of a forwarded call: as train or evaluate, but each replica is tried once, then UnroutableError. */
  async hop (x: FloatTensor, targets: TokenTensor, route: readonly string[], kind: ForwardedKind): Promise<ChainResult> {
    return await this.chain(kind, x, targets, [...route], true)
  }

  /** What this stage's calls showed since the last call: for the driver's depth control. */
  takeSignals (): PipelineSignals {
    const s = this.signals
    this.signals = { staleness: 0, waitedMs: 0 }
    return s
  }

  /**
   * A TRAIN or EVALUATE call, with the router's books for the later hops: it counts them in
   * flight on the replicas the route names (so concurrent microbatches spread over them), and
   * learns from what the reply says each hop's server did. Only peers the registry lists for that
   * stage count: a route or a reply is a peer's word, and must not grow the router's table with
   * made-up ids.
   */
  private async chain (kind: ForwardedKind, x: Tensor, targets: TokenTensor, route: readonly string[], once: boolean): Promise<ChainResult> {
    const { stage, nStages } = this.init
    if (route.length !== nStages - stage) throw new StageRequestError(`stage ${stage}: a route needs ${nStages - stage} hops, not ${route.length}`)
    const { router } = this.components
    const units = forwardedWork(x.shape[0] * x.shape[1], kind)
    const counted = route.map((peer, i) => i > 0 && this.isReplica(stage + i, peer) ? peer : undefined)
    for (const peer of counted) if (peer !== undefined) router.started(peer)
    let hops: Hop[] = []
    try {
      const result = await this.call(kind === 'train', x, targets, { kind, route: route.slice(1), once }, route[0])
      hops = result.hops!
      return { loss: result.loss as number, gx: result.y, hops }
    } finally {
      counted.forEach((peer, i) => {
        const hop = hops[i]
        const outcome = hop === undefined ? undefined : { work: units, computeMs: hop.computeMs, queueLength: hop.queueLength, transferMs: hop.transferMs }
        if (peer !== undefined && hop?.peer !== peer) router.released(peer)
        if (outcome === undefined || i === 0 || !this.isReplica(stage + i, hop.peer)) return
        if (peer !== hop.peer) router.started(hop.peer)
        router.succeeded(hop.peer, outcome)
      })
    }
  }

  /** Whether `peer` serves `stage` as far as this node knows. */
  private isReplica (stage: number, peer: string): boolean {
    return replicasOf(this.components, stage).includes(peer)
  }

  private async call (backward: boolean, x: Tensor, extra?: FloatTensor | TokenTensor, onward?: Onward, preferred?: string): Promise<{ y?: FloatTensor, loss?: number, hops?: Hop[] }> {
    const { router } = this.components
    const own = this.components.local
    const localService = own?.service(this.init.stage)
    const local = localService === undefined || own === undefined ? undefined : { peer: own.peer, service: localService }
    const tokens = x.shape[0] * x.shape[1]
    const units = onward !== undefined ? forwardedWork(tokens, onward.kind) : work(tokens, backward)
    const clock = this.clock
    const deadline = clock.now() + CALL_GIVE_UP_MS
    const tried = new Set<string>()
    let request: Omit<StageRequest, 'id'> | undefined
    // A backward goes back to the replica that computed the forward while it is healthy, with the
    // forward's weights version: its recomputation then matches the activations the later stages saw.
    const forward = backward && onward === undefined ? this.forwards.get(x) : undefined
    let affinity = forward?.peer ?? preferred
    this.stats.calls++
    while (true) {
      const candidates = replicasOf(this.components, this.init.stage)
      let peer = affinity !== undefined && candidates.includes(affinity) && !router.isBanned(affinity) ? affinity : router.choose(candidates, units, tried)
      affinity = undefined
      if (peer === undefined && onward?.once === true) throw new UnroutableError(`no replica of stage ${this.init.stage} answered (${tried.size} tried)`)
      if (peer === undefined && tried.size > 0) {
        // Every replica failed this call once: try them again (bans still apply), after a pause. A
        // busy replica answers at once (at no time at all in the simulator, when it is this node),
        // so without one a call to a stage whose only replica is full would spin until it drains.
        tried.clear()
        await sleep(CALL_RETRY_PAUSE_MS, this.components.shutdown, clock)
        continue
      }
      if (peer === undefined) {
        if (this.components.shutdown?.aborted === true) throw new StageClientStoppedError('the node is stopping')
        if (clock.now() > deadline) throw new StageCallError(`no replica of stage ${this.init.stage} answered for ${CALL_GIVE_UP_MS} ms`, 'timeout')
        await sleep(CALL_RETRY_PAUSE_MS, this.components.shutdown, clock)
        continue
      }
      router.started(peer)
      const started = clock.monotonic()
      // Only the replica that ran the forward holds its weights.
      const at = forward !== undefined && forward.peer === peer ? forward.version : undefined
      try {
        let result: { y?: FloatTensor, loss?: number, hops?: Hop[] }
        let version: WeightsVersion | undefined
        let staleness = 0
        let waitedMs = 0
        let totalMs = 0
        if (peer === local?.peer) {
          const out = onward !== undefined ? await local.service.forwarded(onward.kind, x, extra as TokenTensor, onward.route) : await local.service.run(backward, x, extra, at)
          // A TRAIN's wall time includes the later stages': only its own compute is this replica's.
          const ms = onward !== undefined ? out.computeMs : clock.monotonic() - started
          router.succeeded(peer, { work: units, computeMs: ms, queueLength: 0, transferMs: 0 })
          this.stats.local++
          this.stats.computeMs += ms
          result = { y: out.y, loss: out.loss, hops: onward !== undefined ? [{ peer, computeMs: out.computeMs, queueLength: 0, waitMs: out.waitMs, staleness: out.staleness, transferMs: 0 }, ...out.hops!] : undefined }
          version = out.version
          staleness = out.staleness
          waitedMs = out.waitMs
        } else {
          const response = await this.components.client.call(peer, { ...(request ??= this.request(backward, x, extra, onward)), at }, this.timeoutMs(peer, units, onward?.route))
          result = this.result(response, x, backward, onward)
          totalMs = clock.monotonic() - started
          // The later hops' times are peers' words: none may exceed what this node's clock saw.
          const later = response.hops.map(hop => ({ ...hop, computeMs: Math.min(hop.computeMs, totalMs), waitMs: Math.min(hop.waitMs, totalMs), transferMs: Math.min(hop.transferMs, totalMs) }))
          // This call's transfer: what the server's compute and wait and the later hops (whose times add
          // up to the server's own onward call) leave of its wall time.
          const transferMs = Math.max(0, totalMs - response.computeMs - response.waitMs - later.reduce((ms, h) => ms + h.computeMs + h.waitMs + h.transferMs, 0))
          if (onward !== undefined) result.hops = [{ peer, computeMs: response.computeMs, queueLength: response.queueLength, waitMs: response.waitMs, staleness: response.staleness, transferMs }, ...later]
          router.succeeded(peer, { work: units, computeMs: response.computeMs, queueLength: response.queueLength, transferMs })
          this.stats.computeMs += response.computeMs
          this.stats.overheadMs += transferMs
          version = response.version
          // A peer's numbers: bounded before they size an array or steer the depth.
          staleness = Math.min(response.staleness, MAX_STALENESS_COUNTED)
          waitedMs = Math.min(Math.max(response.waitMs, 0), totalMs)
        }
        if (backward) {
          while (this.stats.staleness.length <= staleness) this.stats.staleness.push(0)
          this.stats.staleness[staleness]++
          this.signals.staleness = Math.max(this.signals.staleness, staleness)
        }
        this.signals.waitedMs += waitedMs
        // The later hops of a remote TRAIN (their waits bounded above): the depth control hears of
        // their staleness and waits here (after a local one, this node's own callers of those stages have counted them).
        for (const hop of peer === local?.peer ? [] : result.hops?.slice(1) ?? []) {
          this.signals.staleness = Math.max(this.signals.staleness, Math.min(hop.staleness, MAX_STALENESS_COUNTED))
          this.signals.waitedMs += hop.waitMs
        }
        if (!backward && onward === undefined) this.forwards.set(x, { peer, version })
        else if (forward?.version !== undefined && !sameWeights(version, forward.version)) this.stats.versionMisses++
        return result
      } catch (err) {
        if (err instanceof StageClientStoppedError) throw err
        // A later stage was out of this replica's reach: no fault of the replica's, and the driver decides.
        if (err instanceof UnroutableError) {
          router.released(peer)
          throw err
        }
        let reason: StageCallFailure = err instanceof StageCallError ? err.reason : err instanceof BusyError ? 'busy' : 'failed'
        // Whose fault? Our own stage refusing our input, or a server refusing a request that fails
        // its checks here too, is our bug: fail now and blame nobody. A valid request refused is the peer's fault.
        const ours = peer === local?.peer ? (err instanceof TensorError ? err.message : undefined) : reason === 'refused' ? this.ownFault(request, peer) : undefined
        if (ours !== undefined) {
          router.released(peer)
          throw new StageRequestError(`stage ${this.init.stage}: this node sent an invalid request: ${ours}`)
        }
        if (reason === 'refused') reason = 'misbehaved'
        if (reason === 'busy') router.busy(peer, err instanceof StageCallError ? err.queueLength : 0)
        else if (reason === 'misbehaved') router.misbehaved(peer)
        else router.failed(peer)
        if (peer === local?.peer) this.log.error('stage %d: own service failed a call: %e', this.init.stage, err)
        else this.log('stage %d: call to %s failed (%s): %s', this.init.stage, peer, reason, (err as Error).message)
        this.stats.retries[reason]++
        tried.add(peer)
        if (clock.now() > deadline) throw err
      }
    }
  }

  /** Why our own request would fail a server's checks, or undefined when it would pass them. */
  private ownFault (request: Omit<StageRequest, 'id'> | undefined, peer: string): string | undefined {
    if (request === undefined) return undefined
    try {
      decodeStageCall({ ...request, id: 0 }, { ...this.init, self: peer })
      return undefined
    } catch (err) {
      return (err as Error).message
    }
  }

  /** A call's timeout: for a TRAIN, the sum of what each hop of its route may take. */
  private timeoutMs (peer: string, units: number, route?: readonly string[]): number {
    const { router } = this.components
    return [peer, ...route ?? []].reduce((ms, p) => ms + router.timeoutMs(p, units), 0)
  }

  private request (backward: boolean, x: Tensor, extra: FloatTensor | TokenTensor | undefined, onward?: Onward): Omit<StageRequest, 'id'> {
    const targets = this.init.stage === this.init.nStages - 1 || onward !== undefined
    const wire = this.init.wireDType
    const encode = (t: Tensor) => t.data instanceof BigInt64Array ? encodeTokens(t as TokenTensor) : encodeActivations(t.data as Float32Array, t.shape, wire)
    return {
      kind: onward !== undefined ? (onward.kind === 'train' ? StageRequest.Kind.TRAIN : StageRequest.Kind.EVALUATE) : backward ? StageRequest.Kind.BACKWARD : StageRequest.Kind.FORWARD,
      stage: this.init.stage,
      x: encode(x),
      gy: !targets && extra !== undefined ? encode(extra) : undefined,
      targets: targets && extra !== undefined ? encode(extra) : undefined,
      replyDtype: wire,
      route: onward === undefined ? [] : [...onward.route]
    }
  }

  /** Checks a reply against what the call must return; a bad reply counts as the peer's failure. */
  private result (response: StageResponse, x: Tensor, backward: boolean, onward?: Onward): { y?: FloatTensor, loss?: number } {
    const { stage, nStages, dModel } = this.init
    const [b, t] = x.shape
    const last = stage === nStages - 1
    // An EVALUATE reply carries the loss alone.
    const wantsY = backward ? stage > 0 : !last && onward === undefined
    const out: { y?: FloatTensor, loss?: number } = {}
    try {
      if (wantsY) {
        checkTensor('y', response.y, [DType.F16, DType.INT8, DType.F32], [b, t, dModel], b * t * dModel)
        out.y = decodeActivations(response.y!)
      }
      if (last || onward !== undefined) {
        if (response.loss === undefined || !Number.isFinite(response.loss)) throw new StageMessageError('the reply has no finite loss')
        out.loss = response.loss
      }
      if (onward !== undefined) checkHops(response.hops, nStages - 1 - stage)
      else if (response.hops.length > 0) throw new StageMessageError('only TRAIN and EVALUATE replies report hops')
    } catch (err) {
      throw new StageCallError(`bad reply: ${(err as Error).message}`, 'misbehaved')
    }
    return out
  }
}

/** Checks what a TRAIN reply says the later hops did: one per later stage, plausible numbers. */
function checkHops (hops: readonly Hop[], expected: number): void {
  if (hops.length !== expected) throw new StageMessageError(`the reply reports ${hops.length} hops, expected ${expected}`)
  for (const hop of hops) {
    if (hop.peer.length === 0 || hop.peer.length > MAX_PEER_ID_CHARS) throw new StageMessageError('a hop names no valid peer')
    if (![hop.computeMs, hop.waitMs, hop.transferMs].every(ms => Number.isFinite(ms) && ms >= 0)) throw new StageMessageError(`hop ${hop.peer} reports impossible times`)
  }
}
