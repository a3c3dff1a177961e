// The stage host owns the one engine of the stage a node serves: serves and unserves run one at a
// time, even when stage events arrive while the first serve is still loading; it checkpoints
// the named state groups and resumes them.
import { test } from 'uvu'
import { defaultLogger } from '@libp2p/logger'
import * as assert from 'uvu/assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { StageAssigner } from '../node/assignment/assigner.js'
import { StageHost, type ServedStage } from '../node/daemon/stage-host.js'
import { adoptSharedState } from '../node/averaging/state-sync.js'
import { defaultManifest } from '../node/manifest/manifest.js'
import type { StageRegistry } from '../node/registry/registry.js'

const manifest = { ...defaultManifest(), model: { vocabSize: 64, dModel: 16, nLayers: 2, nHeads: 2, seqLen: 8 }, nStages: 2 }
const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-stage-host-'))

function fakes (stage: number): { assigner: StageAssigner & { stage: number }, registry: StageRegistry, ready: boolean[] } {
  const assigner = Object.assign(new EventTarget(), { stage }) as unknown as StageAssigner & { stage: number }
  const ready: boolean[] = []
  const registry = { update: async (info: { ready?: boolean }) => { if (info.ready !== undefined) ready.push(info.ready) } } as unknown as StageRegistry
  return { assigner, registry, ready }
}

test('serves and unserves one at a time: stage events during the first serve never make a second engine', async () => {
  const { assigner, registry, ready } = fakes(0)
  const host = new StageHost({ assigner, registry, manifest, runId: 'run1', dir, logger: defaultLogger() }, { threads: 1, checkpointEveryMs: 60_000 })
  let live = 0
  let most = 0
  const served: number[] = []
  host.use({
    attach: async (s: ServedStage) => {
      live++
      most = Math.max(most, live)
      served.push(s.stage)
      await new Promise(resolve => setTimeout(resolve, 20)) // a slow attach widens any overlap
    },
    detach: async () => { live-- }
  })
  const starting = host.start()
  // Events while the first engine is still being created.
  for (const stage of [1, 0, 1]) assigner.dispatchEvent(new CustomEvent('stage', { detail: { stage } }))
  await starting
  await host.serve(1)
  assert.is(most, 1, 'two engines were attached at once')
  assert.equal(served, [0, 1, 0, 1])
  assert.is(host.served?.stage, 1)
  assert.is(ready.at(-1), true)
  await host.stop()
  assert.is(live, 0)
  assert.is(host.served, undefined)
  assert.is(ready.at(-1), false)
})

test('checkpoints the named state groups and resumes them, round included', async () => {
  const { assigner, registry } = fakes(1)
  const host = new StageHost({ assigner, registry, manifest, runId: 'run2', dir, logger: defaultLogger() }, { threads: 1, checkpointEveryMs: 60_000 })
  await host.start()
  const served = host.served!
  served.outer.round = 3
  served.outer.theta.fill(0.25)
  served.outer.error.fill(-1)
  await served.engine.updateWeights(w => w.fill(0.5))
  await host.stop()

  const again = new StageHost({ assigner, registry, manifest, runId: 'run2', dir, logger: defaultLogger() }, { threads: 1, checkpointEveryMs: 60_000 })
  await again.start()
  try {
    const resumed = again.served!
    assert.is(resumed.outer.round, 3)
    assert.ok(resumed.outer.theta.every(x => x === 0.25))
    assert.ok(resumed.outer.error.every(x => x === -1))
    assert.ok(resumed.engine.weights.every(x => x === 0.5))
    assert.is(again.status().round, 3)
  } finally {
    await again.stop()
  }
  // Another run's node directory content is not resumed.
  const other = new StageHost({ assigner, registry, manifest, runId: 'run3', dir, logger: defaultLogger() }, { threads: 1, checkpointEveryMs: 60_000 })
  await other.start()
  assert.is(other.served?.outer.round, 0)
  await other.stop()
})

test('a replica that adopts the stage\'s shared state keeps its own progress, moments and residual', async () => {
  const { assigner, registry } = fakes(0)
  const host = new StageHost({ assigner, registry, manifest, runId: 'run4', dir, logger: defaultLogger() }, { threads: 1, checkpointEveryMs: 60_000 })
  await host.start()
  try {
    const served = host.served!
    const n = served.outer.theta.length
    served.outer.theta.fill(1)
    served.outer.error.fill(0.5)
    // Trained since its last round: weights = theta - error + progress.
    const weights = Float32Array.from({ length: n }, (_, i) => 1 - 0.5 + i / n)
    await served.engine.loadState(weights, { step: 5, m: new Float32Array(n).fill(0.2), v: new Float32Array(n).fill(0.3) })
    await adoptSharedState(served, { round: 7, tokens: 81920, step: 40, theta: new Float32Array(n).fill(3), momentum: new Float32Array(n).fill(0.1) })
    const after = await served.engine.snapshot()
    for (let i = 0; i < n; i++) assert.ok(Math.abs(after.weights[i] - (3 - 0.5 + i / n)) < 1e-6, `weight ${i}: ${after.weights[i]}`)
    assert.ok(after.m.every(x => Math.abs(x - 0.2) < 1e-7) && after.v.every(x => Math.abs(x - 0.3) < 1e-7), 'inner moments kept')
    assert.is(after.step, 40)
    assert.is(served.outer.round, 7)
    assert.is(served.outer.tokens, 81920)
    assert.ok(served.outer.theta.every(x => x === 3) && served.outer.momentum.every(x => Math.abs(x - 0.1) < 1e-7))
    assert.ok(served.outer.error.every(x => x === 0.5))
  } finally {
    await host.stop()
  }
})

test.after(() => { rmSync(dir, { recursive: true, force: true }) })

test.run()
