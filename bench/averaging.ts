// npm run bench -- averaging [--json]: three daemons (in this process) on 127.0.0.1 hold the
// middle stage of the default model; each moves its weights as if it had trained, then they run
// one compressed round and, in a second swarm with the same settings but dense, one dense round.
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

async function oneRound (manifest: RunManifest): Promise<RoundReport[]> {
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
      await engine.updateWeights(w => { for (let j = 0; j < w.length; j++) w[j] += 1e-3 * rng.normal() })
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
  const sparse = await oneRound(base)
  const dense = await oneRound({ ...base, averaging: { ...base.averaging, mode: 'dense' } })
  const mean = (rs: RoundReport[], f: (r: RoundReport) => number): number => rs.reduce((s, r) => s + f(r), 0) / rs.length
  const bytes = mean(sparse, r => r.bytesSent)
  const denseBytes = mean(dense, r => r.bytesSent)
  const roundMs = Math.max(...sparse.map(r => r.ms))
  const denseMs = Math.max(...dense.map(r => r.ms))
  const params = paramCount(stageParams(base.model, stageLayout(base.model, STAGE, base.nStages)))
  if (values.json === true) {
    console.log(JSON.stringify({ bench: 'averaging', peers: PEERS, bytes_per_peer: Math.round(bytes), dense_bytes_per_peer: Math.round(denseBytes), reduction: Number((denseBytes / bytes).toFixed(1)), round_ms: roundMs, dense_round_ms: denseMs }))
    return
  }
  console.log(`one averaging round, ${PEERS} peers on 127.0.0.1, stage ${STAGE} of the default model (${(params / 1e6).toFixed(2)}M params)`)
  console.log(`${'round'.padEnd(12)}${'bytes/peer'.padStart(14)}${'round ms'.padStart(10)}`)
  console.log(`${'compressed'.padEnd(12)}${Math.round(bytes).toString().padStart(14)}${roundMs.toString().padStart(10)}`)
  console.log(`${'dense'.padEnd(12)}${Math.round(denseBytes).toString().padStart(14)}${denseMs.toString().padStart(10)}`)
  console.log(`reduction ${(denseBytes / bytes).toFixed(1)}x (target >= 50x)`)
}
