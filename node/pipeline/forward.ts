// The driver's side of server-to-server forwarding: a microbatch goes out as one TRAIN call to
// stage 0, naming the route (the router's choice of replica for every stage), and comes back as
// its loss; the activations and gradients travel between the stage servers, and the driver's
// link carries the tokens and the loss. Where a server cannot reach any replica of the next stage,
// it answers UNROUTABLE before any backward ran, and the driver relays that microbatch itself
// (FORWARD and BACKWARD calls through this node, as chain.ts runs them), and counts it.
// Evaluations take the same path as one EVALUATE call (forward only, the loss comes back), and
// fall back the same way, to FORWARD calls through this node.
import { defaultLogger } from '@libp2p/logger'
import type { ComponentLogger, Logger } from '@libp2p/interface'
import { forwardedWork, replicasOf, type SwarmStage, type SwarmStageComponents } from './caller.js'
import { evaluateMicrobatch, trainMicrobatch, type Microbatch } from './chain.js'
import { UnroutableError, type ForwardedKind } from './service.js'

export interface ForwarderComponents extends Pick<SwarmStageComponents, 'router' | 'replicas' | 'local'> {
  /** One caller per stage, in order (the same the relayed path and the evaluations use). */
  stages: readonly SwarmStage[]
  logger?: ComponentLogger
}

export interface ForwardStats {
  /** Microbatches trained server to server. */
  forwarded: number
  /** Microbatches this node relayed instead: a server could not reach a later stage, or a stage had no replica to name. */
  relayed: number
  /** Validation microbatches evaluated server to server, and those relayed instead (for the same reasons). */
  evaluationsForwarded: number
  evaluationsRelayed: number
}

/** Per call kind: how the driver relays a microbatch it cannot forward, and the counters it bumps. */
const paths = {
  train: { relay: trainMicrobatch, forwarded: 'forwarded', relayed: 'relayed' },
  evaluate: { relay: evaluateMicrobatch, forwarded: 'evaluationsForwarded', relayed: 'evaluationsRelayed' }
} as const

export class Forwarder {
  readonly stats: ForwardStats = { forwarded: 0, relayed: 0, evaluationsForwarded: 0, evaluationsRelayed: 0 }
  private readonly log: Logger

  constructor (private readonly components: ForwarderComponents) {
    this.log = (components.logger ?? defaultLogger()).forComponent('swarmtrain:pipeline:forward')
  }

  /** Trains one microbatch; returns its mean loss. */
  async train (batch: Microbatch): Promise<number> {
    return await this.run(batch, 'train')
  }

  /** The mean loss of one validation microbatch, without gradients. */
  async evaluate (batch: Microbatch): Promise<number> {
    return await this.run(batch, 'evaluate')
  }

  /** Forwards the microbatch, or relays it when it cannot be forwarded, and counts which. */
  private async run (batch: Microbatch, kind: ForwardedKind): Promise<number> {
    const path = paths[kind]
    const loss = await this.forward(batch, kind)
    if (loss !== undefined) {
      this.stats[path.forwarded]++
      return loss
    }
    this.stats[path.relayed]++
    return await path.relay(this.components.stages, batch)
  }

  /** Sends a forwarded call along a route; its loss, or undefined when the driver must relay the microbatch. */
  private async forward (batch: Microbatch, kind: ForwardedKind): Promise<number | undefined> {
    const route = this.route(batch.x.shape[0] * batch.x.shape[1], kind)
    if (route === undefined) return undefined
    try {
      return (await this.components.stages[0][kind](batch.x, batch.targets, route)).loss
    } catch (err) {
      if (!(err instanceof UnroutableError)) throw err
      this.log('relaying a microbatch: %s', err.message)
      return undefined
    }
  }

  /**
   * The router's choice of replica for every stage, a peer at most once (a node serves one stage;
   * servers refuse a route through a peer twice), or undefined while a stage has none.
   */
  private route (tokens: number, kind: ForwardedKind): string[] | undefined {
    const { router, stages } = this.components
    const chosen = new Set<string>()
    for (let stage = 0; stage < stages.length; stage++) {
      // In the units the router learned each hop's compute in, so that compute and transfer weigh as they should.
      const peer = router.choose(replicasOf(this.components, stage), forwardedWork(tokens, kind), chosen)
      if (peer === undefined) return undefined
      chosen.add(peer)
    }
    return [...chosen]
  }
}
