// Six daemons on 127.0.0.1 find each other through the DHT and spread over three stages:
// 2 per stage when equal; balanced within Petals' rule when their capacities differ.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { rebalanceMove, stageLoads, type Server, type StageLoad } from '../node/assignment/policy.js'
import type { NodeStatus } from '../node/daemon/node.js'
import { TestSwarm, waitFor, type NodeProcess } from './daemon-harness.js'

const STAGES = 3

/** The servers as the nodes report themselves (the truth). */
function servers (statuses: NodeStatus[]): Server[] {
  return statuses.map(s => {
    if (s.stage === undefined) throw new Error(`${s.peerId} has no stage`)
    return { id: s.peerId, stage: s.stage, throughput: s.throughput }
  })
}

function truth (statuses: NodeStatus[]): StageLoad[] {
  return stageLoads(servers(statuses), STAGES)
}

/** True when every node's DHT view lists exactly the peers the nodes report themselves. */
function viewsAgree (statuses: NodeStatus[]): boolean {
  const actual = new Map(statuses.map(s => [s.peerId, s.stage]))
  return statuses.every(s => s.stages.every(stage =>
    stage.peers.length === [...actual.values()].filter(v => v === stage.stage).length &&
    stage.peers.every(p => actual.get(p.peerId) === stage.stage)))
}

async function startSwarm (swarm: TestSwarm, capacities: number[]): Promise<NodeProcess[]> {
  const seedDir = await swarm.init('seed', ['--stages', String(STAGES)])
  const seed = await swarm.start('n0', seedDir, ['--no-pipeline', '--capacity', String(capacities[0])])
  const others = await Promise.all(capacities.slice(1).map(async (capacity, i) =>
    await swarm.start(`n${i + 1}`, swarm.clone(seedDir, `n${i + 1}`), ['--no-pipeline', '--capacity', String(capacity), '--bootstrap', seed.address])))
  return [seed, ...others]
}

test('6 equal nodes settle at 2 per stage, and every node sees it', async () => {
  const swarm = new TestSwarm()
  try {
    const nodes = await startSwarm(swarm, [100, 100, 100, 100, 100, 100])
    let seen: NodeStatus[] = []
    const statuses = await waitFor('2 nodes per stage in every view', 60_000, async () => {
      seen = await Promise.all(nodes.map(async n => await swarm.status(n)))
      return truth(seen).every(l => l.servers === 2) && viewsAgree(seen) ? seen : undefined
    }, () => TestSwarm.describe(seen))
    assert.equal(truth(statuses).map(l => l.throughput), [200, 200, 200])
    assert.ok(statuses.every(s => s.runId === statuses[0].runId))
  } finally {
    await swarm.close()
  }
})

test('6 nodes of unequal capacity balance the stages within the 1/0.75 rule', async () => {
  const swarm = new TestSwarm()
  try {
    const capacities = [300, 200, 100, 100, 50, 50]
    const nodes = await startSwarm(swarm, capacities)
    const stable = (statuses: NodeStatus[]): boolean => {
      const loads = truth(statuses)
      return loads.every(l => l.servers > 0) && viewsAgree(statuses) &&
        statuses.every(s => rebalanceMove(servers(statuses), STAGES, s.peerId, () => true) === undefined)
    }
    let seen: NodeStatus[] = []
    const statuses = await waitFor('a balanced, agreed assignment', 60_000, async () => {
      seen = await Promise.all(nodes.map(async n => await swarm.status(n)))
      return stable(seen) ? seen : undefined
    }, () => TestSwarm.describe(seen))
    const loads = truth(statuses)
    // Balanced: the best split puts 250 tokens/s on the weakest stage; the rule stops within 1/0.75 of it.
    const weakest = Math.min(...loads.map(l => l.throughput))
    assert.ok(weakest >= 0.75 * 250, `weakest stage ${weakest} tokens/s in ${JSON.stringify(loads)}`)
    // And it stays that way: nobody moves again over a few rebalancing periods.
    await new Promise(resolve => setTimeout(resolve, 5000))
    const later = await Promise.all(nodes.map(async n => await swarm.status(n)))
    assert.equal(later.map(s => s.stage), statuses.map(s => s.stage))
  } finally {
    await swarm.close()
  }
})

test('a node finds peers it was never told about through the DHT (a chain of bootstraps)', async () => {
  const swarm = new TestSwarm()
  try {
    const seedDir = await swarm.init('a', ['--stages', String(STAGES)])
    const a = await swarm.start('a', seedDir, ['--no-pipeline', '--capacity', '100'])
    const b = await swarm.start('b', swarm.clone(seedDir, 'b'), ['--no-pipeline', '--capacity', '100', '--bootstrap', a.address])
    const c = await swarm.start('c', swarm.clone(seedDir, 'c'), ['--no-pipeline', '--capacity', '100', '--bootstrap', b.address])
    let seen: NodeStatus[] = []
    await waitFor('c to see a', 30_000, async () => {
      seen = [await swarm.status(c)]
      return seen[0].stages.some(s => s.peers.some(p => p.peerId === a.peerId)) ? true : undefined
    }, () => TestSwarm.describe(seen))
  } finally {
    await swarm.close()
  }
})

test.run()
