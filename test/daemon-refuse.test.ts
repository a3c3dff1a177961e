// Who may join a private run: only peers with its swarm key and its manifest. Everyone else
// is refused with a one-line error naming the problem, and the swarm keeps serving.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { copyFileSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { TestSwarm } from './daemon-harness.js'

test('other swarm key, no key or other manifest: refused; same key: joins', async () => {
  const swarm = new TestSwarm()
  try {
    const seedDir = await swarm.init('seed', ['--private', '--stages', '2'])
    const seed = await swarm.start('seed', seedDir, ['--no-pipeline', '--capacity', '100'])
    const runId = (await swarm.status(seed)).runId

    const wrongKey = swarm.clone(seedDir, 'wrong-key')
    copyFileSync(join(await swarm.init('other-private', ['--private']), 'swarm.key'), join(wrongKey, 'swarm.key'))
    const noKey = swarm.clone(seedDir, 'no-key')
    rmSync(join(noKey, 'swarm.key'))
    const otherRun = await swarm.init('other-run', ['--stages', '2', '--lr', '0.001'])
    copyFileSync(join(seedDir, 'swarm.key'), join(otherRun, 'swarm.key'))

    const start = async (dir: string): Promise<{ code: number | null, stderr: string }> =>
      await swarm.run(['start', '--dir', dir, '--no-pipeline', '--listen', '/ip4/127.0.0.1/tcp/0', '--capacity', '1', '--bootstrap', seed.address])
    const [a, b, c] = await Promise.all([start(wrongKey), start(noKey), start(otherRun)])
    for (const result of [a, b, c]) {
      assert.is(result.code, 2, result.stderr)
      assert.is(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`)
    }
    // A wrong key and no key fail alike on the wire; the message names the likely side.
    assert.match(a.stderr, /this node has a swarm key: most likely the peer uses another one, or none/)
    assert.match(b.stderr, /this node has no swarm key: most likely the peer is in a private swarm; pass its key with --swarm-key FILE/)
    assert.match(c.stderr, new RegExp(`serves run ${runId} but this node's manifest gives run [0-9a-f]+`))

    // join checks the manifest against the run id; with the key it gets in.
    const wrongRun = await swarm.run(['join', seed.address, '--run', 'ffff', '--dir', swarm.dir('joiner-bad'), '--swarm-key', join(seedDir, 'swarm.key'), '--no-pipeline'])
    assert.is(wrongRun.code, 2)
    assert.match(wrongRun.stderr, new RegExp(`serves run ${runId}, not ffff`))
    const joinerDir = swarm.dir('joiner')
    const joiner = await swarm.join('joiner', joinerDir, seed.address, ['--swarm-key', join(seedDir, 'swarm.key'), '--no-pipeline', '--capacity', '1'])
    assert.ok(joiner.output.includes(`joined run ${runId} through ${seed.address} as ${joiner.peerId}`))
    assert.is((await swarm.status(joiner)).runId, runId)
    assert.equal(JSON.parse(readFileSync(join(joinerDir, 'swarm.json'), 'utf8')), JSON.parse(readFileSync(join(seedDir, 'swarm.json'), 'utf8')))

    // The seed kept serving through all of it.
    assert.is((await swarm.status(seed)).runId, runId)
  } finally {
    await swarm.close()
  }
})

test.run()
