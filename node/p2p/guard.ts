// The public swarm's door: a connection gater and stream middleware that keep one stranger from
// exhausting a node. Per remote IP it caps open connections (a NAT hides many honest volunteers
// behind one address, so the cap is generous, but 200 sockets from one host are not a peer);
// per peer it caps connections and rate-limits inbound streams on every protocol (the DHT
// included) with a token bucket. Each offence is a strike: the offender loses its connections,
// and after `strikesToBan` strikes within `strikeWindowMs` it is banned, for a time that
// doubles with every ban. Other components report their own offences (e.g. a record that fails
// verification) through `strike()`.
import { logger } from '@libp2p/logger'
import type { Connection, ConnectionGater, Libp2p, MultiaddrConnection, PeerId, Stream, StreamMiddleware } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { GUARD_STRIKE_WINDOW_MS, GUARD_BAN_BASE_MS, GUARD_BAN_MAX_MS } from '../timing.js'

const log = logger('swarmtrain:p2p:guard')

/** Past this many peers with strikes, bans or stream buckets, idle ones are forgotten. */
const MAX_TRACKED_PEERS = 10_000

export interface PeerGuardInit {
  /** Inbound connections (handshaking or established) from one remote IP. */
  maxConnectionsPerIp?: number
  /** Open connections to one peer (direct and relayed together). */
  maxConnectionsPerPeer?: number
  /** Inbound streams one peer may open per protocol: sustained rate per second, and burst. */
  streamsPerSecond?: number
  streamBurst?: number
  strikesToBan?: number
  strikeWindowMs?: number
  /** First ban; doubles with every further ban of the same peer, up to banMaxMs. */
  banBaseMs?: number
  banMaxMs?: number
  now?: () => number
}

interface PeerRecord {
  strikes: number[]
  bans: number
  bannedUntil: number
}

interface Bucket {
  tokens: number
  at: number
}

/** What `status` shows of the guard. */
export interface GuardStats {
  strikes: number
  bans: number
  banned: string[]
  refusedConnections: number
  refusedStreams: number
}

/** The IP of a direct connection's remote address; undefined for relayed (p2p-circuit) ones, whose IP is the relay's. */
function remoteIp (address: Multiaddr): string | undefined {
  const components = address.getComponents()
  if (components.some(c => c.name === 'p2p-circuit')) return undefined
  return components.find(c => c.name === 'ip4' || c.name === 'ip6')?.value
}

/** A peer opened streams on a protocol faster than its rate allows. */
export class StreamRateError extends Error {
  override name = 'StreamRateError'
}

export class PeerGuard {
  private readonly counts = { strikes: 0, bans: 0, refusedConnections: 0, refusedStreams: 0 }
  private readonly init: Required<PeerGuardInit>
  private readonly peers = new Map<string, PeerRecord>()
  private readonly buckets = new Map<string, Map<string, Bucket>>()
  /** Open inbound sockets per remote IP. */
  private readonly inbound = new Map<string, number>()
  private host?: Libp2p
  private readonly protocolsWatched = new Set<string>()
  private readonly onSelfUpdate = (): void => { this.watchProtocols() }

  constructor (init: PeerGuardInit = {}) {
    this.init = {
      maxConnectionsPerIp: init.maxConnectionsPerIp ?? 32,
      maxConnectionsPerPeer: init.maxConnectionsPerPeer ?? 8,
      streamsPerSecond: init.streamsPerSecond ?? 20,
      streamBurst: init.streamBurst ?? 100,
      strikesToBan: init.strikesToBan ?? 3,
      strikeWindowMs: init.strikeWindowMs ?? GUARD_STRIKE_WINDOW_MS,
      banBaseMs: init.banBaseMs ?? GUARD_BAN_BASE_MS,
      banMaxMs: init.banMaxMs ?? GUARD_BAN_MAX_MS,
      now: init.now ?? Date.now
    }
  }

  /** The gater libp2p consults before and after each connection's handshake. */
  readonly gater: ConnectionGater = {
    denyDialPeer: (peerId: PeerId) => this.isBanned(peerId.toString()),
    denyInboundConnection: (maConn: MultiaddrConnection) => this.refuse(!this.admit(maConn), `too many connections from ${remoteIp(maConn.remoteAddr) ?? '?'}`),
    denyInboundEncryptedConnection: (peerId: PeerId) => this.refuse(this.isBanned(peerId.toString()) || this.peerIsFull(peerId), `peer ${peerId} is banned or has too many connections`),
    denyOutboundEncryptedConnection: (peerId: PeerId) => this.isBanned(peerId.toString()),
    denyInboundRelayReservation: (peerId: PeerId) => this.isBanned(peerId.toString()),
    denyInboundRelayedConnection: (_relay: PeerId, peerId: PeerId) => this.isBanned(peerId.toString())
  }

  /** Applies the stream rate limit to every protocol `host` serves, now and later. */
  attach (host: Libp2p): void {
    this.host = host
    host.addEventListener('self:peer:update', this.onSelfUpdate)
    this.watchProtocols()
  }

  /** libp2p stops its services with the host. */
  stop (): void {
    this.host?.removeEventListener('self:peer:update', this.onSelfUpdate)
    this.host = undefined
  }

  isBanned (peer: string): boolean {
    return (this.peers.get(peer)?.bannedUntil ?? 0) > this.init.now()
  }

  /**
   * Records an offence by `peer`: it loses its connections; enough strikes within the window
   * ban it, each ban twice as long as the last.
   */
  strike (peer: PeerId, reason: string): void {
    const id = peer.toString()
    const now = this.init.now()
    if (this.peers.size >= MAX_TRACKED_PEERS) this.forgetIdle(now)
    const record = this.peers.get(id) ?? { strikes: [], bans: 0, bannedUntil: 0 }
    this.peers.set(id, record)
    record.strikes = record.strikes.filter(t => t > now - this.init.strikeWindowMs)
    record.strikes.push(now)
    this.counts.strikes++
    if (record.strikes.length >= this.init.strikesToBan) {
      record.strikes = []
      record.bans++
      const ms = Math.min(this.init.banMaxMs, this.init.banBaseMs * 2 ** (record.bans - 1))
      record.bannedUntil = now + ms
      this.counts.bans++
      log('banning %p for %d s: %s', peer, Math.round(ms / 1000), reason)
    } else {
      log('strike %d against %p: %s', record.strikes.length, peer, reason)
    }
    this.host?.hangUp(peer).catch(() => {})
  }

  get stats (): GuardStats {
    const now = this.init.now()
    return { ...this.counts, banned: [...this.peers].filter(([, r]) => r.bannedUntil > now).map(([p]) => p) }
  }

  /**
   * Stream middleware for one protocol: an inbound stream beyond the peer's rate on it is
   * refused (libp2p resets it) and costs a strike. `chain` is the array given to `use()`: see
   * watchProtocols for why the guard runs the handler itself.
   */
  private async check (chain: StreamMiddleware[], stream: Stream, connection: Connection, next: (stream: Stream, connection: Connection) => void): Promise<void> {
    if (stream.direction !== 'inbound') {
      next(stream, connection)
      return
    }
    const handlers = chain.splice(1)
    if (!this.take(connection.remotePeer.toString(), stream.protocol ?? '')) {
      this.counts.refusedStreams++
      this.strike(connection.remotePeer, `more than ${this.init.streamsPerSecond} streams/s on ${stream.protocol}`)
      throw new StreamRateError(`stream rate limit exceeded on ${stream.protocol}`)
    }
    for (const handler of handlers) await handler(stream, connection, () => {})
    next(stream, connection)
  }

  /** Identities are free, so records of peers neither banned nor recently struck are dropped when many pile up. */
  private forgetIdle (now: number): void {
    for (const [peer, r] of this.peers) {
      if (r.bannedUntil <= now && r.strikes.every(t => t <= now - this.init.strikeWindowMs)) this.peers.delete(peer)
    }
  }

  private refuse (deny: boolean, why: string): boolean {
    if (deny) {
      this.counts.refusedConnections++
      log('refusing a connection: %s', why)
    }
    return deny
  }

  /** Counts an inbound socket against its IP until it closes; false when the IP is at its cap. */
  private admit (maConn: MultiaddrConnection): boolean {
    const ip = remoteIp(maConn.remoteAddr)
    if (ip === undefined) return true
    const open = this.inbound.get(ip) ?? 0
    if (open >= this.init.maxConnectionsPerIp) return false
    this.inbound.set(ip, open + 1)
    maConn.addEventListener('close', () => {
      const left = (this.inbound.get(ip) ?? 1) - 1
      if (left > 0) this.inbound.set(ip, left)
      else this.inbound.delete(ip)
    }, { once: true })
    return true
  }

  private peerIsFull (peer: PeerId): boolean {
    return (this.host?.getConnections(peer).length ?? 0) >= this.init.maxConnectionsPerPeer
  }

  /**
   * Token bucket per (peer, protocol); false when the peer is over its rate. Buckets outlive
   * connections (a reconnect must not refill them); full ones are forgotten when many pile up.
   */
  private take (peer: string, protocol: string): boolean {
    const now = this.init.now()
    let byProtocol = this.buckets.get(peer)
    if (byProtocol === undefined) {
      if (this.buckets.size >= MAX_TRACKED_PEERS) this.forgetFullBuckets(now)
      byProtocol = new Map()
      this.buckets.set(peer, byProtocol)
    }
    const bucket = byProtocol.get(protocol) ?? { tokens: this.init.streamBurst, at: now }
    bucket.tokens = Math.min(this.init.streamBurst, bucket.tokens + (now - bucket.at) * this.init.streamsPerSecond / 1000)
    bucket.at = now
    byProtocol.set(protocol, bucket)
    if (bucket.tokens < 1) return false
    bucket.tokens--
    return true
  }

  private forgetFullBuckets (now: number): void {
    const refilled = (b: Bucket): boolean => b.tokens + (now - b.at) * this.init.streamsPerSecond / 1000 >= this.init.streamBurst
    for (const [peer, byProtocol] of this.buckets) if ([...byProtocol.values()].every(refilled)) this.buckets.delete(peer)
  }

  /**
   * libp2p runs middleware per protocol id: add ours to every protocol the host handles.
   * libp2p 3.3.11 pushes the stream handler onto the very array given to `use()` for each
   * inbound stream (and runs that array for outbound streams too), so handlers would pile up
   * and run on every later stream. So each protocol gets its own array holding only the guard,
   * which takes what libp2p pushed for the stream off the array and runs it itself.
   */
  private watchProtocols (): void {
    const host = this.host
    if (host === undefined) return
    for (const protocol of host.getProtocols()) {
      if (this.protocolsWatched.has(protocol)) continue
      this.protocolsWatched.add(protocol)
      const chain: StreamMiddleware[] = []
      chain.push(async (stream, connection, next) => { await this.check(chain, stream, connection, next) })
      host.use(protocol, chain)
    }
  }
}
