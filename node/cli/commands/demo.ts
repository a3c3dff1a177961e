// swarmtrain demo: a private swarm (fresh pre-shared key) of a few daemons on 127.0.0.1, each its
// own process, trains the default model on the bundled Brown corpus for a few minutes. Node 0
// drives; the demo shows the dashboard's address and a live view, then exports the model,
// writes the loss plot and prints a sample. Ctrl-C stops the daemons in order (the driver
// first, so its microbatches in flight finish while the servers still answer).
import { spawn } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type DaemonProcess, cliPath, fetchStatus, lastError, spawnDaemon, stopDaemon } from '../../daemon/process.js'
import type { NodeStatus } from '../../daemon/node.js'
import { UserError } from '../../errors.js'
import { defaultManifest, runIdOf, writeManifest, type RunManifest } from '../../manifest/manifest.js'
import { LOG_FILE } from '../../metrics/loss-log.js'
import { parseLogLine } from '../../metrics/log-line.js'
import { lossPlotSvg, type PlotCurve } from '../../metrics/svg-plot.js'
import { buildInferenceGraph, stageParamLayout } from '../../model/index.js'
import { SWARM_KEY_FILE, newSwarmKey, writeSwarmKey } from '../../p2p/keys.js'
import type { PipelineStatus } from '../../pipeline/swarm.js'
import { readStageCheckpoint, stageCheckpointPath, stageWeights } from '../../runtime/checkpoint.js'
import { writeFileAtomic } from '../../util/fs.js'
import { intOption, numberOption, parse } from '../args.js'
import { demoView } from '../demo-view.js'
import { UsageError } from '../errors.js'
import { DEMO_DRIVER_STOP_MS, DEMO_SERVER_STOP_MS, LOOPBACK_SWARM_ENV } from '../../timing.js'

export const summary = 'train on this machine: a few daemons on 127.0.0.1 form a private swarm, with a live view'

export const usage = `usage: swarmtrain demo [--peers N] [--stages S] [--minutes M] [--dir D] [--keep] [options]

Starts N daemons listening on 127.0.0.1 only, as a private swarm (a fresh pre-shared key),
with the default model split into S stages; node 0 drives microbatches from the Brown corpus.
It prints the dashboard's address (open it in a browser) and shows a live view (plain lines
when stdout is not a terminal). At the end it exports the model (model.onnx), writes the loss
plot (loss.svg) in the run directory and prints a generated sample; then it removes the run
directory unless --keep. Ctrl-C stops every daemon within seconds and leaves nothing behind.

  --peers N          daemons (default 4, at least S)
  --stages S         pipeline stages (default 2)
  --minutes M        train for M minutes (default 3)
  --microbatches K   or stop after K microbatches, if sooner
  --dir D            the run directory (default a new temporary one); must be new or empty
  --keep             keep the run directory: node directories (checkpoints, JSON logs), model, plot
  --tiny             a small model (d_model 64, 2 layers, 32-byte context) for a quick look`

/** A daemon of the demo died, or its directory cannot be used. */
class DemoError extends UserError {
  override name = 'DemoError'
}

const PROMPT = 'The jury said'

interface Run {
  root: string
  /** The demo made the root (so it removes it; otherwise it empties it). */
  madeRoot: boolean
  daemons: DaemonProcess[]
  logs: WriteStream[]
}

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    peers: { type: 'string' }, stages: { type: 'string' }, minutes: { type: 'string' }, microbatches: { type: 'string' },
    dir: { type: 'string' }, keep: { type: 'boolean' }, tiny: { type: 'boolean' }
  })
  const stages = intOption('stages', values.stages, 2, 1, 16)
  const peers = intOption('peers', values.peers, Math.max(4, stages), stages, 32)
  const minutes = numberOption('minutes', values.minutes, 3, 0.05, 24 * 60)
  const microbatches = values.microbatches === undefined ? undefined : intOption('microbatches', values.microbatches, 0, 1)
  const keep = values.keep === true
  const manifest = defaultManifest()
  manifest.nStages = stages
  if (values.tiny === true) {
    manifest.model = { ...manifest.model, dModel: 64, nLayers: 2, nHeads: 4, seqLen: 32 }
    manifest.optimizer.batchSize = 8
  }
  if (stages > manifest.model.nLayers) throw new UsageError(`--stages must be at most the model's ${manifest.model.nLayers} layers, got ${stages}`)

  const run: Run = { ...await runDirectory(values.dir), daemons: [], logs: [] }
  const tty = process.stdout.isTTY === true
  let interrupted = false
  let wake = (): void => {}
  const onSignal = (): void => {
    if (interrupted) {
      console.log('Ctrl-C again: killing the daemons')
      for (const d of run.daemons) d.child.kill('SIGKILL')
      return
    }
    interrupted = true
    console.log('\nCtrl-C: stopping the swarm (Ctrl-C again to kill it)')
    wake()
  }
  const sleep = async (ms: number): Promise<void> => await new Promise(resolve => {
    const timer = setTimeout(resolve, ms)
    wake = () => { clearTimeout(timer); resolve() }
  })
  process.on('SIGINT', onSignal)
  try {
    console.log(`demo run ${runIdOf(manifest)}: ${peers} daemons, model d${manifest.model.dModel} L${manifest.model.nLayers} T${manifest.model.seqLen}, ${stages} stage${stages === 1 ? '' : 's'}, private swarm in ${run.root}`)
    await startDaemons(run, manifest, peers, microbatches, !tty, () => interrupted)
    if (interrupted) return 130
    console.log(`dashboard http://127.0.0.1:${run.daemons[0].controlPort}/`)

    const started = Date.now()
    const limitMs = minutes * 60_000
    let last: NodeStatus | undefined
    let drawn = 0
    let previous = { at: started, tokens: 0 }
    while (!interrupted && Date.now() - started < limitMs) {
      await sleep(1000)
      if (interrupted) break
      const dead = run.daemons.findIndex(d => d.child.exitCode !== null || d.child.signalCode !== null)
      if (dead >= 0) throw new DemoError(`node ${dead} exited early: ${lastError(run.daemons[dead].stderr())}`)
      const status = await fetchStatus(run.daemons[0].controlPort).catch(() => undefined)
      if (status === undefined) continue
      last = status
      const driver = (status.services.pipeline as PipelineStatus | undefined)?.driver
      if (tty) {
        const now = Date.now()
        const tokens = driver?.tokens ?? 0
        const lines = demoView({ status, elapsedMs: now - started, limitMs, tokensPerSecond: (tokens - previous.tokens) / Math.max(1e-3, (now - previous.at) / 1000) })
        previous = { at: now, tokens }
        const width = process.stdout.columns ?? 120
        process.stdout.write(`${drawn > 0 ? `\x1b[${drawn}F\x1b[J` : ''}${lines.map(l => l.slice(0, width - 1)).join('\n')}\n`)
        drawn = lines.length
      }
      if (driver?.done === true) break
    }
    if (!interrupted && last !== undefined) {
      const driver = (last.services.pipeline as PipelineStatus | undefined)?.driver
      console.log(`done: ${driver?.completed ?? 0} microbatches, ${driver?.failed ?? 0} failed, final validation loss ${driver?.validationLoss?.toFixed(4) ?? '-'} nats/byte`)
    }
    await stopAll(run)
    if (last !== undefined) await writePlot(run.root, last)
    if (!interrupted) {
      const model = await exportModel(run, manifest)
      if (model !== undefined && !interrupted) await printSample(model, () => interrupted)
    }
    return interrupted ? 130 : 0
  } finally {
    await stopAll(run)
    await Promise.all(run.logs.map(async log => await new Promise(resolve => log.end(resolve))))
    process.removeListener('SIGINT', onSignal)
    if (keep) {
      console.log(`kept the run in ${run.root}: node*/ (checkpoints, JSON logs), model.onnx, loss.svg; 'swarmtrain plot ${run.root}' redraws the plot`)
    } else {
      console.log(`removing ${run.root}`)
      const paths = run.madeRoot ? [run.root] : (await readdir(run.root)).map(name => join(run.root, name))
      for (const path of paths) await rm(path, { recursive: true, force: true })
    }
  }
}

/** The run directory: a new temporary one, or D (created, or empty). */
async function runDirectory (dir: string | undefined): Promise<{ root: string, madeRoot: boolean }> {
  if (dir === undefined) return { root: await mkdtemp(join(tmpdir(), 'swarmtrain-demo-')), madeRoot: true }
  const root = resolve(dir)
  const entries = await readdir(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw new DemoError(`cannot use --dir ${dir} (${err.code ?? err.message})`)
  })
  if (entries === undefined) {
    await mkdir(root, { recursive: true })
    return { root, madeRoot: true }
  }
  if (entries.length > 0) throw new DemoError(`--dir ${dir} is not empty: give a new or empty directory`)
  return { root, madeRoot: false }
}

async function startDaemons (run: Run, manifest: RunManifest, peers: number, microbatches: number | undefined, plain: boolean, interrupted: () => boolean): Promise<void> {
  const key = newSwarmKey()
  for (let i = 0; i < peers && !interrupted(); i++) {
    const dir = join(run.root, `node${i}`)
    await mkdir(dir)
    await writeManifest(dir, manifest)
    await writeSwarmKey(join(dir, SWARM_KEY_FILE), key)
    const stage = i % manifest.nStages
    const args = ['--stage', String(stage), '--capacity', '1000', '--threads', '1', '--log-format', 'json']
    if (i === 0) {
      args.push('--eval-every', '20')
      if (microbatches !== undefined) args.push('--max-microbatches', String(microbatches))
    } else {
      args.push('--no-drive', '--bootstrap', run.daemons[0].address)
    }
    const log = createWriteStream(join(dir, LOG_FILE))
    run.logs.push(log)
    run.daemons.push(await spawnDaemon({
      args: ['start', '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', ...args],
      env: LOOPBACK_SWARM_ENV,
      detached: true,
      onLine: line => {
        log.write(line + '\n')
        // Plain output: the driver's progress lines, as `start` prints them.
        const record = parseLogLine(line)
        if (plain && i === 0 && record?.event === 'loss' && (record.kind === 'validation' || (record.microbatch as number) % 10 === 0)) console.log(record.msg)
        // Every member of a round reports it: one replica per stage is enough.
        if (plain && i < manifest.nStages && record?.event === 'round') console.log(record.msg)
      }
    }))
    console.log(`node ${i}: stage ${stage}${i === 0 ? ', driving' : ''}`)
  }
}

/** Stops the driver first (its microbatches in flight finish while the servers answer), then the rest; kills what does not stop in time. */
async function stopAll (run: Run): Promise<void> {
  const alive = (d: DaemonProcess): boolean => d.child.exitCode === null && d.child.signalCode === null
  if (!run.daemons.some(alive)) return
  const started = Date.now()
  const [driver, ...servers] = run.daemons
  if (alive(driver)) {
    console.log('stopping node 0 (the driver: its microbatches in flight finish, its stage is checkpointed)')
    await stopDaemon(driver.child, DEMO_DRIVER_STOP_MS)
  }
  if (servers.some(alive)) {
    console.log(`stopping node${servers.length > 1 ? `s 1-${servers.length}` : ' 1'} (stage servers: each checkpoints its stage)`)
    await Promise.all(servers.map(async d => { await stopDaemon(d.child, DEMO_SERVER_STOP_MS) }))
  }
  // A daemon killed while writing a checkpoint leaves its temporary file: the last complete checkpoint stands.
  let removed = 0
  for (let i = 0; i < run.daemons.length; i++) {
    const dir = join(run.root, `node${i}`)
    for (const name of await readdir(dir).catch(() => [])) {
      if (!name.includes('.tmp-')) continue
      await rm(join(dir, name), { force: true })
      removed++
    }
  }
  console.log(`stopped ${run.daemons.length} daemons in ${((Date.now() - started) / 1000).toFixed(1)} s${removed > 0 ? `; removed ${removed} unfinished checkpoint file${removed > 1 ? 's' : ''}` : ''}`)
}

async function writePlot (root: string, status: NodeStatus): Promise<void> {
  const history = (status.services.pipeline as PipelineStatus | undefined)?.history
  const curves: PlotCurve[] = [{ name: 'training', points: history?.train ?? [] }, { name: 'validation', points: history?.validation ?? [] }]
  if (curves.every(c => c.points.length === 0)) return
  const path = join(root, 'loss.svg')
  await writeFileAtomic(path, lossPlotSvg(curves.filter(c => c.points.length > 0), { title: `swarmtrain demo, run ${status.runId.slice(0, 12)}` }))
  console.log(`loss plot ${path}`)
}

/** The model from the stage checkpoints: for each stage, the replica that took the most steps. */
async function exportModel (run: Run, manifest: RunManifest): Promise<string | undefined> {
  const weights = new Map<string, Float32Array>()
  const steps: number[] = []
  for (let stage = 0; stage < manifest.nStages; stage++) {
    const layout = stageParamLayout(manifest.model, stage, manifest.nStages)
    let best: Awaited<ReturnType<typeof readStageCheckpoint>>
    for (let i = 0; i < run.daemons.length; i++) {
      const saved = await readStageCheckpoint(stageCheckpointPath(join(run.root, `node${i}`), stage), { runId: runIdOf(manifest), stage, layout }).catch(() => undefined)
      if (saved !== undefined && saved.step > (best?.step ?? -1)) best = saved
    }
    if (best === undefined) {
      console.log(`no model exported: stage ${stage} took no optimizer step yet (train longer)`)
      return undefined
    }
    steps.push(best.step)
    for (const [name, values] of stageWeights(best, layout)) weights.set(name, values)
  }
  const path = join(run.root, 'model.onnx')
  await writeFileAtomic(path, buildInferenceGraph(manifest.model, 'float32', weights).model)
  console.log(`model ${path} (stage steps ${steps.join(', ')})`)
  return path
}

/** A sample from the exported model, by `swarmtrain generate` in its own process. */
async function printSample (model: string, interrupted: () => boolean): Promise<void> {
  const child = spawn(process.execPath, ['--no-warnings', cliPath, 'generate', '--model', model, '--prompt', PROMPT, '--tokens', '160', '--seed', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => { out += c })
  child.stderr.on('data', (c: Buffer) => { err += c })
  const poll = setInterval(() => { if (interrupted()) child.kill('SIGKILL') }, 200)
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  clearInterval(poll)
  if (code === 0) console.log(`sample: ${out.trim()}`)
  else if (!interrupted()) console.log(`no sample: ${lastError(err)}`)
}
