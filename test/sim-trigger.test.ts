import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { everyStep, roundCompression, roundDensities, roundDue, roundTokens } from '../node/averaging/trigger.js'

const base = { round: 3, tokensSinceSync: 100, tokensPerRound: 1000, invited: false }

test('a round is due once the replicas at our round together trained tokensPerRound', () => {
  assert.is(roundDue({ ...base, peers: [] }), false)
  assert.is(roundDue({ ...base, peers: [{ round: 3, tokensSinceSync: 899 }] }), false)
  assert.is(roundDue({ ...base, peers: [{ round: 3, tokensSinceSync: 900 }] }), true)
  assert.is(roundDue({ ...base, peers: [{ round: 3, tokensSinceSync: 500 }, { round: 3, tokensSinceSync: 400 }] }), true)
  assert.is(roundDue({ ...base, tokensSinceSync: 1000, peers: [] }), true)
})

test('replicas at another round do not count', () => {
  assert.is(roundDue({ ...base, peers: [{ round: 2, tokensSinceSync: 5000 }, { round: 4, tokensSinceSync: 5000 }] }), false)
})

test('an invitation (a contribution to the next round) starts a round at once', () => {
  assert.is(roundDue({ ...base, tokensSinceSync: 0, peers: [], invited: true }), true)
})

test('in the every-step phase a round is due as soon as this replica stepped, whatever the others\' records say', () => {
  assert.is(roundDue({ ...base, peers: [{ round: 3, tokensSinceSync: 0 }], everyStep: true }), true)
  assert.is(roundDue({ ...base, tokensSinceSync: 0, peers: [{ round: 3, tokensSinceSync: 0 }], everyStep: true }), false, 'not before it stepped')
  assert.is(roundDue({ ...base, peers: [{ round: 3, tokensSinceSync: 0 }], everyStep: false }), false)
})

test('rounds come after every step, denser and with their own decay, until everyStepUntil steps, then every innerSteps', () => {
  const settings = { innerSteps: 50, everyStepUntil: 400, topkDensity: 1 / 64, everyStepTopkDensity: 1 / 16, beta: 0.95, everyStepBeta: 0.6 }
  assert.is(roundTokens(settings, 2048, 0, 2), 2048)
  assert.is(roundTokens(settings, 2048, 399, 2), 2048)
  assert.is(roundTokens(settings, 2048, 400, 2), 50 * 2048)
  assert.is(roundTokens(settings, 2048, 0, 1), 50 * 2048, 'a replica alone has nobody to average with every step')
  assert.equal([everyStep(settings, 399, 2), everyStep(settings, 400, 2), everyStep(settings, 0, 1)], [true, false, false])
  assert.equal([roundCompression(settings, 399), roundCompression(settings, 400)], [{ density: 1 / 16, beta: 0.6 }, { density: 1 / 64, beta: 0.95 }])
  assert.equal(roundDensities(settings), [1 / 64, 1 / 16], 'either may arrive near the switch')
  const none = { ...settings, everyStepUntil: 0 }
  assert.is(roundTokens(none, 2048, 0, 2), 50 * 2048, 'no every-step phase')
  assert.equal(roundCompression(none, 0), { density: 1 / 64, beta: 0.95 })
  assert.equal(roundDensities(none), [1 / 64], 'and no other density accepted')
})

test.run()
