// npm run bench -- pipeline [--json] [--microbatches N] [--wire f16|int8|f32]: the default model
// (2 stages) trained through 2 x 2 stage servers on loopback libp2p (TCP, noise, yamux) against
// the same stage engines chained in-process as `train --local` chains them, in the same run.
// Per microbatch it splits the swarm's time into server compute and everything else the calls
// cost (encoding, decoding, transport), measured with one microbatch in flight so that queueing
// does not blur it; throughput is measured with the driver's default microbatches in flight.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { availableParallelism } from 'node:os'
import { BatchSampler } from '../node/data/sampler.js'
import { loadBrown } from '../node/data/corpus.js'
import { defaultManifest } from '../node/manifest/manifest.js'
import { stageLayout } from '../node/model/index.js'
import { createHost, type Host } from '../node/p2p/host.js'
import { wireDTypes } from '../node/pipeline/activations.js'
import { SwarmStage } from '../node/pipeline/caller.js'
import { wireOption } from '../node/cli/pipeline-options.js'
import { trainMicrobatch, type StageCaller } from '../node/pipeline/chain.js'
import { StageClient } from '../node/pipeline/client.js'
import { Router } from '../node/pipeline/router.js'
import { stageProtocol } from '../protocols/ids.js'
import { StageServer, stageMessageLimit } from '../node/pipeline/server.js'
import { StageEngine } from '../node/runtime/stage-engine.js'
import { intOption, parse } from '../node/cli/args.js'

const runId = 'benchpipeline'
const nStages = 2

async function host (): Promise<Host> {
  return await createHost({ privateKey: await generateKeyPair('Ed25519'), runId, listen: ['/ip4/127.0.0.1/tcp/0'] })
}

/** Runs `count` microbatches with `inFlight` at a time; returns wall seconds. */
async function drive (stages: readonly StageCaller[], sampler: BatchSampler, count: number, inFlight: number): Promise<number> {
  let issued = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (issued < count) {
      issued++
      await trainMicrobatch(stages, sampler.next())
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
  await drive(local, new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 1), 1, 1) // warm-up
  const localSeconds = await drive(local, new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 2), count, 1)
  await Promise.all(local.map(async e => await e.close()))

  // Swarm: two replicas per stage behind stage servers on their own hosts, one driver host.
  const servers: Array<{ host: Host, engine: StageEngine, server: StageServer }> = []
  for (let i = 0; i < 2 * nStages; i++) {
    const stage = i % nStages
    const h = await host()
    const engine = await StageEngine.create({ model, layout: stageLayout(model, stage, nStages), optimizer, threads: Math.max(1, cores / 2) })
    const server = new StageServer({ registrar: h, engine, logger: h.logger }, {
      runId, stage, nStages, dModel: model.dModel, seqLen: model.seqLen, vocabSize: model.vocabSize,
      maxTokens: tokensPerMicrobatch, stepTokens: tokensPerMicrobatch * optimizer.microbatches
    })
    await server.start()
    servers.push({ host: h, engine, server })
  }
  const driverHost = await host()
  for (const s of servers) await driverHost.dial(multiaddr(s.host.getMultiaddrs()[0].toString()))
  const client = new StageClient({ dialer: driverHost, logger: driverHost.logger }, { protocol: stageProtocol(runId), maxMessageBytes: stageMessageLimit(tokensPerMicrobatch, model.dModel) })
  const router = new Router()
  const replicas = { replicas: (stage: number) => servers.filter((_, i) => i % nStages === stage).map(s => s.host.peerId.toString()) }
  const callers = (): SwarmStage[] => Array.from({ length: nStages }, (_, stage) => new SwarmStage({ client, router, replicas, logger: driverHost.logger }, { stage, nStages, dModel: model.dModel, seqLen: model.seqLen, vocabSize: model.vocabSize, maxTokens: tokensPerMicrobatch, wireDType: wireDTypes[wire] }))

  await drive(callers(), new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 3), 2 * nStages, 2) // warm-up: every replica measured once
  const serial = callers()
  await drive(serial, new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 4), count, 1)
  const computeMs = serial.reduce((a, s) => a + s.stats.computeMs, 0) / count
  const overheadMs = serial.reduce((a, s) => a + s.stats.overheadMs, 0) / count
  const swarmSeconds = await drive(callers(), new BatchSampler(corpus.train, model.seqLen, optimizer.batchSize, 5), count, nStages + 1)

  await client.stop()
  await driverHost.stop()
  for (const s of servers) {
    await s.server.stop()
    await s.engine.close()
    await s.host.stop()
  }

  const result = {
    bench: 'pipeline',
    model: `d${model.dModel} L${model.nLayers} T${model.seqLen} B${optimizer.batchSize}`,
    wire,
    microbatches: count,
    swarm_tokens_per_s: count * tokensPerMicrobatch / swarmSeconds,
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
  console.log('                                   swarm        local')
  console.log(`tokens/s                    ${result.swarm_tokens_per_s.toFixed(0).padStart(12)} ${result.local_tokens_per_s.toFixed(0).padStart(12)}`)
  console.log(`per microbatch (1 in flight): compute ${computeMs.toFixed(1)} ms, serialization + transport ${overheadMs.toFixed(1)} ms (${(100 * result.overhead_fraction).toFixed(1)}% of the total; target < 10%)`)
}
