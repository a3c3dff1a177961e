// The stage registry: announces this node's stage (a DHT provider record per stage) and its
// signed, expiring info record, refreshes both periodically, and reads the swarm's view
// (who serves which stage, with what throughput). A departed node drops out of the view once
// its info record expires; a node that moved is counted on the stage its newest record names.
import { logger } from '@libp2p/logger'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { SelectFn, ValidateFn } from '@libp2p/kad-dht'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { Host } from '../p2p/host.js'
import { version } from '../version.js'
import { RECORD_NAMESPACE, infoKey, newestRecord, signInfoRecord, verifyInfoRecord, type PeerInfoRecord } from './record.js'

const log = logger('swarmtrain:registry')

export interface RegistryComponents {
  host: Host
  privateKey: PrivateKey
}

export interface RegistryInit {
  runId: string
  nStages: number
  /** How long a published info record stays valid. */
  recordTtlMs: number
  /** How often the record is republished and the view re-read (must be well under the TTL). */
  refreshMs: number
  /** Bound on each DHT query. */
  queryTimeoutMs?: number
}

/** What this node says about itself; the registry adds peer id, version and times. */
export interface LocalInfo {
  stage: number
  throughput: number
  queueLength: number
  freeMemory: number
  round: number
}

export interface StageView {
  stage: number
  peers: PeerInfoRecord[]
  /** Sum of the peers' throughputs, tokens/s. */
  throughput: number
}

export interface SwarmView {
  stages: StageView[]
  updatedAt: number
}

/** The DHT validator and selector every node of the run needs for info records. */
export function registryDhtConfig (runId: string, nStages: number): { validators: Record<string, ValidateFn>, selectors: Record<string, SelectFn> } {
  return {
    validators: { [RECORD_NAMESPACE]: async (key, value) => { await verifyInfoRecord(key, value, { runId, nStages }) } },
    selectors: { [RECORD_NAMESPACE]: (_key, values) => newestRecord(values) }
  }
}

/** The provider-record CID of a stage: sha256 of `swarmtrain/<runId>/stage/<n>`, raw codec. */
export async function stageCid (runId: string, stage: number): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(`swarmtrain/${runId}/stage/${stage}`)))
}

export class StageRegistry {
  private readonly host: Host
  private readonly privateKey: PrivateKey
  private readonly peerId: PeerId
  private readonly init: Required<RegistryInit>
  private local?: LocalInfo
  private localRecord?: PeerInfoRecord
  private providedStage?: number
  private providedAt = 0
  private timer?: NodeJS.Timeout
  private running = false
  private refreshing?: Promise<void>
  private current: SwarmView

  constructor (components: RegistryComponents, init: RegistryInit) {
    this.host = components.host
    this.privateKey = components.privateKey
    this.peerId = components.host.peerId
    this.init = { queryTimeoutMs: Math.max(1000, init.refreshMs), ...init }
    this.current = { stages: emptyStages(init.nStages), updatedAt: 0 }
  }

  /** The last view read from the DHT (this node included). */
  get view (): SwarmView {
    return this.current
  }

  /** This node's record as last published. */
  get self (): PeerInfoRecord | undefined {
    return this.localRecord
  }

  async start (): Promise<void> {
    this.running = true
    this.schedule()
  }

  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.timer)
    await this.refreshing
  }

  /**
   * Sets what this node announces and publishes it at once when the stage changed (otherwise
   * at the next refresh). The pipeline reports queue length and measured throughput here;
   * averaging reports its round.
   */
  async update (info: Partial<LocalInfo>): Promise<void> {
    const next = { stage: 0, throughput: 0, queueLength: 0, freeMemory: 0, round: 0, ...this.local, ...info }
    const moved = this.local?.stage !== next.stage
    this.local = next
    if (moved) await this.publish()
  }

  /** Reads the swarm's view now (between the periodic reads). */
  async refresh (): Promise<SwarmView> {
    this.current = await this.readView()
    return this.current
  }

  private schedule (): void {
    if (!this.running) return
    this.timer = setTimeout(() => {
      this.refreshing = this.tick().finally(() => { this.refreshing = undefined; this.schedule() })
    }, this.init.refreshMs)
  }

  private async tick (): Promise<void> {
    try {
      await this.publish()
      await this.refresh()
    } catch (err) {
      log.error('refresh failed: %e', err)
    }
  }

  /** Signs and stores a fresh info record; re-provides the stage when it changed or is getting old. */
  private async publish (): Promise<void> {
    if (this.local === undefined) return
    const now = Date.now()
    const record: PeerInfoRecord = { ...this.local, peerId: this.peerId.toString(), version, issuedAt: now, expiresAt: now + this.init.recordTtlMs }
    this.localRecord = record
    const value = await signInfoRecord(record, this.init.runId, this.privateKey, this.peerId)
    const dht = this.host.services.dht
    const signal = AbortSignal.timeout(this.init.queryTimeoutMs)
    await drain(dht.put(infoKey(this.init.runId, this.peerId), value, { signal }), 'put')
    // Provider records cannot be withdrawn; readers trust the stage in the newest info record.
    if (this.providedStage !== record.stage || now - this.providedAt > 10 * this.init.refreshMs) {
      if (this.providedStage !== undefined && this.providedStage !== record.stage) await dht.cancelReprovide(await stageCid(this.init.runId, this.providedStage))
      await drain(dht.provide(await stageCid(this.init.runId, record.stage), { signal: AbortSignal.timeout(this.init.queryTimeoutMs) }), 'provide')
      this.providedStage = record.stage
      this.providedAt = now
    }
  }

  private async readView (): Promise<SwarmView> {
    const dht = this.host.services.dht
    const candidates = new Set<string>()
    // Connected peers are candidates too: a peer is visible before its provider record spreads.
    for (const conn of this.host.getConnections()) candidates.add(conn.remotePeer.toString())
    await Promise.all(Array.from({ length: this.init.nStages }, async (_, stage) => {
      const cid = await stageCid(this.init.runId, stage)
      try {
        for await (const event of dht.findProviders(cid, { signal: AbortSignal.timeout(this.init.queryTimeoutMs) })) {
          if (event.name === 'PROVIDER') for (const p of event.providers) candidates.add(p.id.toString())
        }
      } catch (err) {
        log('findProviders for stage %d ended early: %e', stage, err)
      }
    }))
    candidates.delete(this.peerId.toString())
    const records = await Promise.all([...candidates].map(async id => await this.readRecord(id)))
    const now = Date.now()
    const peers = records.filter((r): r is PeerInfoRecord => r !== undefined && r.expiresAt > now)
    if (this.localRecord !== undefined) peers.push(this.localRecord)
    const stages = emptyStages(this.init.nStages)
    for (const peer of peers.sort((a, b) => a.peerId.localeCompare(b.peerId))) {
      stages[peer.stage].peers.push(peer)
      stages[peer.stage].throughput += peer.throughput
    }
    return { stages, updatedAt: now }
  }

  private async readRecord (peerId: string): Promise<PeerInfoRecord | undefined> {
    const key = infoKey(this.init.runId, peerId)
    let value: Uint8Array | undefined
    try {
      // The last VALUE event is the selector's pick among everything found.
      for await (const event of this.host.services.dht.get(key, { signal: AbortSignal.timeout(this.init.queryTimeoutMs) })) {
        if (event.name === 'VALUE') value = event.value
      }
    } catch (err) {
      log('get info of %s ended early: %e', peerId, err)
    }
    if (value === undefined) return undefined
    try {
      return await verifyInfoRecord(key, value, { runId: this.init.runId, nStages: this.init.nStages })
    } catch (err) {
      log('dropping info record of %s: %e', peerId, err)
      return undefined
    }
  }
}

function emptyStages (n: number): StageView[] {
  return Array.from({ length: n }, (_, stage) => ({ stage, peers: [], throughput: 0 }))
}

async function drain (events: AsyncIterable<{ name: string }>, what: string): Promise<void> {
  try {
    for await (const _ of events) { /* the query runs as it is consumed */ }
  } catch (err) {
    // A put/provide that reached fewer peers than hoped is retried at the next refresh.
    log('%s ended early: %e', what, err)
  }
}
