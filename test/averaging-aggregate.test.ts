// The round's rule and its inputs: aggregation is deterministic and bounded by the clip, and a
// contribution that is forged, corrupted or out of scope is refused before it is used.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { chunkCount, compress, kForDensity, maxPayloadSize } from '../native/index.js'
import { aggregate, type Contribution } from '../node/averaging/aggregate.js'
import { ContributionError, signContribution, verifyContribution, type ContributionScope } from '../node/averaging/contribution.js'
import { defaultAveraging, type AveragingSettings } from '../node/manifest/manifest.js'
import { Rng } from '../node/util/random.js'

const n = 10_000
const dense: AveragingSettings = { ...defaultAveraging, mode: 'dense' }

function randomVector (seed: string, scale = 1): Float32Array {
  const rng = new Rng(seed)
  return Float32Array.from({ length: n }, () => scale * rng.normal())
}

function denseContribution (sender: string, values: Float32Array, tokens = 100): Contribution {
  return { sender, tokens, dense: true, payload: new Uint8Array(values.slice().buffer) }
}

function norm (a: Float32Array): number {
  return Math.sqrt(a.reduce((s, x) => s + x * x, 0))
}

async function outcome (contributions: Contribution[], settings = dense): Promise<Float32Array> {
  const theta = new Float32Array(n)
  await aggregate(contributions, theta, new Float32Array(n), settings)
  return theta
}

test('the result does not depend on the order contributions arrived in (bit for bit)', async () => {
  const cs = ['p3', 'p1', 'p2'].map((p, i) => denseContribution(p, randomVector(p), 50 + 30 * i))
  const a = await outcome(cs)
  const b = await outcome([cs[2], cs[0], cs[1]])
  assert.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)))
})

test('a scratch buffer for the sum, left dirty by an earlier round, changes nothing', async () => {
  const cs = ['p1', 'p2'].map(p => denseContribution(p, randomVector(p)))
  const theta = new Float32Array(n)
  const scratch = randomVector('dirty')
  await aggregate(cs, theta, new Float32Array(n), dense, scratch)
  assert.ok(Buffer.from(theta.buffer).equals(Buffer.from((await outcome(cs)).buffer)))
  try {
    await aggregate(cs, theta, new Float32Array(n), dense, new Float32Array(n - 1))
    assert.unreachable('a scratch of the wrong size was taken')
  } catch (err) {
    assert.instance(err, RangeError)
  }
})

test('a NaN contribution is dropped; a 1000x one moves the result no more than the median norm allows', async () => {
  const honest = ['a', 'b', 'c'].map(p => denseContribution(p, randomVector(p)))
  const poisoned = randomVector('d')
  poisoned[17] = NaN
  const theta = new Float32Array(n)
  const result = await aggregate([...honest, denseContribution('d', poisoned)], theta, new Float32Array(n), dense)
  assert.equal(result.dropped, ['d'])
  assert.ok(theta.every(Number.isFinite))
  assert.ok(Buffer.from(theta.buffer).equals(Buffer.from((await outcome(honest)).buffer)), 'the dropped contribution changed the result')

  // Honest updates of norm 1; a fourth member sends one 1000x larger. Each has weight 1/4 and
  // the large one is clipped to the median norm (1): it moves the result by at most 1/4.
  const unit = (v: Float32Array) => v.map(x => x / norm(v))
  const equal = ['a', 'b', 'c'].map(p => denseContribution(p, unit(randomVector(p))))
  const without = await outcome(equal)
  const withBig = await outcome([...equal, denseContribution('e', unit(randomVector('e')).map(x => 1000 * x))])
  const shift = norm(withBig.map((x, i) => x - 0.75 * without[i]))
  assert.ok(shift <= 0.25 * 1.001, `the 1000x member moved the result by ${shift}, the clip allows 0.25`)
  assert.ok(shift > 0.2, `the clipped member should still count: shift ${shift}`)
})

test('each member\'s progress counts 1/R, whatever tokens it claims: its values already carry them', async () => {
  const one = new Float32Array(n).fill(1)
  const minusHalf = new Float32Array(n).fill(-0.5)
  const theta = new Float32Array(n)
  const result = await aggregate([denseContribution('a', one, 300), denseContribution('b', minusHalf, 100)], theta, new Float32Array(n), dense)
  // SGD with lr 1 from theta 0: theta = -(0.75 - 0.5) / 2 (b, under the median norm, is not clipped; a is, to 0.75).
  assert.ok(theta.every(x => Math.abs(x + (0.75 - 0.5) / 2) < 1e-6), `theta[0] = ${theta[0]}`)
  assert.equal([...result.clipped.keys()], ['a'])
  assert.ok(Math.abs(result.clipped.get('a')! - 0.75) < 1e-6, 'the member learns how much of it the clip held back')
})

test('a member that trained nothing (0 tokens) takes part without values: it moves neither the sum nor the clip', async () => {
  const a = denseContribution('a', randomVector('a'), 100)
  const b = denseContribution('b', randomVector('b', 3), 100)
  const idle: Contribution = { sender: 'c', tokens: 0, dense: true, payload: new Uint8Array(0) }
  const theta = new Float32Array(n)
  const result = await aggregate([a, b, idle], theta, new Float32Array(n), dense)
  assert.equal(result.used, ['a', 'b', 'c'])
  // It shares the batch: the others' progress counts 1/3 each rather than 1/2.
  const pair = await outcome([a, b])
  assert.ok(theta.every((x, i) => Math.abs(x - pair[i] * 2 / 3) < 1e-5), 'the idle member changed more than the share')
  const still = new Float32Array(n).fill(1)
  await aggregate([idle], still, new Float32Array(n), dense)
  assert.ok(still.every(x => x === 1), 'a round where nobody trained moves nothing')
})

test('contributions are refused when forged, corrupted, out of scope or of the wrong shape', async () => {
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key)
  const settings: AveragingSettings = { ...defaultAveraging, chunkSize: 1024, topkDensity: 1 / 64 }
  const scope: ContributionScope = { runId: 'run1', stage: 1, round: 4, params: n, settings }
  const k = kForDensity(settings.topkDensity, settings.chunkSize)
  const out = new Uint8Array(maxPayloadSize(n, settings.chunkSize, k, 2))
  const size = compress(new Float32Array(n), randomVector('x'), new Float32Array(chunkCount(n, settings.chunkSize)), out, { beta: settings.beta, chunk: settings.chunkSize, k, bits: 2 })
  const payload = out.slice(0, size)
  const signed = await signContribution(scope, { privateKey: key, peerId }, 512, false, payload)
  const ok = await verifyContribution(signed, scope)
  assert.is(ok.sender, peerId.toString())
  assert.is(ok.tokens, 512)

  const refused = async (s: typeof signed, sc: ContributionScope, pattern: RegExp): Promise<void> => {
    const err = await verifyContribution(s, sc).then(() => undefined, (e: Error) => e)
    assert.instance(err, ContributionError)
    assert.match(String(err?.message), pattern)
  }
  const flipped = signed.contribution.slice()
  flipped[flipped.length - 5] ^= 0x40
  await refused({ ...signed, contribution: flipped }, scope, /signature/)
  const badSignature = signed.signature.slice()
  badSignature[0] ^= 1
  await refused({ ...signed, signature: badSignature }, scope, /signature/)
  await refused(signed, { ...scope, round: 5 }, /round/)
  await refused(signed, { ...scope, params: n + 1 }, /payload/)
  await refused(signed, { ...scope, settings: { ...settings, mode: 'dense' } }, /sparse contribution in a dense run/)
  // Signed by its sender but corrupted before signing (the hash field no longer matches).
  const corrupted = payload.slice()
  corrupted[40] ^= 0xff
  const lying = await signContribution(scope, { privateKey: key, peerId }, 512, false, payload)
  const { Contribution } = await import('../protocols/averaging.js')
  const body = Contribution.decode(lying.contribution)
  const forged = await signContribution(scope, { privateKey: key, peerId }, 512, false, corrupted)
  const forgedBody = Contribution.decode(forged.contribution)
  const mixed = Contribution.encode({ ...forgedBody, payloadHash: body.payloadHash })
  await refused({ contribution: mixed, signature: new Uint8Array(await key.sign(new Uint8Array([...new TextEncoder().encode('swarmtrain/contribution/1:'), ...mixed]))) }, scope, /hash/)
  await refused(await signContribution(scope, { privateKey: key, peerId }, 512, false, payload.slice(0, 100)), scope, /payload/)
  await refused(await signContribution(scope, { privateKey: key, peerId }, 0, false, payload), scope, /0 tokens carries values/)
  assert.is((await verifyContribution(await signContribution(scope, { privateKey: key, peerId }, 0, false, new Uint8Array(0)), scope)).payload.length, 0)
})

test('a contribution may come at either density of the round schedule, and at no other', async () => {
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key)
  const settings: AveragingSettings = { ...defaultAveraging, chunkSize: 1024, topkDensity: 1 / 64, everyStepTopkDensity: 1 / 16, everyStepUntil: 400 }
  const scope: ContributionScope = { runId: 'run1', stage: 1, round: 4, params: n, settings }
  const at = async (density: number): Promise<Awaited<ReturnType<typeof signContribution>>> => {
    const k = kForDensity(density, settings.chunkSize)
    const out = new Uint8Array(maxPayloadSize(n, settings.chunkSize, k, 2))
    const size = compress(new Float32Array(n), randomVector('x'), new Float32Array(chunkCount(n, settings.chunkSize)), out, { beta: settings.beta, chunk: settings.chunkSize, k, bits: 2 })
    return await signContribution(scope, { privateKey: key, peerId }, 512, false, out.slice(0, size))
  }
  const refusal = async (s: Awaited<ReturnType<typeof signContribution>>, sc: ContributionScope): Promise<unknown> => await verifyContribution(s, sc).then(() => undefined, (e: unknown) => e)
  assert.is((await verifyContribution(await at(1 / 64), scope)).sender, peerId.toString())
  assert.is((await verifyContribution(await at(1 / 16), scope)).sender, peerId.toString())
  assert.instance(await refusal(await at(1 / 32), scope), ContributionError)
  assert.instance(await refusal(await at(1 / 16), { ...scope, settings: { ...settings, everyStepUntil: 0 } }), ContributionError, 'no every-step rounds: their density is refused')
})

test.run()
