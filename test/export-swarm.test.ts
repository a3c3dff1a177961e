// export --swarm (issue 11): a running daemon gathers the swarm's model, its own stage from its
// engine and the other from that stage's replica over the state protocol; the model is the one
// the stages' own states make, and generate runs it. A node that only serves shows the swarm's loss.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { copyFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { NodeStatus } from '../node/daemon/node.js'
import { TestSwarm, waitFor } from './daemon-harness.js'

// Two stages, and no averaging round while the test runs: the states stand still once the driver is done.
const tiny = ['--stages', '2', '--d-model', '32', '--layers', '2', '--heads', '2', '--seq-len', '16', '--batch-size', '4', '--microbatches', '1', '--inner-steps', '1000', '--private']

test('export --swarm from a live 2-stage swarm writes the model of the stages\' states', async () => {
  const swarm = new TestSwarm()
  try {
    const seed = await swarm.init('a', tiny)
    const common = ['--capacity', '1000', '--threads', '1', '--eval-every', '0']
    const env = { SWARMTRAIN_CHECKPOINT_MS: '300' }
    const a = await swarm.start('a', seed, [...common, '--max-microbatches', '12'], env)
    const b = await swarm.start('b', swarm.clone(seed, 'b'), [...common, '--no-drive', '--bootstrap', a.address], env)
    let seen: NodeStatus[] = []
    await waitFor('one node per stage', 60_000, async () => {
      seen = await Promise.all([a, b].map(async n => await swarm.status(n)))
      return new Set(seen.map(s => s.stage)).size === 2 ? true : undefined
    }, () => TestSwarm.describe(seen))
    await waitFor('the driver to finish', 180_000, async () => (await swarm.pipeline(a)).driver?.done === true ? true : undefined)
    // Each stage trained, and its checkpoint on disk is its state now.
    const served = await waitFor('both stages to checkpoint their steps', 30_000, async () => {
      const both = await Promise.all([a, b].map(async n => ({ node: n, s: await swarm.pipeline(n) })))
      return both.every(({ s }) => (s.server?.steps ?? 0) > 0 && s.checkpointStep === s.server?.steps) ? both : undefined
    })

    // The node that only serves shows the swarm's loss, from the driver's record.
    // (Records are republished every few seconds: an older one may carry an earlier loss.)
    const driverLoss = (await swarm.pipeline(a)).driver!.trainLoss!
    let text = ''
    await waitFor(`b to show the driver's loss ${driverLoss.toFixed(4)}`, 30_000, async () => {
      text = (await swarm.run(['status', '--control-port', String(b.controlPort)])).stdout
      return new RegExp(` loss ${driverLoss.toFixed(4)}(  validation \\d+\\.\\d{4})? \\(1 driver\\)$`, 'm').test(text) ? true : undefined
    }, () => text)

    const out = join(swarm.root, 'swarm.onnx')
    const exported = await swarm.run(['export', '--swarm', '--dir', a.dir, '--out', out], 60_000)
    assert.is(exported.code, 0, exported.stderr)
    const steps = served.sort((x, y) => x.s.stage! - y.s.stage!).map(({ s }) => s.server!.steps)
    assert.match(exported.stdout, new RegExp(`^asking the daemon on 127.0.0.1:\\d+ for the swarm.s weights[^\\n]*\\nwrote .*stage steps ${steps.join('/')}, rounds 0/0 \\(from .*${b.peerId.slice(-6)}`))

    // The daemon said where each stage came from.
    await waitFor('the daemon to log the export', 10_000, async () => a.output.filter(l => /^export: stage \d \(step \d+, round 0\) from …/.test(l)).length === 2 ? true : undefined, () => a.output.join('\n'))

    // The same stages from their checkpoints, in one directory: the same model, byte for byte.
    const merged = swarm.clone(seed, 'merged')
    for (const { node, s } of served) copyFileSync(join(node.dir, `stage-${s.stage!}.safetensors`), join(merged, `stage-${s.stage!}.safetensors`))
    const fromCheckpoints = join(swarm.root, 'checkpoints.onnx')
    const reference = await swarm.run(['export', '--checkpoint', merged, '--out', fromCheckpoints], 60_000)
    assert.is(reference.code, 0, reference.stderr)
    assert.ok(readFileSync(out).equals(readFileSync(fromCheckpoints)), 'export --swarm differs from the stages\' checkpoints')

    // And it is a model generate can run.
    const generated = await swarm.run(['generate', '--model', out, '--prompt', 'the cat', '--tokens', '20', '--seed', '3'], 60_000)
    assert.is(generated.code, 0, generated.stderr)
    assert.ok(generated.stdout.startsWith('the cat') && generated.stdout.trimEnd().length > 'the cat'.length, generated.stdout)
  } finally {
    await swarm.close()
  }
})

test.run()
