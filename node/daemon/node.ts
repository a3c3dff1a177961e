// The composition root of a swarmtrain daemon: the libp2p host, the stage registry, the
// stage assigner and the control server, plus any services other areas plug in (the
// pipeline's stage server and driver, averaging). A service is built from the node's
// components and started after the node has chosen its stage; it hears of moves through the
// assigner's `stage` event.
import { logger } from '@libp2p/logger'
import { KEEP_ALIVE, type PrivateKey } from '@libp2p/interface'
import { freemem } from 'node:os'
import { join } from 'node:path'
import { stageMemoryBytes } from '../assignment/memory.js'
import { StageAssigner, type StageMove } from '../assignment/assigner.js'
import { serveManifest } from '../manifest/exchange.js'
import { runIdOf, type RunManifest } from '../manifest/manifest.js'
import { PeerRefusedError } from '../p2p/errors.js'
import { createHost, hostNetworkStatus, waitForRoutingPeers, type Host } from '../p2p/host.js'
import { loadOrCreateIdentity } from '../p2p/keys.js'
import type { NetworkStatus } from '../p2p/network.js'
import { dialAndIdentify, guardRun } from '../p2p/peers.js'
import { StageRegistry, registryDhtConfig } from '../registry/registry.js'
import { writeFileAtomic } from '../util/fs.js'
import { version } from '../version.js'
import { ControlServer } from './control.js'
import { defaultTiming, type Timing } from './timing.js'

const log = logger('swarmtrain:daemon')

/** What a plugged-in service may use. */
export interface SwarmComponents {
  host: Host
  privateKey: PrivateKey
  manifest: RunManifest
  runId: string
  dir: string
  registry: StageRegistry
  assigner: StageAssigner
}

export interface SwarmService {
  start?(): void | Promise<void>
  stop?(): void | Promise<void>
  /** Shown under `services.<name>` in the status JSON. */
  status?(): unknown
}

export type ServiceFactory = (components: SwarmComponents) => SwarmService

export interface SwarmNodeInit {
  /** The node directory: identity key, manifest, daemon.json. */
  dir: string
  manifest: RunManifest
  listen: string[]
  announce?: string[]
  bootstrap?: string[]
  swarmKey?: Uint8Array
  /** Pin this stage (`--stage N`); otherwise the node chooses and rebalances. */
  stage?: number
  /** This node's tokens/s on a stage (from `--capacity` or the capacity probe). */
  throughput: number
  /** Bytes free for a stage (measured with the capacity); default: free memory now. */
  freeMemory?: number
  /** Port of the 127.0.0.1 status server; 0 picks a free one; undefined serves none. */
  controlPort?: number
  timing?: Partial<Timing>
  services?: Record<string, ServiceFactory>
}

/** Written to `<dir>/daemon.json` while the daemon runs, so `status` finds the control port. */
export const DAEMON_FILE = 'daemon.json'

export class SwarmNode {
  readonly runId: string
  private readonly init: SwarmNodeInit
  private readonly timing: Timing
  private parts?: SwarmComponents & { services: Map<string, SwarmService>, control?: ControlServer, unguard: () => void }
  private startedAt = 0
  controlPort?: number

  constructor (init: SwarmNodeInit) {
    this.init = init
    this.runId = runIdOf(init.manifest)
    this.timing = { ...defaultTiming, ...init.timing }
    if (init.stage !== undefined && (init.stage < 0 || init.stage >= init.manifest.nStages)) {
      throw new RangeError(`stage ${init.stage} does not exist: the run has stages 0..${init.manifest.nStages - 1}`)
    }
  }

  get components (): SwarmComponents {
    if (this.parts === undefined) throw new Error('the node is not started')
    return this.parts
  }

  async start (): Promise<void> {
    const { dir, manifest } = this.init
    const runId = this.runId
    const privateKey = await loadOrCreateIdentity(dir)
    const host = await createHost({
      privateKey,
      runId,
      listen: this.init.listen,
      announce: this.init.announce,
      bootstrap: this.init.bootstrap,
      swarmKey: this.init.swarmKey,
      ...registryDhtConfig(runId, manifest.nStages),
      pingIntervalMs: this.timing.pingIntervalMs,
      pingTimeoutMs: this.timing.pingTimeoutMs,
      dialTimeoutMs: this.timing.dialTimeoutMs,
      // The registry re-provides every 10 refreshes; three missed rounds and the record goes.
      providerValidityMs: 30 * this.timing.refreshMs
    })
    try {
      const unguard = guardRun(host, runId)
      await serveManifest(host, manifest)
      await this.checkBootstrap(host)
      const registry = new StageRegistry({ host, privateKey }, { runId, nStages: manifest.nStages, recordTtlMs: this.timing.recordTtlMs, refreshMs: this.timing.refreshMs, queryTimeoutMs: this.timing.dialTimeoutMs })
      const freeMemory = this.init.freeMemory ?? freemem()
      const assigner = new StageAssigner({ registry }, {
        nStages: manifest.nStages,
        throughput: this.init.throughput,
        freeMemory,
        stageMemory: stage => stageMemoryBytes(manifest, stage),
        pinnedStage: this.init.stage,
        rebalanceMs: this.timing.rebalanceMs,
        seed: `${host.peerId.toString()}:${Date.now()}`,
        peerId: host.peerId.toString()
      })
      const components: SwarmComponents = { host, privateKey, manifest, runId, dir, registry, assigner }
      const services = new Map(Object.entries(this.init.services ?? {}).map(([name, factory]) => [name, factory(components)]))
      this.parts = { ...components, services, unguard }
      await registry.start()
      await assigner.start()
      for (const service of services.values()) await service.start?.()
      if (this.init.controlPort !== undefined) {
        const control = new ControlServer(() => this.status())
        this.parts.control = control
        this.controlPort = await control.listen(this.init.controlPort)
        await writeFileAtomic(join(dir, DAEMON_FILE), JSON.stringify({ pid: process.pid, peerId: host.peerId.toString(), controlPort: this.controlPort }) + '\n')
      }
      this.startedAt = Date.now()
    } catch (err) {
      if (this.parts !== undefined) await this.stop().catch(() => {})
      else await host.stop()
      throw err
    }
  }

  async stop (): Promise<void> {
    const parts = this.parts
    if (parts === undefined) return
    this.parts = undefined
    await parts.control?.close()
    for (const service of [...parts.services.values()].reverse()) await service.stop?.()
    await parts.assigner.stop()
    await parts.registry.stop()
    parts.unguard()
    await parts.host.stop()
  }

  /** Multiaddrs peers can dial, with /p2p/<peer id>. */
  get addresses (): string[] {
    return this.components.host.getMultiaddrs().map(ma => ma.toString())
  }

  /**
   * With bootstrap peers, at least one must be reachable and serve this run: otherwise the node
   * would sit alone, and the user must hear why (other swarm key, other manifest, down).
   */
  private async checkBootstrap (host: Host): Promise<void> {
    const list = this.init.bootstrap ?? []
    if (list.length === 0) return
    const failures: string[] = []
    const results = await Promise.all(list.map(async address => {
      try {
        const { peerId, runs } = await dialAndIdentify(host, address, this.timing.dialTimeoutMs)
        if (runs.has(this.runId)) {
          // libp2p redials keep-alive peers when the connection drops (e.g. a ping timeout under load).
          await host.peerStore.merge(peerId, { tags: { [`${KEEP_ALIVE}-bootstrap`]: { value: 1 } } })
          return true
        }
        failures.push(`${address} serves run ${[...runs].join(', ')} but this node's manifest gives run ${this.runId} (a different swarm.json: use 'swarmtrain join' to fetch theirs)`)
      } catch (err) {
        failures.push((err as Error).message)
      }
      return false
    }))
    if (!results.includes(true)) throw new PeerRefusedError(`no bootstrap peer accepted this node: ${failures.join('; ')}`)
    for (const failure of failures) log.error('bootstrap: %s', failure)
    if (!await waitForRoutingPeers(host, this.timing.dialTimeoutMs)) log.error('bootstrap: no peer entered the DHT routing table')
  }

  /** The swarm as this node sees it: the status JSON. */
  status (): NodeStatus {
    if (this.parts === undefined) throw new Error('the node is not started')
    const { host, registry, assigner, services } = this.parts
    const self = registry.self
    return {
      peerId: host.peerId.toString(),
      runId: this.runId,
      version,
      addresses: this.addresses,
      uptimeMs: Date.now() - this.startedAt,
      stage: assigner.stage,
      pinned: assigner.pinned,
      round: self?.round ?? 0,
      throughput: self?.throughput ?? 0,
      connections: host.getConnections().length,
      network: hostNetworkStatus(host),
      moves: assigner.moves,
      viewUpdatedAt: registry.view.updatedAt,
      stages: registry.view.stages.map(s => ({
        stage: s.stage,
        throughput: s.throughput,
        peers: s.peers.map(p => ({ peerId: p.peerId, throughput: p.throughput, servedThroughput: p.servedThroughput, queueLength: p.queueLength, round: p.round, version: p.version, freeMemory: p.freeMemory, expiresAt: p.expiresAt }))
      })),
      services: Object.fromEntries([...services.entries()].filter(([, s]) => s.status !== undefined).map(([name, s]) => [name, s.status?.()]))
    }
  }
}

export interface NodeStatus {
  peerId: string
  runId: string
  version: string
  addresses: string[]
  uptimeMs: number
  stage?: number
  pinned: boolean
  round: number
  throughput: number
  connections: number
  network: NetworkStatus
  moves: StageMove[]
  viewUpdatedAt: number
  stages: Array<{ stage: number, throughput: number, peers: Array<{ peerId: string, throughput: number, servedThroughput: number, queueLength: number, round: number, version: string, freeMemory: number, expiresAt: number }> }>
  services: Record<string, unknown>
}
