// Two volunteers behind NAT meet through a relay and upgrade to a direct WebRTC connection
// (node/p2p/webrtc.ts), on 127.0.0.1 without root; `npm run bench -- nat` shows the same
// through real NATs, as root. Two public hosts relay and answer STUN, like relays A and B
// there (a volunteer wants slots on two relays, and searches the DHT while it has fewer: the
// last test checks that this search does not get it banned by the one relay it sees). Two hosts set up as
// behind NAT (relay slots, a /webrtc listener, no relay service, DHT clients) reach each other
// only through a relay until the upgrade. Here nothing filters the peers' first ICE checks, so
// a try fails now and then (WEBRTC_RETRY_BASE_MS in node/timing.ts says why) and the upgrade's
// retries are part of what is tested; short dial timeouts end a failed try within seconds.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { cleanup as releaseWebRTC } from 'node-datachannel'
import { MAX_BYTES, manifestProtocol } from '../protocols/ids.js'
import { ManifestRequest, ManifestResponse } from '../protocols/manifest.js'
import { serveManifest } from '../node/manifest/exchange.js'
import { defaultManifest, parseManifest, runIdOf } from '../node/manifest/manifest.js'
import { createHost, hostNetworkStatus, type Host } from '../node/p2p/host.js'
import { MessageStream } from '../node/p2p/messages.js'
import { isWebRTC } from '../node/p2p/webrtc.js'
import { waitFor } from './daemon-harness.js'

const manifest = defaultManifest()
const runId = runIdOf(manifest)

const isCircuit = (address: Multiaddr): boolean => address.getComponents().some(c => c.name === 'p2p-circuit')

/** Asks for the run manifest on this very connection, not one libp2p's dialer picks, and returns the run id it hashes to. */
async function askManifest (connection: Connection): Promise<string> {
  const signal = AbortSignal.timeout(5000)
  const messages = new MessageStream(await connection.newStream(manifestProtocol(runId), { signal }), MAX_BYTES.manifestResponse)
  await messages.write(ManifestRequest, { runId }, { signal })
  const response = await messages.read(ManifestResponse, { signal })
  await messages.stream.close().catch(() => {})
  return runIdOf(parseManifest(response.manifest, 'the manifest'))
}

function connectionsOf (host: Host, peer: Host): string {
  return `${host.getConnections(peer.peerId).map(c => `${c.remoteAddr.toString()} (${c.limits == null ? 'unlimited' : 'limited'}, ${c.status})`).join(', ')}; upgrade stats ${JSON.stringify(host.services.webrtcUpgrade.stats)}`
}

test('two volunteers behind NAT meet through a relay, then hold a direct WebRTC connection that carries run protocols and outlives the relay', async () => {
  const hosts: Host[] = []
  const host = async (init: { bootstrap?: string[], behindNat?: boolean }): Promise<Host> => {
    const h = await createHost({ privateKey: await generateKeyPair('Ed25519'), runId, listen: ['/ip4/127.0.0.1/tcp/0'], dialTimeoutMs: 3000, ...init })
    hosts.push(h)
    return h
  }
  try {
    const [a, b] = [await host({}), await host({})]
    assert.ok(a.services.relay !== undefined && a.services.stun !== undefined, 'a loopback host is public: it relays and answers STUN')
    const relays = [a, b].map(r => r.getMultiaddrs()[0].toString())
    const [v1, v2] = [await host({ bootstrap: relays, behindNat: true }), await host({ bootstrap: relays, behindNat: true })]
    assert.is(v1.services.relay, undefined, 'a volunteer behind NAT relays for no one')
    await serveManifest(v1, manifest)

    // Each volunteer takes a slot on each relay and announces the relayed addresses and their /webrtc twins.
    const viaA = (h: Host): Multiaddr | undefined => h.getMultiaddrs().find(m => isCircuit(m) && !isWebRTC(m) && m.toString().startsWith(relays[0]))
    const relayed = await waitFor('v1 to hold a slot on relay A', 10_000, async () => viaA(v1))
    assert.ok(v1.getMultiaddrs().some(m => isCircuit(m) && isWebRTC(m)), 'v1 announces a /webrtc twin')
    await waitFor('v2 to hold a slot on relay A', 10_000, async () => viaA(v2))

    // v2 reaches v1 through relay A only: a limited connection, which carries no run protocol.
    const viaRelay = await v2.dial(relayed)
    assert.ok(viaRelay.limits != null, 'the relayed connection is limited')
    assert.ok(isCircuit(viaRelay.remoteAddr) && !isWebRTC(viaRelay.remoteAddr), viaRelay.remoteAddr.toString())
    let refused: Error | undefined
    await askManifest(viaRelay).catch((err: Error) => { refused = err })
    assert.is(refused?.name, 'LimitedConnectionError', 'a relayed connection carries no manifest request')

    // v2 opened the relayed connection, so it dials v1's /webrtc twin once identify is in.
    const direct = await waitFor('a direct WebRTC connection from v2 to v1', 25_000,
      async () => v2.getConnections(v1.peerId).find(c => isWebRTC(c.remoteAddr) && c.limits == null && c.status === 'open'),
      () => `v2 to v1: ${connectionsOf(v2, v1)}`)
    assert.ok(direct.direct, 'libp2p counts it as direct')
    assert.ok(v1.getConnections(v2.peerId).some(c => isWebRTC(c.remoteAddr) && c.limits == null), 'v1 holds it too')
    // No other direct path: each volunteer's TCP listener stands for a private address nobody outside can dial.
    const plain = [...v1.getConnections(v2.peerId), ...v2.getConnections(v1.peerId)].filter(c => !isCircuit(c.remoteAddr) && !isWebRTC(c.remoteAddr))
    assert.equal(plain.map(c => c.remoteAddr.toString()), [])
    assert.equal(hostNetworkStatus(v2).webrtc, [v1.peerId.toString()])
    assert.equal(hostNetworkStatus(v1).webrtc, [v2.peerId.toString()])
    assert.is(await askManifest(direct), runId)

    // Relay A goes away; the connection signaled through it stays and still carries the protocol.
    await a.stop()
    await waitFor('the connections through relay A to close', 10_000, async () => v2.getConnections(v1.peerId).every(c => c.limits == null) ? true : undefined, () => connectionsOf(v2, v1))
    assert.is(direct.status, 'open')
    assert.is(await askManifest(direct), runId)
    // The volunteers now search the DHT for a second relay, through B alone: B must not ban them
    // for it (their queries are paced; they used to pass its guard's stream rate within seconds).
    await new Promise(resolve => setTimeout(resolve, 4000))
    assert.is(b.services.guard.stats.strikes, 0, `relay B struck no one: ${JSON.stringify(b.services.guard.stats)}`)
    assert.ok([v1, v2].every(v => v.getConnections(b.peerId).length > 0), 'both volunteers are still connected to relay B')
  } finally {
    await Promise.all(hosts.map(async h => { await h.stop() }))
    // A failed try leaves data channels whose native callbacks keep Node running after every
    // host stopped (@libp2p/webrtc 6.0.33 carries on with the closed peer connection).
    releaseWebRTC()
  }
})

test('volunteers behind NAT with a single relay in sight keep their slots on it, unbanned', async () => {
  const hosts: Host[] = []
  try {
    const relay = await createHost({ privateKey: await generateKeyPair('Ed25519'), runId, listen: ['/ip4/127.0.0.1/tcp/0'] })
    hosts.push(relay)
    const address = relay.getMultiaddrs()[0].toString()
    for (let i = 0; i < 2; i++) hosts.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), runId, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [address], behindNat: true }))
    const volunteers = hosts.slice(1)
    await waitFor('both volunteers to hold a slot on the relay', 10_000, async () => volunteers.every(v => v.getMultiaddrs().some(isCircuit)) ? true : undefined)
    // Each wants a second slot and searches the DHT for it, asking the relay: seconds later it
    // was banned for passing the relay's stream rate (20 per second on the DHT protocol).
    await new Promise(resolve => setTimeout(resolve, 6000))
    assert.is(relay.services.guard.stats.strikes, 0, JSON.stringify(relay.services.guard.stats))
    assert.ok(volunteers.every(v => v.getConnections(relay.peerId).length > 0 && v.getMultiaddrs().some(isCircuit)), 'both still connected, with their slots')
  } finally {
    await Promise.all(hosts.map(async h => { await h.stop() }))
  }
})

test.run()
