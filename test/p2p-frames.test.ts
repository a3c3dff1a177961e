// Bad frames on every protocol a node serves: garbage, truncated, oversized and undecodable
// messages reset the stream (with a typed error on our own protocols), and the node keeps
// serving everyone else.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Stream } from '@libp2p/interface'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { dhtProtocol, infoKey, infoProtocol, manifestProtocol, MAX_BYTES } from '../protocols/ids.js'
import { ManifestRequest, ManifestResponse } from '../protocols/manifest.js'
import { SwarmNode } from '../node/daemon/node.js'
import { defaultManifest, parseManifest } from '../node/manifest/manifest.js'
import { createHost, type Host } from '../node/p2p/host.js'
import { MalformedMessageError, MessageTooLargeError, TruncatedMessageError } from '../node/p2p/errors.js'
import { MessageStream } from '../node/p2p/messages.js'
import { registryDhtConfig } from '../node/registry/registry.js'
import { InfoRequest } from '../protocols/registry.js'
import { verifyInfoRecord } from '../node/registry/record.js'

/** A varint length prefix. */
function varint (n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return out
}

const frames: Record<string, Uint8Array> = {
  garbage: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  truncated: new Uint8Array([...varint(100), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
  oversized: new Uint8Array([...varint(64 << 20), 0, 0, 0, 0]),
  undecodable: new Uint8Array([...varint(6), 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
}

/** Sends raw bytes, closes our side, and collects whatever comes back until the stream ends. */
async function send (host: Host, target: Host, protocol: string, bytes: Uint8Array): Promise<{ reply: number, error?: string }> {
  const stream = await host.dialProtocol(target.peerId, protocol, { signal: AbortSignal.timeout(10_000) })
  stream.send(bytes)
  await stream.close({ signal: AbortSignal.timeout(10_000) }).catch(() => {})
  let reply = 0
  try {
    for await (const chunk of stream) reply += chunk.byteLength
  } catch (err) {
    return { reply, error: (err as Error).name }
  }
  return { reply }
}

test('MessageStream turns each bad frame into its typed error and resets the stream', async () => {
  const [a, b] = await Promise.all([0, 1].map(async () => await createHost({ privateKey: await generateKeyPair('Ed25519'), runId: 'frames', listen: ['/ip4/127.0.0.1/tcp/0'] })))
  try {
    const seen: Error[] = []
    await b.handle('/swarmtrain/frames/echo/1', async (stream: Stream) => {
      const messages = new MessageStream(stream, 1024)
      try {
        const request = await messages.read(ManifestRequest)
        await messages.write(ManifestRequest, request)
        await stream.close()
      } catch (err) {
        seen.push(err as Error)
        assert.ok(stream.status === 'reset' || stream.status === 'aborted' || stream.status === 'closed', stream.status)
      }
    })
    await a.dial(b.getMultiaddrs()[0])
    for (const bytes of Object.values(frames)) await send(a, b, '/swarmtrain/frames/echo/1', bytes)
    const deadline = Date.now() + 5000
    while (seen.length < 4 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    // Garbage here is an endless varint: it reads as a length prefix cut short.
    assert.equal(seen.map(e => e.name), ['TruncatedMessageError', 'TruncatedMessageError', 'MessageTooLargeError', 'MalformedMessageError'])
    assert.ok(seen[1] instanceof TruncatedMessageError && seen[2] instanceof MessageTooLargeError && seen[3] instanceof MalformedMessageError)
    // A good message still gets its answer.
    const good = ManifestRequest.encode({ runId: 'x' })
    const echoed = await send(a, b, '/swarmtrain/frames/echo/1', new Uint8Array([...varint(good.length), ...good]))
    assert.is(echoed.reply, good.length + 1)
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})

test('a node survives bad frames on the manifest, info and DHT protocols', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-frames-'))
  const manifest = defaultManifest()
  const node = new SwarmNode({ dir, manifest, listen: ['/ip4/127.0.0.1/tcp/0'], throughput: 100, timing: { refreshMs: 500, recordTtlMs: 5000 } })
  await node.start()
  const client = await createHost({ privateKey: await generateKeyPair('Ed25519'), runId: node.runId, listen: ['/ip4/127.0.0.1/tcp/0'], ...registryDhtConfig(node.runId, manifest.nStages) })
  try {
    const server = node.components.host
    await client.dial(server.getMultiaddrs()[0])
    // Every framed protocol a node serves (identify speaks first and ping echoes raw bytes).
    const protocols = [manifestProtocol(node.runId), infoProtocol(node.runId), dhtProtocol(node.runId)]
    for (const protocol of protocols) {
      for (const [name, bytes] of Object.entries(frames)) {
        const result = await send(client, server, protocol, bytes)
        assert.is(result.reply, 0, `${name} on ${protocol} got a reply`)
      }
    }
    // Still serving: a proper manifest request is answered with the run's manifest...
    const stream = await client.dialProtocol(server.peerId, manifestProtocol(node.runId))
    const messages = new MessageStream(stream, MAX_BYTES.manifestResponse)
    await messages.write(ManifestRequest, { runId: node.runId })
    const response = await messages.read(ManifestResponse)
    assert.equal(parseManifest(response.manifest, 'reply'), manifest)
    // ...and so is a request for its info record, which verifies as the node's own.
    const info = new MessageStream(await client.dialProtocol(server.peerId, infoProtocol(node.runId)), MAX_BYTES.infoRecord)
    await info.write(InfoRequest, { runId: node.runId })
    const record = await verifyInfoRecord(infoKey(node.runId, server.peerId), await info.read({ decode: b => b.subarray() }), { runId: node.runId, nStages: manifest.nStages })
    assert.is(record.peerId, server.peerId.toString())
    assert.ok(server.getConnections(client.peerId).length > 0, 'the connection survived')
  } finally {
    await client.stop()
    await node.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
