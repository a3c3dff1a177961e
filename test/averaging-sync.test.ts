// State sync and failures between daemons on 127.0.0.1: a newcomer starts as a copy of one
// replica (its weights, moments and step) and holds the group's hash; a member SIGKILLed while rounds run costs its
// contribution, the others keep agreeing; a restarted member resumes from its checkpoint and
// catches up.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TestSwarm } from './daemon-harness.js'
import { START_MS, agreed, averagingStatus, daemonFlags as common, tinyRun } from './averaging-harness.js'

test('a newcomer copies a replica before serving and holds the group\'s hash', async () => {
  const swarm = new TestSwarm()
  try {
    const seed = await swarm.init('a', [...tinyRun, '--inner-steps', '3', '--round-timeout-ms', '6000'])
    const a = await swarm.start('a', seed, [...common, '--max-microbatches', '20'], {}, START_MS)
    const b = await swarm.start('b', swarm.clone(seed, 'b'), [...common, '--max-microbatches', '20', '--bootstrap', a.address], {}, START_MS)
    const [before] = await agreed(swarm, [a, b], 2, 120_000)
    // The newcomer only serves: no tokens of its own, so the group's rounds stand still.
    const c = await swarm.start('c', swarm.clone(seed, 'c'), [...common, '--no-drive', '--bootstrap', a.address], {}, START_MS)
    const [, , newcomer] = await agreed(swarm, [a, b, c], before.round, 60_000)
    assert.ok(newcomer.syncs >= 1, 'the newcomer did not sync')
    assert.ok([a.peerId, b.peerId].includes(newcomer.copiedFrom ?? ''), `the newcomer copied no replica: ${newcomer.copiedFrom}`)
    const status = await swarm.status(c)
    assert.is(status.stageHost?.round, newcomer.round)
    assert.ok(c.output.some(l => new RegExp(`^stage 0: took a copy of a replica \\(round \\d+\\) from …${newcomer.copiedFrom!.slice(-6)}: [\\d.]+ MB in \\d+ ms$`).test(l)), c.output.join('\n'))
    // It took the replica's schedule position with the moments that go with it.
    assert.ok((status.stageHost?.step ?? 0) > 0, `the newcomer is at step ${status.stageHost?.step}`)
  } finally {
    await swarm.close()
  }
})

test('a member SIGKILLed while rounds run: the others keep agreeing; restarted, it resumes and catches up', async () => {
  const swarm = new TestSwarm()
  try {
    const seed = await swarm.init('a', [...tinyRun, '--inner-steps', '3', '--round-timeout-ms', '6000'])
    // Unbounded drivers: rounds need fresh tokens, so they go on until the test ends.
    const a = await swarm.start('a', seed, common, {}, START_MS)
    const dirC = swarm.clone(seed, 'c')
    const b = await swarm.start('b', swarm.clone(seed, 'b'), [...common, '--bootstrap', a.address], {}, START_MS)
    const c = await swarm.start('c', dirC, [...common, '--bootstrap', a.address], {}, START_MS)
    await agreed(swarm, [a, b, c], 1, 120_000)
    const killedAt = (await averagingStatus(swarm, c)).round
    await swarm.kill(c)
    const survivors = await agreed(swarm, [a, b], killedAt + 1, 120_000)
    assert.ok(survivors.every(s => s.rounds.every(r => r.members >= 1)))

    const again = await swarm.start('c2', dirC, [...common, '--no-drive', '--bootstrap', a.address], {}, START_MS)
    const resumed = await swarm.status(again)
    assert.ok((resumed.stageHost?.round ?? 0) >= 1, `the restarted member did not resume its checkpoint: ${JSON.stringify(resumed.stageHost)}`)
    const all = await agreed(swarm, [a, b, again], survivors[0].round, 60_000)
    assert.ok(all[2].syncs >= 1 || all[2].round === resumed.stageHost?.round)
  } finally {
    await swarm.close()
  }
})

test.run()
