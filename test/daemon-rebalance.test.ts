// A node that stops leaves a hole; a rebalancing move fills it within a bounded time. And a
// daemon stops cleanly on SIGTERM.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { NodeStatus } from '../node/daemon/node.js'
import { TestSwarm, waitFor } from './daemon-harness.js'

test('a stage left empty by a killed node is refilled by a move', async () => {
  const swarm = new TestSwarm()
  try {
    const seedDir = await swarm.init('seed', ['--stages', '3'])
    const seed = await swarm.start('n0', seedDir, ['--no-pipeline', '--capacity', '100'])
    const others = await Promise.all([1, 2, 3].map(async i =>
      await swarm.start(`n${i}`, swarm.clone(seedDir, `n${i}`), ['--no-pipeline', '--capacity', '100', '--bootstrap', seed.address])))
    const nodes = [seed, ...others]
    let seen: NodeStatus[] = []
    // 4 equal nodes on 3 stages: 2, 1, 1 in some order.
    await waitFor('every stage served', 60_000, async () => {
      seen = await Promise.all(nodes.map(async n => await swarm.status(n)))
      const counts = [0, 1, 2].map(stage => seen.filter(s => s.stage === stage).length)
      return counts.every(c => c >= 1) && seen.every(s => s.stages.every(st => st.peers.length === counts[st.stage])) ? true : undefined
    }, () => TestSwarm.describe(seen))
    // Kill (no goodbye) a node that is alone on its stage.
    const lonely = seen.find(s => seen.filter(o => o.stage === s.stage).length === 1)
    assert.ok(lonely !== undefined)
    const victim = nodes.find(n => n.peerId === lonely.peerId)
    assert.ok(victim !== undefined)
    const hole = lonely.stage
    const killedAt = Date.now()
    await swarm.kill(victim, 'SIGKILL')
    const survivors = nodes.filter(n => n !== victim)
    // Its record expires (6 s in tests), then one of the two on the crowded stage moves.
    const settled = await waitFor('the empty stage refilled', 45_000, async () => {
      seen = await Promise.all(survivors.map(async n => await swarm.status(n)))
      const refilled = seen.filter(s => s.stage === hole)
      const gone = seen.every(s => s.stages.every(st => st.peers.every(p => p.peerId !== victim.peerId)))
      return refilled.length === 1 && gone && [0, 1, 2].every(stage => seen.some(s => s.stage === stage)) ? seen : undefined
    }, () => TestSwarm.describe(seen))
    const mover = settled.find(s => s.stage === hole)
    const move = mover?.moves.at(-1)
    assert.ok(move !== undefined && move.to === hole && move.at > killedAt, `the refill is a logged move: ${JSON.stringify(mover?.moves)}`)
    assert.ok(move.after > move.before)
    const node = survivors.find(n => n.peerId === mover?.peerId)
    assert.ok(node?.output.some(line => line.startsWith(`moving from stage ${move.from} to stage ${hole}`)))
  } finally {
    await swarm.close()
  }
})

test('SIGTERM stops a daemon cleanly; a second daemon in its directory is refused', async () => {
  const swarm = new TestSwarm()
  try {
    const dir = await swarm.init('solo', ['--stages', '2'])
    const node = await swarm.start('solo', dir, ['--no-pipeline', '--capacity', '10', '--stage', '1'])
    const status = await swarm.status(node)
    assert.is(status.stage, 1)
    assert.is(status.pinned, true)
    const second = await swarm.run(['start', '--dir', dir, '--no-pipeline', '--capacity', '10', '--listen', '/ip4/127.0.0.1/tcp/0'])
    assert.is(second.code, 2)
    assert.match(second.stderr, /a daemon \(pid \d+\) already runs in/)
    const code = await swarm.kill(node, 'SIGTERM')
    assert.is(code, 0)
    assert.ok(node.output.includes('stopped'))
  } finally {
    await swarm.close()
  }
})

test.run()
