import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash } from 'node:crypto'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { preSharedKey } from '@libp2p/pnet'
import type { ConnectionProtector } from '@libp2p/interface'
import { newSwarmKey } from '../node/p2p/keys.js'
import { decodeSwarmKey, privateNetwork } from '../node/p2p/pnet.js'

const PROTOCOL = '/swarmtrain-test/sink/1.0.0'

/** A host whose sink protocol replies with the sha256 of everything it received. */
async function host (protector: () => ConnectionProtector): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: protector,
    connectionManager: { dialTimeout: 3000 }
  })
  await node.handle(PROTOCOL, async (stream) => {
    const hash = createHash('sha256')
    for await (const chunk of stream) hash.update(chunk.subarray())
    stream.send(hash.digest())
    await stream.close()
  })
  return node
}

async function sendAndHash (from: Libp2p, to: Libp2p, messages: Uint8Array[]): Promise<{ sent: string, echoed: string }> {
  const stream = await from.dialProtocol(to.getMultiaddrs()[0], PROTOCOL)
  const hash = createHash('sha256')
  for (const message of messages) {
    hash.update(message)
    if (!stream.send(message)) await stream.onDrain()
  }
  await stream.close()
  let echoed = ''
  for await (const chunk of stream) echoed += Buffer.from(chunk.subarray()).toString('hex')
  return { sent: hash.digest('hex'), echoed }
}

test('swarm keys decode to 32 bytes and bad files are refused', () => {
  assert.is(decodeSwarmKey(newSwarmKey()).byteLength, 32)
  assert.throws(() => decodeSwarmKey(new TextEncoder().encode('/key/swarm/psk/1.0.0/\n/base16/\nabc')), /not a swarm key/)
})

test('a private connection carries 48 MiB intact (stock @libp2p/pnet 3.0.27 aborts at ~30 MB)', async () => {
  const key = newSwarmKey()
  const [a, b] = await Promise.all([host(privateNetwork({ swarmKey: key })), host(privateNetwork({ swarmKey: key }))])
  try {
    const messages = Array.from({ length: 48 }, (_, i) => filled(1 << 20, i))
    // Both directions at once: two ciphers per side interleave their updates, which is what broke upstream.
    const [ab, ba] = await Promise.all([sendAndHash(a, b, messages), sendAndHash(b, a, messages)])
    assert.is(ab.echoed, ab.sent)
    assert.is(ba.echoed, ba.sent)
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})

test('interoperates with the standard pnet protector, and refuses another key', async () => {
  const key = newSwarmKey()
  const ours = await host(privateNetwork({ swarmKey: key }))
  const stock = await host(preSharedKey({ psk: key }))
  const stranger = await host(privateNetwork({ swarmKey: newSwarmKey() }))
  try {
    const message = filled(100_000, 7)
    const result = await sendAndHash(stock, ours, [message])
    assert.is(result.echoed, result.sent)
    let refused = false
    try {
      await sendAndHash(stranger, ours, [message])
    } catch {
      refused = true
    }
    assert.ok(refused, 'a peer with another swarm key connected')
  } finally {
    await Promise.all([ours.stop(), stock.stop(), stranger.stop()])
  }
})

/** Deterministic non-trivial bytes. */
function filled (length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  let x = (seed + 1) * 2654435761
  for (let i = 0; i < length; i++) {
    x = (x ^ (x << 13)) >>> 0; x = (x ^ (x >>> 17)) >>> 0; x = (x ^ (x << 5)) >>> 0
    out[i] = x & 0xff
  }
  return out
}

test.run()
