// The convergence benchmark's quick version: a small model split in 2 stages, trained through
// stage servers on loopback libp2p at the driver's default (adaptive) depth, must reach local
// training's validation loss at equal tokens. With one optimizer step per microbatch and no weight
// stash at depth 3 (the schedule before weight versions), the same run ended 22% above local
// (3.109 against 2.540).
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { runLocal, runPipeline, type Setup } from '../bench/convergence.js'
import { loadBrown } from '../node/data/corpus.js'
import { defaultManifest } from '../node/manifest/manifest.js'

const STEPS = 100

async function setup (schedule: Partial<Setup['optimizer']> = {}): Promise<Setup> {
  const { optimizer } = defaultManifest()
  return {
    model: { vocabSize: 256, dModel: 64, nLayers: 2, nHeads: 4, seqLen: 32 },
    optimizer: { ...optimizer, ...schedule, totalSteps: STEPS },
    nStages: 2,
    corpus: await loadBrown(),
    steps: STEPS,
    evalSteps: STEPS,
    threads: 1
  }
}

test('at the default depth the pipeline learns like local training, at equal tokens', async () => {
  const s = await setup()
  const local = await runLocal(s)
  const swarm = await runPipeline(s, { name: 'pipeline', latencyMs: 0, share: 1 })
  console.log(`pipeline ${swarm.val_loss.toFixed(4)} vs local ${local.val_loss.toFixed(4)} at ${swarm.tokens} tokens (ratio ${(swarm.val_loss / local.val_loss).toFixed(4)}, depth ${swarm.depth})`)
  assert.is(swarm.tokens, local.tokens)
  assert.ok(local.val_loss < 3.0, `local training learned (${local.val_loss})`)
  assert.ok(swarm.val_loss < 1.05 * local.val_loss, `pipeline ${swarm.val_loss.toFixed(4)} vs local ${local.val_loss.toFixed(4)} (depth ${swarm.depth})`)
  assert.ok(swarm.depth! >= 2, `microbatches overlapped (depth ${swarm.depth})`)
  assert.is(swarm.version_misses, 0, "every backward recomputed with its forward's weights")
})

test('far stages: depth grows to hide the latency, within the staleness bound, and learning holds', async () => {
  // The same tokens per step in 16 microbatches, so that a quarter of them (the depth cap) is 4.
  const s = await setup({ batchSize: 1, microbatches: 16 })
  const local = await runLocal(s)
  const swarm = await runPipeline(s, { name: 'pipeline-latency', latencyMs: 20, share: 1 })
  console.log(`pipeline-latency ${swarm.val_loss.toFixed(4)} vs local ${local.val_loss.toFixed(4)} at ${swarm.tokens} tokens (ratio ${(swarm.val_loss / local.val_loss).toFixed(4)}, depth ${swarm.depth})`)
  assert.ok(swarm.depth! > s.nStages + 1, `depth grew past its start (${swarm.depth})`)
  assert.ok(swarm.val_loss < 1.05 * local.val_loss, `pipeline ${swarm.val_loss.toFixed(4)} vs local ${local.val_loss.toFixed(4)} (depth ${swarm.depth})`)
  assert.is(swarm.version_misses, 0)
})

test.run()
