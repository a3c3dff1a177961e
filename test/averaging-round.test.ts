// Averaging rounds between daemons on 127.0.0.1: replicas of one stage trained on different data
// leave each round holding the same theta_at_last_sync, bit for bit (equal state hashes).
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { AveragingStatus } from '../node/averaging/service.js'
import { TestSwarm, waitFor, type NodeProcess } from './daemon-harness.js'

const tiny = ['--stages', '1', '--d-model', '32', '--layers', '1', '--heads', '2', '--seq-len', '16', '--batch-size', '4', '--private']
const common = ['--capacity', '1000', '--threads', '1', '--eval-every', '0']

async function averaging (swarm: TestSwarm, node: NodeProcess): Promise<AveragingStatus> {
  return (await swarm.status(node)).services.averaging as AveragingStatus
}

/** Waits until every node has completed `round` or later and all stand at the same round with the same hash. */
async function agreed (swarm: TestSwarm, nodes: NodeProcess[], minRound: number, timeoutMs: number): Promise<AveragingStatus[]> {
  let seen: AveragingStatus[] = []
  return await waitFor(`${nodes.length} replicas at one round >= ${minRound} with one state hash`, timeoutMs, async () => {
    seen = await Promise.all(nodes.map(async n => await averaging(swarm, n)))
    const [first] = seen
    return first.round >= minRound && seen.every(s => s.round === first.round && s.stateHash === first.stateHash) ? seen : undefined
  }, () => JSON.stringify(seen.map(s => ({ round: s.round, hash: s.stateHash, tokens: s.tokensSinceSync, last: s.rounds.at(-1) }))))
}

for (const mode of ['sparse', 'dense']) {
  test(`3 replicas with different data: after ${mode} rounds their state hashes are identical`, async () => {
    const swarm = new TestSwarm()
    try {
      const seed = await swarm.init('a', [...tiny, '--inner-steps', '3', '--mode', mode, '--round-timeout-ms', '15000'])
      const a = await swarm.start('a', seed, [...common, '--max-microbatches', '12'])
      const others = await Promise.all(['b', 'c'].map(async name => await swarm.start(name, swarm.clone(seed, name), [...common, '--max-microbatches', '12', '--bootstrap', a.address])))
      const nodes = [a, ...others]
      const statuses = await agreed(swarm, nodes, 1, 120_000)
      assert.ok(statuses.some(s => s.rounds.some(r => r.members === 3)), `no round had all 3 members: ${JSON.stringify(statuses.map(s => s.rounds))}`)
      assert.ok(statuses.every(s => s.stateHash.length === 32))
    } finally {
      await swarm.close()
    }
  })
}

test.run()
