// The libp2p host of a swarmtrain node: TCP, noise, yamux, identify, ping, a kad-dht private
// to the run, bootstrap peers, pnet when a swarm key is given, a persistent identity, and a
// connection monitor tuned to notice a hung peer within seconds. For volunteers behind NAT:
// AutoNAT v2 tells each node whether the world can dial it, nodes with a public address relay
// (circuit relay v2, with limits), a node behind NAT holds slots on two relays and announces
// its relayed addresses, and DCUtR tries to upgrade relayed connections to direct ones.
// Relayed connections are "limited": they carry identify, ping, DCUtR and WebRTC signaling,
// never stage calls or averaging (see README, "Volunteers behind NAT"). Two peers that meet
// through a relay open a direct WebRTC connection where their NATs allow it (webrtc.ts);
// public nodes answer STUN for that (stun.ts). The guard caps connections and stream rates per
// IP and per peer, and bans peers that keep offending.
import { noise } from '@chainsafe/libp2p-noise'
import { autoNATv2 } from '@libp2p/autonat-v2'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport, type CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { kadDHT, passthroughMapper, type KadDHT, type KadDHTComponents, type SelectFn, type SingleKadDHT, type ValidateFn } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { webRTC } from '@libp2p/webrtc'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import type { Identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { dhtProtocol } from '../../protocols/ids.js'
import { DHT_QUERY_INTERVAL_MS, defaultTiming } from '../timing.js'
import { sleep } from '../util/abort.js'
import { version } from '../version.js'
import { nodeLogger } from './logger.js'
import { PeerGuard, type PeerGuardInit } from './guard.js'
import { needsRelay, networkMonitor, type NetworkMonitor, type NetworkStatus } from './network.js'
import { privateNetwork } from './pnet.js'
import { stunResponder, type StunResponder } from './stun.js'
import { stunServers, webrtcUpgrade, type WebRTCUpgrade } from './webrtc.js'

const log = logger('swarmtrain:p2p')

// A type alias, not an interface: libp2p's ServiceMap needs an index signature.
export type HostServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
  network: NetworkMonitor
  guard: PeerGuard
  autoNAT: unknown
  dcutr: unknown
  webrtcUpgrade: WebRTCUpgrade
  relay?: CircuitRelayService
  stun?: StunResponder
}

/** How many relays a node behind NAT holds a slot on (one may go down). */
const RELAY_SLOTS = 2

/**
 * What a relay grants each slot. Relayed connections only carry connection setup (identify,
 * ping, DCUtR hole punching, WebRTC's SDP offers), so 1 MiB and 2 minutes per connection are plenty, and a stranger
 * cannot turn a volunteer's relay into a free pipe.
 */
const relayLimits = {
  maxReservations: 64,
  reservationTtl: 30 * 60_000,
  defaultDurationLimit: 2 * 60_000,
  defaultDataLimit: BigInt(1 << 20)
}

export type Host = Libp2p<HostServices>

export interface HostInit {
  privateKey: PrivateKey
  runId: string
  listen: string[]
  announce?: string[]
  /**
   * Behind NAT: hold relay slots, listen for WebRTC upgrades, relay for no one, be a DHT client.
   * Default: needsRelay(listen), i.e. no listen address is public and one is beyond loopback.
   * Nodes on one machine set it to play volunteers behind NAT (test/p2p-webrtc).
   */
  behindNat?: boolean
  bootstrap?: string[]
  /** Find the run's peers on the local network by multicast DNS. */
  mdns?: boolean
  /** pnet pre-shared key (swarm.key bytes): only peers with the same key can connect. */
  swarmKey?: Uint8Array
  /** DHT record validators and selectors by key namespace (`/<namespace>/...`). */
  validators?: Record<string, ValidateFn>
  selectors?: Record<string, SelectFn>
  /** Connection monitor: ping every `pingIntervalMs`, abort after `pingTimeoutMs` without an answer. */
  pingIntervalMs?: number
  pingTimeoutMs?: number
  dialTimeoutMs?: number
  /** How long this node keeps others' provider records (kad-dht's default is 48 h). */
  providerValidityMs?: number
  /** libp2p's metrics implementation (e.g. @libp2p/prometheus-metrics). */
  metrics?: Libp2pOptions['metrics']
  /** Limits on strangers (tests shrink them). */
  guard?: PeerGuardInit
}

/** The public-swarm connection manager limits: total connections, pending handshakes, new connections per second per IP. */
const connectionLimits = {
  maxConnections: 256,
  maxIncomingPendingConnections: 16,
  inboundConnectionThreshold: 10
}

/** What every swarmtrain host has: identity, user agent, TCP + noise + yamux, pnet when keyed, dial timeout. */
function baseOptions (init: { privateKey: PrivateKey, swarmKey?: Uint8Array, dialTimeoutMs?: number }): Omit<Libp2pOptions, 'services'> {
  return {
    privateKey: init.privateKey,
    logger: nodeLogger(peerIdFromPrivateKey(init.privateKey)),
    nodeInfo: { userAgent: `swarmtrain/${version}` },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(init.swarmKey === undefined ? {} : { connectionProtector: privateNetwork({ swarmKey: init.swarmKey }) }),
    connectionManager: { dialTimeout: init.dialTimeoutMs ?? defaultTiming.dialTimeoutMs }
  }
}

/** The mDNS service name of a run: only peers of the same run answer each other's queries. */
export function mdnsServiceTag (runId: string): string {
  return `_swarmtrain-${runId}._udp.local`
}

/** Builds and starts the host; its guard is already watching it. */
export async function createHost (init: HostInit): Promise<Host> {
  const pingTimeout = init.pingTimeoutMs ?? defaultTiming.pingTimeoutMs
  // Behind NAT: said so, or every listen address private, and not only loopback.
  const relayClient = init.behindNat ?? needsRelay(init.listen)
  const guard = new PeerGuard(init.guard)
  const base = baseOptions(init)
  // ICE asks for the STUN servers when each WebRTC connection starts, once the host exists.
  let started: Host | undefined
  const iceServers = (): Array<{ urls: string }> => stunServers(started?.getMultiaddrs() ?? [], init.bootstrap ?? []).map(urls => ({ urls }))
  const host: Host = await createLibp2p({
    ...base,
    metrics: init.metrics,
    transports: [...base.transports ?? [], circuitRelayTransport({ reservationConcurrency: RELAY_SLOTS }), webRTC({ rtcConfiguration: () => ({ iceServers: iceServers() }) })],
    connectionGater: guard.gater,
    connectionManager: { ...base.connectionManager, ...connectionLimits },
    // Behind NAT: relayed addresses, and their /webrtc twins for peers to upgrade through.
    addresses: { listen: [...init.listen, ...(relayClient ? [...Array(RELAY_SLOTS).fill('/p2p-circuit'), '/webrtc'] : [])], announce: init.announce ?? [] },
    peerDiscovery: [
      ...(init.bootstrap ?? []).length > 0 ? [bootstrap({ list: init.bootstrap ?? [] })] : [],
      ...init.mdns === true ? [mdns({ serviceTag: mdnsServiceTag(init.runId) })] : []
    ],
    connectionMonitor: {
      pingInterval: init.pingIntervalMs ?? defaultTiming.pingIntervalMs,
      pingTimeout: { minTimeout: pingTimeout, maxTimeout: pingTimeout },
      abortConnectionOnPingFailure: true
    },
    services: {
      identify: identify(),
      ping: ping(),
      network: networkMonitor(),
      guard: () => guard,
      autoNAT: autoNATv2(),
      dcutr: dcutr(),
      webrtcUpgrade: webrtcUpgrade({ dialTimeoutMs: init.dialTimeoutMs }),
      // A node behind NAT can be neither a relay nor a STUN server: nobody outside could reach it.
      ...(relayClient ? {} : { relay: circuitRelayServer({ reservations: relayLimits }), stun: stunResponder() }),
      dht: (components: KadDHTComponents) => paceQueries(kadDHT({
        protocol: dhtProtocol(init.runId),
        logPrefix: 'swarmtrain:dht',
        // Every reachable peer of a run is a server: runs are small and often on one LAN or
        // machine. A peer behind NAT is a client: others could only reach it through a relay.
        clientMode: relayClient,
        peerInfoMapper: passthroughMapper,
        initialQuerySelfInterval: 0,
        // The first node of a run is alone: its queries must end at once, not wait for peers.
        allowQueryWithZeroPeers: true,
        validators: init.validators ?? {},
        selectors: init.selectors ?? {},
        // Stage membership changes within minutes, so stale provider records should not linger.
        ...(init.providerValidityMs === undefined
          ? {}
          : { reprovide: { validity: init.providerValidityMs, interval: init.providerValidityMs / 6, threshold: init.providerValidityMs / 2 } })
      })(components))
    }
  })
  // libp2p only records discovered peers; dial the ones mDNS finds (the swarm key, when set,
  // and the run check still decide who stays).
  if (init.mdns === true) {
    host.addEventListener('peer:discovery', event => {
      const { id, multiaddrs } = event.detail
      if (multiaddrs.length === 0 || host.getConnections(id).length > 0) return
      host.dial(id, { signal: AbortSignal.timeout(init.dialTimeoutMs ?? defaultTiming.dialTimeoutMs) }).catch(err => { log('dialing %p found by mDNS failed: %e', id, err) })
    })
  }
  guard.attach(host)
  started = host
  return host
}

/** The host's `network` status: reachability, relays, direct and relayed connections, the guard. */
export function hostNetworkStatus (host: Host): NetworkStatus {
  return host.services.network.status(host.services.guard.stats, host.services.relay?.reservations.size)
}


/**
 * Outside DHT queries (getClosestPeers: libp2p's random walk, which relay discovery and AutoNAT
 * use, and our puts and provides) start at most one per DHT_QUERY_INTERVAL_MS. The random walk
 * re-queries in a loop for as long as it wants peers, and a query ends at once when the node
 * knows no peer (allowQueryWithZeroPeers: a loop of microtasks that starved the event loop, even
 * the bootstrap dial) or only one (which it then asks over and over: a volunteer behind NAT that
 * wants a second relay slot with one public node in sight passed that node's guard's 20 streams
 * per second and was banned within seconds). The DHT's own queries are not affected.
 */
function paceQueries (dht: KadDHT): KadDHT {
  const single = dht as SingleKadDHT
  const query = single.getClosestPeers.bind(single)
  let nextStart = 0
  single.getClosestPeers = async function * (key, options) {
    const now = Date.now()
    const start = Math.max(now, nextStart)
    nextStart = start + DHT_QUERY_INTERVAL_MS
    if (start > now) await sleep(start - now, options?.signal)
    yield * query(key, options)
  }
  return dht
}

/** A host with no DHT, for one-off exchanges before the node knows its run (e.g. `join`). */
export async function createClientHost (init: { privateKey: PrivateKey, swarmKey?: Uint8Array, dialTimeoutMs?: number }): Promise<Libp2p<{ identify: Identify }>> {
  return await createLibp2p({ ...baseOptions(init), services: { identify: identify() } })
}

/**
 * Waits (up to `timeoutMs`) until the DHT routing table holds a peer, so the first queries of
 * a node that just dialed its bootstrap peers see the swarm instead of an empty table.
 */
export async function waitForRoutingPeers (host: Host, timeoutMs: number): Promise<boolean> {
  const table = (host.services.dht as Partial<SingleKadDHT>).routingTable
  const deadline = Date.now() + timeoutMs
  while (table !== undefined && table.size === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  return table === undefined || table.size > 0
}
