// `swarmtrain demo` end to end, kept small: two daemons, the tiny model, a few microbatches.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { cliPath as cli } from '../node/daemon/process.js'

test('demo trains in a local swarm, prints progress, exits 0 and leaves nothing behind', async () => {
  const before = new Set(readdirSync(tmpdir()).filter(f => f.startsWith('swarmtrain-demo-')))
  const child = spawn(process.execPath, ['--no-warnings', cli, 'demo', '--tiny', '--nodes', '2', '--microbatches', '20'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => { out += c })
  child.stderr.on('data', (c: Buffer) => { err += c })
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  clearTimeout(timer)
  assert.is(code, 0, `demo failed: ${err}`)
  assert.match(out, /node 1: stage 1/)
  assert.match(out, /microbatch 10 {2}loss \d+\.\d+/)
  assert.match(out, /microbatch 20 {2}validation loss \d+\.\d+ nats\/byte/)
  assert.match(out, /done: 20 microbatches, 0 failed/)
  const after = readdirSync(tmpdir()).filter(f => f.startsWith('swarmtrain-demo-') && !before.has(f))
  assert.equal(after, [], 'the demo removed its node directories')
})

test('demo refuses bad options with a one-line error', async () => {
  const child = spawn(process.execPath, ['--no-warnings', cli, 'demo', '--nodes', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  assert.is(code, 2)
  assert.is(err.trim(), "swarmtrain: --nodes must be an integer from 2 to 16, got '1'")
})

test.run()
