// npm run bench -- pipeline [--json] [--microbatches N] [--wire f16|int8|f32]: the default model
// (2 stages) trained through 2 x 2 stage servers on loopback libp2p (TCP, noise, yamux) against
// the same stage engines chained in-process as `train --local` chains them, in the same run.
// Per microbatch it splits the swarm's time into server compute and everything else the calls
// cost (encoding, decoding, transport), measured with one microbatch in flight so that queueing
// does not blur it; throughput is measured with the driver's default microbatches in flight, each
// microbatch relayed through the driver (FORWARD/BACKWARD calls) and then forwarded server to
// server (one TRAIN call), with the bytes each puts on the driver's link; and so are validation
// microbatches (FORWARD calls, then one EVALUATE call).
import { availableParallelism } from 'node:os'
import { BatchSampler, evenBatches } from '../node/data/sampler.js'
import { loadBrown } from '../node/data/corpus.js'
import { defaultManifest } from '../node/manifest/manifest.js'
import { stageLayout } from '../node/model/index.js'
import { wireDTypes } from '../node/pipeline/activations.js'
import type { SwarmStage } from '../node/pipeline/caller.js'
import { wireOption } from '../node/cli/pipeline-options.js'
import { evaluateMicrobatch, trainMicrobatch, type Microbatch } from '../node/pipeline/chain.js'
import { StageEngine } from '../node/runtime/stage-engine.js'
import { intOption, parse } from '../node/cli/args.js'
import { LoopbackSwarm } from './lib/loopback-swarm.js'

const runId = 'benchpipeline'
const nStages = 2

/** Runs `count` microbatches with `inFlight` at a time; returns wall seconds. */
async function drive (train: (batch: Microbatch) => Promise<unknown>, sampler: BatchSampler, count: number, inFlight: number): Promise<number> {
  let issued = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (issued < count) {
      issued++
      await train(sampler.next())
    }
  }))
  return (performance.now() - started) / 1000
}

export async function run (args: string[]): Promise<void> {
  const { values } = parse(args, { json: { type: 'boolean' }, microbatches: { type: 'string' }, wire: { type: 'string' } })
  const count = intOption('microbatches', values.microbatches, 12, 2)
  const wire = wireOption(values.wire)
  const { model, optimizer } = defaultManifest()
  const tokensPerMicrobatch = optimizer.batchSize * model.seqLen
  const corpus = await loadBrown()
  const cores = availableParallelism()

  // Local: one engine per stage, all cores each, chained in-process (what `train --local` runs).
  const local = await Promise.all(Array.from({ length: nStages }, (_, s) => StageEngine.create({ model, layout: stageLayout(model, s, nStages), optimizer, threads: cores })))
  const chained = async (batch: Microbatch): Promise<number> => await trainMicrobatch(local, batch)
  await drive(chained, new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 1), 1, 1) // warm-up
  const localSeconds = await drive(chained, new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 2), count, 1)
  await Promise.all(local.map(async e => await e.close()))

  // Swarm: two replicas per stage behind stage servers on their own hosts, one driver host.
  const swarm = await LoopbackSwarm.create({ runId, model, optimizer, nStages, replicas: 2, threads: Math.max(1, cores / 2), wireDType: wireDTypes[wire] })
  let computeMs: number, overheadMs: number, relayedSeconds: number, forwardedSeconds: number, relayedBytes: number, forwardedBytes: number
  let fellBack: number, relayedEvalBytes: number, forwardedEvalBytes: number
  try {
    const relay = (stages: SwarmStage[]) => async (batch: Microbatch) => await trainMicrobatch(stages, batch)
    const forwarder = swarm.forwarder(swarm.callers())
    const forward = async (batch: Microbatch): Promise<number> => await forwarder.train(batch)
    const traffic = swarm.driver.client.traffic
    const bytes = (): number => traffic.sentBytes + traffic.receivedBytes
    await drive(relay(swarm.callers()), new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 3), 2 * nStages, 2) // warm-up: every replica measured once
    await drive(forward, new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 3), 2 * nStages, 2)
    const serial = swarm.callers()
    await drive(relay(serial), new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 4), count, 1)
    computeMs = serial.reduce((a, s) => a + s.stats.computeMs, 0) / count
    overheadMs = serial.reduce((a, s) => a + s.stats.overheadMs, 0) / count
    let before = bytes()
    relayedSeconds = await drive(relay(swarm.callers()), new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 5), count, nStages + 1)
    relayedBytes = (bytes() - before) / count
    before = bytes()
    forwardedSeconds = await drive(forward, new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 5), count, nStages + 1)
    forwardedBytes = (bytes() - before) / count
    const validation = evenBatches(corpus.validation, model.seqLen, optimizer.batchSize, count)
    const relayedEval = swarm.callers()
    before = bytes()
    for (const batch of validation) await evaluateMicrobatch(relayedEval, batch)
    relayedEvalBytes = (bytes() - before) / count
    before = bytes()
    for (const batch of validation) await forwarder.evaluate(batch)
    forwardedEvalBytes = (bytes() - before) / count
    fellBack = forwarder.stats.relayed + forwarder.stats.evaluationsRelayed
  } finally {
    await swarm.stop()
  }

  const result = {
    bench: 'pipeline',
    model: `d${model.dModel} L${model.nLayers} T${model.seqLen} B${optimizer.batchSize}`,
    wire,
    microbatches: count,
    swarm_tokens_per_s: count * tokensPerMicrobatch / relayedSeconds,
    forwarded_tokens_per_s: count * tokensPerMicrobatch / forwardedSeconds,
    driver_link_bytes_per_microbatch: relayedBytes,
    forwarded_driver_link_bytes_per_microbatch: forwardedBytes,
    eval_driver_link_bytes_per_microbatch: relayedEvalBytes,
    forwarded_eval_driver_link_bytes_per_microbatch: forwardedEvalBytes,
    /** Microbatches (and validation microbatches) the forwarded runs relayed after all (a server could not reach the next stage): 0 on loopback. */
    forwarded_but_relayed: fellBack,
    local_tokens_per_s: count * tokensPerMicrobatch / localSeconds,
    compute_ms_per_microbatch: computeMs,
    transport_ms_per_microbatch: overheadMs,
    overhead_fraction: overheadMs / (computeMs + overheadMs)
  }
  if (values.json === true) {
    console.log(JSON.stringify(result))
    return
  }
  console.log(`pipeline: ${result.model}, ${nStages} stages x 2 replicas on loopback, ${wire} activations, ${count} microbatches of ${tokensPerMicrobatch} tokens`)
  console.log('                               swarm relayed  swarm forwarded        local')
  console.log(`tokens/s                    ${result.swarm_tokens_per_s.toFixed(0).padStart(16)} ${result.forwarded_tokens_per_s.toFixed(0).padStart(16)} ${result.local_tokens_per_s.toFixed(0).padStart(12)}`)
  console.log(`driver's link, MB/microbatch ${(relayedBytes / 1e6).toFixed(3).padStart(15)} ${(forwardedBytes / 1e6).toFixed(3).padStart(16)} (${(relayedBytes / forwardedBytes).toFixed(0)}x fewer bytes forwarded)`)
  console.log(`... evaluating, MB/microbatch ${(relayedEvalBytes / 1e6).toFixed(3).padStart(15)} ${(forwardedEvalBytes / 1e6).toFixed(3).padStart(16)} (${(relayedEvalBytes / forwardedEvalBytes).toFixed(0)}x fewer bytes forwarded)`)
  console.log(`per microbatch (1 in flight): compute ${computeMs.toFixed(1)} ms, serialization + transport ${overheadMs.toFixed(1)} ms (${(100 * result.overhead_fraction).toFixed(1)}% of the total; target < 10%)`)
}
