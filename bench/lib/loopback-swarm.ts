// A pipeline swarm on loopback libp2p, for benchmarks and tests: stage servers, each with its own
// engine on its own host, and a driver host that calls them. Every server also goes on to the next
// stage itself (its own client, router and caller of that stage, as a daemon's stage server does),
// so the driver may relay each microbatch (FORWARD/BACKWARD calls) or forward it (one TRAIN call).
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { stageLayout, type ModelConfig } from '../../node/model/index.js'
import { createHost, type Host } from '../../node/p2p/host.js'
import { SwarmStage, type ReplicaSource } from '../../node/pipeline/caller.js'
import { StageClient, type StageClientComponents } from '../../node/pipeline/client.js'
import { Forwarder } from '../../node/pipeline/forward.js'
import { Router } from '../../node/pipeline/router.js'
import { StageServer, stageMessageLimit } from '../../node/pipeline/server.js'
import type { StageCompute } from '../../node/pipeline/service.js'
import type { OptimizerConfig } from '../../node/runtime/optimizer-config.js'
import { StageEngine } from '../../node/runtime/stage-engine.js'
import { stageProtocol } from '../../protocols/ids.js'
import type { DType } from '../../protocols/stage-codec.js'

export interface LoopbackSwarmInit {
  runId: string
  model: ModelConfig
  optimizer: OptimizerConfig
  nStages: number
  /** Replicas per stage (default 1). */
  replicas?: number
  /** onnxruntime threads per engine. */
  threads: number
  /** Parameter init seed of every engine (default 0). */
  seed?: number
  /** Activation encoding on the wire (default: the callers' default). */
  wireDType?: DType
  /** Added one way to every stage call, the driver's and the servers' hops alike (ms). */
  latencyMs?: number
  /** Servers cannot reach the next stage (as behind a NAT): their hops fail to dial, and drivers must relay. */
  unreachable?: boolean
  /** What a server computes with, given its engine (tests: a replica that fails). */
  compute?: (engine: StageEngine, stage: number, replica: number) => StageCompute
}

interface Member {
  host: Host
  client: StageClient
}

export interface LoopbackServer extends Member {
  stage: number
  engine: StageEngine
  server: StageServer
  /** This server's caller of the next stage (its hops), if it is not on the last. */
  next?: SwarmStage
}

export class LoopbackSwarm implements ReplicaSource {
  readonly servers: LoopbackServer[] = []
  readonly router = new Router()
  private constructor (readonly init: LoopbackSwarmInit, readonly driver: Member) {}

  static async create (init: LoopbackSwarmInit): Promise<LoopbackSwarm> {
    const { model, optimizer, nStages, runId } = init
    const replicas = init.replicas ?? 1
    const swarm = new LoopbackSwarm(init, await newMember(init))
    try {
      for (let stage = 0; stage < nStages; stage++) {
        for (let replica = 0; replica < replicas; replica++) {
          const member = await newMember(init)
          const engine = await StageEngine.create({ model, layout: stageLayout(model, stage, nStages), optimizer, seed: init.seed, threads: init.threads, weightVersions: optimizer.weightVersions })
          const hops = init.unreachable === true ? stageClient(init, { dialProtocol: async () => { throw new Error('no route to the next stage') } }) : member.client
          const next = stage < nStages - 1 ? swarm.caller(stage + 1, hops, new Router()) : undefined
          const tokens = optimizer.batchSize * model.seqLen
          const server = new StageServer({ registrar: member.host, engine: init.compute?.(engine, stage, replica) ?? engine, next }, {
            runId, stage, nStages, dModel: model.dModel, seqLen: model.seqLen, vocabSize: model.vocabSize,
            maxTokens: tokens, stepTokens: tokens * optimizer.microbatches, self: member.host.peerId.toString()
          })
          await server.start()
          swarm.servers.push({ ...member, stage, engine, server, next })
        }
      }
      // Everyone knows everyone's address, as the registry tells a daemon.
      for (const a of [swarm.driver, ...swarm.servers]) {
        for (const b of swarm.servers) if (a !== b) await a.host.dial(multiaddr(b.host.getMultiaddrs()[0].toString()))
      }
    } catch (err) {
      await swarm.stop()
      throw err
    }
    return swarm
  }

  /** The peers serving `stage`. */
  replicas (stage: number): string[] {
    return this.servers.filter(s => s.stage === stage).map(s => s.host.peerId.toString())
  }

  /** Fresh callers of every stage from the driver (their counters start at zero). */
  callers (): SwarmStage[] {
    return Array.from({ length: this.init.nStages }, (_, stage) => this.caller(stage, this.driver.client, this.router))
  }

  /** A driver's forwarder over `stages` (from callers()). */
  forwarder (stages: SwarmStage[]): Forwarder {
    return new Forwarder({ stages, router: this.router, replicas: this })
  }

  async stop (): Promise<void> {
    for (const m of [this.driver, ...this.servers]) await m.client.stop()
    for (const s of this.servers) {
      await s.server.stop()
      await s.engine.close()
    }
    for (const m of [this.driver, ...this.servers]) await m.host.stop()
  }

  private caller (stage: number, client: StageClient, router: Router): SwarmStage {
    const { model, optimizer, nStages } = this.init
    return new SwarmStage({ client, router, replicas: this }, { stage, nStages, dModel: model.dModel, seqLen: model.seqLen, vocabSize: model.vocabSize, maxTokens: optimizer.batchSize * model.seqLen, wireDType: this.init.wireDType })
  }
}

async function newMember (init: LoopbackSwarmInit): Promise<Member> {
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), runId: init.runId, listen: ['/ip4/127.0.0.1/tcp/0'] })
  return { host, client: stageClient(init, host) }
}

function stageClient (init: LoopbackSwarmInit, dialer: StageClientComponents['dialer']): StageClient {
  const maxMessageBytes = stageMessageLimit(init.optimizer.batchSize * init.model.seqLen, init.model.dModel)
  return new StageClient({ dialer }, { protocol: stageProtocol(init.runId), maxMessageBytes, addedLatencyMs: init.latencyMs })
}
