// `swarmtrain demo` end to end, kept small: the tiny model, a few peers, a few microbatches; and
// Ctrl-C in the middle of a run.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cliPath as cli } from '../node/daemon/process.js'
import { readManifest, runIdOf } from '../node/manifest/manifest.js'
import { stageLayout, stageParamLayout } from '../node/model/index.js'
import { readStageCheckpoint, stageCheckpointPath } from '../node/runtime/checkpoint.js'
import { StageEngine } from '../node/runtime/stage-engine.js'

function demo (args: string[]): { child: ChildProcess, out: () => string, err: () => string, closed: Promise<number | null> } {
  const child = spawn(process.execPath, ['--no-warnings', cli, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.on('data', (c: Buffer) => { out += c })
  child.stderr?.on('data', (c: Buffer) => { err += c })
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000)
  const closed = new Promise<number | null>(resolve => child.on('close', code => { clearTimeout(timer); resolve(code) }))
  return { child, out: () => out, err: () => err, closed }
}

/** Processes whose parent is `pid` (from /proc). */
function childrenOf (pid: number): number[] {
  return readdirSync('/proc').filter(f => /^\d+$/.test(f)).filter(f => {
    try {
      // The command name may hold spaces and parentheses: the fields after its last ')' are fixed.
      const stat = readFileSync(`/proc/${f}/stat`, 'utf8')
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid
    } catch {
      return false
    }
  }).map(Number)
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Every file under `dir`, relative. */
function files (dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter(e => e.isFile()).map(e => join(e.parentPath, e.name).slice(dir.length + 1))
}

test('demo trains in a local swarm, prints progress, a plot, a model and a sample, exits 0 and leaves nothing behind', async () => {
  const before = new Set(readdirSync(tmpdir()).filter(f => f.startsWith('swarmtrain-demo-') || f.startsWith('mat-debug-')))
  const run = demo(['--tiny', '--peers', '2', '--microbatches', '20'])
  const code = await run.closed
  const out = run.out()
  assert.is(code, 0, `demo failed: ${run.err()}`)
  assert.match(out, /node 1: stage 1/)
  assert.match(out, /^dashboard http:\/\/127\.0\.0\.1:\d+\/$/m)
  assert.match(out, /microbatch 10 {2}loss \d+\.\d+/)
  assert.match(out, /microbatch 20 {2}validation loss \d+\.\d+ nats\/byte/)
  assert.match(out, /done: 20 microbatches, 0 failed/)
  assert.match(out, /loss plot .*loss\.svg/)
  assert.match(out, /model .*model\.onnx \(stage steps \d+, \d+\)/)
  assert.match(out, /sample: The jury said./)
  const after = readdirSync(tmpdir()).filter(f => (f.startsWith('swarmtrain-demo-') || f.startsWith('mat-debug-')) && !before.has(f))
  assert.equal(after, [], 'the demo removed its run directory and the onnxruntime debug logs')
})

test('Ctrl-C during a demo stops every daemon within seconds; the kept checkpoints load; no temporary file remains', async () => {
  const root = mkdtempSync(join(tmpdir(), 'swarmtrain-demo-test-'))
  const dir = join(root, 'run')
  try {
    const run = demo(['--tiny', '--peers', '3', '--minutes', '10', '--keep', '--dir', dir])
    const deadline = Date.now() + 150_000
    while (!/microbatch 40 /.test(run.out()) && run.child.exitCode === null && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 200))
    assert.match(run.out(), /microbatch 40 /, `the demo trained: ${run.out()} ${run.err()}`)
    const daemons = childrenOf(run.child.pid as number)
    assert.is(daemons.length, 3, 'three daemons run')

    const interruptedAt = Date.now()
    run.child.kill('SIGINT')
    const code = await run.closed
    const seconds = (Date.now() - interruptedAt) / 1000
    const out = run.out()
    assert.is(code, 130, run.err())
    assert.ok(seconds < 20, `stopped in ${seconds} s`)
    console.log(`the demo stopped ${seconds.toFixed(1)} s after SIGINT`)
    assert.match(out, /Ctrl-C: stopping the swarm/)
    assert.match(out, /stopping node 0 \(the driver/)
    assert.match(out, /stopped 3 daemons in \d+\.\d s\n/)
    assert.match(out, new RegExp(`kept the run in ${dir}`))
    assert.equal(daemons.filter(alive), [], 'no daemon is left')
    // Nor the empty log onnxruntime's telemetry creates in the temp directory of every process that runs a session.
    const debugLogs = [run.child.pid as number, ...daemons].map(pid => `mat-debug-${pid}.log`)
    assert.equal(readdirSync(tmpdir()).filter(f => debugLogs.includes(f)), [], 'onnxruntime debug logs left in the temp directory')

    // Every stage has a checkpoint, and each one loads into an engine of its stage. (A replica
    // that got no calls, e.g. one beside the driver's own, never steps: it saves only once an
    // averaging round or a sync gave it the stage's shared state, at step 0.)
    const manifest = await readManifest(join(dir, 'node0'))
    const checkpointed = new Set<number>()
    for (let i = 0; i < 3; i++) {
      const stage = i % manifest.nStages
      const path = stageCheckpointPath(join(dir, `node${i}`), stage)
      const saved = await readStageCheckpoint(path, { runId: runIdOf(manifest), stage, layout: stageParamLayout(manifest.model, stage, manifest.nStages) })
      if (saved === undefined) continue
      assert.ok(saved.step > 0 || saved.round > 0, `node ${i} checkpointed stage ${stage} after a step or a round (step ${saved.step}, round ${saved.round})`)
      checkpointed.add(stage)
      const engine = await StageEngine.create({ model: manifest.model, layout: stageLayout(manifest.model, stage, manifest.nStages), optimizer: manifest.optimizer, threads: 1 })
      try {
        await engine.loadState(saved.groups.weights, { step: saved.step, m: saved.groups['adamw.m'], v: saved.groups['adamw.v'] })
        assert.is(engine.steps, saved.step)
      } finally {
        await engine.close()
      }
    }
    assert.equal([...checkpointed].sort(), [0, 1], 'every stage has a checkpoint')
    const left = files(dir)
    assert.equal(left.filter(f => f.includes('.tmp-') || f.endsWith('daemon.json')), [], `leftovers: ${left.join(' ')}`)
    assert.ok(existsSync(join(dir, 'node0', 'log.jsonl')), 'the driver kept its JSON log')
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('demo refuses bad options with a one-line error', async () => {
  for (const [args, message] of [
    [['--peers', '1', '--stages', '2'], "swarmtrain: --peers must be an integer from 2 to 32, got '1'"],
    [['--minutes', 'soon'], "swarmtrain: --minutes must be a number from 0.05 to 1440, got 'soon'"],
    [['--stages', '3', '--tiny'], "swarmtrain: --stages must be at most the model's 2 layers, got 3"]
  ] as const) {
    const run = demo([...args])
    assert.is(await run.closed, 2)
    assert.is(run.err().trim(), message)
  }
})

test.run()
