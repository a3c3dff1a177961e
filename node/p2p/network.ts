// Where a node stands on the network: whether the world can dial it (its own addresses and
// AutoNAT's verdicts), the relay slots it holds or grants, and which connections are direct
// and which go through a relay. Shown as `network` in the status JSON.
import { networkInterfaces } from 'node:os'
import { isPrivate } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { AddressManager, ConnectionManager } from '@libp2p/interface-internal'
import type { GuardStats } from './guard.js'
import { isWebRTC } from './webrtc.js'

/**
 * public: AutoNAT confirmed one of its addresses from outside; private: all its own addresses
 * are private (behind a NAT or on a LAN: only peers it dials, or a relay, reach it); unknown: it
 * has a public address that AutoNAT has not confirmed (yet).
 */
export type Reachability = 'public' | 'private' | 'unknown'

export interface NetworkStatus {
  reachability: Reachability
  /** Public addresses AutoNAT confirmed. */
  verifiedAddresses: string[]
  /** Relays this node holds a slot on, and the relayed addresses it announces through them. */
  relays: string[]
  relayAddresses: string[]
  /** Slots this node grants others as a relay (undefined: it does not relay). */
  relayReservations?: number
  direct: number
  relayed: number
  /** Peers this node reaches only through a relay (no direct connection yet). */
  relayedOnly: string[]
  /** Peers with a direct WebRTC connection (counted in `direct`): met through a relay, then punched through. */
  webrtc: string[]
  guard: GuardStats
}

function isCircuit (address: Multiaddr): boolean {
  return address.getComponents().some(c => c.name === 'p2p-circuit')
}

/** The relay's peer id in a relayed address (the /p2p/ before /p2p-circuit). */
function relayOf (address: Multiaddr): string | undefined {
  const components = address.getComponents()
  const circuit = components.findIndex(c => c.name === 'p2p-circuit')
  return components.slice(0, circuit).reverse().find(c => c.name === 'p2p')?.value
}

function isLoopback (address: Multiaddr): boolean {
  const ip = address.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value
  return ip !== undefined && (ip.startsWith('127.') || ip === '::1')
}

/** The addresses a listen multiaddr stands for: each interface's for 0.0.0.0 / ::. */
function expand (listen: string): Multiaddr[] {
  const address = multiaddr(listen)
  const ip = address.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')
  if (ip === undefined || (ip.value !== '0.0.0.0' && ip.value !== '::')) return [address]
  const family = ip.name === 'ip4' ? 'IPv4' : 'IPv6'
  return Object.values(networkInterfaces()).flat()
    .filter(i => i !== undefined && i.family === family)
    .map(i => multiaddr(`/${ip.name}/${i!.address}/tcp/0`))
}

/**
 * A node needs relay slots when nothing it listens on is public but something is beyond
 * loopback: a home computer behind NAT. Loopback-only nodes (tests, one-machine swarms) and
 * nodes with a public address do not.
 */
export function needsRelay (listen: string[]): boolean {
  const addresses = listen.flatMap(expand).filter(a => !isCircuit(a))
  return addresses.some(a => !isLoopback(a)) && addresses.every(a => isPrivate(a) === true)
}

export interface NetworkMonitorComponents {
  addressManager: AddressManager
  connectionManager: ConnectionManager
}

/** A libp2p service, for its view of the address manager (AutoNAT's verdicts live there). */
export class NetworkMonitor {
  constructor (private readonly components: NetworkMonitorComponents) {}

  status (guard: GuardStats, relayReservations?: number): NetworkStatus {
    const { addressManager, connectionManager } = this.components
    const own = addressManager.getAddressesWithMetadata()
    const publicOwn = own.filter(a => !isCircuit(a.multiaddr) && a.type !== 'observed' && isPrivate(a.multiaddr) !== true)
    const verified = own.filter(a => !isCircuit(a.multiaddr) && a.verified && isPrivate(a.multiaddr) !== true)
    const reachability: Reachability = verified.length > 0 ? 'public' : publicOwn.length === 0 ? 'private' : 'unknown'
    const connections = connectionManager.getConnections()
    // Not isCircuit(remoteAddr): a WebRTC connection's address names the relay it was set up through.
    const relayed = connections.filter(c => !c.direct)
    const directPeers = new Set(connections.filter(c => c.direct).map(c => c.remotePeer.toString()))
    const relayAddresses = addressManager.getAddresses().filter(isCircuit)
    return {
      reachability,
      verifiedAddresses: verified.map(a => a.multiaddr.toString()),
      relays: [...new Set(relayAddresses.map(relayOf).filter((p): p is string => p !== undefined))],
      relayAddresses: relayAddresses.map(a => a.toString()),
      relayReservations,
      direct: connections.length - relayed.length,
      relayed: relayed.length,
      relayedOnly: [...new Set(relayed.map(c => c.remotePeer.toString()))].filter(p => !directPeers.has(p)),
      webrtc: [...new Set(connections.filter(c => c.direct && isWebRTC(c.remoteAddr)).map(c => c.remotePeer.toString()))],
      guard
    }
  }
}

export function networkMonitor (): (components: NetworkMonitorComponents) => NetworkMonitor {
  return components => new NetworkMonitor(components)
}
