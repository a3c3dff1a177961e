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

test('an adaptive driver ends its bounded run even when depth grows on its last completions', async () => {
  // Latency-bound fake stages (nothing queues), so depth keeps growing until the budget is spent.
  // A driver that kept adding workers with nothing left to issue would spin forever in one
  // synchronous loop; a worker thread lets this test notice that instead of hanging with it.
  const driverUrl = new URL('../node/pipeline/driver.js', import.meta.url).href
  const code = `
    const { parentPort } = await import('node:worker_threads')
    const { Driver } = await import(${JSON.stringify(driverUrl)})
    const wait = () => new Promise(resolve => setTimeout(resolve, 2))
    const first = {
      async forward (x) { await wait(); return { data: new Float32Array(x.data.length * 2), shape: [...x.shape, 2] } },
      async backward () { await wait(); return undefined }
    }
    const last = { async lossBackward (x) { await wait(); return { loss: 2, gx: { data: new Float32Array(x.data.length), shape: x.shape } } } }
    const text = new TextEncoder().encode('the quick brown fox jumps over the lazy dog. '.repeat(50))
    const driver = new Driver({ stages: [first, last] }, { train: text, validation: text, seqLen: 16, batchSize: 2, seed: 1, evalEvery: 0, maxMicrobatches: 40 })
    driver.start()
    while (!driver.stats.done) await new Promise(resolve => setTimeout(resolve, 5))
    parentPort.postMessage({ completed: driver.stats.completed, depth: driver.depth })`
  const { Worker } = await import('node:worker_threads')
  const worker = new Worker(`import(${JSON.stringify('data:text/javascript,' + encodeURIComponent(code))})`, { eval: true })
  try {
    const result = await new Promise<{ completed: number, depth: number } | undefined>((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), 20_000)
      worker.once('message', m => { clearTimeout(timer); resolve(m) })
      worker.once('error', err => { clearTimeout(timer); reject(err) })
    })
    assert.ok(result !== undefined, 'the driver never finished its 40 microbatches')
    assert.is(result.completed, 40)
    assert.ok(result.depth > 3, `depth grew (${result.depth})`)
  } finally {
    await worker.terminate()
  }
})

test.run()
