// The averaging modes' in-process reference (bench/lib/diloco.ts): replicas that average every
// step learn, and a batch that does not split over the replicas is refused.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { trainDiloco, type DilocoInit } from '../bench/lib/diloco.js'
import { loadBrown } from '../node/data/corpus.js'
import { defaultOptimizerConfig } from '../node/runtime/optimizer-config.js'

const base = async (): Promise<DilocoInit> => ({
  model: { vocabSize: 256, dModel: 32, nLayers: 2, nHeads: 2, seqLen: 16 },
  optimizer: { ...defaultOptimizerConfig, batchSize: 2, microbatches: 4, warmupSteps: 5, totalSteps: 30 },
  nStages: 2,
  corpus: await loadBrown(),
  replicas: 2,
  innerSteps: 1,
  seed: 1,
  evalEvery: 10,
  evalBatches: 4,
  threads: 1
})

test('two replicas that average every step learn; the curve counts every replica\'s tokens', async () => {
  const curve = await trainDiloco(await base())
  assert.equal(curve.map(([tokens]) => tokens), [0, 1280, 2560, 3840])
  assert.ok(curve.every(([, loss]) => Number.isFinite(loss)))
  assert.ok(curve[3][1] < curve[0][1] - 1, `validation ${curve.map(([, l]) => l.toFixed(3)).join(' ')}`)
})

test('a batch that does not split over the replicas is refused', async () => {
  const err = await trainDiloco({ ...await base(), replicas: 3 }).then(() => undefined, (e: unknown) => e)
  assert.instance(err, RangeError)
  assert.match((err as Error).message, /does not split over 3 replicas/)
})

test.run()
