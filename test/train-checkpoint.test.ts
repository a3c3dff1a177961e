import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readdirSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encode } from '../node/data/tokenizer.js'
import { BatchSampler } from '../node/data/sampler.js'
import { stageLayout, type ModelConfig } from '../node/model/index.js'
import { trainMicrobatch } from '../node/pipeline/chain.js'
import { CheckpointError, readCheckpoint, readStageCheckpoint, restoreEngines, saveCheckpoint, saveStageCheckpoint, stageCheckpointPath, stageGroups } from '../node/runtime/checkpoint.js'
import { trainLocal } from '../node/training/local.js'
import { defaultOptimizerConfig } from '../node/runtime/optimizer-config.js'
import { StageEngine } from '../node/runtime/stage-engine.js'

const model: ModelConfig = { vocabSize: 256, dModel: 32, nLayers: 2, nHeads: 2, seqLen: 16 }
const optimizer = { ...defaultOptimizerConfig, lr: 1e-2, minLr: 1e-3, warmupSteps: 5, totalSteps: 24, batchSize: 4, microbatches: 2 }
const text = encode('It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness. '.repeat(30))
const corpus = { source: 'test', train: text.subarray(0, 3000), validation: text.subarray(3000) }
const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-ckpt-'))

function engines (nStages: number): Promise<StageEngine[]> {
  return Promise.all(Array.from({ length: nStages }, (_, s) => StageEngine.create({ model, layout: stageLayout(model, s, nStages), optimizer, seed: 9, threads: 1 })))
}

const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)

test('a checkpoint round trip is bit-exact, into the same or another stage split', async () => {
  const a = await engines(2)
  const sampler = new BatchSampler(text, 16, 4, 1)
  for (let i = 0; i < 3; i++) {
    await trainMicrobatch(a, sampler.next())
    for (const e of a) await e.step()
  }
  const state = { model, optimizer, step: 3, seed: 9, data: 'test', sampler: sampler.state() }
  const path = await saveCheckpoint(join(dir, 'rt'), a, state)
  assert.equal(readdirSync(join(dir, 'rt')), ['checkpoint.safetensors'])
  const ckpt = await readCheckpoint(join(dir, 'rt'))
  assert.equal(ckpt.state, state)
  assert.equal(await readCheckpoint(path), ckpt)

  const b = await engines(2)
  const one = await engines(1)
  try {
    await restoreEngines(b, ckpt)
    await restoreEngines(one, ckpt)
    for (let s = 0; s < 2; s++) {
      const sa = await a[s].snapshot()
      const sb = await b[s].snapshot()
      assert.equal(bytes(b[s].weights), bytes(a[s].weights))
      assert.equal(bytes(sb.m), bytes(sa.m))
      assert.equal(bytes(sb.v), bytes(sa.v))
      assert.is(sb.step, 3)
      // The whole model lays its parameters out differently: compare them by name.
      for (const slot of a[s].params.slots) {
        assert.equal(bytes(one[0].params.view(one[0].weights, one[0].params.slot(slot.name)!)), bytes(a[s].params.view(a[s].weights, slot)), slot.name)
      }
    }
  } finally {
    await Promise.all([...a, ...b, ...one].map(e => e.close()))
  }
})

test('a resumed run produces exactly the losses of the uninterrupted run', async () => {
  const common = { model, optimizer, stages: 2, corpus, seed: 4, evalEvery: 6, evalBatches: 2, threads: 2 }
  const whole = await trainLocal(common)
  assert.equal(whole.map(r => r.step), [0, 6, 12, 18, 24])
  const first = await trainLocal({ ...common, checkpointDir: join(dir, 'resume'), stopAfter: 12 })
  assert.equal(first.map(r => r.step), [0, 6, 12])
  const rest = await trainLocal({ ...common, checkpointDir: join(dir, 'resume'), resume: await readCheckpoint(join(dir, 'resume')) })
  assert.equal(rest.map(r => r.step), [18, 24])
  const losses = (rs: typeof whole) => rs.map(r => [r.step, r.loss, r.valLoss])
  assert.equal(losses([...first, ...rest]), losses(whole))
  assert.ok(whole[4].valLoss < whole[0].valLoss - 1, 'the run did not learn')
})

test('bad checkpoints give one-line CheckpointErrors', async () => {
  const expectError = async (path: string, message: RegExp) => {
    try {
      await readCheckpoint(path)
      assert.unreachable('no error')
    } catch (err) {
      assert.ok(err instanceof CheckpointError || (err as Error).name === 'SafetensorsError', (err as Error).name)
      assert.match((err as Error).message, message)
      assert.not.match((err as Error).message, /\n/)
    }
  }
  await expectError(join(dir, 'nowhere'), /cannot read checkpoint .*ENOENT/)
  await expectError(dir, /no checkpoint in .*ENOENT/)
  writeFileSync(join(dir, 'junk.safetensors'), 'not a checkpoint at all')
  await expectError(join(dir, 'junk.safetensors'), /header length/)
  const good = await readCheckpoint(join(dir, 'rt'))
  const [engine] = await engines(1)
  try {
    good.weights.delete('h.1.mlp.fc.bias')
    await restoreEngines([engine], good).then(() => assert.unreachable('no error'), (err: Error) => {
      assert.instance(err, CheckpointError)
      assert.match(err.message, /no tensor h\.1\.mlp\.fc\.bias/)
    })
  } finally {
    await engine.close()
  }
})

test('a stage checkpoint holds named state groups, tagged with run, stage, step, round and layout; damage is an error', async () => {
  const [first, a] = await engines(2)
  const sampler = new BatchSampler(text, 16, 4, 2)
  try {
    for (let i = 0; i < 2; i++) {
      await trainMicrobatch([first, a], sampler.next())
      await a.step()
    }
    const path = stageCheckpointPath(dir, 1)
    const expect = { runId: 'run1', stage: 1, layout: a.params }
    assert.is(await readStageCheckpoint(path, expect), undefined)
    const { weights, m, v, step } = await a.snapshot()
    const extra = (k: number) => Float32Array.from(weights, (_, i) => i * k)
    const groups = { weights, 'adamw.m': m, 'adamw.v': v, theta_at_last_sync: extra(1), outer_momentum: extra(2), error_feedback: extra(3) }
    await saveStageCheckpoint(path, { runId: 'run1', stage: 1, step, round: 7, tokens: 14336, layoutHash: a.params.hash, groups })
    const saved = await readStageCheckpoint(path, expect)
    assert.equal({ ...saved, groups: undefined }, { runId: 'run1', stage: 1, step: 2, round: 7, tokens: 14336, layoutHash: a.params.hash, groups: undefined })
    for (const name of stageGroups) assert.equal(bytes(saved!.groups[name]), bytes(groups[name]), name)
    await readStageCheckpoint(path, { ...expect, stage: 0 }).then(() => assert.unreachable('no error'), (err: Error) => assert.match(err.message, /stage 1, not run run1 stage 0/))
    // A state without the stage's token count (an older swarmtrain's) would restart the schedule: refused.
    const older = join(dir, 'older.safetensors')
    await saveStageCheckpoint(older, { runId: 'run1', stage: 1, step, round: 7, tokens: undefined as unknown as number, layoutHash: a.params.hash, groups })
    await readStageCheckpoint(older, expect).then(() => assert.unreachable('no error'), (err: Error) => assert.match(err.message, /no count of the stage's tokens/))
    await readStageCheckpoint(path, { ...expect, layout: first.params }).then(() => assert.unreachable('no error'), (err: Error) => assert.match(err.message, /layout/))
    writeFileSync(path, 'not a checkpoint at all')
    await readStageCheckpoint(path, expect).then(() => assert.unreachable('no error'), (err: Error) => assert.match(err.message, /header length/))
  } finally {
    await Promise.all([first, a].map(e => e.close()))
  }
})

test.after(() => { rmSync(dir, { recursive: true, force: true }) })

test.run()
