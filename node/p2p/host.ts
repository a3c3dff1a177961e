// The libp2p host of a swarmtrain node: TCP, noise, yamux, identify, ping, a kad-dht private
// to the run, bootstrap peers, pnet when a swarm key is given, a persistent identity, and a
// connection monitor tuned to notice a hung peer within seconds.
import { noise } from '@chainsafe/libp2p-noise'
import { bootstrap } from '@libp2p/bootstrap'
import { identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { kadDHT, passthroughMapper, type KadDHT, type SelectFn, type SingleKadDHT, type ValidateFn } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import type { Identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { dhtProtocol } from '../../protocols/ids.js'
import { defaultTiming } from '../timing.js'
import { version } from '../version.js'
import { nodeLogger } from './logger.js'
import { privateNetwork } from './pnet.js'

const log = logger('swarmtrain:p2p')

// A type alias, not an interface: libp2p's ServiceMap needs an index signature.
export type HostServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
}

export type Host = Libp2p<HostServices>

export interface HostInit {
  privateKey: PrivateKey
  runId: string
  listen: string[]
  announce?: string[]
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

export async function createHost (init: HostInit): Promise<Host> {
  const pingTimeout = init.pingTimeoutMs ?? defaultTiming.pingTimeoutMs
  const host = await createLibp2p({
    ...baseOptions(init),
    metrics: init.metrics,
    addresses: { listen: init.listen, announce: init.announce ?? [] },
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
      dht: kadDHT({
        protocol: dhtProtocol(init.runId),
        logPrefix: 'swarmtrain:dht',
        // Every peer of a run is a server: runs are small and often on one LAN or machine.
        clientMode: false,
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
      })
    }
  })
  // libp2p only records discovered peers; dial the ones mDNS finds (the swarm key, when set,
  // and the run check still decide who stays).
  if (init.mdns === true) {
    host.addEventListener('peer:discovery', event => {
      const { id, multiaddrs } = event.detail
      if (multiaddrs.length === 0 || host.getConnections(id).length > 0) return
      host.dial(id, { signal: AbortSignal.timeout(init.dialTimeoutMs ?? 10_000) }).catch(err => { log('dialing %p found by mDNS failed: %e', id, err) })
    })
  }
  return host
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
