// A peer that sends forged or corrupted contributions is refused each time with a clear error,
// and banned after repeated offences; an oversized message is cut off unread; the node keeps serving.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { averageProtocol } from '../protocols/ids.js'
import { AverageRequest, AverageResponse } from '../protocols/averaging.js'
import { largestPayload, signContribution } from '../node/averaging/contribution.js'
import { averagingService, type AveragingStatus } from '../node/averaging/service.js'
import { SwarmNode } from '../node/daemon/node.js'
import { defaultManifest } from '../node/manifest/manifest.js'
import { createHost } from '../node/p2p/host.js'
import { MessageStream } from '../node/p2p/messages.js'
import { registryDhtConfig } from '../node/registry/registry.js'

test('forged and corrupted contributions are refused; the sender is banned after three', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-ban-'))
  const manifest = { ...defaultManifest(), model: { vocabSize: 64, dModel: 16, nLayers: 1, nHeads: 2, seqLen: 8 }, nStages: 1 }
  const node = new SwarmNode({
    dir,
    manifest,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    stage: 0,
    throughput: 100,
    timing: { refreshMs: 500, recordTtlMs: 5000 },
    stageHost: { threads: 1, checkpointEveryMs: 3_600_000 },
    services: { averaging: averagingService() }
  })
  await node.start()
  const key = await generateKeyPair('Ed25519')
  const client = await createHost({ privateKey: key, runId: node.runId, listen: ['/ip4/127.0.0.1/tcp/0'], ...registryDhtConfig(node.runId, 1) })
  try {
    const server = node.components.host
    await client.dial(server.getMultiaddrs()[0])
    const params = node.components.stageHost!.served!.engine.params.size
    const scope = { runId: node.runId, stage: 0, round: 1, params, settings: manifest.averaging }
    const honest = await signContribution(scope, { privateKey: key, peerId: client.peerId }, 10, false, new Uint8Array(20))
    const send = async (push: typeof honest): Promise<AverageResponse | Error> => {
      try {
        const stream = await client.dialProtocol(server.peerId, averageProtocol(node.runId))
        const messages = new MessageStream(stream, 1 << 20)
        await messages.write(AverageRequest, { stage: 0, round: 1n, push })
        return await messages.read(AverageResponse, { signal: AbortSignal.timeout(10_000) })
      } catch (err) {
        return err as Error
      }
    }
    const badSignature = { ...honest, signature: honest.signature.map((b, i) => i === 0 ? b ^ 1 : b) }
    const first = await send(badSignature)
    assert.ok(!(first instanceof Error) && !first.ok && /signature/.test(first.error), String((first as AverageResponse).error ?? first))
    // A payload that is not a compressor payload (20 zero bytes), properly signed.
    const second = await send(honest)
    assert.ok(!(second instanceof Error) && !second.ok && /bad sparse payload/.test(second.error), String((second as AverageResponse).error ?? second))
    // A sparse run reads messages against its densest sparse payload: a dense-sized one is cut
    // off unread, where it used to be read whole and then refused.
    const dense = await signContribution(scope, { privateKey: key, peerId: client.peerId }, 10, true, new Uint8Array(4 * params))
    assert.ok(4 * params > 10 * largestPayload(params, manifest.averaging))
    assert.instance(await send(dense), Error, 'the dense-sized message was cut off')
    await send(badSignature)
    const status = node.status().services.averaging as AveragingStatus
    assert.equal(status.banned, [client.peerId.toString()])
    // Banned: the stream is refused outright.
    assert.instance(await send(badSignature), Error)
    assert.is((node.status().services.averaging as AveragingStatus).stage, 0)
  } finally {
    await client.stop()
    await node.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
