// Server-to-server forwarding on loopback libp2p with real engines: the driver's link carries
// the tokens and the loss instead of every activation and gradient, learning (and evaluating)
// is the relayed path's to the last digit, a failed hop goes to another replica, and a server
// that cannot reach the next stage makes the driver relay instead.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BatchSampler, evenBatches, type TokenBatch } from '../node/data/sampler.js'
import { loadBrown, type Corpus } from '../node/data/corpus.js'
import { defaultManifest } from '../node/manifest/manifest.js'
import { evaluateMicrobatch, trainMicrobatch } from '../node/pipeline/chain.js'
import { Driver } from '../node/pipeline/driver.js'
import type { StageCompute } from '../node/pipeline/service.js'
import type { StageEngine } from '../node/runtime/stage-engine.js'
import { LoopbackSwarm, type LoopbackSwarmInit } from '../bench/lib/loopback-swarm.js'

const MICROBATCHES = 12

let corpus: Corpus | undefined

async function swarm (nStages: number, extra: Partial<LoopbackSwarmInit> = {}): Promise<LoopbackSwarm> {
  const { optimizer } = defaultManifest()
  return await LoopbackSwarm.create({
    runId: 'testforward',
    model: { vocabSize: 256, dModel: 32, nLayers: nStages, nHeads: 4, seqLen: 16 },
    optimizer: { ...optimizer, batchSize: 4, microbatches: 2, totalSteps: 100 },
    nStages,
    threads: 1,
    seed: 3,
    ...extra
  })
}

function sampler (s: LoopbackSwarm): BatchSampler {
  return new BatchSampler(corpus!.train, s.init.model.seqLen, s.init.optimizer.batchSize, 11)
}

/** The driver's fixed validation microbatches (as its evaluations take them). */
function validation (s: LoopbackSwarm, count: number): TokenBatch[] {
  return evenBatches(corpus!.validation, s.init.model.seqLen, s.init.optimizer.batchSize, count)
}

/** Waits until every server has taken `steps` optimizer steps (a step runs after the call that completed its batch). */
async function stepped (s: LoopbackSwarm, steps: number): Promise<void> {
  for (const started = Date.now(); s.servers.some(v => v.server.stats().steps < steps);) {
    if (Date.now() - started > 30_000) throw new Error('the servers did not step')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

function driverBytes (s: LoopbackSwarm): number {
  return s.driver.client.traffic.sentBytes + s.driver.client.traffic.receivedBytes
}

/** An engine whose last-stage calls all fail, as a replica with a broken runtime would. */
function broken (engine: StageEngine): StageCompute {
  const fail = async (): Promise<never> => { throw new Error('this replica is broken') }
  return {
    forwardAt: fail,
    backwardAt: fail,
    loss: fail,
    lossBackward: fail,
    step: async () => await engine.step(),
    hold: async () => await engine.hold(),
    get accumulatedTokens () { return engine.accumulatedTokens },
    get weightsVersion () { return engine.weightsVersion }
  }
}

test.before(async () => { corpus = await loadBrown() })

test('3 stages: forwarded microbatches leave the driver a sliver of the bytes, and the losses of the relayed path', async () => {
  const relayed = await swarm(3)
  const relayedLosses: number[] = []
  try {
    const stages = relayed.callers()
    const batches = sampler(relayed)
    for (let i = 0; i < MICROBATCHES; i++) relayedLosses.push(await trainMicrobatch(stages, batches.next()))
  } finally {
    await relayed.stop()
  }
  const forwarded = await swarm(3)
  const forwardedLosses: number[] = []
  try {
    const stages = forwarded.callers()
    const forwarder = forwarded.forwarder(stages)
    const batches = sampler(forwarded)
    for (let i = 0; i < MICROBATCHES; i++) forwardedLosses.push(await forwarder.train(batches.next()))
    assert.equal(forwarder.stats, { forwarded: MICROBATCHES, relayed: 0, evaluationsForwarded: 0, evaluationsRelayed: 0 })
    // Every stage computed every microbatch once each way, on its forward's weights.
    for (const s of forwarded.servers) {
      const stats = s.server.stats()
      assert.is(stats.backward, MICROBATCHES, `stage ${s.stage} backwards`)
      assert.is(stats.versionMisses, 0)
      assert.ok(stats.steps > 0, `stage ${s.stage} stepped`)
    }
    const [before, after] = [driverBytes(relayed) / MICROBATCHES, driverBytes(forwarded) / MICROBATCHES]
    console.log(`driver's link per microbatch: relayed ${before.toFixed(0)} bytes, forwarded ${after.toFixed(0)} bytes; losses ${forwardedLosses.map(l => l.toFixed(4)).join(' ')}`)
    assert.ok(after < before / 5, `forwarded ${after} bytes per microbatch vs relayed ${before}`)
  } finally {
    await forwarded.stop()
  }
  // The same arithmetic on the same encodings: equal losses, microbatch by microbatch, optimizer steps included.
  for (let i = 0; i < MICROBATCHES; i++) assert.ok(Math.abs(forwardedLosses[i] - relayedLosses[i]) < 1e-5, `microbatch ${i}: forwarded ${forwardedLosses[i]} vs relayed ${relayedLosses[i]}`)
  assert.ok(forwardedLosses[MICROBATCHES - 1] < forwardedLosses[0], 'it learned')
})

test('3 stages: a forwarded evaluation gives the relayed loss, changes no weights, and leaves the driver a sliver of the bytes', async () => {
  const s = await swarm(3)
  try {
    const stages = s.callers()
    const forwarder = s.forwarder(stages)
    // Trained weights first (2 steps), so the evaluations compare more than the initial ones.
    const batches = sampler(s)
    for (let i = 0; i < 4; i++) await forwarder.train(batches.next())
    await stepped(s, 2)
    const weights = s.servers.map(v => v.engine.weightsVersion)
    const backwards = s.servers.map(v => v.server.stats().backward)
    const evalSet = validation(s, MICROBATCHES)
    const relayed: number[] = []
    const forwarded: number[] = []
    const atStart = driverBytes(s)
    for (const batch of evalSet) relayed.push(await evaluateMicrobatch(stages, batch))
    const afterRelayed = driverBytes(s)
    for (const batch of evalSet) forwarded.push(await forwarder.evaluate(batch))
    const [before, after] = [(afterRelayed - atStart) / MICROBATCHES, (driverBytes(s) - afterRelayed) / MICROBATCHES]
    console.log(`driver's link per evaluation microbatch: relayed ${before.toFixed(0)} bytes, forwarded ${after.toFixed(0)} bytes`)
    assert.ok(after < before / 5, `forwarded ${after} bytes per evaluation microbatch vs relayed ${before}`)
    for (let i = 0; i < MICROBATCHES; i++) assert.ok(Math.abs(forwarded[i] - relayed[i]) < 1e-5, `microbatch ${i}: forwarded ${forwarded[i]} vs relayed ${relayed[i]}`)
    assert.equal(forwarder.stats, { forwarded: 4, relayed: 0, evaluationsForwarded: MICROBATCHES, evaluationsRelayed: 0 })
    // The driver's evaluations take the forwarded path when given it: the same mean, counted.
    const driver = new Driver({ stages, evaluate: async batch => await forwarder.evaluate(batch) }, {
      train: corpus!.train, validation: corpus!.validation, seqLen: s.init.model.seqLen, batchSize: s.init.optimizer.batchSize, seed: 1, evalBatches: MICROBATCHES
    })
    const mean = await driver.evaluate()
    assert.ok(Math.abs(mean - relayed.reduce((a, l) => a + l, 0) / MICROBATCHES) < 1e-5, `driver ${mean}`)
    assert.is(forwarder.stats.evaluationsForwarded, 2 * MICROBATCHES)
    // Forward only: every stage evaluated each microbatch, no backward ran, no weights moved.
    s.servers.forEach((v, i) => {
      const stats = v.server.stats()
      assert.is(stats.evaluations, 2 * MICROBATCHES, `stage ${v.stage} evaluations`)
      assert.is(stats.backward, backwards[i], `stage ${v.stage} backwards`)
      assert.equal(v.engine.weightsVersion, weights[i], `stage ${v.stage} weights`)
      assert.is(v.engine.accumulatedTokens, 0, `stage ${v.stage} gradients`)
    })
  } finally {
    await s.stop()
  }
})

test('a failed hop is retried on another replica of that stage; no microbatch is lost', async () => {
  const s = await swarm(2, { replicas: 2, compute: (engine, stage, replica) => stage === 1 && replica === 0 ? broken(engine) : engine })
  try {
    const stages = s.callers()
    const forwarder = s.forwarder(stages)
    const batches = sampler(s)
    // Several at once, so that routes name both stage-1 replicas while the router is still learning.
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let i = 0; i < MICROBATCHES / 4; i++) assert.ok(Number.isFinite(await forwarder.train(batches.next())))
    }))
    assert.equal(forwarder.stats, { forwarded: MICROBATCHES, relayed: 0, evaluationsForwarded: 0, evaluationsRelayed: 0 })
    const brokenServer = s.servers.find(v => v.stage === 1 && v.server.stats().errors > 0)
    assert.ok(brokenServer !== undefined, 'the broken replica was tried')
    const hopRetries = s.servers.filter(v => v.stage === 0).reduce((a, v) => a + v.next!.stats.retries.failed, 0)
    assert.ok(hopRetries >= 1, `stage-0 servers retried their hops (${hopRetries})`)
    const healthy = s.servers.find(v => v.stage === 1 && v !== brokenServer)!
    assert.is(healthy.server.stats().backward, MICROBATCHES, 'the healthy replica trained every microbatch')
  } finally {
    await s.stop()
  }
})

test('a failed evaluation hop is retried on another replica of that stage, with the same loss', async () => {
  const s = await swarm(2, { replicas: 2, compute: (engine, stage, replica) => stage === 1 && replica === 0 ? broken(engine) : engine })
  try {
    const stages = s.callers()
    const forwarder = s.forwarder(stages)
    const evalSet = validation(s, MICROBATCHES)
    const losses: number[] = []
    // Several at once, so that routes name both stage-1 replicas while the router is still learning.
    await Promise.all(Array.from({ length: 4 }, async (_, w) => {
      for (let i = w; i < MICROBATCHES; i += 4) losses[i] = await forwarder.evaluate(evalSet[i])
    }))
    assert.equal(forwarder.stats, { forwarded: 0, relayed: 0, evaluationsForwarded: MICROBATCHES, evaluationsRelayed: 0 })
    const brokenServer = s.servers.find(v => v.stage === 1 && v.server.stats().errors > 0)
    assert.ok(brokenServer !== undefined, 'the broken replica was tried')
    const hopRetries = s.servers.filter(v => v.stage === 0).reduce((a, v) => a + v.next!.stats.retries.failed, 0)
    assert.ok(hopRetries >= 1, `stage-0 servers retried their hops (${hopRetries})`)
    const healthy = s.servers.find(v => v.stage === 1 && v !== brokenServer)!
    assert.is(healthy.server.stats().evaluations, MICROBATCHES, 'the healthy replica evaluated every microbatch')
    // Replicas start from the same seed: the relayed path's losses, whichever replica served.
    for (let i = 0; i < MICROBATCHES; i++) {
      const relayed = await evaluateMicrobatch(stages, evalSet[i])
      assert.ok(Math.abs(losses[i] - relayed) < 1e-5, `microbatch ${i}: forwarded ${losses[i]} vs relayed ${relayed}`)
    }
    for (const v of s.servers) assert.is(v.server.stats().backward, 0, `stage ${v.stage} ran no backward`)
  } finally {
    await s.stop()
  }
})

test('every link\'s transfer time reaches the driver\'s router: its own call\'s, and each hop\'s as the server that made it measured it', async () => {
  const latencyMs = 30
  const s = await swarm(3, { latencyMs })
  try {
    const stages = s.callers()
    const forwarder = s.forwarder(stages)
    const batches = sampler(s)
    for (let i = 0; i < 6; i++) assert.ok(Number.isFinite(await forwarder.train(batches.next())))
    assert.equal(forwarder.stats, { forwarded: 6, relayed: 0, evaluationsForwarded: 0, evaluationsRelayed: 0 })
    const estimates = s.router.transferEstimates()
    console.log(`transfer per call (${2 * latencyMs} ms added on every link): ${s.servers.map(v => `stage ${v.stage} ${estimates.get(v.host.peerId.toString())?.toFixed(1)} ms`).join(', ')}`)
    for (const v of s.servers) {
      // Each call waits the added latency both ways; the driver's own link would show three times
      // that if the hops' transfer were not reported and taken off its wall time.
      const ms = estimates.get(v.host.peerId.toString())
      assert.ok(ms !== undefined && ms >= 2 * latencyMs - 5 && ms < 5 * latencyMs, `stage ${v.stage}: ${ms} ms`)
    }
  } finally {
    await s.stop()
  }
})

test('a next stage no server can reach: each microbatch is relayed by the driver, and counted', async () => {
  const s = await swarm(2, { unreachable: true })
  try {
    const stages = s.callers()
    const forwarder = s.forwarder(stages)
    const batches = sampler(s)
    for (let i = 0; i < 4; i++) assert.ok(Number.isFinite(await forwarder.train(batches.next())))
    const first = s.servers.find(v => v.stage === 0)!
    assert.is(first.server.stats().unroutable, 4)
    assert.ok(first.next!.stats.retries.dial >= 1, 'the hops failed to dial')
    // No backward ran before the fallback: each stage trained each microbatch once.
    for (const v of s.servers) assert.is(v.server.stats().backward, 4, `stage ${v.stage}`)
    // Evaluations fall back the same way, one at a time.
    for (const batch of validation(s, 4)) assert.ok(Number.isFinite(await forwarder.evaluate(batch)))
    assert.equal(forwarder.stats, { forwarded: 0, relayed: 4, evaluationsForwarded: 0, evaluationsRelayed: 4 })
    assert.is(first.server.stats().unroutable, 8)
    for (const v of s.servers) assert.is(v.server.stats().backward, 4, `stage ${v.stage}`)
  } finally {
    await s.stop()
  }
})

test.run()
