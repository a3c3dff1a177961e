// Checks that the peers we meet belong to our run. Every swarmtrain protocol id carries the
// run id, so identify tells us which run a peer serves: a peer of another run (a different
// manifest) is disconnected, and a bootstrap peer of another run is a clear error.
import type { IdentifyResult, PeerId } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { runIdOfProtocol } from '../../protocols/ids.js'
import { PeerRefusedError } from './errors.js'
import type { Libp2p } from 'libp2p'

/** The run ids a peer's protocol list names (normally exactly one). */
export function runsOf (protocols: readonly string[]): Set<string> {
  return new Set(protocols.map(runIdOfProtocol).filter((r): r is string => r !== undefined))
}

/** Closes connections to identified peers that serve other runs; returns the remover. */
export function guardRun (host: Libp2p, runId: string): () => void {
  const log = host.logger.forComponent('swarmtrain:p2p')
  const onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    const runs = runsOf(event.detail.protocols)
    if (runs.size > 0 && !runs.has(runId)) {
      log('disconnecting %p: it serves run %s, not %s', event.detail.peerId, [...runs].join(','), runId)
      event.detail.connection.close().catch(() => {})
    }
  }
  host.addEventListener('peer:identify', onIdentify)
  return () => { host.removeEventListener('peer:identify', onIdentify) }
}

/**
 * Dials `address` and waits until identify says which runs the peer serves. Failures become a
 * PeerRefusedError naming the likely cause (unreachable, different swarm key, not swarmtrain).
 */
export async function dialAndIdentify (host: Libp2p, address: string, timeoutMs: number): Promise<{ peerId: PeerId, runs: Set<string> }> {
  let ma
  try {
    ma = multiaddr(address)
  } catch (err) {
    throw new PeerRefusedError(`'${address}' is not a multiaddr: ${(err as Error).message}`)
  }
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
      // A swarm key mismatch looks like a failed handshake or a timeout, never like a refusal.
      const e = err as Error
      throw new PeerRefusedError(`cannot connect to ${address}: ${e.name}: ${e.message} (is it running, and do both sides use the same swarm key, or none?)`)
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
