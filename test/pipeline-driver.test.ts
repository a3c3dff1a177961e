// The driver against fake stage callers: microbatches in flight, stop() drains them, validation.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { StageCaller } from '../node/pipeline/chain.js'
import { Driver } from '../node/pipeline/driver.js'
import type { FloatTensor, Tensor, TokenTensor } from '../node/runtime/tensor.js'

const D = 2
const text = new TextEncoder().encode('the quick brown fox jumps over the lazy dog. '.repeat(50))

/** Two fake stages; counts concurrent microbatches and forward-only (validation) calls. */
function fakeStages (delayMs: number): { stages: StageCaller[], inFlight: () => number, maxInFlight: () => number, evaluations: () => number } {
  let active = 0
  let max = 0
  let evaluations = 0
  const wait = async (): Promise<void> => await new Promise(resolve => setTimeout(resolve, delayMs))
  const first: StageCaller = {
    async forward (x: Tensor): Promise<FloatTensor> {
      active++
      max = Math.max(max, active)
      await wait()
      return { data: new Float32Array(x.data.length * D), shape: [...x.shape, D] }
    },
    async backward (): Promise<FloatTensor | undefined> { await wait(); active--; return undefined },
    async lossBackward (): Promise<{ loss: number }> { throw new Error('not the last stage') },
    async loss (): Promise<number> { throw new Error('not the last stage') }
  }
  const last: StageCaller = {
    async forward (): Promise<FloatTensor> { throw new Error('the last stage has no forward') },
    async backward (): Promise<FloatTensor | undefined> { throw new Error('the last stage takes targets') },
    async lossBackward (x: Tensor, _targets: TokenTensor): Promise<{ loss: number, gx: FloatTensor }> { await wait(); return { loss: 2, gx: { data: new Float32Array(x.data.length), shape: x.shape } } },
    async loss (): Promise<number> { active--; evaluations++; await wait(); return 1.5 }
  }
  return { stages: [first, last], inFlight: () => active, maxInFlight: () => max, evaluations: () => evaluations }
}

test('keeps the configured microbatches in flight; stop() lets each issued one complete', async () => {
  const fake = fakeStages(5)
  const driver = new Driver({ stages: fake.stages }, { train: text, validation: text, seqLen: 16, batchSize: 2, seed: 1, inFlight: 3, evalEvery: 0 })
  driver.start()
  await new Promise(resolve => setTimeout(resolve, 150))
  await driver.stop()
  assert.is(fake.maxInFlight(), 3)
  assert.is(fake.inFlight(), 0)
  assert.ok(driver.stats.completed > 3)
  assert.is(driver.stats.issued, driver.stats.completed)
  assert.is(driver.stats.failed, 0)
  assert.is(driver.stats.tokens, driver.stats.completed * 32)
  assert.ok(Math.abs((driver.stats.trainLoss ?? 0) - 2) < 1e-9)
})

test('a bounded run validates periodically and once at the end, then reports done', async () => {
  const fake = fakeStages(1)
  const reports: string[] = []
  const driver = new Driver({ stages: fake.stages }, {
    train: text, validation: text, seqLen: 16, batchSize: 2, seed: 2, inFlight: 2, evalEvery: 4, evalBatches: 3, maxMicrobatches: 10,
    onProgress: r => reports.push(`${r.kind}:${r.completed}`)
  })
  driver.start()
  while (!driver.stats.done) await new Promise(resolve => setTimeout(resolve, 5))
  assert.is(driver.stats.issued, 10)
  assert.is(driver.stats.completed, 10)
  assert.ok(driver.stats.validations.length >= 2, `validations: ${driver.stats.validations.length}`)
  assert.is(driver.stats.validationLoss, 1.5)
  assert.is(fake.evaluations(), 3 * driver.stats.validations.length, 'each evaluation covers every validation microbatch')
  assert.is(reports.filter(r => r.startsWith('train')).length, 10)
  assert.is(reports[reports.length - 1], 'validation:10')
})

test.run()
