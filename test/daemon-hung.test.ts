// A hung peer (alive TCP, no answers) is noticed by the connection monitor within seconds,
// and `status` shows the swarm from the daemon's side, as a table or JSON.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TestSwarm, waitFor } from './daemon-harness.js'

test('a frozen peer is disconnected within seconds; status reports the swarm', async () => {
  const swarm = new TestSwarm()
  // Ping every second, give up after two: a frozen peer is dropped in about three seconds.
  const monitor = { SWARMTRAIN_PING_INTERVAL_MS: '1000', SWARMTRAIN_PING_TIMEOUT_MS: '2000' }
  try {
    const seedDir = await swarm.init('a', ['--stages', '2'])
    const a = await swarm.start('a', seedDir, ['--no-pipeline', '--capacity', '100'], monitor)
    const b = await swarm.start('b', swarm.clone(seedDir, 'b'), ['--no-pipeline', '--capacity', '50', '--bootstrap', a.address], monitor)
    await waitFor('both nodes in the view', 30_000, async () => {
      const s = await swarm.status(a)
      return s.stages.every(st => st.peers.length === 1) ? true : undefined
    })

    const table = await swarm.run(['status', '--dir', seedDir])
    assert.is(table.code, 0, table.stderr)
    assert.match(table.stdout, /stage +servers +capacity\/s +serving\/s +health +members/)
    assert.match(table.stdout, new RegExp(`peer ${a.peerId}`))
    const json = JSON.parse((await swarm.run(['status', '--dir', seedDir, '--json'])).stdout)
    assert.is(json.peerId, a.peerId)
    assert.equal(json.stages.map((s: { peers: unknown[] }) => s.peers.length), [1, 1])
    assert.equal(json.stages.map((s: { throughput: number }) => s.throughput).sort((x: number, y: number) => x - y), [50, 100])

    // Freeze b: its socket stays open but nothing answers.
    b.child.kill('SIGSTOP')
    const frozenAt = Date.now()
    try {
      await waitFor('the frozen peer disconnected', 20_000, async () => (await swarm.status(a)).connections === 0 ? true : undefined)
      const noticedMs = Date.now() - frozenAt
      assert.ok(noticedMs < 15_000, `noticed after ${noticedMs} ms`)
    } finally {
      b.child.kill('SIGCONT')
    }
  } finally {
    await swarm.close()
  }
})

test.run()
