// Info records: readers accept only signed, unexpired, well-formed records of their run, and
// so does every DHT node that is asked to store one; a peer that hands out a bad record of its
// own loses its connection, and after repeats is banned. A node that becomes ready says so at once.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { InfoRequest, PeerInfo, SignedPeerInfo } from '../protocols/registry.js'
import { infoKey, infoProtocol } from '../protocols/ids.js'
import { InfoRecordError, newestRecord, signInfoRecord, verifyInfoRecord, type PeerInfoRecord } from '../node/registry/record.js'
import { StageRegistry, registryDhtConfig } from '../node/registry/registry.js'
import { MessageStream } from '../node/p2p/messages.js'
import { createHost, waitForRoutingPeers } from '../node/p2p/host.js'

const runId = 'abc123'
const options = { runId, nStages: 3 }

async function identity () {
  const key = await generateKeyPair('Ed25519')
  return { key, peerId: peerIdFromPrivateKey(key) }
}

function record (peerId: string, fields: Partial<PeerInfoRecord> = {}): PeerInfoRecord {
  const now = Date.now()
  return { peerId, stage: 1, throughput: 1234.5, servedThroughput: 321.25, queueLength: 2, freeMemory: 8e9, round: 7, ready: true, tokensSinceSync: 4096, stateHash: '00112233445566778899aabbccddeeff', drivenTokens: 81920, trainLoss: 2.53125, validationLoss: 2.6875, version: '0.1.0', issuedAt: now, expiresAt: now + 60_000, ...fields }
}

async function rejects (promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise
  } catch (err) {
    assert.instance(err, InfoRecordError)
    assert.match((err as Error).message, pattern)
    return
  }
  assert.unreachable(`expected a rejection matching ${pattern}`)
}

test('a signed record round-trips with every field', async () => {
  const { key, peerId } = await identity()
  const r = record(peerId.toString())
  const value = await signInfoRecord(r, runId, key, peerId)
  assert.equal(await verifyInfoRecord(infoKey(runId, peerId), value, options), r)
  // A node that does not drive has no losses to report.
  const { trainLoss, validationLoss, ...serving } = record(peerId.toString(), { drivenTokens: 0 })
  const decoded = await verifyInfoRecord(infoKey(runId, peerId), await signInfoRecord(serving, runId, key, peerId), options)
  assert.equal([decoded.trainLoss, decoded.validationLoss, decoded.drivenTokens], [undefined, undefined, 0])
})

test('unsigned, forged, expired, malformed and out-of-range records are rejected', async () => {
  const { key, peerId } = await identity()
  const other = await identity()
  const k = infoKey(runId, peerId)
  const good = await signInfoRecord(record(peerId.toString()), runId, key, peerId)
  const { info, signature } = SignedPeerInfo.decode(good)

  await rejects(verifyInfoRecord(k, SignedPeerInfo.encode({ info, signature: new Uint8Array(0) }), options), /unsigned/)
  // Forged: fields changed after signing, or signed by another key.
  const tampered = PeerInfo.encode({ ...PeerInfo.decode(info), throughput: 1e9 })
  await rejects(verifyInfoRecord(k, SignedPeerInfo.encode({ info: tampered, signature }), options), /signature/)
  const byOther = await other.key.sign(new Uint8Array([...new TextEncoder().encode('swarmtrain/peer-info/1:'), ...info]))
  await rejects(verifyInfoRecord(k, SignedPeerInfo.encode({ info, signature: new Uint8Array(byOther) }), options), /signature/)
  // Someone else's valid record stored under our key.
  const theirs = await signInfoRecord(record(other.peerId.toString()), runId, other.key, other.peerId)
  await rejects(verifyInfoRecord(k, theirs, options), /stored under/)
  // Expired, or claiming a lifetime beyond the limit, or from the future.
  const now = Date.now()
  await rejects(verifyInfoRecord(k, await signInfoRecord(record(peerId.toString(), { issuedAt: now - 10_000, expiresAt: now - 1 }), runId, key, peerId), options), /expired/)
  await rejects(verifyInfoRecord(k, await signInfoRecord(record(peerId.toString(), { expiresAt: now + 10 * 3_600_000 }), runId, key, peerId), options), /lifetime/)
  await rejects(verifyInfoRecord(k, await signInfoRecord(record(peerId.toString(), { issuedAt: now + 600_000, expiresAt: now + 660_000 }), runId, key, peerId), options), /future/)
  // Malformed: garbage, truncated, oversized.
  await rejects(verifyInfoRecord(k, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]), options), /malformed/)
  await rejects(verifyInfoRecord(k, good.subarray(0, good.length - 10), options), /malformed|signature/)
  await rejects(verifyInfoRecord(k, new Uint8Array(4096), options), /exceeds/)
  // Out of range for this run.
  await rejects(verifyInfoRecord(k, await signInfoRecord(record(peerId.toString(), { stage: 3 }), runId, key, peerId), options), /stage 3 out of range/)
  await rejects(verifyInfoRecord(k, await signInfoRecord(record(peerId.toString(), { throughput: Number.NaN }), runId, key, peerId), options), /throughput/)
  await rejects(verifyInfoRecord(k, await signInfoRecord(record(peerId.toString(), { trainLoss: Number.NaN }), runId, key, peerId), options), /loss/)
  await rejects(verifyInfoRecord(k, await signInfoRecord(record(peerId.toString(), { validationLoss: 1e6 }), runId, key, peerId), options), /loss/)
  await rejects(verifyInfoRecord(k, await signInfoRecord(record(peerId.toString(), { version: 'x'.repeat(100) }), runId, key, peerId), options), /version/)
  await rejects(verifyInfoRecord(infoKey('otherrun', peerId), good, options), /another run/)
  await rejects(verifyInfoRecord(infoKey(runId, peerId), await signInfoRecord(record(peerId.toString()), 'otherrun', key, peerId), options), /another run/)
  await rejects(verifyInfoRecord(new TextEncoder().encode('/swarmtrain/abc123/info/not-a-peer'), good, options), /key/)
})

test('the selector prefers the newest record', async () => {
  const { key, peerId } = await identity()
  const older = await signInfoRecord(record(peerId.toString(), { issuedAt: Date.now() - 5000 }), runId, key, peerId)
  const newer = await signInfoRecord(record(peerId.toString()), runId, key, peerId)
  assert.is(newestRecord([older, newer]), 1)
  assert.is(newestRecord([newer, older, new Uint8Array([1, 2, 3])]), 0)
})

test('DHT nodes refuse to store forged records and serve valid ones', async () => {
  const dht = registryDhtConfig(runId, 3)
  const hosts = await Promise.all([0, 1].map(async () => {
    const { key } = await identity()
    return { key, host: await createHost({ privateKey: key, runId, listen: ['/ip4/127.0.0.1/tcp/0'], ...dht }) }
  }))
  const [a, b] = hosts
  try {
    await a.host.dial(b.host.getMultiaddrs()[0])
    await waitForRoutingPeers(a.host, 10_000)
    const good = await signInfoRecord(record(a.host.peerId.toString()), runId, a.key, a.host.peerId)
    for await (const _ of a.host.services.dht.put(infoKey(runId, a.host.peerId), good)) { /* run the query */ }
    // b stored it and hands it out.
    let found: Uint8Array | undefined
    for await (const event of b.host.services.dht.get(infoKey(runId, a.host.peerId))) if (event.name === 'VALUE') found = event.value
    assert.equal(found, good)
    // A forged record for b's key (signed by a) is refused by b.
    const forged = await signInfoRecord(record(a.host.peerId.toString()), runId, a.key, a.host.peerId)
    const events: string[] = []
    for await (const event of a.host.services.dht.put(infoKey(runId, b.host.peerId), forged)) events.push(event.name)
    let stored: Uint8Array | undefined
    try {
      for await (const event of b.host.services.dht.get(infoKey(runId, b.host.peerId))) if (event.name === 'VALUE') stored = event.value
    } catch {}
    assert.is(stored, undefined)
    assert.ok(events.includes('QUERY_ERROR'), `the put was answered with an error: ${events.join(' ')}`)
  } finally {
    await Promise.all(hosts.map(async h => { await h.host.stop() }))
  }
})

test('a peer whose own record fails verification loses its connection each time, and is banned after repeats', async () => {
  const dht = registryDhtConfig(runId, 3)
  const [a, b] = await Promise.all([0, 1].map(async () => {
    const { key } = await identity()
    return { key, host: await createHost({ privateKey: key, runId, listen: ['/ip4/127.0.0.1/tcp/0'], ...dht }) }
  }))
  // b answers the info protocol with its record, altered after signing.
  const signed = SignedPeerInfo.decode(await signInfoRecord(record(b.host.peerId.toString()), runId, b.key, b.host.peerId))
  const forged = SignedPeerInfo.encode({ info: PeerInfo.encode({ ...PeerInfo.decode(signed.info), throughput: 1e9 }), signature: signed.signature })
  await b.host.handle(infoProtocol(runId), async (stream: Stream) => {
    const messages = new MessageStream(stream, 4096)
    await messages.read(InfoRequest)
    await messages.write({ encode: (x: Uint8Array) => x }, forged)
    await stream.close()
  })
  const registry = new StageRegistry({ host: a.host, privateKey: a.key }, { runId, nStages: 3, recordTtlMs: 60_000, refreshMs: 1000, queryTimeoutMs: 5000 })
  const guard = a.host.services.guard
  try {
    for (let strike = 1; strike <= 3; strike++) {
      await a.host.dial(b.host.getMultiaddrs()[0])
      const view = await registry.refresh()
      assert.not.ok(view.stages.some(st => st.peers.some(p => p.peerId === b.host.peerId.toString())), 'the forged record is in the view')
      assert.is(guard.stats.strikes, strike)
      // The strike hangs up on b (asynchronously).
      for (let waited = 0; a.host.getConnections(b.host.peerId).length > 0 && waited < 5000; waited += 50) await new Promise(resolve => setTimeout(resolve, 50))
      assert.is(a.host.getConnections(b.host.peerId).length, 0, `strike ${strike} did not cost the connection`)
    }
    assert.ok(guard.isBanned(b.host.peerId.toString()), 'three strikes did not ban')
    const refused = await a.host.dial(b.host.getMultiaddrs()[0]).then(() => undefined, (err: Error) => err)
    assert.instance(refused, Error, 'a banned peer was dialed')
  } finally {
    await Promise.all([a, b].map(async h => { await h.host.stop() }))
  }
})

test('a readiness change is served at once, not at the next refresh', async () => {
  const dht = registryDhtConfig(runId, 3)
  const [a, b] = await Promise.all([0, 1].map(async () => {
    const { key } = await identity()
    return { key, host: await createHost({ privateKey: key, runId, listen: ['/ip4/127.0.0.1/tcp/0'], ...dht }) }
  }))
  // Refreshes far apart: only update() can publish within the test.
  const init = { runId, nStages: 3, recordTtlMs: 600_000, refreshMs: 300_000, queryTimeoutMs: 5000 }
  const reader = new StageRegistry({ host: a.host, privateKey: a.key }, init)
  const server = new StageRegistry({ host: b.host, privateKey: b.key }, init)
  const readyInView = async (): Promise<boolean | undefined> => (await reader.refresh()).stages[1].peers.find(p => p.peerId === b.host.peerId.toString())?.ready
  try {
    await server.start()
    await server.update({ stage: 1, ready: false })
    await a.host.dial(b.host.getMultiaddrs()[0])
    assert.is(await readyInView(), false)
    await server.update({ ready: true })
    assert.is(await readyInView(), true)
  } finally {
    await server.stop()
    await Promise.all([a, b].map(async h => { await h.host.stop() }))
  }
})

test.run()
