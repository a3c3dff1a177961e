import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { reference } from '../native/index.js'
import type { ParamSpec } from '../node/model/config.js'
import { ParamLayout } from '../node/model/index.js'
import { AdamW, clipFactor, learningRate } from '../node/runtime/optimizer.js'
import { defaultOptimizerConfig } from '../node/runtime/optimizer-config.js'

const config = { ...defaultOptimizerConfig, lr: 1e-2, minLr: 1e-3, warmupSteps: 10, totalSteps: 110 }

test('the schedule warms up linearly, then decays along a cosine to minLr', () => {
  assert.is(learningRate(config, 1), 1e-3)
  assert.is(learningRate(config, 10), 1e-2)
  assert.ok(Math.abs(learningRate(config, 60) - 5.5e-3) < 1e-12)
  assert.ok(Math.abs(learningRate(config, 110) - 1e-3) < 1e-12)
  assert.ok(Math.abs(learningRate(config, 500) - 1e-3) < 1e-12)
  for (let s = 11; s < 110; s++) assert.ok(learningRate(config, s + 1) < learningRate(config, s))
})

test('clipFactor scales only norms above the limit', () => {
  assert.is(clipFactor(0.5, 1), 1)
  assert.is(clipFactor(4, 1), 0.25)
  assert.is(clipFactor(4, 0), 1)
})

test('AdamW decays matrices only and matches the reference kernel slice by slice', async () => {
  const params: ParamSpec[] = [
    { name: 'w', shape: [2, 2], init: { kind: 'normal', std: 1 }, decay: true },
    { name: 'b', shape: [2], init: { kind: 'zeros' }, decay: false }
  ]
  const weights = Float32Array.from([1, -1, 2, 0.5, 1, 1])
  const grads = Float32Array.from([0, 0, 0, 0, 0, 0])
  const adam = new AdamW(config, new ParamLayout(params))
  await adam.update(weights, grads, 1)
  // Zero gradient: the matrix shrinks by lr * wd, the bias does not move.
  const shrink = 1 - 1e-3 * config.weightDecay
  assert.equal(Array.from(weights), Array.from(Float32Array.from([shrink, -shrink, 2 * shrink, 0.5 * shrink, 1, 1])))

  const w2 = weights.slice()
  const g = Float32Array.from([1, 2, 3, 4, 5, 6])
  await adam.update(weights, g, 0.5)
  const m = new Float32Array(6)
  const v = new Float32Array(6)
  const o = { lr: learningRate(config, 2), beta1: config.beta1, beta2: config.beta2, eps: config.eps, step: 2, gradScale: 0.5 }
  reference.adamw(w2.subarray(0, 4), g.subarray(0, 4), m.subarray(0, 4), v.subarray(0, 4), { ...o, weightDecay: config.weightDecay })
  reference.adamw(w2.subarray(4), g.subarray(4), m.subarray(4), v.subarray(4), { ...o, weightDecay: 0 })
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(weights[i] - w2[i]) < 1e-6, `param ${i}: ${weights[i]} vs ${w2[i]}`)
  assert.is(adam.step, 2)
})

test('a layout groups decayed tensors first; AdamW then makes one kernel call per group', async () => {
  const params: ParamSpec[] = [
    { name: 'b1', shape: [3], init: { kind: 'zeros' }, decay: false },
    { name: 'w1', shape: [2, 2], init: { kind: 'normal', std: 1 }, decay: true },
    { name: 'b2', shape: [1], init: { kind: 'ones' }, decay: false },
    { name: 'w2', shape: [2], init: { kind: 'normal', std: 1 }, decay: true }
  ]
  const layout = new ParamLayout(params)
  assert.equal(layout.slots.map(s => [s.name, s.offset]), [['w1', 0], ['w2', 4], ['b1', 6], ['b2', 9]])
  assert.is(layout.decayedSize, 6)
  assert.is.not(layout.hash, new ParamLayout(params, { grouped: false }).hash)
  assert.is(layout.hash, new ParamLayout([...params]).hash)
  const calls: number[] = []
  const adam = new AdamW(config, layout, { kernel: async (w, ...rest) => { calls.push(w.length); reference.adamw(w, ...rest) } })
  await adam.update(new Float32Array(10), new Float32Array(10).fill(1), 1)
  assert.equal(calls, [6, 4])
})

test('a step whose kernel fails halfway leaves weights, moments and step count as they were', async () => {
  const params: ParamSpec[] = [
    { name: 'w', shape: [4], init: { kind: 'normal', std: 1 }, decay: true },
    { name: 'b', shape: [2], init: { kind: 'zeros' }, decay: false }
  ]
  let fail = false
  const adam = new AdamW(config, new ParamLayout(params), {
    kernel: async (w, ...rest) => {
      reference.adamw(w, ...rest)
      if (fail && w.length === 2) throw new Error('injected kernel failure')
    }
  })
  const weights = Float32Array.from([1, 2, 3, 4, 5, 6])
  const grads = Float32Array.from([1, -1, 1, -1, 1, -1])
  await adam.update(weights, grads, 1)
  const before = { weights: weights.slice(), m: adam.m.slice(), v: adam.v.slice() }
  fail = true
  const failed = await adam.update(weights, grads, 1).then(() => undefined, (err: Error) => err)
  assert.match(String(failed), /injected/)
  assert.equal(weights, before.weights)
  assert.equal(adam.m, before.m)
  assert.equal(adam.v, before.v)
  assert.is(adam.step, 1)
  fail = false
  await adam.update(weights, grads, 1)
  assert.is(adam.step, 2)
  assert.not.equal(weights, before.weights)
})

test.run()
