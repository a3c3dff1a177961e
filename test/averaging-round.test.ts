// Averaging rounds between daemons on 127.0.0.1: replicas of one stage trained on different data
// leave each round holding the same theta_at_last_sync, bit for bit (equal state hashes), and
// rounds that come every step keep every replica in them (they come faster than the registry's
// view refreshes: a replica left out of one round used to be left out of the next ones too,
// each round without it leaving it behind again).
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { AveragingStatus, RoundReport } from '../node/averaging/service.js'
import { TestSwarm, waitFor } from './daemon-harness.js'
import { START_MS, agreed, averagingStatus, daemonFlags as common, tinyRun } from './averaging-harness.js'

for (const mode of ['sparse', 'dense']) {
  test(`3 replicas with different data: after ${mode} rounds their state hashes are identical`, async () => {
    const swarm = new TestSwarm()
    try {
      // 30 inner steps of 64 tokens: more than one node's 12 microbatches, less than three's, so
      // the first round waits for all three replicas to have trained (and then includes them).
      const seed = await swarm.init('a', [...tinyRun, '--inner-steps', '30', '--mode', mode, '--round-timeout-ms', '15000'])
      const a = await swarm.start('a', seed, [...common, '--max-microbatches', '12'], {}, START_MS)
      const others = await Promise.all(['b', 'c'].map(async name => await swarm.start(name, swarm.clone(seed, name), [...common, '--max-microbatches', '12', '--bootstrap', a.address], {}, START_MS)))
      const nodes = [a, ...others]
      await agreed(swarm, nodes, 1, 120_000)
      // A replica files its round's report after the hash exchange, a moment after the hashes agree.
      const statuses = await waitFor('every replica to report its round', 30_000, async () => {
        const all = await Promise.all(nodes.map(async n => await averagingStatus(swarm, n)))
        return all.every(s => s.rounds.length > 0) ? all : undefined
      })
      assert.ok(statuses.some(s => s.rounds.some(r => r.members === 3)), `no round had all 3 members: ${JSON.stringify(statuses.map(s => s.rounds))}`)
      assert.ok(statuses.every(s => s.stateHash.length === 32))
      // The schedule follows the stage's progress: each replica's step counts the tokens every
      // replica trained through the round (64 a step), not only its own.
      for (const node of nodes) {
        const status = await swarm.status(node)
        const { stageTokens } = status.services.averaging as AveragingStatus
        assert.ok(stageTokens > 0, 'no tokens counted')
        assert.ok((status.stageHost?.step ?? 0) >= Math.floor(stageTokens / 64), `step ${status.stageHost?.step} for ${stageTokens} stage tokens`)
      }
    } finally {
      await swarm.close()
    }
  })
}

test('2 stages x 2 replicas, all driving, averaging after every step: every round has both replicas of its stage', async () => {
  const swarm = new TestSwarm()
  try {
    const seed = await swarm.init('a', ['--stages', '2', '--d-model', '32', '--layers', '2', '--heads', '2', '--seq-len', '16', '--batch-size', '4', '--microbatches', '1', '--private', '--inner-steps', '1', '--mode', 'dense'])
    const nodes = [await swarm.start('a', seed, [...common, '--stage', '0'], {}, START_MS)]
    nodes.push(...await Promise.all(['b', 'c', 'd'].map(async (name, i) => await swarm.start(name, swarm.clone(seed, name), [...common, '--stage', String((i + 1) % 2), '--bootstrap', nodes[0].address], {}, START_MS))))
    let seen: AveragingStatus[] = []
    // Every replica trains while its rounds run and between them, and says how fast: waited for,
    // not checked once 12 rounds are there. A replica that starts last takes its stage's round
    // when it attaches, so the rounds could be there before the other nodes' views listed it (a
    // refresh or two, while its stage averaged every step without it) and before any driver
    // routed to it; a replica never trained still fails.
    const trains = (s: AveragingStatus): boolean => [s.trainedDuringRounds, s.trainedBetweenRounds].every(t => t.tokens > 0 && t.ms > 0)
    const state = (): string => JSON.stringify(seen.map(s => ({ stage: s.stage, round: s.round, syncs: s.syncs, rounds: s.rounds.map(r => [r.round, r.members, r.agreed]), during: s.trainedDuringRounds, between: s.trainedBetweenRounds })))
    const trained = await waitFor('12 rounds on every replica, each training during rounds and between them', 180_000, async () => {
      seen = await Promise.all(nodes.map(async n => await averagingStatus(swarm, n)))
      return seen.every(s => s.round >= 12 && trains(s)) ? seen : undefined
    }, state)
    // Every replica is in every view by now: each of its next 6 rounds has both replicas of its stage.
    const next = (s: AveragingStatus, i: number): RoundReport[] => s.rounds.filter(r => r.round > trained[i].round)
    const statuses = await waitFor('6 more rounds on every replica', 180_000, async () => {
      seen = await Promise.all(nodes.map(async n => await averagingStatus(swarm, n)))
      return seen.every((s, i) => next(s, i).length >= 6) ? seen : undefined
    }, state)
    statuses.forEach((s, i) => {
      assert.ok(next(s, i).every(r => r.members === 2), `stage ${s.stage}: rounds without both replicas: ${JSON.stringify(s.rounds.map(r => [r.round, r.members, r.agreed]))}`)
    })
  } finally {
    await swarm.close()
  }
})

test.run()
