// The public-swarm limits: one address cannot hold more than its share of a node's sockets, a
// peer that opens streams too fast loses its connection and, after repeats, is banned with a
// growing backoff; and through it all the node keeps serving its real peers. Strangers leave
// nothing behind in the peer store.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { connect, type Socket } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createClientHost, createHost, type Host } from '../node/p2p/host.js'
import { PeerGuard } from '../node/p2p/guard.js'
import { guardRun } from '../node/p2p/peers.js'
import { infoProtocol } from '../protocols/ids.js'
import { waitFor } from './daemon-harness.js'

const ECHO = '/swarmtrain/limits/echo/1'

/** Echo streams each host's handler has served. */
const served = new WeakMap<Host, number>()

async function echoHost (guard: ConstructorParameters<typeof PeerGuard>[0]): Promise<Host> {
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), runId: 'limits', listen: ['/ip4/127.0.0.1/tcp/0'], guard })
  await host.handle(ECHO, async (stream: Stream) => {
    served.set(host, (served.get(host) ?? 0) + 1)
    for await (const chunk of stream) stream.send(chunk.subarray())
    await stream.close().catch(() => {})
  })
  return host
}

/** One round trip on the echo protocol. */
async function echo (from: { dialProtocol: Host['dialProtocol'] }, to: Host): Promise<string> {
  const stream = await from.dialProtocol(to.getMultiaddrs()[0], ECHO, { signal: AbortSignal.timeout(10_000) })
  stream.send(new TextEncoder().encode('hello'))
  await stream.close({ signal: AbortSignal.timeout(10_000) })
  let text = ''
  for await (const chunk of stream) text += new TextDecoder().decode(chunk.subarray())
  return text
}

test('strikes cost the connection; enough of them ban, and each ban lasts twice as long', () => {
  let now = 0
  const guard = new PeerGuard({ strikesToBan: 3, strikeWindowMs: 1000, banBaseMs: 100, now: () => now })
  const peer = peerIdFromString('12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9RZHUN3g5LmCs')
  const id = peer.toString()
  guard.strike(peer, 'test')
  guard.strike(peer, 'test')
  assert.not.ok(guard.isBanned(id), 'two strikes do not ban')
  now = 2000 // the window passed: old strikes are forgotten
  guard.strike(peer, 'test')
  assert.not.ok(guard.isBanned(id))
  guard.strike(peer, 'test')
  guard.strike(peer, 'test')
  assert.ok(guard.isBanned(id), 'three strikes within the window ban')
  assert.equal(guard.stats.banned, [id])
  now += 99
  assert.ok(guard.isBanned(id))
  now += 2
  assert.not.ok(guard.isBanned(id), 'the first ban lasts banBaseMs')
  for (let i = 0; i < 3; i++) guard.strike(peer, 'again')
  now += 150
  assert.ok(guard.isBanned(id), 'the second ban lasts twice as long')
  now += 60
  assert.not.ok(guard.isBanned(id))
  assert.equal(guard.stats.bans, 2)
  assert.equal(guard.gater.denyDialPeer?.(peer), false)
})

test('200 sockets from one address are capped, and the node keeps serving its real peers', async () => {
  const cap = 8
  const server = await echoHost({ maxConnectionsPerIp: cap })
  const real = await createClientHost({ privateKey: await generateKeyPair('Ed25519') })
  const port = Number(server.getMultiaddrs()[0].getComponents().find(c => c.name === 'tcp')?.value)
  const sockets: Socket[] = []
  let closedByServer = 0
  try {
    // The flood comes from 127.0.0.9 (all of 127/8 is loopback), the real peer from 127.0.0.1.
    for (let i = 0; i < 200; i++) {
      const socket = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.9' })
      socket.on('error', () => {})
      socket.on('close', () => { closedByServer++ })
      sockets.push(socket)
      if (i % 20 === 0) assert.is(await echo(real, server), 'hello', `the real peer is served during the flood (socket ${i})`)
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    await new Promise(resolve => setTimeout(resolve, 500))
    const open = sockets.length - closedByServer
    assert.ok(open <= cap, `the node holds at most ${cap} sockets from one address, held ${open}`)
    assert.ok(server.services.guard.stats.refusedConnections > 0, 'the per-address cap refused sockets')
    assert.is(await echo(real, server), 'hello')
    // The guard works around libp2p 3.3.11 piling handlers onto the middleware array.
    assert.is(served.get(server), 11, 'each stream reached the handler exactly once')
  } finally {
    for (const socket of sockets) socket.destroy()
    await real.stop()
    await server.stop()
  }
})

test('a peer opening streams too fast is cut off, then banned; others are still served', async () => {
  const server = await echoHost({ streamsPerSecond: 1, streamBurst: 5, strikesToBan: 2 })
  const flooder = await createClientHost({ privateKey: await generateKeyPair('Ed25519') })
  const real = await createClientHost({ privateKey: await generateKeyPair('Ed25519') })
  try {
    const target = multiaddr(server.getMultiaddrs()[0].toString())
    let refused = 0
    for (let i = 0; i < 30 && !server.services.guard.isBanned(flooder.peerId.toString()); i++) {
      await echo(flooder, server).catch(() => { refused++ })
    }
    assert.ok(refused > 0, 'streams beyond the rate were refused')
    assert.ok(server.services.guard.isBanned(flooder.peerId.toString()), 'the flooder is banned after two strikes')
    await new Promise(resolve => setTimeout(resolve, 200))
    assert.is(server.getConnections(flooder.peerId).length, 0, 'the flooder lost its connections')
    let redial: Error | undefined
    await flooder.dial(target, { signal: AbortSignal.timeout(5000) }).then(c => c.newStream(ECHO)).catch(err => { redial = err as Error })
    assert.ok(redial !== undefined, 'a banned peer cannot come back')
    assert.is(await echo(real, server), 'hello', 'other peers are still served')
  } finally {
    await Promise.all([real.stop(), flooder.stop(), server.stop()])
  }
})

test('strangers are forgotten once they leave, the latest peers of the run are remembered', async () => {
  const node = await echoHost({})
  const unguard = guardRun(node, 'limits', 2)
  const client = async (): Promise<Awaited<ReturnType<typeof createClientHost>>> => await createClientHost({ privateKey: await generateKeyPair('Ed25519') })
  // Peers of the run (a protocol of it in their identify), not in the DHT's routing table (whose tags alone keep an entry).
  const members = await Promise.all(Array.from({ length: 3 }, client))
  for (const member of members) await member.handle(infoProtocol('limits'), async (stream: Stream) => { stream.abort(new Error('unused')) })
  const strangers = await Promise.all(Array.from({ length: 5 }, client))
  const everyone = [...members, ...strangers]
  try {
    const identified = async (peer: Host['peerId']): Promise<true | undefined> => (await node.peerStore.get(peer).catch(() => undefined))?.metadata.has('AgentVersion') === true ? true : undefined
    for (const peer of everyone) {
      assert.is(await echo(peer, node), 'hello')
      await waitFor('identify', 10_000, async () => await identified(peer.peerId))
      // After identify: libp2p adds the protocol of every stream a peer opens to its entry, so a
      // stranger's entry names the run too.
      assert.is(await echo(peer, node), 'hello')
      // Members come and go one after another; the strangers stay until the end.
      if (members.includes(peer)) await peer.stop()
      if (peer === members[0]) {
        await new Promise(resolve => setTimeout(resolve, 3000))
        assert.ok(await node.peerStore.has(peer.peerId), 'a member outlives its connection')
      }
    }
    assert.ok((await node.peerStore.get(strangers[0].peerId)).protocols.includes(ECHO))
    await Promise.all(strangers.map(async peer => { await peer.stop() }))
    const known = async (peers: typeof everyone): Promise<boolean[]> => await Promise.all(peers.map(async p => await node.peerStore.has(p.peerId)))
    await waitFor('the strangers to be forgotten', 15_000, async () => (await known(strangers)).every(k => !k) ? true : undefined)
    assert.equal(await known(members), [false, true, true], 'the two latest members are remembered, the first is forgotten')
  } finally {
    unguard()
    await Promise.all([node.stop(), ...everyone.map(async p => { await p.stop() })])
  }
})

test.run()
