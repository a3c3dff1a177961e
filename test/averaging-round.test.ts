// Averaging rounds between daemons on 127.0.0.1: replicas of one stage trained on different data
// leave each round holding the same theta_at_last_sync, bit for bit (equal state hashes).
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
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
    } finally {
      await swarm.close()
    }
  })
}

test.run()
