// A daemon checkpoints the stage it serves and resumes it after a crash: SIGKILL a stage
// server that has trained, restart it from its directory, and it serves from the saved step.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { TestSwarm, waitFor } from './daemon-harness.js'

const MICROBATCHES = 24

test('a SIGKILLed stage server resumes its stage from its last checkpoint', async () => {
  const swarm = new TestSwarm()
  try {
    const seed = await swarm.init('a', ['--stages', '2', '--d-model', '64', '--layers', '2', '--heads', '4', '--seq-len', '32', '--batch-size', '8', '--microbatches', '1', '--private'])
    const common = ['--capacity', '1000', '--threads', '1']
    const env = { SWARMTRAIN_CHECKPOINT_MS: '300' }
    const a = await swarm.start('a', seed, [...common, '--stage', '0', '--max-microbatches', String(MICROBATCHES), '--eval-every', '0'], env)
    const dirB = swarm.clone(seed, 'b')
    const b = await swarm.start('b', dirB, [...common, '--stage', '1', '--no-drive', '--bootstrap', a.address], env)

    await waitFor('the driver to finish', 120_000, async () => (await swarm.pipeline(a)).driver?.done === true ? true : undefined)
    // Every microbatch is one inner step at this batch size; wait until b's checkpoint caught up.
    const trained = await waitFor('b to checkpoint its steps', 30_000, async () => {
      const s = await swarm.pipeline(b)
      const steps = s.server?.steps ?? 0
      return steps > 0 && s.checkpointStep === steps ? steps : undefined
    })
    assert.ok(existsSync(join(dirB, 'stage-1.safetensors')))
    await swarm.kill(b)

    const again = await swarm.start('b2', dirB, [...common, '--stage', '1', '--no-drive', '--bootstrap', a.address], env)
    const resumed = await swarm.pipeline(again)
    assert.is(resumed.stage, 1)
    assert.is(resumed.checkpointStep, trained, 'the restarted daemon did not resume from its checkpoint')
  } finally {
    await swarm.close()
  }
})

test.run()
