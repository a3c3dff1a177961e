// State sync between libp2p hosts in this process: chunks come from every agreeing replica,
// each checked against the manifest's hashes; a replica that serves a truncated or corrupted
// chunk is reported (the service bans repeat offenders) and its range is fetched elsewhere.
// A replica's whole state comes from one replica, its shared part checked against the agreed hash.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { StateManifest, StateRequest } from '../protocols/averaging.js'
import { sha256 } from '../node/averaging/contribution.js'
import { StateServer, StateSyncError, encodeSharedState, fetchReplicaState, fetchStageState, stateHash, type SharedState } from '../node/averaging/state-sync.js'
import type { StageState } from '../node/runtime/checkpoint.js'
import { stateProtocol } from '../protocols/ids.js'
import { ParamLayout } from '../node/model/index.js'
import { createHost, type Host } from '../node/p2p/host.js'
import { MessageStream } from '../node/p2p/messages.js'
import { Rng } from '../node/util/random.js'

const runId = 'statesync'
const CHUNK = 4096
const layout = new ParamLayout([
  { name: 'w', shape: [100, 50], init: { kind: 'normal', std: 0.02 }, decay: true },
  { name: 'b', shape: [50], init: { kind: 'zeros' }, decay: false }
])
const rng = new Rng('state')
const state: SharedState = {
  round: 7,
  tokens: 716800,
  step: 350,
  theta: Float32Array.from({ length: layout.size }, () => rng.normal()),
  momentum: Float32Array.from({ length: layout.size }, () => rng.normal())
}
const hash = stateHash(state)
const values = (): Float32Array => Float32Array.from({ length: layout.size }, () => rng.normal())
/** A replica's whole state on the shared one: its own weights, moments and error feedback. */
const replicaState: StageState = {
  runId,
  stage: 1,
  step: state.step,
  round: state.round,
  tokens: state.tokens,
  layoutHash: layout.hash,
  groups: { weights: values(), 'adamw.m': values(), 'adamw.v': values().map(Math.abs), theta_at_last_sync: state.theta, outer_momentum: state.momentum, error_feedback: values() }
}
const replica = async (): Promise<StageState> => replicaState

async function host (): Promise<Host> {
  return await createHost({ privateKey: await generateKeyPair('Ed25519'), runId, listen: ['/ip4/127.0.0.1/tcp/0'] })
}

/** A replica that announces the true manifest but damages the chunks it sends. */
async function lyingReplica (h: Host, damage: (chunk: Uint8Array) => Uint8Array): Promise<void> {
  const bytes = encodeSharedState(runId, 1, layout, state)
  const hashes = Array.from({ length: Math.ceil(bytes.length / CHUNK) }, (_, i) => sha256(bytes.subarray(i * CHUNK, (i + 1) * CHUNK)))
  await h.handle(stateProtocol(runId), async (stream: Stream) => {
    const messages = new MessageStream(stream, 256)
    const request = await messages.read(StateRequest)
    await messages.write(StateManifest, { error: '', round: BigInt(state.round), step: BigInt(state.step), totalBytes: BigInt(bytes.length), chunkBytes: CHUNK, chunkHashes: hashes, stateHash: new Uint8Array(Buffer.from(hash, 'hex')) })
    const end = request.chunkCount === 0 ? hashes.length : Math.min(hashes.length, request.fromChunk + request.chunkCount)
    const raw = { encode: (b: Uint8Array) => b }
    for (let i = request.fromChunk; i < end; i++) await messages.write(raw, damage(bytes.slice(i * CHUNK, (i + 1) * CHUNK)))
    await stream.close()
  })
}

test('a state fetched from two agreeing replicas equals theirs; bad chunks are refused and fetched elsewhere', async () => {
  const [honest, truncating, corrupting, client] = await Promise.all([host(), host(), host(), host()])
  const server = new StateServer({ host: honest }, { runId, chunkBytes: CHUNK }, () => ({ stage: 1, layout, state, hash, replica }))
  try {
    await server.start()
    await lyingReplica(truncating, chunk => chunk.subarray(0, chunk.length - 1))
    await lyingReplica(corrupting, chunk => { chunk[chunk.length >> 1] ^= 1; return chunk })
    for (const h of [honest, truncating, corrupting]) await client.dial(h.getMultiaddrs()[0])
    const offences: string[] = []
    const fetched = await fetchStageState({ host: client }, {
      runId,
      stage: 1,
      layout,
      peers: [truncating, honest, corrupting].map(h => h.peerId.toString()),
      timeoutMs: 10_000,
      onOffence: (peer, reason) => offences.push(`${peer === truncating.peerId.toString() ? 'truncating' : peer === corrupting.peerId.toString() ? 'corrupting' : 'honest'}: ${reason}`)
    })
    assert.is(fetched.hash, hash)
    assert.is(fetched.round, 7)
    assert.is(fetched.tokens, 716800)
    assert.is(fetched.step, 350)
    assert.ok(Buffer.from(fetched.theta.buffer).equals(Buffer.from(state.theta.buffer)))
    assert.ok(Buffer.from(fetched.momentum.buffer).equals(Buffer.from(state.momentum.buffer)))
    assert.ok(offences.some(o => o.startsWith('truncating: ')), offences.join('; '))
    assert.ok(offences.some(o => o.startsWith('corrupting: ')), offences.join('; '))
    assert.not.ok(offences.some(o => o.startsWith('honest')), offences.join('; '))

    // With only liars, the fetch fails with a clear error.
    const failed = await fetchStageState({ host: client }, { runId, stage: 1, layout, peers: [truncating.peerId.toString()], timeoutMs: 10_000 }).then(() => undefined, (err: Error) => err)
    assert.instance(failed, StateSyncError)
    // A replica of another stage has nothing to give.
    const none = await fetchStageState({ host: client }, { runId, stage: 0, layout, peers: [honest.peerId.toString()], timeoutMs: 10_000 }).then(() => undefined, (err: Error) => err)
    assert.match(String(none), /no replica of stage 0 served its state/)
  } finally {
    await server.stop()
    await Promise.all([honest, truncating, corrupting, client].map(async h => await h.stop()))
  }
})

test('a replica\'s whole state comes from one replica, bit for bit; one whose shared part is not the agreed state is passed over', async () => {
  const [forger, honest, client] = await Promise.all([host(), host(), host()])
  // The forger announces the agreed hash but its theta differs.
  const forged: StageState = { ...replicaState, groups: { ...replicaState.groups, theta_at_last_sync: values() } }
  const servers = [
    new StateServer({ host: forger }, { runId, chunkBytes: CHUNK }, () => ({ stage: 1, layout, state, hash, replica: async () => forged })),
    new StateServer({ host: honest }, { runId, chunkBytes: CHUNK }, () => ({ stage: 1, layout, state, hash, replica }))
  ]
  try {
    for (const server of servers) await server.start()
    for (const h of [forger, honest]) await client.dial(h.getMultiaddrs()[0])
    const offences: string[] = []
    const init = { runId, stage: 1, layout, peers: [forger, honest].map(h => h.peerId.toString()), timeoutMs: 10_000, onOffence: (peer: string) => offences.push(peer) }
    const { state: copied, peer } = await fetchReplicaState({ host: client }, { ...init, stateHash: hash })
    assert.is(peer, honest.peerId.toString())
    assert.equal(offences, [forger.peerId.toString()])
    assert.equal([copied.step, copied.round, copied.tokens, copied.layoutHash], [350, 7, 716800, layout.hash])
    for (const [name, group] of Object.entries(replicaState.groups)) {
      assert.ok(Buffer.from(copied.groups[name as keyof StageState['groups']].buffer).equals(Buffer.from(group.buffer)), `group ${name} differs`)
    }
    // Nobody holds another state: a clear error naming what each answered.
    const none = await fetchReplicaState({ host: client }, { ...init, peers: [honest.peerId.toString()], stateHash: '00'.repeat(16) }).then(() => undefined, (err: Error) => err)
    assert.instance(none, StateSyncError)
    assert.match(String(none), /no replica of stage 1 served its state .*no state of stage 1 with hash 0{32}/)
  } finally {
    for (const server of servers) await server.stop()
    await Promise.all([forger, honest, client].map(async h => await h.stop()))
  }
})

test.run()
