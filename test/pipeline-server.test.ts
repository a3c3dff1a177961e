// The stage server and client over in-memory libp2p stream pairs, against a fake engine whose
// outputs are easy to predict: request handling, multiplexing, error replies, and retries.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream, streamPair } from '@libp2p/utils'
import type { Connection, PeerId, Stream, StreamHandler } from '@libp2p/interface'
import { DType, MAX_PEER_ID_CHARS, MAX_ROUTE_HOPS, StageRequest, StageResponse, decodeResponse } from '../protocols/stage-codec.js'
import { encodeActivations, encodeTokens } from '../node/pipeline/activations.js'
import { StageRequestError, SwarmStage } from '../node/pipeline/caller.js'
import { StageClient, StageClientStoppedError } from '../node/pipeline/client.js'
import { Router } from '../node/pipeline/router.js'
import { StageServer } from '../node/pipeline/server.js'
import type { ChainResult, NextStage, StageCallLimits, StageCompute } from '../node/pipeline/service.js'
import { TensorError, type FloatTensor, type Tensor, type TokenTensor } from '../node/runtime/tensor.js'
import type { StepResult, WeightsVersion } from '../node/runtime/stage-engine.js'
import { WeightsGate } from '../node/runtime/weights-gate.js'

const D = 4
const runId = 'testrun'

/** What the fake servers below check requests against (FakePeer's StageServer init). */
function limits (stage: number): StageCallLimits {
  return { stage, nStages: 2, dModel: D, seqLen: 8, vocabSize: 256, maxTokens: 64 }
}

/**
 * Stage 0 of 2 maps token v to a row of v/10 (gx: none); stage 1 of 2 has loss = mean(x) and
 * gx = 2 * x. `delay(x)` lets a test order or stall the calls.
 */
let engineCount = 0
class FakeEngine implements StageCompute {
  accumulatedTokens = 0
  steps = 0
  calls = 0
  /** The version each backward asked to recompute with. */
  readonly backwardsAt: Array<WeightsVersion | undefined> = []
  constructor (readonly stage: number, readonly delay: (x: Tensor) => number = () => 0) {}

  /** Makes every call throw this (a lying or broken server). */
  failWith?: Error

  private async wait (x: Tensor): Promise<void> {
    this.calls++
    if (this.failWith !== undefined) throw this.failWith
    const ms = this.delay(x)
    await new Promise(resolve => setTimeout(resolve, ms))
  }

  /** The weights version: one per step, and an epoch of its own, as the real engine's. */
  readonly epoch = ++engineCount
  get version (): WeightsVersion { return { epoch: this.epoch, version: this.steps } }
  get weightsVersion (): WeightsVersion { return this.version }

  async forwardAt (x: Tensor): Promise<{ y: FloatTensor, version: WeightsVersion }> {
    await this.wait(x)
    const data = new Float32Array(x.data.length * D)
    for (let i = 0; i < x.data.length; i++) data.fill(Number(x.data[i]) / 10, i * D, i * D + D)
    return { y: { data, shape: [...x.shape, D] }, version: this.version }
  }

  async backwardAt (x: Tensor, gy: FloatTensor, at?: WeightsVersion): Promise<{ gx?: FloatTensor, version: WeightsVersion }> {
    await this.wait(x)
    assert.is(gy.data.length, x.data.length * D)
    this.backwardsAt.push(at)
    this.accumulatedTokens += x.shape[0] * x.shape[1]
    return { version: this.version }
  }

  async lossBackward (x: Tensor, targets: TokenTensor): Promise<{ loss: number, gx?: FloatTensor }> {
    const loss = await this.loss(x, targets)
    this.accumulatedTokens += x.shape[0] * x.shape[1]
    return { loss, gx: { data: (x.data as Float32Array).map(v => 2 * v), shape: x.shape } }
  }

  async loss (x: Tensor, targets: TokenTensor): Promise<number> {
    await this.wait(x)
    assert.is(targets.data.length * D, x.data.length)
    return (x.data as Float32Array).reduce((a, b) => a + b, 0) / x.data.length
  }

  /** As the real engine's: a step waits for the microbatches holding the weights. */
  readonly gate = new WeightsGate()
  async hold (): Promise<() => void> { return await this.gate.hold() }

  async step (): Promise<StepResult> {
    return await this.gate.change(async () => {
      this.steps++
      const tokens = this.accumulatedTokens
      this.accumulatedTokens = 0
      return { lr: 0, gradNorm: 0, tokens }
    })
  }
}

/** A server reachable through fake dials; `kill()` aborts its streams as a dead process would. */
class FakePeer {
  readonly streams: Stream[] = []
  readonly server: StageServer
  handler?: StreamHandler
  constructor (readonly id: PeerId, readonly engine: FakeEngine, extra: { maxQueue?: number, concurrency?: number, stepTokens?: number, maxPending?: number, replicas?: () => number } = {}, next?: NextStage) {
    const registrar = {
      handle: async (_: string, handler: StreamHandler) => { this.handler = handler },
      unhandle: async () => { this.handler = undefined }
    }
    this.server = new StageServer({ registrar, engine, next, replicas: extra.replicas }, { runId, stage: engine.stage, nStages: 2, dModel: D, seqLen: 8, vocabSize: 256, maxTokens: 64, stepTokens: extra.stepTokens ?? 1000, self: id.toString(), ...extra })
  }

  async accept (): Promise<Stream> {
    const [outbound, inbound] = await streamPair()
    if (this.handler === undefined) throw new Error('connection refused')
    this.streams.push(inbound)
    void this.handler(inbound, {} as Connection)
    return outbound
  }

  kill (): void {
    for (const s of this.streams) s.abort(new Error('killed'))
    this.handler = undefined
  }
}

async function peers (...engines: FakeEngine[]): Promise<FakePeer[]> {
  const out: FakePeer[] = []
  for (const e of engines) {
    const p = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), e)
    await p.server.start()
    out.push(p)
  }
  return out
}

function clientFor (ps: FakePeer[]): { client: StageClient, dials: () => number } {
  let dials = 0
  const dialer = {
    dialProtocol: async (peer: PeerId) => {
      dials++
      const p = ps.find(x => x.id.equals(peer))
      if (p === undefined) throw new Error('unknown peer')
      return await p.accept()
    }
  }
  return { client: new StageClient({ dialer }, { protocol: ps[0].server.protocol, maxMessageBytes: ps[0].server.maxMessageBytes }), dials: () => dials }
}

const tokens = (values: number[]): TokenTensor => ({ data: BigInt64Array.from(values.map(BigInt)), shape: [1, values.length] })

test('forward and backward calls travel as float16 and come back matched by id, in any order', async () => {
  // Calls with larger tokens take less time, so replies arrive in reverse order.
  const [peer] = await peers(new FakeEngine(0, x => 60 - Number(x.data[0]) * 5))
  const { client, dials } = clientFor([peer])
  const router = new Router()
  const stage = new SwarmStage({ client, router, replicas: { replicas: () => [peer.id.toString()] } }, { ...limits(0) })
  const ys = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(v => stage.forward(tokens([v, v]))))
  for (const [i, y] of ys.entries()) {
    assert.equal(y.shape, [1, 2, D])
    for (const value of y.data) assert.ok(Math.abs(value - (i + 1) / 10) < 1e-3, `${value} vs ${(i + 1) / 10}`)
  }
  assert.is(dials(), 1, 'one stream carries every call')
  assert.is(await stage.backward(tokens([1, 2]), { data: new Float32Array(2 * D), shape: [1, 2, D] }), undefined)
  assert.equal(peer.server.stats().forward, 10)
  assert.equal(peer.server.stats().backward, 1)
  assert.ok(stage.stats.computeMs > 0)
  await client.stop()
  // A stopped client ends calls at once instead of retrying them.
  try {
    await stage.forward(tokens([1]))
    assert.unreachable()
  } catch (err) {
    assert.instance(err, StageClientStoppedError)
  }
})

test('the last stage returns loss and gx; gradients trigger an optimizer step at the target batch', async () => {
  const engine = new FakeEngine(1)
  const p = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), engine, { stepTokens: 8 })
  await p.server.start()
  const { client } = clientFor([p])
  const stage = new SwarmStage({ client, router: new Router(), replicas: { replicas: () => [p.id.toString()] } }, { ...limits(1), wireDType: DType.INT8 })
  const x: FloatTensor = { data: Float32Array.from({ length: 3 * D }, (_, i) => i / 4), shape: [1, 3, D] }
  const { loss, gx } = await stage.lossBackward(x, tokens([1, 2, 3]))
  assert.ok(Math.abs(loss - 1.375) < 0.01, `loss ${loss}`)
  assert.ok(gx !== undefined)
  for (let i = 0; i < x.data.length; i++) assert.ok(Math.abs(gx.data[i] - 2 * x.data[i]) < 0.05, 'int8 within a step of its scale')
  assert.is(engine.steps, 0)
  await stage.lossBackward(x, tokens([1, 2, 3]))
  await stage.lossBackward(x, tokens([1, 2, 3]))
  await new Promise(resolve => setTimeout(resolve, 10))
  assert.is(engine.steps, 1, 'a step after 9 >= 8 tokens')
  assert.ok(Math.abs(await stage.loss(x, tokens([1, 2, 3])) - loss) < 1e-6)
  await client.stop()
})

test('replicas share the stage batch: with R of them, each steps on a share of 1/R', async () => {
  const engine = new FakeEngine(1)
  let replicas = 2
  const p = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), engine, { stepTokens: 12, replicas: () => replicas })
  await p.server.start()
  const { client } = clientFor([p])
  const stage = new SwarmStage({ client, router: new Router(), replicas: { replicas: () => [p.id.toString()] } }, limits(1))
  const x: FloatTensor = { data: new Float32Array(3 * D), shape: [1, 3, D] }
  await stage.lossBackward(x, tokens([1, 2, 3]))
  await new Promise(resolve => setTimeout(resolve, 10))
  assert.is(engine.steps, 0, '3 tokens < 12 / 2')
  await stage.lossBackward(x, tokens([1, 2, 3]))
  await new Promise(resolve => setTimeout(resolve, 10))
  assert.is(engine.steps, 1, '6 tokens = 12 / 2')
  replicas = 1 // the other replica left: this one steps on the whole batch
  for (let i = 0; i < 3; i++) await stage.lossBackward(x, tokens([1, 2, 3]))
  await new Promise(resolve => setTimeout(resolve, 10))
  assert.is(engine.steps, 1, '9 tokens < 12')
  await stage.lossBackward(x, tokens([1, 2, 3]))
  await new Promise(resolve => setTimeout(resolve, 10))
  assert.is(engine.steps, 2)
  await client.stop()
})

test('malformed, wrong and oversized requests get error replies; the server keeps serving', async () => {
  const [peer] = await peers(new FakeEngine(0))
  const lp = lpStream(await peer.accept())
  const ask = async (bytes: Uint8Array): Promise<StageResponse> => {
    await lp.write(bytes)
    return decodeResponse((await lp.read()).subarray())
  }
  const x = encodeTokens(tokens([1, 2]))
  const [other, other2] = [peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString(), peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()]
  const cases: Array<[string, Partial<StageRequest>]> = [
    ['wrong stage', { stage: 1, x }],
    ['missing x', { stage: 0 }],
    ['wrong dtype', { stage: 0, x: encodeActivations(new Float32Array(2 * D), [1, 2, D], DType.F16) }],
    ['token outside the vocabulary', { stage: 0, x: encodeTokens(tokens([1, 999])) }],
    ['too long a sequence', { stage: 0, x: encodeTokens(tokens([1, 2, 3, 4, 5, 6, 7, 8, 9])) }],
    ['bytes that do not match the shape', { stage: 0, x: { ...x, shape: [1, 3] } }],
    ['a token reply dtype', { stage: 0, x, replyDtype: DType.I32 }],
    // TRAIN routes are a peer's word too: one valid peer per later stage, never this server, nothing beyond the last stage.
    ['a TRAIN without a route', { stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: [] }],
    ['a TRAIN route beyond the last stage', { stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: [other, other2] }],
    ['a TRAIN route through the server itself', { stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: [peer.id.toString()] }],
    ['a TRAIN route naming no peer id', { stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: ['../../etc/passwd'] }],
    ['a TRAIN route with an overlong peer id', { stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: ['1'.repeat(MAX_PEER_ID_CHARS + 1)] }],
    ['a TRAIN without targets', { stage: 0, kind: StageRequest.Kind.TRAIN, x, route: [other] }],
    ['a route on a FORWARD', { stage: 0, x, route: [other] }],
    // EVALUATE routes are checked as TRAIN routes are.
    ['an EVALUATE without a route', { stage: 0, kind: StageRequest.Kind.EVALUATE, x, targets: x, route: [] }],
    ['an EVALUATE route beyond the last stage', { stage: 0, kind: StageRequest.Kind.EVALUATE, x, targets: x, route: [other, other2] }],
    ['an EVALUATE route through the server itself', { stage: 0, kind: StageRequest.Kind.EVALUATE, x, targets: x, route: [peer.id.toString()] }],
    ['an EVALUATE route naming no peer id', { stage: 0, kind: StageRequest.Kind.EVALUATE, x, targets: x, route: ['../../etc/passwd'] }],
    ['an EVALUATE route with an overlong peer id', { stage: 0, kind: StageRequest.Kind.EVALUATE, x, targets: x, route: ['1'.repeat(MAX_PEER_ID_CHARS + 1)] }],
    ['an EVALUATE without targets', { stage: 0, kind: StageRequest.Kind.EVALUATE, x, route: [other] }],
    ['a route on a BACKWARD', { stage: 0, kind: StageRequest.Kind.BACKWARD, x, gy: encodeActivations(new Float32Array(2 * D), [1, 2, D], DType.F16), route: [other] }]
  ]
  for (const [i, [what, request]] of cases.entries()) {
    const r = await ask(StageRequest.encode({ ...request, id: 100 + i }))
    assert.is(r.status, StageResponse.Status.BAD_REQUEST, what)
    assert.is(r.id, 100 + i, what)
    assert.ok(r.error.length > 0)
  }
  const garbage = await ask(Uint8Array.from([0x08, 42, 0x22, 0xff, 0xff, 0xff, 0x0f]))
  assert.is(garbage.status, StageResponse.Status.BAD_REQUEST)
  assert.is(garbage.id, 42, 'the id is recovered from undecodable bytes')
  // A kind this server does not know (field 2 = 9): refused while decoding.
  const unknownKind = await ask(Uint8Array.from([0x08, 43, 0x10, 9]))
  assert.equal([unknownKind.id, unknownKind.status], [43, StageResponse.Status.BAD_REQUEST])
  const ok = await ask(StageRequest.encode({ id: 7, stage: 0, x, replyDtype: DType.F16 }))
  assert.is(ok.status, StageResponse.Status.OK)
  assert.equal(ok.y?.shape, [1, 2, D])
  // A valid TRAIN to a server with no way on to the next stage: UNROUTABLE, and nothing computed.
  const calls = peer.engine.calls
  for (const kind of [StageRequest.Kind.TRAIN, StageRequest.Kind.EVALUATE]) {
    const unroutable = await ask(StageRequest.encode({ id: 9, stage: 0, kind, x, targets: x, route: [other], replyDtype: DType.F16 }))
    assert.is(unroutable.status, StageResponse.Status.UNROUTABLE, kind)
    assert.is(peer.engine.calls, calls)
    // More hops than any run has: refused while decoding, before anything is allocated for them.
    const tooMany = await ask(StageRequest.encode({ id: 10, stage: 0, kind, x, targets: x, route: Array.from({ length: MAX_ROUTE_HOPS + 1 }, () => other), replyDtype: DType.F16 }))
    assert.is(tooMany.status, StageResponse.Status.BAD_REQUEST, kind)
    assert.match(tooMany.error, /too many/)
  }

  const huge = new Uint8Array(peer.server.maxMessageBytes + 1)
  await lp.write(huge).catch(() => {})
  const refused = decodeResponse((await lp.read()).subarray())
  assert.is(refused.status, StageResponse.Status.TOO_LARGE)
  // That stream is closed; a new one is served as before.
  const lp2 = lpStream(await peer.accept())
  await lp2.write(StageRequest.encode({ id: 8, stage: 0, x, replyDtype: DType.F16 }))
  assert.is(decodeResponse((await lp2.read()).subarray()).status, StageResponse.Status.OK)
  assert.ok(peer.server.stats().errors >= cases.length + 2)
})

test('EVALUATE: forward, the next hop, and no backward; the last stage returns the loss alone; waiting calls are bounded', async () => {
  const hops: Array<{ x: FloatTensor, route: readonly string[], kind: string, done: (r: ChainResult) => void }> = []
  const next: NextStage = { hop: async (x, _targets, route, kind) => await new Promise(resolve => hops.push({ x, route, kind, done: resolve })) }
  const engine = new FakeEngine(0)
  const first = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), engine, { maxPending: 1 }, next)
  await first.server.start()
  const lp = lpStream(await first.accept())
  const x = encodeTokens(tokens([3, 4]))
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const evaluate = (id: number): Uint8Array => StageRequest.encode({ id, stage: 0, kind: StageRequest.Kind.EVALUATE, x, targets: x, route: [other], replyDtype: DType.F16 })
  await lp.write(evaluate(1))
  await lp.write(evaluate(2))
  const busy = decodeResponse((await lp.read()).subarray())
  assert.equal([busy.id, busy.status], [2, StageResponse.Status.BUSY])
  while (hops.length === 0) await new Promise(resolve => setTimeout(resolve, 1))
  assert.equal([hops.length, hops[0].kind, hops[0].route], [1, 'evaluate', [other]])
  assert.ok(Math.abs(hops[0].x.data[0] - 0.3) < 1e-6, 'the next stage got the forward output')
  hops[0].done({ loss: 1.5, hops: [{ peer: other, computeMs: 3, queueLength: 1, waitMs: 2, staleness: 0, transferMs: 0 }] })
  const ok = decodeResponse((await lp.read()).subarray())
  assert.equal([ok.id, ok.status, ok.loss, ok.y], [1, StageResponse.Status.OK, 1.5, undefined])
  assert.equal(ok.hops.map(h => h.peer), [other], 'the reply reports the later hop')
  assert.equal([engine.calls, engine.backwardsAt.length, engine.accumulatedTokens], [1, 0, 0], 'one forward, no backward')
  assert.equal([first.server.stats().evaluations, first.server.stats().trains, first.server.stats().backward], [1, 0, 0])

  // The last stage: the loss of its input against the targets, no gradient, no output.
  const lastEngine = new FakeEngine(1)
  const last = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), lastEngine)
  await last.server.start()
  const lpLast = lpStream(await last.accept())
  const activations = encodeActivations(new Float32Array(2 * D).fill(0.25), [1, 2, D], DType.F32)
  await lpLast.write(StageRequest.encode({ id: 3, stage: 1, kind: StageRequest.Kind.EVALUATE, x: activations, targets: x, route: [], replyDtype: DType.F16 }))
  const loss = decodeResponse((await lpLast.read()).subarray())
  assert.equal([loss.id, loss.status, loss.y, loss.hops], [3, StageResponse.Status.OK, undefined, []])
  assert.ok(Math.abs(loss.loss! - 0.25) < 1e-6, `loss ${loss.loss}`)
  assert.equal([lastEngine.accumulatedTokens, last.server.stats().evaluations, last.server.stats().backward], [0, 1, 0])
})

test('SwarmStage.evaluate: the loss and every hop come back; a server misreporting its hops is banned, and another replica serves', async () => {
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const kinds: string[] = []
  const liar: NextStage = { hop: async () => ({ loss: 1.5, hops: [] }) }
  const honest: NextStage = {
    hop: async (_x, _targets, _route, kind) => {
      kinds.push(kind)
      return { loss: 1.5, hops: [{ peer: other, computeMs: 3, queueLength: 0, waitMs: 1, staleness: 0, transferMs: 0 }] }
    }
  }
  const ps: FakePeer[] = []
  for (const next of [liar, honest]) {
    const p = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), new FakeEngine(0), {}, next)
    await p.server.start()
    ps.push(p)
  }
  const ids = ps.map(p => p.id.toString())
  const { client } = clientFor(ps)
  const router = new Router({ exploration: 0 })
  const stage = new SwarmStage({ client, router, replicas: { replicas: s => s === 0 ? [...ids] : [other] } }, limits(0))
  const result = await stage.evaluate(tokens([3, 4]), tokens([4, 5]), [ids[0], other])
  assert.equal([result.loss, result.gx, result.hops.map(h => h.peer)], [1.5, undefined, [ids[1], other]])
  assert.equal(kinds, ['evaluate'])
  assert.ok(router.isBanned(ids[0]), 'the liar is banned')
  assert.is(stage.stats.retries.misbehaved, 1)
  for (const p of ps) assert.equal([p.engine.calls, p.engine.backwardsAt.length], [1, 0], 'one forward each, no backward')
  await client.stop()
})

test('TRAIN: forward, the next hop, then backward on the same weights; waiting microbatches are bounded (BUSY beyond)', async () => {
  const hops: Array<{ x: FloatTensor, route: readonly string[], done: (r: ChainResult) => void }> = []
  const next: NextStage = { hop: async (x, _targets, route) => await new Promise(resolve => hops.push({ x, route, done: resolve })) }
  const engine = new FakeEngine(0)
  const peer = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), engine, { maxPending: 1 }, next)
  await peer.server.start()
  const lp = lpStream(await peer.accept())
  const x = encodeTokens(tokens([3, 4]))
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const train = (id: number): Uint8Array => StageRequest.encode({ id, stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: [other], replyDtype: DType.F16 })
  await lp.write(train(1))
  await lp.write(train(2))
  // The second finds the first holding the only place: BUSY, before computing anything.
  const busy = decodeResponse((await lp.read()).subarray())
  assert.equal([busy.id, busy.status], [2, StageResponse.Status.BUSY])
  while (hops.length === 0) await new Promise(resolve => setTimeout(resolve, 1))
  assert.is(hops.length, 1)
  assert.equal(hops[0].route, [other])
  assert.ok(Math.abs(hops[0].x.data[0] - 0.3) < 1e-6, 'the next stage got the forward output')
  hops[0].done({ loss: 1.5, gx: { data: new Float32Array(2 * D), shape: [1, 2, D] }, hops: [{ peer: other, computeMs: 3, queueLength: 1, waitMs: 2, staleness: 0, transferMs: 4 }] })
  const ok = decodeResponse((await lp.read()).subarray())
  assert.equal([ok.id, ok.status, ok.loss], [1, StageResponse.Status.OK, 1.5])
  assert.equal(ok.hops.map(h => [h.peer, h.computeMs, h.waitMs, h.transferMs]), [[other, 3, 2, 4]], 'the reply reports the later hop, and the transfer time this server measured for it')
  assert.equal(engine.backwardsAt, [{ epoch: engine.epoch, version: 0 }], "the backward ran on its forward's weights")
  assert.equal([peer.server.stats().trains, peer.server.stats().busy], [1, 1])
})

test('TRAIN calls beyond the replica\'s share of a step wait for the step, and no microbatch is in flight when it steps', async () => {
  const hops: Array<{ done: (r: ChainResult) => void }> = []
  const next: NextStage = { hop: async () => await new Promise(resolve => hops.push({ done: resolve })) }
  const engine = new FakeEngine(0)
  // Two replicas share a step of 8 tokens: each steps on 4, two calls of 2 tokens.
  const peer = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), engine, { stepTokens: 8, replicas: () => 2 }, next)
  await peer.server.start()
  const lp = lpStream(await peer.accept())
  const x = encodeTokens(tokens([3, 4]))
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  for (let id = 1; id <= 4; id++) await lp.write(StageRequest.encode({ id, stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: [other], replyDtype: DType.F16 }))
  const settle = async (): Promise<void> => { for (let i = 0; i < 20; i++) await new Promise(resolve => setTimeout(resolve, 1)) }
  const gy = (): ChainResult => ({ loss: 1, gx: { data: new Float32Array(2 * D), shape: [1, 2, D] }, hops: [] })
  await settle()
  assert.is(hops.length, 2, 'the step\'s share went ahead; the other two wait')
  assert.is(peer.server.load().queueLength, 2, 'waiting calls count in the queue the registry publishes')
  hops[0].done(gy())
  await settle()
  assert.is(engine.steps, 0, 'no step while the second microbatch is between its forward and backward')
  assert.is(hops.length, 2)
  hops[1].done(gy())
  await settle()
  assert.is(engine.steps, 1)
  assert.is(hops.length, 4, 'the step let the next share in')
  assert.equal(engine.backwardsAt.map(v => v?.version), [0, 0], 'both backwards ran on the weights they were forwarded on')
  // A call that fails downstream gives its room back.
  hops[2].done({ loss: 1, hops: [] })
  hops[3].done(gy())
  for (let id = 1; id <= 4; id++) decodeResponse((await lp.read()).subarray())
  assert.is(engine.steps, 1, 'one backward is not a step\'s share')
  await lp.write(StageRequest.encode({ id: 5, stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: [other], replyDtype: DType.F16 }))
  await settle()
  assert.is(hops.length, 5, 'the failed call\'s room went to the next one')
  hops[4].done(gy())
  assert.is(decodeResponse((await lp.read()).subarray()).id, 5)
  await settle()
  assert.equal([engine.steps, engine.backwardsAt.map(v => v?.version)], [2, [0, 0, 1, 1]])
})

test('a share that shrinks while a step waits for its holders: the step frees the room of every backward it took', async () => {
  const hops: Array<{ done: (r: ChainResult) => void }> = []
  const next: NextStage = { hop: async () => await new Promise(resolve => hops.push({ done: resolve })) }
  const engine = new FakeEngine(0)
  // Alone, the replica admits a whole step (8 tokens, four calls of 2); then a second replica
  // becomes ready and its share is 4. The step the first two backwards call for waits for the
  // other two calls, which hold the weights, and takes all four backwards.
  let replicas = 1
  const peer = new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), engine, { stepTokens: 8, replicas: () => replicas }, next)
  await peer.server.start()
  const lp = lpStream(await peer.accept())
  const x = encodeTokens(tokens([3, 4]))
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const train = async (id: number): Promise<void> => { await lp.write(StageRequest.encode({ id, stage: 0, kind: StageRequest.Kind.TRAIN, x, targets: x, route: [other], replyDtype: DType.F16 })) }
  const settle = async (): Promise<void> => { for (let i = 0; i < 20; i++) await new Promise(resolve => setTimeout(resolve, 1)) }
  const gy = (): ChainResult => ({ loss: 1, gx: { data: new Float32Array(2 * D), shape: [1, 2, D] }, hops: [] })
  for (let id = 1; id <= 4; id++) await train(id)
  await settle()
  assert.is(hops.length, 4, 'alone, the replica admits the whole step')
  replicas = 2
  for (const hop of hops) hop.done(gy())
  for (let id = 1; id <= 4; id++) decodeResponse((await lp.read()).subarray())
  await settle()
  assert.is(engine.steps, 1, 'one step took the four backwards')
  // Its room is free: before, the step gave back only the tokens counted when it was called
  // (its first share), and the replica admitted nothing more until the admission timeout.
  await train(5)
  await settle()
  assert.is(hops.length, 5, 'the next call was admitted')
  hops[4].done(gy())
  assert.is(decodeResponse((await lp.read()).subarray()).id, 5)
})

test('a backward goes to the replica that computed its forward', async () => {
  const seen: Array<Map<number, string[]>> = [new Map(), new Map()]
  const engines = [0, 1].map(i => {
    const e = new FakeEngine(0, x => {
      const v = Number(x.data[0])
      seen[i].set(v, [...(seen[i].get(v) ?? []), x.data.length === 1 ? 'forward' : 'backward'])
      return 2
    })
    return e
  })
  const ps = await peers(...engines)
  const { client } = clientFor(ps)
  const stage = new SwarmStage({ client, router: new Router({ exploration: 0 }), replicas: { replicas: () => ps.map(p => p.id.toString()) } }, { ...limits(0) })
  // Several microbatches at once so that both replicas serve forwards; backward inputs are
  // marked by length (2 tokens) but carry the forward's first token.
  await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    const x = tokens([i + 1])
    await stage.forward(x)
    x.data = BigInt64Array.from([BigInt(i + 1), 0n]); x.shape = [1, 2]
    await stage.backward(x, { data: new Float32Array(2 * D), shape: [1, 2, D] })
  }))
  assert.ok(seen[0].size > 0 && seen[1].size > 0, 'both replicas served')
  for (const m of seen) for (const [v, calls] of m) assert.equal(calls, ['forward', 'backward'], `microbatch ${v}`)
  // Each backward named its forward's weights over the wire, and got them.
  for (const e of engines) assert.equal(e.backwardsAt, e.backwardsAt.map(() => ({ epoch: e.epoch, version: 0 })))
  assert.is(stage.stats.versionMisses, 0)
  await client.stop()
})

test('a backward retried on another replica recomputes there without a version, and is counted', async () => {
  const engines = [new FakeEngine(0), new FakeEngine(0)]
  const ps = await peers(...engines)
  const { client } = clientFor(ps)
  const stage = new SwarmStage({ client, router: new Router({ exploration: 0 }), replicas: { replicas: () => ps.map(p => p.id.toString()) } }, { ...limits(0) })
  const x = tokens([5])
  await stage.forward(x)
  const served = engines.findIndex(e => e.calls === 1)
  ps[served].kill()
  await stage.backward(x, { data: new Float32Array(D), shape: [1, 1, D] })
  assert.equal(engines[1 - served].backwardsAt, [undefined])
  assert.is(stage.stats.versionMisses, 1)
  await client.stop()
})

test('whose fault: a valid request refused bans that peer; a bug of ours bans nobody; a server bug is FAILED', async () => {
  const liar = new FakeEngine(0)
  liar.failWith = new TensorError('x looks wrong to me')
  const honest = new FakeEngine(0)
  const ps = await peers(liar, honest)
  const { client } = clientFor(ps)
  const router = new Router({ exploration: 0 })
  const stage = new SwarmStage({ client, router, replicas: { replicas: () => ps.map(p => p.id.toString()) } }, { ...limits(0) })
  // Both are untried, so the liar gets its probe; it refuses a valid request: the peer's fault.
  for (let i = 0; i < 4; i++) await stage.forward(tokens([i + 1]))
  assert.is(stage.stats.retries.misbehaved, 1)
  assert.ok(router.isBanned(ps[0].id.toString()), 'the liar is banned')
  assert.ok(!router.isBanned(ps[1].id.toString()))

  // Our own bug: a token id outside the vocabulary. Every server would refuse it: fail at once, blame nobody.
  const before = honest.calls
  try {
    await stage.forward(tokens([1, 999]))
    assert.unreachable('an invalid request must fail')
  } catch (err) {
    assert.instance(err, StageRequestError)
    assert.match((err as Error).message, /outside the vocabulary/)
  }
  assert.is(honest.calls, before, 'the server refused it before computing')
  assert.ok(!router.isBanned(ps[1].id.toString()), 'the honest replica is not banned for our bug')
  assert.is(stage.stats.retries.misbehaved, 1)

  // A RangeError inside a server (its own bug) is FAILED, not the caller's BAD_REQUEST.
  honest.failWith = new RangeError('index out of range')
  const lp = lpStream(await ps[1].accept())
  await lp.write(StageRequest.encode({ id: 3, stage: 0, x: encodeTokens(tokens([1])), replyDtype: DType.F16 }))
  assert.is(decodeResponse((await lp.read()).subarray()).status, StageResponse.Status.FAILED)
  await client.stop()
})

test('a full queue answers BUSY and the caller goes to another replica', async () => {
  const slow = new FakeEngine(0, () => 50)
  const fast = new FakeEngine(0, () => 5)
  const ps = [new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), slow, { maxQueue: 0, concurrency: 1 }),
    new FakePeer(peerIdFromPrivateKey(await generateKeyPair('Ed25519')), fast, { maxQueue: 64 })]
  for (const p of ps) await p.server.start()
  const { client } = clientFor(ps)
  const router = new Router({ exploration: 0 })
  const stage = new SwarmStage({ client, router, replicas: { replicas: () => ps.map(p => p.id.toString()) } }, { ...limits(0) })
  await Promise.all(Array.from({ length: 8 }, () => stage.forward(tokens([3]))))
  assert.is(stage.stats.calls, 8)
  assert.ok(ps[0].server.stats().busy >= 1, 'the one-slot server refused some calls')
  assert.ok(stage.stats.retries.busy >= 1)
  assert.is(slow.calls + fast.calls, 8, 'every call computed exactly once')
  await client.stop()
})

test('a replica that dies mid-call or hangs: its calls are retried elsewhere and counted', async () => {
  const dying = new FakeEngine(0, () => 100)
  const hanging = new FakeEngine(0, () => 1500)
  const healthy = new FakeEngine(0, () => 5)
  const ps = await peers(dying, hanging, healthy)
  const { client } = clientFor(ps)
  const router = new Router({ exploration: 0, unknownTimeoutMs: 300, banBaseMs: 10_000 })
  const stage = new SwarmStage({ client, router, replicas: { replicas: () => ps.map(p => p.id.toString()) } }, { ...limits(0) })
  const calls = Array.from({ length: 6 }, (_, i) => stage.forward(tokens([i + 1])))
  setTimeout(() => ps[0].kill(), 30)
  const ys = await Promise.all(calls)
  for (const [i, y] of ys.entries()) assert.ok(Math.abs(y.data[0] - (i + 1) / 10) < 1e-3)
  assert.ok(stage.stats.retries.closed >= 1, `closed retries: ${stage.stats.retries.closed}`)
  assert.ok(stage.stats.retries.timeout >= 1, `timeout retries: ${stage.stats.retries.timeout}`)
  assert.ok(router.isBanned(ps[0].id.toString()) && router.isBanned(ps[1].id.toString()))
  assert.is(healthy.calls, 6, 'the healthy replica computed every call in the end')
  await client.stop()
  ps[1].kill()
})

test.run()
