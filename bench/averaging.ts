// npm run bench -- averaging [--json]: three daemons (in this process) on 127.0.0.1 hold the
// middle stage of the default model; each moves its weights as if it had trained, then they run
// one compressed round and, in other swarms with the same settings, one compressed round of the
// early every-step phase (denser top-k: everyStepTopkDensity) and one dense round.
// Reported per peer: every byte it sent on the averaging protocol (contributions, relays, hashes,
// protobuf fields and length prefixes; not noise/yamux framing), and the round's wall time.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from '../node/cli/args.js'
import { averagingService, type AveragingService, type RoundReport } from '../node/averaging/service.js'
import { SwarmNode } from '../node/daemon/node.js'
import { defaultManifest, type RunManifest } from '../node/manifest/manifest.js'
import { paramCount, stageLayout, stageParams } from '../node/model/index.js'
import { Rng } from '../node/util/random.js'

const PEERS = 3
const STAGE = 1

/** One round among PEERS replicas whose engines stand at optimizer step `step` (which picks the round's density). */
async function oneRound (manifest: RunManifest, step: number): Promise<RoundReport[]> {
  const root = mkdtempSync(join(tmpdir(), 'swarmtrain-bench-averaging-'))
  const nodes: SwarmNode[] = []
  try {
    for (let i = 0; i < PEERS; i++) {
      const node = new SwarmNode({
        dir: mkdtempSync(join(root, `n${i}-`)),
        manifest,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: i === 0 ? undefined : [nodes[0].addresses[0]],
        stage: STAGE,
        throughput: 100,
        timing: { refreshMs: 300, recordTtlMs: 5000 },
        stageHost: { threads: 1, checkpointEveryMs: 3_600_000 },
        services: { averaging: averagingService() }
      })
      await node.start()
      nodes.push(node)
    }
    // Wait until every node sees the other two as ready replicas of the stage.
    const deadline = Date.now() + 30_000
    while (!nodes.every(n => n.components.registry.view.stages[STAGE].peers.filter(p => p.ready).length === PEERS)) {
      if (Date.now() > deadline) throw new Error('the replicas did not find each other within 30 s')
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    // Local progress: each replica's weights move by a different small random step, as if it
    // had trained a step's tokens (a member that trained nothing sends no values).
    const { optimizer, model } = manifest
    await Promise.all(nodes.map(async (node, i) => {
      const rng = new Rng(`bench-averaging-${i}`)
      const engine = node.components.stageHost!.served!.engine
      await engine.updateWeights(w => { for (let j = 0; j < w.length; j++) w[j] += 1e-3 * rng.normal() }, { schedule: () => step })
      engine.steppedTokens += optimizer.batchSize * optimizer.microbatches * model.seqLen
    }))
    const reports = await Promise.all(nodes.map(async node => await node.service<AveragingService>('averaging')!.roundNow()))
    if (reports.some(r => r === undefined || r.members !== PEERS)) throw new Error(`a round did not gather all ${PEERS} peers: ${JSON.stringify(reports)}`)
    return reports as RoundReport[]
  } finally {
    for (const node of nodes.reverse()) await node.stop()
    rmSync(root, { recursive: true, force: true })
  }
}

export async function run (argv: string[]): Promise<void> {
  const { values } = parse(argv, { json: { type: 'boolean' } })
  const base = defaultManifest()
  const { averaging } = base
  // Past the every-step phase (the manifest's top-k), and in it.
  const sparse = await oneRound(base, averaging.everyStepUntil)
  const early = await oneRound(base, 0)
  const dense = await oneRound({ ...base, averaging: { ...averaging, mode: 'dense' } }, averaging.everyStepUntil)
  const mean = (rs: RoundReport[], f: (r: RoundReport) => number): number => rs.reduce((s, r) => s + f(r), 0) / rs.length
  const bytes = mean(sparse, r => r.bytesSent)
  const earlyBytes = mean(early, r => r.bytesSent)
  const denseBytes = mean(dense, r => r.bytesSent)
  const ms = (rs: RoundReport[]): number => Math.max(...rs.map(r => r.ms))
  const params = paramCount(stageParams(base.model, stageLayout(base.model, STAGE, base.nStages)))
  if (values.json === true) {
    console.log(JSON.stringify({
      bench: 'averaging',
      peers: PEERS,
      bytes_per_peer: Math.round(bytes),
      dense_bytes_per_peer: Math.round(denseBytes),
      reduction: Number((denseBytes / bytes).toFixed(1)),
      round_ms: ms(sparse),
      dense_round_ms: ms(dense),
      every_step_bytes_per_peer: Math.round(earlyBytes),
      every_step_reduction: Number((denseBytes / earlyBytes).toFixed(1)),
      every_step_round_ms: ms(early)
    }))
    return
  }
  const density = (d: number): string => `${Math.round(d * averaging.chunkSize)}/${averaging.chunkSize}`
  console.log(`one averaging round, ${PEERS} peers on 127.0.0.1, stage ${STAGE} of the default model (${(params / 1e6).toFixed(2)}M params)`)
  console.log(`${'round'.padEnd(34)}${'bytes/peer'.padStart(14)}${'round ms'.padStart(10)}${'reduction'.padStart(11)}`)
  const row = (name: string, b: number, rs: RoundReport[]): void => console.log(`${name.padEnd(34)}${Math.round(b).toString().padStart(14)}${ms(rs).toString().padStart(10)}${`${(denseBytes / b).toFixed(1)}x`.padStart(11)}`)
  row(`compressed, top-k ${density(averaging.topkDensity)}`, bytes, sparse)
  row(`every-step phase, top-k ${density(averaging.everyStepTopkDensity)}`, earlyBytes, early)
  row('dense', denseBytes, dense)
  console.log('target: reduction >= 50x')
}
