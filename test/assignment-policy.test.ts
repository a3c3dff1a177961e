import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { chooseStage, moverInSlot, rebalanceMove, settle, stageLoads, type Server } from '../node/assignment/policy.js'
import { Rng, hashString } from '../node/util/random.js'

const servers = (placement: Array<[number, number]>): Server[] => placement.map(([stage, throughput], i) => ({ id: `p${i}`, stage, throughput }))
const anywhere = (): boolean => true

test('chooseStage joins the stage with the least throughput among those that fit', () => {
  const loads = [{ stage: 0, throughput: 300, servers: 2 }, { stage: 1, throughput: 100, servers: 1 }, { stage: 2, throughput: 50, servers: 1 }]
  assert.is(chooseStage(loads, anywhere, () => 0), 2)
  assert.is(chooseStage(loads, s => s !== 2, () => 0), 1)
  assert.is(chooseStage(loads, () => false, () => 0), undefined)
  // Ties go to the picker, so simultaneous joiners spread out.
  const empty = [0, 1, 2].map(stage => ({ stage, throughput: 0, servers: 0 }))
  assert.equal([0, 1, 2].map(i => chooseStage(empty, anywhere, () => i)), [0, 1, 2])
  // A restarted node's checkpointed stage wins a tie, never over a weaker stage or one that does not fit.
  assert.equal([0, 1, 2].map(i => chooseStage(empty, anywhere, () => i, 1)), [1, 1, 1])
  assert.is(chooseStage(loads, anywhere, () => 0, 1), 2)
  assert.is(chooseStage(empty, s => s !== 1, () => 0, 1), 0)
})

test('rebalanceMove follows the 1/0.75 rule and never empties a stage', () => {
  // 3, 2, 1 equal servers: moving one from the crowded stage lifts the weakest from 100 to 200.
  const uneven = servers([[0, 100], [0, 100], [0, 100], [1, 100], [1, 100], [2, 100]])
  const move = rebalanceMove(uneven, 3, 'p0', anywhere)
  assert.equal({ ...move, to: 0 }, { from: 0, to: 0, before: 100, after: 200 })
  // 2, 2, 2 is balanced: nobody moves.
  const even = servers([[0, 100], [0, 100], [1, 100], [1, 100], [2, 100], [2, 100]])
  assert.ok(even.every(s => rebalanceMove(even, 3, s.id, anywhere) === undefined))
  // The only server of a stage stays, however much it would help elsewhere.
  const alone = servers([[0, 1000], [1, 10], [1, 10], [2, 10]])
  assert.is(rebalanceMove(alone, 3, 'p0', anywhere), undefined)
  // A gain below 1/0.75 is not worth a move: 100 -> 120 is only 1.2x.
  const close = servers([[0, 100], [1, 60], [1, 60], [2, 120]])
  assert.is(rebalanceMove(close, 3, 'p1', anywhere), undefined)
  // A stage that does not fit is never a target.
  assert.equal(rebalanceMove(uneven, 3, 'p0', (_s, stage) => stage !== 2)?.to, undefined)
})

test('rebalanceMove sees through two weak stages (1, 4, 1 servers)', () => {
  // No single move lifts the weakest stage, but the settled swarm after it is 2, 2, 2.
  const swarm = servers([[0, 100], [1, 100], [1, 100], [1, 100], [1, 100], [2, 100]])
  const move = rebalanceMove(swarm, 3, 'p1', anywhere)
  assert.ok(move !== undefined && move.from === 1 && move.to !== 1)
  assert.is(move?.after, 200)
})

test('settled swarms are stable and within the rule of the best split', () => {
  const rng = new Rng('policy')
  for (let trial = 0; trial < 6; trial++) {
    const caps = Array.from({ length: 6 }, () => Math.round(20 + rng.next() * 400))
    let best = 0
    let worstStable = Infinity
    for (let code = 0; code < 3 ** caps.length; code++) {
      const placement = caps.map((cap, i): [number, number] => [Math.floor(code / 3 ** i) % 3, cap])
      const swarm = servers(placement)
      const loads = stageLoads(swarm, 3)
      const weakest = Math.min(...loads.map(l => l.throughput))
      best = Math.max(best, weakest)
      if (loads.some(l => l.servers === 0)) continue
      if (swarm.every(s => rebalanceMove(swarm, 3, s.id, anywhere) === undefined)) worstStable = Math.min(worstStable, weakest)
    }
    // Every state in which no server wants to move is near the best split. Not within 0.75:
    // the rule looks one move (plus greedy follow-ups) ahead; over many random swarms the
    // worst stable state measured was 0.63 of the best.
    assert.ok(worstStable >= 0.6 * best, `capacities ${caps}: a stable state has weakest ${worstStable}, best ${best}`)
    // And repeatedly applying moves from any start ends in such a state.
    const swarm = servers(caps.map((cap): [number, number] => [0, cap]))
    for (let step = 0; step < 50; step++) {
      const mover = swarm.find(s => rebalanceMove(swarm, 3, s.id, anywhere) !== undefined)
      if (mover === undefined) break
      mover.stage = rebalanceMove(swarm, 3, mover.id, anywhere)?.to ?? mover.stage
    }
    assert.ok(swarm.every(s => rebalanceMove(swarm, 3, s.id, anywhere) === undefined), `capacities ${caps} did not settle`)
    assert.ok(Math.min(...stageLoads(swarm, 3).map(l => l.throughput)) >= 0.6 * best)
  }
})

test('moverInSlot is the willing server with the least hash of (id, slot), the first on a tie', () => {
  const rng = new Rng('mover')
  let chosen = 0
  for (let trial = 0; trial < 200; trial++) {
    const all = servers(Array.from({ length: 3 + rng.int(10) }, () => [rng.int(3), 10 + rng.int(100)]))
    const slot = rng.int(1000)
    // The definition: every willing server, then the least hash.
    const willing = all.filter(s => rebalanceMove(all, 3, s.id, anywhere) !== undefined)
    const expected = willing.reduce<Server | undefined>((best, s) => best === undefined || hashString(`${s.id}:${slot}`) < hashString(`${best.id}:${slot}`) ? s : best, undefined)
    assert.equal(moverInSlot(all, 3, slot), expected)
    if (expected !== undefined) chosen++
  }
  assert.ok(chosen > 20, `some swarms had a mover: ${chosen}`)
})

test('settle terminates and never empties a stage', () => {
  const swarm = settle(servers([[0, 5], [0, 7], [0, 11], [0, 13], [1, 1], [2, 2]]), 3, anywhere)
  const loads = stageLoads(swarm, 3)
  assert.ok(loads.every(l => l.servers > 0))
  assert.equal(loads.map(l => l.servers).reduce((a, b) => a + b), 6)
})

test.run()
