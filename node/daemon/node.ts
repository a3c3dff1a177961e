// The composition root of a swarmtrain daemon: the libp2p host, the stage registry, the
// stage assigner and the control server, plus any services other areas plug in (the
// pipeline's stage server and driver, averaging). A service is built from the node's
// components and started after the node has chosen its stage; it hears of moves through the
// assigner's `stage` event.
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { Registry } from 'prom-client'
import { KEEP_ALIVE, type ComponentLogger, type PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { freemem } from 'node:os'
import { join } from 'node:path'
import { stageMemoryBytes } from '../assignment/memory.js'
import { StageAssigner, type StageMove } from '../assignment/assigner.js'
import { StageCoverage } from '../assignment/coverage.js'
import { serveManifest } from '../manifest/exchange.js'
import { SwarmEvents, type SwarmEvent } from '../metrics/events.js'
import { registerSwarmMetrics, transferredBytes } from '../metrics/prometheus.js'
import { runIdOf, type RunManifest } from '../manifest/manifest.js'
import { UserError } from '../errors.js'
import { PeerRefusedError } from '../p2p/errors.js'
import { createHost, hostNetworkStatus, waitForRoutingPeers, type Host } from '../p2p/host.js'
import { loadOrCreateIdentity } from '../p2p/keys.js'
import type { NetworkStatus } from '../p2p/network.js'
import { dialAndIdentify, guardRun } from '../p2p/peers.js'
import { StageRegistry, registryDhtConfig } from '../registry/registry.js'
import { HttpServer, type HttpRoutes } from '../util/http.js'
import { version } from '../version.js'
import { ControlServer } from './control.js'
import { removeDaemonFile, writeDaemonFile } from './daemon-file.js'
import { PEERS_FILE, readSavedPeers, savePeers } from './dir.js'
import { findSavedStage } from '../runtime/checkpoint.js'
import { StageHost, type StageHostInit, type StageHostStatus } from './stage-host.js'
import { summarize, type SwarmSummary } from './swarm-summary.js'
import { defaultTiming, type Timing } from '../timing.js'

/** What a plugged-in service may use. */
export interface SwarmComponents {
  host: Host
  privateKey: PrivateKey
  manifest: RunManifest
  runId: string
  dir: string
  registry: StageRegistry
  assigner: StageAssigner
  /** Names this node in every component's log lines. */
  logger: ComponentLogger
  /** Aborted when the node starts stopping: every wait, sleep and retry loop ends on it. */
  shutdown: AbortSignal
  /** Owns the engine of the stage this node serves (absent when the node runs no engine). */
  stageHost?: StageHost
}

export interface SwarmService {
  start?(): void | Promise<void>
  stop?(): void | Promise<void>
  /** Shown under `services.<name>` in the status JSON. */
  status?(): unknown
  /** More GET routes for the control server (127.0.0.1). */
  routes?(): HttpRoutes
}

export type ServiceFactory = (components: SwarmComponents) => SwarmService

export interface SwarmNodeInit {
  /** The node directory: identity key, manifest, daemon.json. */
  dir: string
  manifest: RunManifest
  listen: string[]
  announce?: string[]
  /** Peers to join through: at least one must answer. Peers saved in the directory are tried too. */
  bootstrap?: string[]
  /** Find the run's peers on the LAN by mDNS. */
  mdns?: boolean
  swarmKey?: Uint8Array
  /** Pin this stage (`--stage N`); otherwise the node chooses and rebalances. */
  stage?: number
  /** This node's tokens/s on a stage (from `--capacity` or the capacity probe). */
  throughput: number
  /** Bytes free for a stage (measured with the capacity); default: free memory now. */
  freeMemory?: number
  /** Port of the 127.0.0.1 status server; 0 picks a free one; undefined serves none. */
  controlPort?: number
  /** Port of the Prometheus endpoint (/metrics); undefined serves none. */
  metricsPort?: number
  /** Address the metrics endpoint listens on (default 127.0.0.1). */
  metricsHost?: string
  timing?: Partial<Timing>
  /** Run an engine for the stage this node serves (services such as the pipeline need it). */
  stageHost?: StageHostInit
  /** Started in this order (after the stage host has loaded the stage), stopped in reverse. */
  services?: Record<string, ServiceFactory>
  /** Lines for the operator: restarts, missing stages (the command line prints them; default: none). */
  notice?: (line: string) => void
}

export class SwarmNode {
  readonly runId: string
  private readonly init: SwarmNodeInit
  private readonly timing: Timing
  private parts?: SwarmComponents & { services: Map<string, SwarmService>, control?: ControlServer, metrics?: HttpServer, coverage: StageCoverage, unguard: () => void, stopping: AbortController }
  private savedPeers: string[] = []
  /** The view's peer ids when the peers were last saved. */
  private savedMembers?: string
  private peersTimer?: NodeJS.Timeout
  private savingPeers?: Promise<void>
  private startedAt = 0
  /** Prometheus series: libp2p's and ours (node/metrics). */
  readonly metrics = new Registry()
  private readonly events = new SwarmEvents()
  private bytes = { sent: 0, received: 0 }
  private observeTimer?: NodeJS.Timeout
  controlPort?: number
  metricsPort?: number

  private readonly notice: (line: string) => void

  constructor (init: SwarmNodeInit) {
    this.init = init
    this.notice = init.notice ?? (() => {})
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
    const self = peerIdFromPrivateKey(privateKey).toString()
    const given = this.init.bootstrap ?? []
    this.savedPeers = await readSavedPeers(dir)
    const saved = this.savedPeers.filter(address => !given.includes(address) && !address.endsWith(`/p2p/${self}`))
    const host = await createHost({
      privateKey,
      runId,
      listen: this.init.listen,
      announce: this.init.announce,
      bootstrap: [...given, ...saved],
      mdns: this.init.mdns,
      swarmKey: this.init.swarmKey,
      ...registryDhtConfig(runId, manifest.nStages),
      pingIntervalMs: this.timing.pingIntervalMs,
      pingTimeoutMs: this.timing.pingTimeoutMs,
      dialTimeoutMs: this.timing.dialTimeoutMs,
      // The registry re-provides every 10 refreshes; three missed rounds and the record goes.
      providerValidityMs: 30 * this.timing.refreshMs,
      metrics: prometheusMetrics({ registry: this.metrics })
    })
    try {
      const stopping = new AbortController()
      const shutdown = stopping.signal
      const unguard = guardRun(host, runId)
      await serveManifest(host, manifest)
      await this.checkBootstrap(host, given, saved)
      const registry = new StageRegistry({ host, privateKey, shutdown }, { runId, nStages: manifest.nStages, recordTtlMs: this.timing.recordTtlMs, refreshMs: this.timing.refreshMs, queryTimeoutMs: this.timing.dialTimeoutMs })
      const freeMemory = this.init.freeMemory ?? freemem()
      const assigner = new StageAssigner({ registry, shutdown, logger: host.logger, notice: this.notice }, {
        nStages: manifest.nStages,
        throughput: this.init.throughput,
        freeMemory,
        stageMemory: stage => stageMemoryBytes(manifest, stage),
        pinnedStage: this.init.stage,
        rebalanceMs: this.timing.rebalanceMs,
        seed: `${host.peerId.toString()}:${Date.now()}`,
        peerId: host.peerId.toString(),
        saved: await findSavedStage(dir, runId, manifest, (path, err) => { host.logger.forComponent('swarmtrain:daemon').error('ignoring %s: %e', path, err) })
      })
      const stageHost = this.init.stageHost === undefined ? undefined : new StageHost({ assigner, registry, manifest, runId, dir, logger: host.logger }, this.init.stageHost)
      const components: SwarmComponents = { host, privateKey, manifest, runId, dir, registry, assigner, stageHost, shutdown, logger: host.logger }
      const services = new Map(Object.entries(this.init.services ?? {}).map(([name, factory]) => [name, factory(components)]))
      const coverage = new StageCoverage({ registry }, { nStages: manifest.nStages, intervalMs: this.timing.refreshMs, print: this.notice })
      this.parts = { ...components, services, coverage, unguard, stopping }
      await registry.start()
      await assigner.start()
      await stageHost?.start()
      for (const service of services.values()) await service.start?.()
      // In the background: it first waits for a fresh read of the swarm.
      void coverage.start()
      // Saved in the background: each write syncs to disk, which a busy disk makes slow.
      const save = (): void => {
        this.savingPeers ??= this.savePeers(given).catch(err => { host.logger.forComponent('swarmtrain:daemon').error('could not save peers: %e', err) }).finally(() => { this.savingPeers = undefined })
      }
      save()
      this.peersTimer = setInterval(save, this.timing.refreshMs)
      this.startedAt = Date.now()
      registerSwarmMetrics(this.metrics, () => this.status())
      this.observeTimer = setInterval(() => { void this.observe() }, 1000)
      if (this.init.metricsPort !== undefined) {
        const metrics = new HttpServer({ '/metrics': async () => ({ type: this.metrics.contentType, body: await this.metrics.metrics() }) })
        this.parts.metrics = metrics
        const host = this.init.metricsHost ?? '127.0.0.1'
        this.metricsPort = await metrics.listen(this.init.metricsPort, host).catch((err: NodeJS.ErrnoException) => {
          throw new UserError(`cannot serve metrics on ${host}:${this.init.metricsPort} (${err.code ?? err.message})`)
        })
      }
      if (this.init.controlPort !== undefined) {
        const control = new ControlServer(() => this.status(), Object.assign({}, ...[...services.values()].map(s => s.routes?.() ?? {})))
        this.parts.control = control
        this.controlPort = await control.listen(this.init.controlPort)
        await writeDaemonFile(dir, { pid: process.pid, peerId: host.peerId.toString(), controlPort: this.controlPort })
      }
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
    parts.stopping.abort()
    try {
      clearInterval(this.observeTimer)
      clearInterval(this.peersTimer)
      await this.savingPeers
      parts.coverage.stop()
      await parts.control?.close()
      await parts.metrics?.close()
      for (const service of [...parts.services.values()].reverse()) await service.stop?.()
      await parts.stageHost?.stop()
      await parts.assigner.stop()
      await parts.registry.stop()
      parts.unguard()
      await parts.host.stop()
    } finally {
      // Last: while it exists, a second daemon in this directory is refused.
      if (parts.control !== undefined) await removeDaemonFile(this.init.dir)
    }
  }

  /** The service started under `name` (for benchmarks and tests that drive it directly). */
  service<T extends SwarmService> (name: string): T | undefined {
    return this.parts?.services.get(name) as T | undefined
  }

  /** Every second: the events since the last status, and the bytes transferred. */
  private async observe (): Promise<void> {
    try {
      if (this.parts === undefined) return
      this.events.observe(this.status())
      this.bytes = await transferredBytes(this.metrics)
    } catch (err) {
      this.parts?.host.logger.forComponent('swarmtrain:daemon').error('could not observe the node: %e', err)
    }
  }

  /** Multiaddrs peers can dial, with /p2p/<peer id>. */
  get addresses (): string[] {
    return this.components.host.getMultiaddrs().map(ma => ma.toString())
  }

  /**
   * With bootstrap peers, at least one must be reachable and serve this run: otherwise the node
   * would sit alone, and the user must hear why (other swarm key, other manifest, down). Peers
   * saved from an earlier run are dialed too, but may have left: if none answers, the node
   * says so and waits for peers.
   */
  private async checkBootstrap (host: Host, given: string[], saved: string[]): Promise<void> {
    if (given.length + saved.length === 0) return
    const log = host.logger.forComponent('swarmtrain:daemon')
    const failures: string[] = []
    const accepted = await Promise.all([...given, ...saved].map(async address => {
      try {
        const { peerId, runs } = await dialAndIdentify(host, address, this.timing.dialTimeoutMs, this.init.swarmKey !== undefined)
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
    if (given.length > 0 && !accepted.slice(0, given.length).includes(true)) throw new PeerRefusedError(`no bootstrap peer accepted this node: ${failures.join('; ')}`)
    for (const failure of failures) log.error('bootstrap: %s', failure)
    if (!accepted.includes(true)) {
      this.notice(`none of the ${saved.length} peer(s) saved in ${join(this.init.dir, PEERS_FILE)} answered: waiting for peers to connect (or pass --bootstrap)`)
      return
    }
    if (given.length === 0) this.notice(`rejoined the swarm through ${accepted.filter(Boolean).length} of ${saved.length} saved peer(s)`)
    if (!await waitForRoutingPeers(host, this.timing.dialTimeoutMs)) log.error('bootstrap: no peer entered the DHT routing table')
  }

  /**
   * Keeps the given bootstrap peers and the peers of the current view in the directory, for a
   * restart. Written only when the view's membership changes (each write syncs to disk).
   */
  private async savePeers (given: string[]): Promise<void> {
    const parts = this.parts
    if (parts === undefined) return
    const { host, registry } = parts
    const self = host.peerId.toString()
    const ids = registry.view.stages.flatMap(s => s.peers.map(p => p.peerId)).filter(id => id !== self).sort()
    const members = ids.join(',')
    if (members === this.savedMembers) return
    const met: string[] = []
    for (const id of ids) {
      const known = await host.peerStore.get(peerIdFromString(id)).catch(() => undefined)
      for (const { multiaddr } of known?.addresses.slice(0, 2) ?? []) met.push(multiaddr.getComponents().some(c => c.name === 'p2p') ? multiaddr.toString() : `${multiaddr.toString()}/p2p/${id}`)
    }
    this.savedPeers = await savePeers(this.init.dir, [...given, ...met, ...this.savedPeers], this.savedPeers)
    this.savedMembers = members
  }

  /** The swarm as this node sees it: the status JSON. */
  status (): NodeStatus {
    if (this.parts === undefined) throw new Error('the node is not started')
    const { host, registry, assigner, services } = this.parts
    const self = registry.self
    const status: Omit<NodeStatus, 'swarm'> = {
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
      bytes: this.bytes,
      events: this.events.recent(),
      viewUpdatedAt: registry.view.updatedAt,
      stages: registry.view.stages.map(s => ({
        stage: s.stage,
        throughput: s.throughput,
        peers: s.peers.map(p => ({ peerId: p.peerId, throughput: p.throughput, servedThroughput: p.servedThroughput, queueLength: p.queueLength, round: p.round, ready: p.ready, tokensSinceSync: p.tokensSinceSync, stateHash: p.stateHash, version: p.version, freeMemory: p.freeMemory, expiresAt: p.expiresAt, drivenTokens: p.drivenTokens, trainLoss: p.trainLoss, validationLoss: p.validationLoss }))
      })),
      stageHost: this.parts.stageHost?.status(),
      services: Object.fromEntries([...services.entries()].filter(([, s]) => s.status !== undefined).map(([name, s]) => [name, s.status?.()]))
    }
    return { ...status, swarm: summarize(status) }
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
  /** Bytes sent and received over all connections. */
  bytes: { sent: number, received: number }
  /** Recent joins, leaves, moves, bans and failures, newest last. */
  events: SwarmEvent[]
  viewUpdatedAt: number
  stages: Array<{ stage: number, throughput: number, peers: Array<{ peerId: string, throughput: number, servedThroughput: number, queueLength: number, round: number, ready: boolean, tokensSinceSync: number, stateHash: string, version: string, freeMemory: number, expiresAt: number, drivenTokens: number, trainLoss?: number, validationLoss?: number }> }>
  /** The served stage's engine and averaging position. */
  stageHost?: StageHostStatus
  services: Record<string, unknown>
  /** The swarm as a whole as this node sees it (size, rate, round, the drivers' losses). */
  swarm: SwarmSummary
}
