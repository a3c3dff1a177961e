// Checks that the peers we meet belong to our run. Every swarmtrain protocol id carries the
// run id, so identify tells us which run a peer serves: a peer of another run (a different
// manifest) is disconnected, and a bootstrap peer of another run is a clear error.
import type { IdentifyResult, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { runIdOfProtocol } from '../../protocols/ids.js'
import { PeerRefusedError } from './errors.js'
import { PEER_FORGET_AFTER_MS } from '../timing.js'
import type { Libp2p } from 'libp2p'

/** The run ids a peer's protocol list names (normally exactly one). */
export function runsOf (protocols: readonly string[]): Set<string> {
  return new Set(protocols.map(runIdOfProtocol).filter((r): r is string => r !== undefined))
}

/**
 * Closes connections to identified peers that serve other runs, and keeps the peer store
 * bounded: libp2p keeps an entry for every peer that ever connected (about 8 KiB of memory
 * each; one without addresses is evicted only when read, after 6 hours), and identities cost
 * nothing, so a stranger coming back under ever new ones grew it without bound. A peer's entry
 * now goes soon after its last connection closes, unless identify said it serves our run (the
 * `remembered` latest of those are kept; not the protocols in its entry: libp2p adds every
 * protocol a peer opened a stream on, so an attacker's entry names ours too) or it is tagged
 * (bootstrap peers, the DHT's routing table). Returns the remover.
 */
export function guardRun (host: Libp2p, runId: string, remembered = REMEMBERED_PEERS): () => void {
  const log = host.logger.forComponent('swarmtrain:p2p')
  /** Peers whose identify named our run, least recently identified first. */
  const members = new Map<string, PeerId>()
  const forget = (peer: PeerId): void => {
    forgetPeer(host, peer).catch(err => { log('could not forget %p: %e', peer, err) })
  }
  const onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    const { peerId, protocols, connection } = event.detail
    const runs = runsOf(protocols)
    if (runs.size > 0 && !runs.has(runId)) {
      log('disconnecting %p: it serves run %s, not %s', peerId, [...runs].join(','), runId)
      connection.close().catch(() => {})
    }
    if (!runs.has(runId)) return
    const id = peerId.toString()
    members.delete(id)
    members.set(id, peerId)
    for (const [oldest, peer] of members) {
      if (members.size <= remembered) break
      members.delete(oldest)
      forget(peer)
    }
  }
  const forgetting = new Set<NodeJS.Timeout>()
  const onDisconnect = (event: CustomEvent<PeerId>): void => {
    const timer = setTimeout(() => {
      forgetting.delete(timer)
      if (!members.has(event.detail.toString())) forget(event.detail)
    }, PEER_FORGET_AFTER_MS)
    timer.unref()
    forgetting.add(timer)
  }
  host.addEventListener('peer:identify', onIdentify)
  host.addEventListener('peer:disconnect', onDisconnect)
  return () => {
    host.removeEventListener('peer:identify', onIdentify)
    host.removeEventListener('peer:disconnect', onDisconnect)
    for (const timer of forgetting) clearTimeout(timer)
  }
}

/** Peers of the run whose entries outlive their connections (a few MiB at most). */
const REMEMBERED_PEERS = 512

/** Drops a peer's entry from the peer store unless it is connected or tagged. */
async function forgetPeer (host: Libp2p, peer: PeerId): Promise<void> {
  if (host.getConnections(peer).length > 0) return
  const known = await host.peerStore.get(peer).catch(() => undefined)
  if (known === undefined || known.tags.size > 0) return
  await host.peerStore.delete(peer)
}

/**
 * Parses a peer's multiaddr; with `needPeerId`, it must end in /p2p/<peer id>. Mistakes are a
 * PeerRefusedError naming the address and what is wrong with it.
 */
export function parsePeerAddress (address: string, needPeerId: boolean): Multiaddr {
  let ma: Multiaddr
  try {
    ma = multiaddr(address)
  } catch (err) {
    throw new PeerRefusedError(`'${address}' is not a multiaddr (e.g. /ip4/192.0.2.10/tcp/4171/p2p/12D3KooW...): ${(err as Error).message}`)
  }
  const id = ma.getComponents().find(c => c.name === 'p2p')?.value
  if (id === undefined && needPeerId) throw new PeerRefusedError(`'${address}' names no peer: add /p2p/<peer id> (start prints it)`)
  if (id !== undefined) {
    try {
      peerIdFromString(id)
    } catch {
      throw new PeerRefusedError(`'${address}' has a bad peer id '${id}' (copy the whole id that start prints, e.g. 12D3KooW...)`)
    }
  }
  return ma
}

/** Why a dial failed, in words: nothing listening, or (the handshake failed) a swarm key mismatch. */
function dialFailure (err: Error, keyed: boolean): string {
  if (/ECONNREFUSED/.test(err.message)) return 'nothing listens there (is the daemon running, and is the port right?)'
  // A pnet key mismatch looks like a reset handshake or a timeout, never like a refusal.
  return keyed
    ? 'this node has a swarm key: most likely the peer uses another one, or none (a public run); both sides need the same swarm.key'
    : 'this node has no swarm key: most likely the peer is in a private swarm; pass its key with --swarm-key FILE'
}

/**
 * Dials `address` and waits until identify says which runs the peer serves. Failures become a
 * PeerRefusedError naming the likely cause (unreachable, different swarm key, not swarmtrain);
 * `keyed` says whether this node uses a swarm key.
 */
export async function dialAndIdentify (host: Libp2p, address: string, timeoutMs: number, keyed = false): Promise<{ peerId: PeerId, runs: Set<string> }> {
  const ma = parsePeerAddress(address, false)
  const expected = ma.getComponents().find(c => c.name === 'p2p')?.value
  const identified = Promise.withResolvers<IdentifyResult>()
  const onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    if (expected === undefined || event.detail.peerId.toString() === expected) identified.resolve(event.detail)
  }
  host.addEventListener('peer:identify', onIdentify)
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    let connection
    try {
      connection = await host.dial(ma, { signal })
    } catch (err) {
      const e = err as Error
      throw new PeerRefusedError(`cannot connect to ${address}: ${e.name}: ${e.message}: ${dialFailure(e, keyed)}`)
    }
    const known = await host.peerStore.get(connection.remotePeer).catch(() => undefined)
    let protocols = known?.protocols ?? []
    if (runsOf(protocols).size === 0) {
      const timeout = new Promise<never>((_resolve, reject) => {
        signal.addEventListener('abort', () => { reject(new PeerRefusedError(`${address} did not identify as a swarmtrain node within ${timeoutMs} ms`)) }, { once: true })
      })
      protocols = (await Promise.race([identified.promise, timeout])).protocols
    }
    const runs = runsOf(protocols)
    if (runs.size === 0) throw new PeerRefusedError(`${address} is not a swarmtrain node (it speaks no /swarmtrain/ protocol)`)
    return { peerId: connection.remotePeer, runs }
  } finally {
    host.removeEventListener('peer:identify', onIdentify)
  }
}
