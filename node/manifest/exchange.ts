// The manifest protocol (/swarmtrain/<runId>/manifest/1): a newcomer learns the run id from
// identify, asks for the manifest, and accepts it only if its canonical form hashes to that
// run id, so a peer cannot hand out a manifest other than the one its protocols name.
import type { Connection, Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import { MAX_BYTES, manifestProtocol } from '../../protocols/ids.js'
import { ManifestRequest, ManifestResponse } from '../../protocols/manifest.js'
import { PeerRefusedError } from '../p2p/errors.js'
import { MANIFEST_REQUEST_TIMEOUT_MS } from '../timing.js'
import { MessageStream } from '../p2p/messages.js'
import { dialAndIdentify } from '../p2p/peers.js'
import { canonicalBytes, parseManifest, runIdOf, type RunManifest } from './manifest.js'

/** Serves this run's manifest to anyone who asks for it by run id. */
export async function serveManifest (host: Libp2p, manifest: RunManifest): Promise<void> {
  const runId = runIdOf(manifest)
  const bytes = canonicalBytes(manifest)
  const log = host.logger.forComponent('swarmtrain:manifest')
  await host.handle(manifestProtocol(runId), async (stream: Stream, connection: Connection) => {
    const messages = new MessageStream(stream, MAX_BYTES.manifestRequest)
    try {
      const request = await messages.read(ManifestRequest, { signal: AbortSignal.timeout(MANIFEST_REQUEST_TIMEOUT_MS) })
      const response = request.runId === runId ? { error: '', manifest: bytes } : { error: `this peer serves run ${runId}, not ${request.runId}`, manifest: new Uint8Array(0) }
      await messages.write(ManifestResponse, response)
      await stream.close()
    } catch (err) {
      log('manifest request from %p failed: %e', connection.remotePeer, err)
      stream.abort(err as Error)
    }
  })
}

/**
 * Fetches the manifest from the peer at `address`: the run id comes from its protocols (or
 * must equal `expectedRunId` when given), and the manifest must hash to it.
 */
export async function fetchManifest (host: Libp2p, address: string, options: { expectedRunId?: string, timeoutMs: number, keyed?: boolean }): Promise<{ manifest: RunManifest, runId: string }> {
  const { peerId, runs } = await dialAndIdentify(host, address, options.timeoutMs, options.keyed)
  const runId = options.expectedRunId ?? (runs.size === 1 ? [...runs][0] : undefined)
  if (runId === undefined) throw new PeerRefusedError(`${address} serves several runs (${[...runs].join(', ')}); pass --run to pick one`)
  if (!runs.has(runId)) throw new PeerRefusedError(`${address} serves run ${[...runs].join(', ')}, not ${runId}`)
  const signal = AbortSignal.timeout(options.timeoutMs)
  const stream = await host.dialProtocol(peerId, manifestProtocol(runId), { signal })
  const messages = new MessageStream(stream, MAX_BYTES.manifestResponse)
  await messages.write(ManifestRequest, { runId }, { signal })
  const response = await messages.read(ManifestResponse, { signal })
  await stream.close().catch(() => {})
  if (response.error !== '') throw new PeerRefusedError(`${address} refused the manifest: ${response.error}`)
  const manifest = parseManifest(response.manifest, `the manifest from ${address}`)
  const actual = runIdOf(manifest)
  if (actual !== runId) throw new PeerRefusedError(`the manifest from ${address} hashes to run ${actual}, not ${runId}: refusing it`)
  return { manifest, runId }
}
