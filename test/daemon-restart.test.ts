// Restarts and departures (issue 11): a SIGKILLed stage server restarted with nothing but its
// directory finds the swarm again (saved peers), takes back the stage its checkpoint holds and
// resumes the checkpoint; a dead peer leaves every view long before its record expires, and
// the stage it leaves empty is reported.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { NodeStatus } from '../node/daemon/node.js'
import { TestSwarm, waitFor, type NodeProcess } from './daemon-harness.js'

const tiny = ['--stages', '3', '--d-model', '64', '--layers', '3', '--heads', '4', '--seq-len', '32', '--batch-size', '8', '--microbatches', '1', '--private']

/** The stage each node serves, once the three nodes serve three different stages. */
async function spread (swarm: TestSwarm, nodes: NodeProcess[]): Promise<NodeStatus[]> {
  let seen: NodeStatus[] = []
  return await waitFor('one node per stage', 60_000, async () => {
    seen = await Promise.all(nodes.map(async n => await swarm.status(n)))
    return new Set(seen.map(s => s.stage)).size === 3 ? seen : undefined
  }, () => TestSwarm.describe(seen))
}

test('a SIGKILLed server restarted from its directory alone rejoins, takes its stage back and resumes its checkpoint', async () => {
  const swarm = new TestSwarm()
  try {
    const seed = await swarm.init('a', tiny)
    const common = ['--capacity', '1000', '--threads', '1']
    const env = { SWARMTRAIN_CHECKPOINT_MS: '300' }
    const a = await swarm.start('a', seed, [...common, '--max-microbatches', '12', '--eval-every', '0'], env)
    const b = await swarm.start('b', swarm.clone(seed, 'b'), [...common, '--no-drive', '--bootstrap', a.address], env)
    const c = await swarm.start('c', swarm.clone(seed, 'c'), [...common, '--no-drive', '--bootstrap', a.address], env)
    await spread(swarm, [a, b, c])
    await waitFor('the driver to finish', 180_000, async () => (await swarm.pipeline(a)).driver?.done === true ? true : undefined)

    const victim = b
    const { stage, trained } = await waitFor('b to checkpoint its steps', 30_000, async () => {
      const s = await swarm.pipeline(victim)
      const steps = s.server?.steps ?? 0
      return steps > 0 && s.checkpointStep === steps ? { stage: s.stage!, trained: steps } : undefined
    })
    const saved = JSON.parse(readFileSync(join(victim.dir, 'peers.json'), 'utf8')) as { peers: string[] }
    assert.ok(saved.peers.includes(a.address), `peers.json lacks the bootstrap peer: ${JSON.stringify(saved)}`)
    await swarm.kill(victim)

    // No --bootstrap: the saved peers lead back to the swarm, while b's old records are still valid.
    const again = await swarm.start('b2', victim.dir, [...common, '--no-drive'], env)
    assert.ok(again.output.some(l => /^rejoined the swarm through [1-9]\d* of \d+ saved peer/.test(l)), again.output.join('\n'))
    const resumed = await swarm.pipeline(again)
    assert.is(resumed.stage, stage, `took stage ${String(resumed.stage)}, its checkpoint holds stage ${stage}:\n${again.output.join('\n')}`)
    assert.ok(again.output.includes(`resuming stage ${stage} from ${join(victim.dir, `stage-${stage}.safetensors`)} (step ${trained}): the stage needs a server`), again.output.join('\n'))
    assert.is(resumed.checkpointStep, trained, 'the restarted daemon did not resume from its checkpoint')

    // Every view settles at one server per stage: b's old life is not counted beside the new one.
    let seen: NodeStatus[] = []
    await waitFor('every view to list each node once', 30_000, async () => {
      seen = await Promise.all([a, again, c].map(async n => await swarm.status(n)))
      return seen.every(s => s.stages.every(st => st.peers.length === 1)) ? true : undefined
    }, () => TestSwarm.describe(seen))
  } finally {
    await swarm.close()
  }
})

test('a killed peer leaves the views long before its record expires, and the empty stage is reported (log line, status)', async () => {
  const swarm = new TestSwarm()
  try {
    // Records live 60 s here: the peer must go because it is gone, not because its record expired.
    const env = { SWARMTRAIN_RECORD_TTL_MS: '60000' }
    const seed = await swarm.init('a', ['--stages', '2'])
    const a = await swarm.start('a', seed, ['--no-pipeline', '--capacity', '100', '--stage', '0'], env)
    const b = await swarm.start('b', swarm.clone(seed, 'b'), ['--no-pipeline', '--capacity', '100', '--stage', '1', '--bootstrap', a.address], env)
    await waitFor('a to see b', 30_000, async () => (await swarm.status(a)).stages[1].peers.length === 1 ? true : undefined)
    await waitFor('a to report a complete pipeline', 10_000, async () => a.output.some(l => l.startsWith('every stage has a server')) ? true : undefined, () => a.output.join('\n'))
    // a saves the peers it meets (each refresh, in the background): b's address reaches peers.json.
    await waitFor('a to save b in peers.json', 10_000, async () =>
      existsSync(join(seed, 'peers.json')) && readFileSync(join(seed, 'peers.json'), 'utf8').includes(b.peerId) ? true : undefined)

    await swarm.kill(b)
    const killed = Date.now()
    await waitFor('b to leave a\'s view', 20_000, async () => (await swarm.status(a)).stages[1].peers.length === 0 ? true : undefined)
    const gone = Date.now() - killed
    assert.ok(gone < 20_000, `${gone} ms`)
    await waitFor('a to report the empty stage', 10_000, async () =>
      a.output.some(l => l.startsWith('waiting for a server of stage 1: nothing trains until every stage has one')) ? true : undefined, () => a.output.join('\n'))
    const status = await swarm.run(['status', '--control-port', String(a.controlPort)])
    assert.is(status.code, 0, status.stderr)
    assert.match(status.stdout, /^swarm: 1 node\(s\)  training 0\.0 tokens\/s  round 0  loss - \(no driver has reported one yet\)$/m)
    assert.match(status.stdout, /^ +1 +0 .* NO SERVER: nothing trains/m)
    assert.match(status.stdout, /^ +0 +1 .* ok \(no spare server\) .*\*/m)
  } finally {
    await swarm.close()
  }
})

test.run()
