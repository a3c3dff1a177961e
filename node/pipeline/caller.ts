// A StageCaller for one stage of the swarm: each call goes to the replica the router picks; an
// error, a timeout or a busy reply sends it to another replica (the calls are stateless, so any
// replica can serve it), until it succeeds or no replica answers for CALL_GIVE_UP_MS. When this node
// serves the stage itself, its own service is one of the replicas, called without the network.
import { defaultLogger } from '@libp2p/logger'
import type { ComponentLogger, Logger } from '@libp2p/interface'
import { DType, StageMessageError, StageRequest, checkTensor, type StageResponse } from '../../protocols/stage-codec.js'
import type { FloatTensor, Tensor, TokenTensor } from '../runtime/tensor.js'
import { decodeActivations, encodeActivations, encodeTokens } from './activations.js'
import type { StageCaller } from './chain.js'
import { StageCallError, StageClientStoppedError, type StageClient, type StageCallFailure } from './client.js'
import type { Router } from './router.js'
import { BusyError } from './service.js'
import { CALL_GIVE_UP_MS, CALL_RETRY_PAUSE_MS } from '../timing.js'
import { sleep } from '../util/abort.js'

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
  /** Compute time reported by servers, and the rest of the calls' time (serialization, transport), summed. */
  computeMs: number
  overheadMs: number
}

export interface SwarmStageComponents {
  client: StageClient
  router: Router
  replicas: ReplicaSource
  /** This node's peer id and its own service for a stage, when it serves that stage now. */
  local?: { peer: string, service: (stage: number) => StageCaller | undefined }
  /** When it aborts, a call that has no replica to try ends instead of waiting for one. */
  shutdown?: AbortSignal
  /** Names the node in log lines (default: unnamed). */
  logger?: ComponentLogger
}

export interface SwarmStageInit {
  stage: number
  nStages: number
  dModel: number
  /** Activation encoding on the wire (both directions). */
  wireDType?: DType
}

/** The cost of a call in router work units: tokens, times ~3 for a backward (recompute + gradients). */
function work (tokens: number, backward: boolean): number {
  return tokens * (backward ? 3 : 1)
}

export class SwarmStage implements StageCaller {
  readonly stats: CallStats = { calls: 0, local: 0, retries: { timeout: 0, closed: 0, dial: 0, busy: 0, refused: 0 }, computeMs: 0, overheadMs: 0 }
  private readonly init: Required<SwarmStageInit>
  /** Which replica computed the forward of a stage input (the chain passes the same object to backward). */
  private readonly forwardPeer = new WeakMap<Tensor, string>()
  private readonly log: Logger

  constructor (private readonly components: SwarmStageComponents, init: SwarmStageInit) {
    this.init = { ...init, wireDType: init.wireDType ?? DType.F16 }
    this.log = (components.logger ?? defaultLogger()).forComponent('swarmtrain:pipeline:caller')
  }

  async forward (x: Tensor): Promise<FloatTensor> {
    const r = await this.call(false, x, undefined, local => local.forward(x).then(y => ({ y })))
    return r.y as FloatTensor
  }

  async backward (x: Tensor, gy: FloatTensor): Promise<FloatTensor | undefined> {
    const r = await this.call(true, x, gy, local => local.backward(x, gy).then(y => ({ y })))
    return r.y
  }

  async lossBackward (x: Tensor, targets: TokenTensor): Promise<{ loss: number, gx?: FloatTensor }> {
    const r = await this.call(true, x, targets, local => local.lossBackward(x, targets).then(({ loss, gx }) => ({ loss, y: gx })))
    return { loss: r.loss as number, gx: r.y }
  }

  async loss (x: Tensor, targets: TokenTensor): Promise<number> {
    const r = await this.call(false, x, targets, local => local.loss(x, targets).then(loss => ({ loss })))
    return r.loss as number
  }

  private async call (backward: boolean, x: Tensor, extra: FloatTensor | TokenTensor | undefined, onLocal: (c: StageCaller) => Promise<{ y?: FloatTensor, loss?: number }>): Promise<{ y?: FloatTensor, loss?: number }> {
    const { router, replicas } = this.components
    const own = this.components.local
    const localCaller = own?.service(this.init.stage)
    const local = localCaller === undefined || own === undefined ? undefined : { peer: own.peer, caller: localCaller }
    const tokens = x.shape[0] * x.shape[1]
    const units = work(tokens, backward)
    const deadline = Date.now() + CALL_GIVE_UP_MS
    const tried = new Set<string>()
    let request: Omit<StageRequest, 'id'> | undefined
    // A backward goes back to the replica that computed the forward while it is healthy: its
    // recomputation then matches the activations the later stages saw (replicas drift apart
    // between averaging rounds).
    let affinity = backward ? this.forwardPeer.get(x) : undefined
    this.stats.calls++
    while (true) {
      const candidates = replicas.replicas(this.init.stage)
      if (local !== undefined) candidates.push(local.peer)
      let peer = affinity !== undefined && candidates.includes(affinity) && !router.isBanned(affinity) ? affinity : router.choose(candidates, units, tried)
      affinity = undefined
      if (peer === undefined && tried.size > 0) {
        // Every replica failed this call once: try them again (bans still apply).
        tried.clear()
        peer = router.choose(candidates, units, tried)
      }
      if (peer === undefined) {
        if (this.components.shutdown?.aborted === true) throw new StageClientStoppedError('the node is stopping')
        if (Date.now() > deadline) throw new StageCallError(`no replica of stage ${this.init.stage} answered for ${CALL_GIVE_UP_MS} ms`, 'timeout')
        await sleep(CALL_RETRY_PAUSE_MS, this.components.shutdown)
        continue
      }
      router.started(peer)
      const started = performance.now()
      try {
        if (peer === local?.peer) {
          const out = await onLocal(local.caller)
          const ms = performance.now() - started
          router.succeeded(peer, { work: units, computeMs: ms, queueLength: 0 })
          this.stats.local++
          this.stats.computeMs += ms
          if (!backward) this.forwardPeer.set(x, peer)
          return out
        }
        request ??= this.request(backward, x, extra)
        const response = await this.components.client.call(peer, request, router.timeoutMs(peer, units))
        const result = this.result(response, x, backward)
        const totalMs = performance.now() - started
        router.succeeded(peer, { work: units, computeMs: response.computeMs, queueLength: response.queueLength })
        this.stats.computeMs += response.computeMs
        this.stats.overheadMs += Math.max(0, totalMs - response.computeMs - response.waitMs)
        if (!backward) this.forwardPeer.set(x, peer)
        return result
      } catch (err) {
        if (err instanceof StageClientStoppedError) throw err
        const reason: StageCallFailure = err instanceof StageCallError ? err.reason : err instanceof BusyError ? 'busy' : 'refused'
        if (reason === 'busy') router.busy(peer, err instanceof StageCallError ? err.queueLength : 0)
        else router.failed(peer)
        if (peer === local?.peer) this.log.error('stage %d: own service failed a call: %e', this.init.stage, err)
        else this.log('stage %d: call to %s failed (%s): %s', this.init.stage, peer, reason, (err as Error).message)
        this.stats.retries[reason]++
        tried.add(peer)
        if (Date.now() > deadline) throw err
      }
    }
  }

  private request (backward: boolean, x: Tensor, extra: FloatTensor | TokenTensor | undefined): Omit<StageRequest, 'id'> {
    const last = this.init.stage === this.init.nStages - 1
    const wire = this.init.wireDType
    const encode = (t: Tensor) => t.data instanceof BigInt64Array ? encodeTokens(t as TokenTensor) : encodeActivations(t.data as Float32Array, t.shape, wire)
    return {
      kind: backward ? StageRequest.Kind.BACKWARD : StageRequest.Kind.FORWARD,
      stage: this.init.stage,
      x: encode(x),
      gy: !last && extra !== undefined ? encode(extra) : undefined,
      targets: last && extra !== undefined ? encode(extra) : undefined,
      replyDtype: wire
    }
  }

  /** Checks a reply against what the call must return; a bad reply counts as the peer's failure. */
  private result (response: StageResponse, x: Tensor, backward: boolean): { y?: FloatTensor, loss?: number } {
    const { stage, nStages, dModel } = this.init
    const [b, t] = x.shape
    const last = stage === nStages - 1
    const wantsY = backward ? stage > 0 : !last
    const out: { y?: FloatTensor, loss?: number } = {}
    try {
      if (wantsY) {
        checkTensor('y', response.y, [DType.F16, DType.INT8, DType.F32], [b, t, dModel], b * t * dModel)
        out.y = decodeActivations(response.y!)
      }
      if (last) {
        if (response.loss === undefined || !Number.isFinite(response.loss)) throw new StageMessageError('the reply has no finite loss')
        out.loss = response.loss
      }
    } catch (err) {
      throw new StageCallError(`bad reply: ${(err as Error).message}`, 'refused')
    }
    return out
  }
}
