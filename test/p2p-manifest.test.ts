// The manifest protocol: a newcomer gets the manifest only if it hashes to the run id the
// peer's protocols name; a peer handing out another manifest is refused.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { MAX_BYTES } from '../protocols/ids.js'
import { ManifestRequest, ManifestResponse } from '../protocols/manifest.js'
import { manifestProtocol } from '../protocols/ids.js'
import { fetchManifest, serveManifest } from '../node/manifest/exchange.js'
import { canonicalBytes, defaultManifest, runIdOf } from '../node/manifest/manifest.js'
import { PeerRefusedError } from '../node/p2p/errors.js'
import { createClientHost, createHost } from '../node/p2p/host.js'
import { MessageStream } from '../node/p2p/messages.js'

async function refused (promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise
  } catch (err) {
    assert.instance(err, PeerRefusedError)
    assert.match((err as Error).message, pattern)
    return
  }
  assert.unreachable(`expected a refusal matching ${pattern}`)
}

test('fetches a verified manifest; refuses a lying peer and a wrong run id', async () => {
  const manifest = defaultManifest()
  const runId = runIdOf(manifest)
  const other = { ...defaultManifest(), nStages: 2 }
  const listen = ['/ip4/127.0.0.1/tcp/0']
  const honest = await createHost({ privateKey: await generateKeyPair('Ed25519'), runId, listen })
  const liar = await createHost({ privateKey: await generateKeyPair('Ed25519'), runId, listen })
  const client = await createClientHost({ privateKey: await generateKeyPair('Ed25519') })
  try {
    await serveManifest(honest, manifest)
    // The liar names run X in its protocol id but hands out the manifest of another run.
    await liar.handle(manifestProtocol(runId), async (stream: Stream) => {
      const messages = new MessageStream(stream, MAX_BYTES.manifestRequest)
      await messages.read(ManifestRequest)
      await messages.write(ManifestResponse, { error: '', manifest: canonicalBytes(other) })
      await stream.close()
    })
    const fetched = await fetchManifest(client, honest.getMultiaddrs()[0].toString(), { timeoutMs: 10_000 })
    assert.is(fetched.runId, runId)
    assert.equal(fetched.manifest, manifest)
    await refused(fetchManifest(client, liar.getMultiaddrs()[0].toString(), { timeoutMs: 10_000 }), new RegExp(`hashes to run ${runIdOf(other)}, not ${runId}: refusing it`))
    await refused(fetchManifest(client, honest.getMultiaddrs()[0].toString(), { timeoutMs: 10_000, expectedRunId: 'beef' }), new RegExp(`serves run ${runId}, not beef`))
    await refused(fetchManifest(client, 'not-a-multiaddr', { timeoutMs: 1000 }), /is not a multiaddr/)
  } finally {
    await Promise.all([honest.stop(), liar.stop(), client.stop()])
  }
})

test.run()
