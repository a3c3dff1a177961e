// Direct connections between peers that only meet through a relay. Relayed connections are
// limited and carry no training traffic (README, "Volunteers behind NAT"); DCUtR cannot turn
// them into direct ones between two NATs (TCP cannot dial from its listening port, and
// js-libp2p's DCUtR only offers AutoNAT-verified addresses). WebRTC can: the two peers swap
// SDP offers over the relayed connection, learn their NAT-mapped addresses from a STUN server
// (a public swarmtrain node: stun.ts), and ICE punches through both NATs where they allow it
// (endpoint-independent mapping; not two symmetric NATs).
//
// A NATed node listens on `/webrtc` (its relayed addresses get a `/webrtc` twin), and the side
// that opened a relayed connection dials that twin as soon as identify says the peer speaks
// the signaling protocol. libp2p's dialer does not do this by itself: it tries a peer's plain
// relayed address first and stops at the limited connection that gives. A failed try is
// retried on the same relayed connection while it lasts (identify runs once per connection),
// with backoff.
//
// Swarm keys: WebRTC connections skip libp2p's connection protector (pnet), but they can only
// be set up through the signaling protocol on an existing libp2p connection, and every one of
// those went through the protector; the SDP that travels there pins the DTLS certificate the
// WebRTC connection must present. So only a peer that holds the key gets one.
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { ComponentLogger, Connection, IdentifyResult, Libp2p, Logger, PeerId, Startable } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import { WEBRTC_RETRY_BASE_MS, WEBRTC_RETRY_MAX_MS, defaultTiming } from '../timing.js'
import { timeoutOrShutdown } from '../util/abort.js'

/** @libp2p/webrtc's signaling protocol (not exported by it): a peer that speaks it accepts WebRTC dials. */
export const WEBRTC_SIGNALING_PROTOCOL = '/webrtc-signaling/0.0.1'

/** libdatachannel asks one STUN server per connection (a random one of those given): give a few live ones. */
const MAX_STUN_SERVERS = 4

/** `stun:` URL of the host and port of a TCP multiaddr (a swarmtrain node answers STUN on its TCP port number). */
function stunUrl (address: Multiaddr): string | undefined {
  const [ip, transport] = address.getComponents()
  if (transport?.name !== 'tcp' || ip?.value === undefined) return undefined
  if (ip.name === 'ip6') return `stun:[${ip.value}]:${transport.value}`
  return ['ip4', 'dns', 'dns4', 'dns6'].includes(ip.name) ? `stun:${ip.value}:${transport.value}` : undefined
}

/**
 * The STUN servers a node asks for its NAT-mapped address: the relays it holds a slot on
 * (public swarmtrain nodes it is connected to right now, taken from its relayed addresses),
 * else its bootstrap peers.
 */
export function stunServers (ownAddresses: Multiaddr[], bootstrap: string[]): string[] {
  const relays = ownAddresses.flatMap(address => {
    const components = address.getComponents()
    const circuit = components.findIndex(c => c.name === 'p2p-circuit')
    return circuit > 0 ? [multiaddr(components.slice(0, circuit))] : []
  })
  const candidates = relays.length > 0 ? relays : bootstrap.flatMap(b => { try { return [multiaddr(b)] } catch { return [] } })
  return [...new Set(candidates.map(stunUrl).filter((u): u is string => u !== undefined))].slice(0, MAX_STUN_SERVERS)
}

/** A WebRTC connection's remote address names the transport (the dialer's still shows the relay it signaled through). */
export function isWebRTC (address: Multiaddr): boolean {
  return address.getComponents().some(c => c.name === 'webrtc')
}

/** The `/webrtc` twin of a relayed address: `<relay>/p2p-circuit/webrtc/p2p/<peer>`. */
export function webrtcAddress (relayed: Multiaddr, peer: PeerId): Multiaddr {
  const components = relayed.getComponents()
  const circuit = components.findIndex(c => c.name === 'p2p-circuit')
  return multiaddr(components.slice(0, circuit + 1)).encapsulate(`/webrtc/p2p/${peer.toString()}`)
}

export interface WebRTCUpgradeComponents {
  events: Pick<Libp2p, 'addEventListener' | 'removeEventListener'>
  connectionManager: Pick<ConnectionManager, 'getConnections' | 'openConnection'>
  logger: ComponentLogger
}

export interface WebRTCUpgradeInit {
  dialTimeoutMs?: number
  /** After a failed upgrade, the next try for that peer waits this long, doubling per failure up to `maxBackoffMs`. */
  backoffMs?: number
  maxBackoffMs?: number
  /** Peers whose failures are remembered (the oldest is forgotten first). */
  maxTracked?: number
}

interface Failures {
  count: number
  retryAt: number
}

/** A libp2p service: upgrades relayed connections this node opened to direct WebRTC ones. */
export class WebRTCUpgrade implements Startable {
  readonly [Symbol.toStringTag] = 'swarmtrain:webrtc-upgrade'
  /** Upgrades tried, and those that gave a direct connection. */
  readonly stats = { attempts: 0, upgraded: 0 }
  private readonly log: Logger
  private readonly init: Required<WebRTCUpgradeInit>
  private readonly dialing = new Set<string>()
  private readonly failures = new Map<string, Failures>()
  /** The next try after a failure, by peer. */
  private readonly retries = new Map<string, ReturnType<typeof setTimeout>>()
  private readonly shutdown = new AbortController()
  private readonly onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    const { peerId, connection, protocols } = event.detail
    if (protocols.includes(WEBRTC_SIGNALING_PROTOCOL)) this.consider(peerId, connection)
  }

  constructor (private readonly components: WebRTCUpgradeComponents, init: WebRTCUpgradeInit = {}) {
    this.log = components.logger.forComponent('swarmtrain:p2p:webrtc')
    this.init = {
      dialTimeoutMs: init.dialTimeoutMs ?? defaultTiming.dialTimeoutMs,
      backoffMs: init.backoffMs ?? WEBRTC_RETRY_BASE_MS,
      maxBackoffMs: init.maxBackoffMs ?? WEBRTC_RETRY_MAX_MS,
      maxTracked: init.maxTracked ?? 1024
    }
  }

  start (): void {
    this.components.events.addEventListener('peer:identify', this.onIdentify)
  }

  stop (): void {
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    this.shutdown.abort()
    for (const timer of this.retries.values()) clearTimeout(timer)
    this.retries.clear()
  }

  /** Upgrades `relayed`, a relayed connection to a peer that speaks the signaling protocol, unless there is no need or it is too early. */
  private consider (peerId: PeerId, relayed: Connection): void {
    const peer = peerId.toString()
    // One side dials, so that two peers do not open two WebRTC connections to each other.
    if (relayed.limits == null || relayed.direction !== 'outbound' || relayed.status !== 'open' || this.dialing.has(peer)) return
    if (this.components.connectionManager.getConnections(peerId).some(c => c.limits == null && c.status === 'open')) return
    if ((this.failures.get(peer)?.retryAt ?? 0) > Date.now()) return
    this.dialing.add(peer)
    void this.upgrade(peerId, relayed).finally(() => this.dialing.delete(peer))
  }

  private async upgrade (peerId: PeerId, relayed: Connection): Promise<void> {
    const peer = peerId.toString()
    const address = webrtcAddress(relayed.remoteAddr, peerId)
    this.stats.attempts++
    const started = Date.now()
    try {
      await this.components.connectionManager.openConnection(address, { signal: timeoutOrShutdown(this.init.dialTimeoutMs, this.shutdown.signal) })
      this.stats.upgraded++
      this.failures.delete(peer)
      this.log('direct WebRTC connection to %p in %d ms', peerId, Date.now() - started)
    } catch (err) {
      if (this.shutdown.signal.aborted) return
      const count = (this.failures.get(peer)?.count ?? 0) + 1
      const wait = Math.min(this.init.maxBackoffMs, this.init.backoffMs * 2 ** (count - 1))
      this.failures.delete(peer)
      this.failures.set(peer, { count, retryAt: Date.now() + wait })
      if (this.failures.size > this.init.maxTracked) this.failures.delete(this.failures.keys().next().value as string)
      clearTimeout(this.retries.get(peer))
      const retry = setTimeout(() => { this.retries.delete(peer); this.consider(peerId, relayed) }, wait)
      retry.unref()
      this.retries.set(peer, retry)
      this.log('no direct WebRTC connection to %p (try %d, next in %d s): %e', peerId, count, Math.round(wait / 1000), err)
    }
  }
}

export function webrtcUpgrade (init: WebRTCUpgradeInit = {}): (components: WebRTCUpgradeComponents) => WebRTCUpgrade {
  return components => new WebRTCUpgrade(components, init)
}
