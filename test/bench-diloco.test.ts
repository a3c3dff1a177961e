// The averaging modes' in-process reference (bench/lib/diloco.ts): replicas that average every
// step learn, sparse rounds follow the manifest's schedule (every step, denser, then every
// innerSteps), and a batch that does not split over the replicas is refused.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { trainDiloco, type DilocoInit } from '../bench/lib/diloco.js'
import { loadBrown } from '../node/data/corpus.js'
import { defaultAveraging } from '../node/manifest/manifest.js'
import { stageParamLayout } from '../node/model/stages.js'
import { kForDensity, maxPayloadSize } from '../native/index.js'
import { defaultOptimizerConfig } from '../node/runtime/optimizer-config.js'

const base = async (): Promise<DilocoInit> => ({
  model: { vocabSize: 256, dModel: 32, nLayers: 2, nHeads: 2, seqLen: 16 },
  optimizer: { ...defaultOptimizerConfig, batchSize: 2, microbatches: 4, warmupSteps: 5, totalSteps: 30 },
  nStages: 2,
  corpus: await loadBrown(),
  replicas: 2,
  averaging: { ...defaultAveraging, mode: 'dense', innerSteps: 1, everyStepUntil: 0 },
  seed: 1,
  evalEvery: 10,
  evalBatches: 4,
  threads: 1
})

test('two replicas that average every step learn; the curve counts every replica\'s tokens', async () => {
  const { curve, rounds } = await trainDiloco(await base())
  assert.equal(curve.map(([tokens]) => tokens), [0, 1280, 2560, 3840])
  assert.is(rounds, 30)
  assert.ok(curve.every(([, loss]) => Number.isFinite(loss)))
  assert.ok(curve[3][1] < curve[0][1] - 1, `validation ${curve.map(([, l]) => l.toFixed(3)).join(' ')}`)
})

test('sparse rounds: every step at everyStepTopkDensity until everyStepUntil, then every innerSteps at topkDensity; replicas learn', async () => {
  const init = await base()
  const averaging = { ...defaultAveraging, mode: 'sparse' as const, chunkSize: 256, innerSteps: 10, everyStepUntil: 10, everyStepTopkDensity: 1 / 8, topkDensity: 1 / 64 }
  const { curve, rounds, bytesPerReplica } = await trainDiloco({ ...init, averaging })
  // Rounds after steps 1..9, then 19 and 29.
  assert.is(rounds, 11)
  const bound = (density: number): number => [0, 1].reduce((a, s) => a + maxPayloadSize(stageParamLayout(init.model, s, 2).size, 256, kForDensity(density, 256), 2), 0)
  const most = 9 * bound(1 / 8) + 2 * bound(1 / 64)
  assert.ok(bytesPerReplica <= most && bytesPerReplica > 0.9 * most, `${bytesPerReplica} bytes per replica, at most ${most}`)
  assert.ok(curve[3][1] < curve[0][1] - 1, `validation ${curve.map(([, l]) => l.toFixed(3)).join(' ')}`)
})

test('a batch that does not split over the replicas is refused', async () => {
  const err = await trainDiloco({ ...await base(), replicas: 3 }).then(() => undefined, (e: unknown) => e)
  assert.instance(err, RangeError)
  assert.match((err as Error).message, /does not split over 3 replicas/)
})

test.run()
