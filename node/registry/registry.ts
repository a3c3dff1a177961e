// The stage registry: announces this node's stage (a DHT provider record per stage) and its
// signed, expiring info record, refreshes both periodically, and reads the swarm's view
// (who serves which stage, with what throughput). A departed node drops out of the view once
// its info record expires; a node that moved is counted on the stage its newest record names.
//
// Reading: candidates are the providers of every stage, connected peers and peers seen
// before. Each is asked for its record directly (/swarmtrain/<run>/info/1: one round trip);
// the DHT copy is the fallback for peers we cannot reach. Either way the record is verified
// the same way, so where it came from does not matter.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import type { SelectFn, ValidateFn } from '@libp2p/kad-dht'
import type { Uint8ArrayList } from 'uint8arraylist'
import { INFO_RECORD_NAMESPACE, MAX_BYTES, infoKey, infoProtocol, stageCid } from '../../protocols/ids.js'
import { InfoRequest } from '../../protocols/registry.js'
import type { Host } from '../p2p/host.js'
import { MessageStream } from '../p2p/messages.js'
import { timeoutOrShutdown } from '../util/abort.js'
import { version } from '../version.js'
import { newestRecord, signInfoRecord, verifyInfoRecord, type PeerInfoRecord } from './record.js'

export interface RegistryComponents {
  host: Host
  privateKey: PrivateKey
  /** Ends every query at once when the node stops. */
  shutdown?: AbortSignal
}

export interface RegistryInit {
  runId: string
  nStages: number
  /** How long a published info record stays valid. */
  recordTtlMs: number
  /** How often the record is re-signed and the view re-read (must be well under the TTL). */
  refreshMs: number
  /** Bound on each DHT query and each direct request. */
  queryTimeoutMs: number
}

/** What this node says about itself; the registry adds peer id, version and times. */
export type LocalInfo = Pick<PeerInfoRecord, 'stage' | 'throughput' | 'servedThroughput' | 'queueLength' | 'freeMemory' | 'round' | 'ready' | 'tokensSinceSync' | 'stateHash' | 'drivenTokens' | 'trainLoss' | 'validationLoss'>

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
    validators: { [INFO_RECORD_NAMESPACE]: async (key, value) => { await verifyInfoRecord(key, value, { runId, nStages }) } },
    selectors: { [INFO_RECORD_NAMESPACE]: (_key, values) => newestRecord(values) }
  }
}

/** Raw bytes through MessageStream: a signed record is verified, not decoded, by the reader. */
const rawBytes = { encode: (b: Uint8Array) => b, decode: (b: Uint8Array | Uint8ArrayList) => b.subarray() }

export class StageRegistry {
  private readonly host: Host
  private readonly privateKey: PrivateKey
  private readonly peerId: PeerId
  private readonly shutdown?: AbortSignal
  private readonly log: Logger
  private readonly init: RegistryInit
  private local?: LocalInfo
  private localRecord?: PeerInfoRecord
  private signed?: Uint8Array
  /** Publishes may overlap (a move publishes at once): only the latest-started one is kept. */
  private publishes = 0
  private putAt = 0
  private providedStage?: number
  private providedAt = 0
  private timers: NodeJS.Timeout[] = []
  /** Background DHT work (put, provide, findProviders, get per peer): one of each at a time. */
  private readonly background = new Map<string, Promise<void>>()
  private reading?: Promise<SwarmView>
  private discoveredAt = 0
  /** Peers found through provider records or connections, with when they were last found. */
  private readonly candidates = new Map<string, number>()
  /** The newest valid record seen per peer: a lookup that misses once does not drop a live peer. */
  private readonly known = new Map<string, PeerInfoRecord>()
  /** Peers that answered us directly: when they stop, they are gone. */
  private readonly direct = new Set<string>()
  /** Peers that answered neither directly nor through the DHT, and when: not retried for a while. */
  private readonly unreachable = new Map<string, number>()
  private current: SwarmView

  constructor (components: RegistryComponents, init: RegistryInit) {
    this.host = components.host
    this.privateKey = components.privateKey
    this.peerId = components.host.peerId
    this.shutdown = components.shutdown
    this.log = components.host.logger.forComponent('swarmtrain:registry')
    this.init = init
    this.current = { stages: emptyStages(init.nStages), updatedAt: 0 }
  }

  /** The last view read (this node included). */
  get view (): SwarmView {
    return this.current
  }

  /** This node's record as last signed. */
  get self (): PeerInfoRecord | undefined {
    return this.localRecord
  }

  /**
   * Serves this node's record; every refreshMs re-signs it and re-reads the swarm. Slow DHT
   * work runs in the background, so neither the record nor the view waits for a DHT query.
   */
  async start (): Promise<void> {
    await this.host.handle(infoProtocol(this.init.runId), async (stream: Stream) => { await this.serveInfo(stream) })
    this.host.addEventListener('peer:disconnect', this.onDisconnect)
    this.timers = [
      setInterval(() => { this.publish().catch(err => { this.log.error('publish failed: %e', err) }) }, this.init.refreshMs),
      setInterval(() => { this.refresh().catch(err => { this.log.error('read failed: %e', err) }) }, this.init.refreshMs)
    ]
    this.discover()
  }

  async stop (): Promise<void> {
    this.host.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const timer of this.timers) clearInterval(timer)
    this.timers = []
    await this.host.unhandle(infoProtocol(this.init.runId))
    await Promise.allSettled([this.reading, ...this.background.values()])
  }

  /**
   * Sets what this node announces; a stage change is signed and stored in the DHT at once, a
   * readiness change signed at once (readers asking us get it), anything else with the next
   * refresh. Routers call only ready replicas: a replica that became ready used to be skipped
   * until its next refresh and then the readers' next one. The pipeline reports queue length and
   * served throughput here; averaging reports its round.
   */
  async update (info: Partial<LocalInfo>): Promise<void> {
    const next = { stage: 0, throughput: 0, servedThroughput: 0, queueLength: 0, freeMemory: 0, round: 0, ready: false, tokensSinceSync: 0, stateHash: '', drivenTokens: 0, ...this.local, ...info }
    const moved = this.local?.stage !== next.stage
    const toggled = this.local?.ready !== next.ready
    this.local = next
    if (moved) this.putAt = 0
    if (moved || toggled) await this.publish()
  }

  /**
   * Reads the swarm's view: a read that starts after this call (callers at once share it).
   * `complete` also waits for the provider lookup and for peers we are not connected to (each
   * bounded by the query timeout): for a newcomer's first choice of stage.
   */
  async refresh (complete = false): Promise<SwarmView> {
    if (this.reading !== undefined) await this.reading.catch(() => {})
    this.reading ??= this.readView(complete).then(view => {
      this.current = view
      return view
    }).finally(() => { this.reading = undefined })
    return await this.reading
  }

  /** Runs `task` under `name` unless a task of that name is still running; returns the running one. */
  private inBackground (name: string, task: () => Promise<void>): Promise<void> | undefined {
    if (!this.background.has(name)) {
      const running = task().catch(err => { this.log('%s failed: %e', name, err) }).finally(() => { this.background.delete(name) })
      this.background.set(name, running)
    }
    return this.background.get(name)
  }

  private async serveInfo (stream: Stream): Promise<void> {
    const messages = new MessageStream(stream, MAX_BYTES.infoRequest)
    try {
      const request = await messages.read(InfoRequest, { signal: this.querySignal() })
      if (request.runId !== this.init.runId || this.signed === undefined) throw new Error(`no record for run ${request.runId}`)
      await messages.write(rawBytes, this.signed)
      await stream.close()
    } catch (err) {
      this.log('info request failed: %e', err)
      stream.abort(err as Error)
    }
  }

  /**
   * Re-signs this node's record; stores it in the DHT every third of its lifetime (at once
   * after a move); re-provides the stage when it changed or is getting old.
   */
  private async publish (): Promise<void> {
    if (this.local === undefined) return
    const now = Date.now()
    const sequence = ++this.publishes
    const record: PeerInfoRecord = { ...this.local, peerId: this.peerId.toString(), version, issuedAt: now, expiresAt: now + this.init.recordTtlMs }
    const signed = await signInfoRecord(record, this.init.runId, this.privateKey, this.peerId)
    if (sequence !== this.publishes) return
    this.signed = signed
    this.localRecord = record
    if (now - this.putAt >= this.init.recordTtlMs / 3) {
      this.putAt = now
      this.inBackground('put', async () => {
        await drain(this.host.services.dht.put(infoKey(this.init.runId, this.peerId), signed, { signal: this.querySignal() }))
      })
    }
    if (this.providedStage !== record.stage || now - this.providedAt > 10 * this.init.refreshMs) {
      this.inBackground('provide', async () => { await this.provide(record.stage) })
    }
  }

  /** Provider records cannot be withdrawn; readers trust the stage in the newest info record. */
  private async provide (stage: number): Promise<void> {
    const dht = this.host.services.dht
    if (this.providedStage !== undefined && this.providedStage !== stage) await dht.cancelReprovide(await stageCid(this.init.runId, this.providedStage))
    this.providedStage = stage
    this.providedAt = Date.now()
    await drain(dht.provide(await stageCid(this.init.runId, stage), { signal: this.querySignal() }))
  }

  /** Looks up every stage's providers (in the background) to find peers we are not connected to. */
  private discover (): void {
    this.inBackground('discover', async () => {
      const dht = this.host.services.dht
      await Promise.all(Array.from({ length: this.init.nStages }, async (_, stage) => {
        const cid = await stageCid(this.init.runId, stage)
        for await (const event of dht.findProviders(cid, { signal: this.querySignal() })) {
          if (event.name === 'PROVIDER') for (const p of event.providers) this.candidates.set(p.id.toString(), Date.now())
        }
      }))
    })
  }

  /**
   * Asks every connected candidate for its record (one round trip each, in parallel); peers
   * we are not connected to are dialed, or looked up in the DHT, in the background and
   * counted once found (or waited for, when `complete`).
   */
  private async readView (complete: boolean): Promise<SwarmView> {
    const now = Date.now()
    if (now - this.discoveredAt >= 3 * this.init.refreshMs) {
      this.discoveredAt = now
      this.discover()
    }
    if (complete) await this.background.get('discover')
    for (const conn of this.host.getConnections()) this.candidates.set(conn.remotePeer.toString(), now)
    this.candidates.delete(this.peerId.toString())
    await Promise.all([...new Set([...this.candidates.keys(), ...this.known.keys()])].map(async id => {
      const peer = peerIdFromString(id)
      if (this.host.getConnections(peer).length > 0) {
        try {
          this.remember(await this.verify(id, await this.askPeer(peer), 'the peer'))
          this.direct.add(id)
          return
        } catch (err) {
          this.log('asking %s for its record failed: %e', id, err)
        }
      }
      // Unconnected (or failing) peers may take a dial timeout: reach them in the background.
      if ((this.unreachable.get(id) ?? -Infinity) > now - 10 * this.init.refreshMs) return
      const reaching = this.reach(id)
      if (complete) await reaching
    }))
    const at = Date.now()
    for (const [id, record] of this.known) if (record.expiresAt <= at) this.known.delete(id)
    // Providers linger in the DHT after a peer left; forget candidates not seen for a while.
    for (const [id, seen] of this.candidates) if (seen < at - 10 * this.init.recordTtlMs && !this.known.has(id)) this.candidates.delete(id)
    for (const [id, when] of this.unreachable) if (when < at - 10 * this.init.refreshMs) this.unreachable.delete(id)
    const peers = [...this.known.values()]
    if (this.localRecord !== undefined) peers.push(this.localRecord)
    const stages = emptyStages(this.init.nStages)
    for (const peer of peers.sort((a, b) => a.peerId.localeCompare(b.peerId))) {
      stages[peer.stage].peers.push(peer)
      stages[peer.stage].throughput += peer.throughput
    }
    return { stages, updatedAt: at }
  }

  /**
   * Asks a peer we are not (or no longer) connected to for its record in the background:
   * dialing first (its addresses are in the peer store), then through the DHT.
   */
  private reach (id: string): Promise<void> | undefined {
    return this.inBackground(`reach ${id}`, async () => {
      let record: PeerInfoRecord | undefined
      try {
        record = await this.verify(id, await this.askPeer(peerIdFromString(id)), 'the peer')
        this.direct.add(id)
      } catch {
        // A peer that answered directly before, has no connection left and cannot be dialed
        // is gone (killed, crashed, frozen until the connection monitor cut it off): its last
        // record may stay valid for minutes, so it leaves the view now. A connected peer that
        // is merely slow stays; so do peers only ever seen through the DHT (e.g. behind NAT)
        // while they republish.
        if (this.host.getConnections(peerIdFromString(id)).length === 0 && this.direct.delete(id)) {
          this.known.delete(id)
          this.log('%s no longer answers: dropped from the view', id)
        } else {
          record = await this.fromDht(id).catch(() => undefined)
        }
      }
      if (record === undefined) this.unreachable.set(id, Date.now())
      else this.unreachable.delete(id)
      this.remember(record)
    })
  }

  /** A peer of the view disconnected: check at once whether it is still there, rather than at the next refresh. */
  private readonly onDisconnect = (event: CustomEvent<PeerId>): void => {
    const id = event.detail.toString()
    if (!this.known.has(id) || this.timers.length === 0) return
    void this.reach(id)?.then(async () => {
      if (!this.known.has(id) && this.timers.length > 0) await this.refresh()
    }).catch(err => { this.log.error('read failed: %e', err) })
  }

  private remember (record: PeerInfoRecord | undefined): void {
    // Only this node speaks for itself: a record under our id is from a previous run of it.
    if (record === undefined || record.peerId === this.peerId.toString()) return
    const cached = this.known.get(record.peerId)
    if (cached === undefined || record.issuedAt > cached.issuedAt) this.known.set(record.peerId, record)
  }

  private async verify (peerId: string, value: Uint8Array, source: string): Promise<PeerInfoRecord> {
    try {
      return await verifyInfoRecord(infoKey(this.init.runId, peerId), value, { runId: this.init.runId, nStages: this.init.nStages })
    } catch (err) {
      this.log('dropping info record of %s from %s: %e', peerId, source, err)
      // A peer handing out a record that fails verification loses its connection; repeats, a ban.
      if (source === 'the peer') this.host.services.guard.strike(peerIdFromString(peerId), `its info record failed verification: ${(err as Error).message}`)
      throw err
    }
  }

  /** A peer's record from the DHT: the last VALUE event is the selector's pick among all found. */
  private async fromDht (peerId: string): Promise<PeerInfoRecord | undefined> {
    let value: Uint8Array | undefined
    for await (const event of this.host.services.dht.get(infoKey(this.init.runId, peerId), { signal: this.querySignal() })) {
      if (event.name === 'VALUE') value = event.value
    }
    return value === undefined ? undefined : await this.verify(peerId, value, 'the DHT')
  }

  /** Bounds one query or request: the query timeout, or the node stopping. */
  private querySignal (): AbortSignal {
    return timeoutOrShutdown(this.init.queryTimeoutMs, this.shutdown)
  }

  private async askPeer (peerId: PeerId): Promise<Uint8Array> {
    const signal = this.querySignal()
    const stream = await this.host.dialProtocol(peerId, infoProtocol(this.init.runId), { signal })
    const messages = new MessageStream(stream, MAX_BYTES.infoRecord)
    try {
      await messages.write(InfoRequest, { runId: this.init.runId }, { signal })
      const value = await messages.read(rawBytes, { signal })
      await stream.close({ signal })
      return value
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }
}

function emptyStages (n: number): StageView[] {
  return Array.from({ length: n }, (_, stage) => ({ stage, peers: [], throughput: 0 }))
}

/** Runs a DHT query to its end (queries run as they are consumed). */
async function drain (events: AsyncIterable<{ name: string }>): Promise<void> {
  for await (const _ of events) { /* nothing to collect */ }
}
