import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { roundDue, roundTokens } from '../node/averaging/trigger.js'

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

test('rounds come after every step until everyStepUntil steps, then every innerSteps', () => {
  const settings = { innerSteps: 50, everyStepUntil: 400 }
  assert.is(roundTokens(settings, 2048, 0), 2048)
  assert.is(roundTokens(settings, 2048, 399), 2048)
  assert.is(roundTokens(settings, 2048, 400), 50 * 2048)
  assert.is(roundTokens({ innerSteps: 50, everyStepUntil: 0 }, 2048, 0), 50 * 2048, 'no early phase by default')
})

test.run()
