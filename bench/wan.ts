// npm run bench -- wan [--json] [--seconds S] [--limits none,50,20] [--delay-ms D] [--rounds R] [--driver-stage N]
// The default swarm (3 stages x 1 replica, the default model, a private run) on separate hosts
// with limited links. As root, it builds three network namespaces on a bridge (see
// netns/bridge.ts), runs one daemon per namespace pinned to its stage (the one on
// --driver-stage drives), and trains for S seconds in all at each setting, changing the limits
// live: first no limit and no delay (the reference), then each limit with the one-way delay D.
// The settings take turns in R rounds of S/R seconds each, so that the load of a shared machine
// drifting during the run does not favour one of them.
// Every link is limited both ways with tc tbf. This kernel has no netem, so a delay runs the
// daemons behind user-space relays (netns/delay-relay.ts) that hold every chunk for D ms each
// way: the daemons listen on their namespace's 127.0.0.1 and announce their relay's address.
// Per setting, from the driver's status and its link's interface counters: tokens/s and its
// fraction of the reference, MB on the driver's link per microbatch, retried calls, the share
// of the calls' time spent outside the servers' compute and queue (the link, serialization),
// and the last validation loss. Windows during which the driver validated (it pauses training,
// and its passes cross the links) are left out. Everything is removed at the end, also on
// Ctrl-C, on errors, and at the next start after a crash.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { intOption, numberOption, parse } from '../node/cli/args.js'
import { UsageError } from '../node/cli/errors.js'
import type { NodeStatus } from '../node/daemon/node.js'
import { cliPath, spawnDaemon, stopDaemon, type DaemonProcess } from '../node/daemon/process.js'
import type { PipelineStatus } from '../node/pipeline/swarm.js'
import { alive, BridgeNetwork, type BridgeHost, type LinkBytes } from './netns/bridge.js'
import { namespaceSupport, sh, statusIn, withTeardown } from './netns/shell.js'

const STAGES = 3
const DAEMON_PORT = 4001
const RELAY_PORT = 4002
/**
 * Validation every this many microbatches. Training pauses while the driver validates, and its
 * forward passes cross the links too: windows that saw one are left out, so it must be rare. At
 * 400, a 2-core machine doing 40 microbatches/s validated in every 15 s window and measured none.
 */
const EVAL_EVERY = 10_000
/** Daemon timers: records expire within seconds of a node's death; dials get time on a loaded machine. */
const TIMERS = { SWARMTRAIN_RECORD_TTL_MS: '10000', SWARMTRAIN_REFRESH_MS: '2000', SWARMTRAIN_DIAL_TIMEOUT_MS: '15000' }
const relayScript = new URL('netns/delay-relay.js', import.meta.url).pathname

interface Setting {
  /** Mbit/s each way on every link, undefined: none. */
  limitMbit?: number
  delayMs: number
}

interface WanResult {
  bench: 'wan'
  limit_mbit: number | null
  delay_ms: number
  tokens_per_s: number
  fraction_of_unlimited: number
  /** Bytes on the driver's link per microbatch, both ways, and each way. */
  driver_link_mb_per_microbatch: number
  driver_link_mb_out: number
  driver_link_mb_in: number
  retries: number
  failed: number
  /** Of the driver's calls to other nodes: time outside the servers' compute and queue. */
  link_share: number
  val_loss: number | null
  /** Microbatches in the windows measured; windows measured and left out (the driver validated). */
  microbatches: number
  windows: number
  windows_skipped: number
}

interface Sample {
  at: number
  driver: NonNullable<PipelineStatus['driver']>
  calls: PipelineStatus['calls']
  link: LinkBytes
}

/** Node directories live in `${DIR_PREFIX}<pid>-*` under the temporary directory. */
const DIR_PREFIX = 'swarmtrain-wan-'

/** Removes the node directories of runs whose process is gone; returns their paths. */
function removeStaleDirs (): string[] {
  const stale = readdirSync(tmpdir()).filter(name => {
    const pid = name.startsWith(DIR_PREFIX) ? /^(\d+)-/.exec(name.slice(DIR_PREFIX.length))?.[1] : undefined
    return pid !== undefined && !alive(Number(pid))
  }).map(name => join(tmpdir(), name))
  for (const dir of stale) rmSync(dir, { recursive: true, force: true })
  return stale
}

function parseLimits (text: string): Array<number | undefined> {
  return text.split(',').map(item => {
    if (item.trim() === 'none') return undefined
    const n = Number(item)
    if (item.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 100_000) throw new UsageError(`--limits takes 'none' or Mbit/s from 0 to 100000, comma separated, got '${item}'`)
    return n
  })
}

/** The reference first (no limit, no delay), then each limit at the delay, each once. */
function settings (limits: Array<number | undefined>, delayMs: number): Setting[] {
  const out: Setting[] = [{ delayMs: 0 }]
  for (const limitMbit of limits) {
    if (!out.some(s => s.limitMbit === limitMbit && s.delayMs === delayMs)) out.push({ limitMbit, delayMs })
  }
  return out
}

/** A relay holding each chunk for a one-way delay, in a host's namespace, in front of its daemon. */
async function startRelay (host: BridgeHost): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', host.ns, process.execPath, relayScript, host.address, String(RELAY_PORT), '127.0.0.1', String(DAEMON_PORT), '0'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const ready = await new Promise<boolean>(resolve => {
    child.stdout?.on('data', (c: Buffer) => { if (c.toString().includes('ready')) resolve(true) })
    child.once('close', () => resolve(false))
  })
  if (!ready) throw new Error(`the delay relay in ${host.ns} did not start`)
  return child
}

async function sample (ns: string, controlPort: number, net: BridgeNetwork, host: BridgeHost): Promise<Sample> {
  let status: NodeStatus | undefined
  // A loaded machine is slow to start the status process: a few tries.
  for (let attempt = 0; status === undefined; attempt++) {
    try {
      status = await statusIn(ns, controlPort)
    } catch (err) {
      if (attempt === 2) throw new Error(`no status from the driver: ${(err as Error).message.split('\n')[0]}`)
    }
  }
  const at = performance.now()
  const pipeline = status.services.pipeline as PipelineStatus
  if (pipeline.driver === undefined) throw new Error('the driving node has no driver')
  return { at, driver: pipeline.driver, calls: pipeline.calls, link: await net.bytes(host) }
}

/** What the driver did in the measured windows of one setting, summed over the rounds. */
interface Totals {
  /** Windows measured, and left out because the driver validated during them. */
  windows: number
  skipped: number
  ms: number
  tokens: number
  microbatches: number
  tx: number
  rx: number
  retries: number
  failed: number
  /** Of the calls to other nodes: their time outside the servers' compute and queue, and their compute. */
  overheadMs: number
  computeMs: number
  valLoss?: number
}

const noTotals: Totals = { windows: 0, skipped: 0, ms: 0, tokens: 0, microbatches: 0, tx: 0, rx: 0, retries: 0, failed: 0, overheadMs: 0, computeMs: 0 }

/** Adds the window from sample `a` to sample `b` to `t`, unless the driver validated during it. */
function addWindow (t: Totals, driverStage: number, a: Sample, b: Sample): Totals {
  // A validation started (completed crossed a multiple of EVAL_EVERY) or ended (its time was added).
  const validated = Math.floor(a.driver.completed / EVAL_EVERY) !== Math.floor(b.driver.completed / EVAL_EVERY) || a.driver.evaluationMs !== b.driver.evaluationMs
  if (validated) return { ...t, skipped: t.skipped + 1, valLoss: b.driver.validationLoss ?? t.valLoss }
  const sum = (calls: PipelineStatus['calls'], f: (c: PipelineStatus['calls'][number]) => number): number => calls.reduce((x, c) => x + f(c), 0)
  const retries = (calls: PipelineStatus['calls']): number => sum(calls, c => Object.values(c.retries).reduce((x, y) => x + y, 0))
  // The driver computes its own stage's calls itself: the other stages' calls are the remote ones.
  const remote = (calls: PipelineStatus['calls']): PipelineStatus['calls'] => calls.filter((_, stage) => stage !== driverStage)
  return {
    windows: t.windows + 1,
    skipped: t.skipped,
    ms: t.ms + b.at - a.at,
    tokens: t.tokens + b.driver.tokens - a.driver.tokens,
    microbatches: t.microbatches + b.driver.completed - a.driver.completed,
    tx: t.tx + b.link.tx - a.link.tx,
    rx: t.rx + b.link.rx - a.link.rx,
    retries: t.retries + retries(b.calls) - retries(a.calls),
    failed: t.failed + b.driver.failed - a.driver.failed,
    overheadMs: t.overheadMs + sum(remote(b.calls), c => c.overheadMs) - sum(remote(a.calls), c => c.overheadMs),
    computeMs: t.computeMs + sum(remote(b.calls), c => c.computeMs) - sum(remote(a.calls), c => c.computeMs),
    valLoss: b.driver.validationLoss ?? t.valLoss
  }
}

function result (setting: Setting, t: Totals, reference: number | undefined): WanResult {
  const tokensPerS = t.tokens / (t.ms / 1000)
  const mb = (bytes: number): number => bytes / Math.max(1, t.microbatches) / 1e6
  return {
    bench: 'wan',
    limit_mbit: setting.limitMbit ?? null,
    delay_ms: setting.delayMs,
    tokens_per_s: tokensPerS,
    fraction_of_unlimited: reference === undefined ? 1 : tokensPerS / reference,
    driver_link_mb_per_microbatch: mb(t.tx + t.rx),
    driver_link_mb_out: mb(t.tx),
    driver_link_mb_in: mb(t.rx),
    retries: t.retries,
    failed: t.failed,
    link_share: t.overheadMs / Math.max(1e-9, t.overheadMs + t.computeMs),
    val_loss: t.valLoss ?? null,
    microbatches: t.microbatches,
    windows: t.windows,
    windows_skipped: t.skipped
  }
}

function row (r: WanResult): string {
  const limit = r.limit_mbit === null ? 'none' : `${r.limit_mbit} Mbit/s`
  return `${limit.padEnd(12)} ${`${r.delay_ms} ms`.padStart(6)} ${r.tokens_per_s.toFixed(0).padStart(9)} ${r.fraction_of_unlimited.toFixed(2).padStart(9)} ${`${r.driver_link_mb_per_microbatch.toFixed(2)} (${r.driver_link_mb_out.toFixed(2)} out, ${r.driver_link_mb_in.toFixed(2)} in)`.padStart(26)} ${String(r.retries).padStart(7)} ${r.link_share.toFixed(2).padStart(10)} ${(r.val_loss?.toFixed(3) ?? '-').padStart(8)} ${String(r.microbatches).padStart(6)} ${`${r.windows}/${r.windows + r.windows_skipped}`.padStart(7)}`
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

export async function run (args: string[]): Promise<void> {
  const { values } = parse(args, {
    json: { type: 'boolean' }, seconds: { type: 'string' }, limits: { type: 'string' }, 'delay-ms': { type: 'string' }, 'driver-stage': { type: 'string' }, rounds: { type: 'string' }
  })
  const json = values.json === true
  const seconds = intOption('seconds', values.seconds, 90, 5, 3600)
  const rounds = intOption('rounds', values.rounds, 6, 1, 100)
  const delayMs = numberOption('delay-ms', values['delay-ms'], 0, 0, 10_000)
  const driverStage = intOption('driver-stage', values['driver-stage'], 0, 0, STAGES - 1)
  const plan = settings(parseLimits(values.limits ?? 'none,50,20'), delayMs)
  const reason = await namespaceSupport([['ip', '-V'], ['tc', '-V']])
  if (reason !== undefined) {
    console.log(json ? JSON.stringify({ bench: 'wan', skipped: reason }) : `wan: skipped: ${reason}`)
    return
  }
  const say = (line: string): void => { if (!json) console.log(line) }
  const stale = [...await BridgeNetwork.removeStale(), ...removeStaleDirs()]
  if (stale.length > 0) say(`removed what an earlier run left: ${stale.join(' ')}`)
  const net = new BridgeNetwork(STAGES)
  const root = mkdtempSync(join(tmpdir(), `${DIR_PREFIX}${process.pid}-`))
  const daemons: DaemonProcess[] = []
  const relays: ChildProcess[] = []
  const teardown = async (): Promise<void> => {
    await Promise.all(daemons.map(async d => { await stopDaemon(d.child, 3000) }))
    for (const relay of relays) relay.kill('SIGKILL')
    await net.remove(err => { console.error(`wan: ${err.message.split('\n')[0]}`) })
    rmSync(root, { recursive: true, force: true })
  }
  const windowS = seconds / rounds
  const settleS = Math.max(5, Math.min(15, Math.round(windowS / 3)))
  const budgetMs = (6 * 60 + plan.length * rounds * (windowS + settleS + 30)) * 1000
  const lastWords = (): void => {
    for (const d of daemons) if (d.child.exitCode !== null) console.error(`wan: a daemon exited: ${d.stderr().trim().split('\n').slice(-2).join(' | ')}`)
  }
  // Ctrl-C, a kill or the time budget still tear everything down.
  await withTeardown('wan', budgetMs, teardown, async () => {
    await net.create()
    const seed = join(root, 'seed')
    await sh(process.execPath, '--no-warnings', cliPath, 'init', '--private', '--dir', seed)
    if (delayMs > 0) for (const host of net.hosts) relays.push(await startRelay(host))
    // The daemon's address as others dial it: its relay's when there is a delay.
    const dialAddress = (host: BridgeHost, peerId: string): string => `/ip4/${host.address}/tcp/${delayMs > 0 ? RELAY_PORT : DAEMON_PORT}/p2p/${peerId}`
    // Servers first, the driver last: it finds every stage served when it starts.
    const order = [...Array(STAGES).keys()].filter(s => s !== driverStage).concat(driverStage)
    let bootstrap: string | undefined
    let driver: DaemonProcess | undefined
    for (const stage of order) {
      const host = net.hosts[stage]
      const dir = join(root, `stage${stage}`)
      await sh('cp', '-r', seed, dir)
      await sh('rm', '-f', join(dir, 'identity.key'))
      const daemon = await spawnDaemon({
        prefix: ['ip', 'netns', 'exec', host.ns],
        args: [
          'start', '--dir', dir, '--stage', String(stage), '--no-mdns', '--threads', '1', '--capacity', '1000', '--eval-every', String(EVAL_EVERY),
          ...delayMs > 0 ? ['--listen', `/ip4/127.0.0.1/tcp/${DAEMON_PORT}`, '--announce', `/ip4/${host.address}/tcp/${RELAY_PORT}`] : ['--listen', `/ip4/${host.address}/tcp/${DAEMON_PORT}`],
          ...stage === driverStage ? [] : ['--no-drive'],
          ...bootstrap === undefined ? [] : ['--bootstrap', bootstrap]
        ],
        env: TIMERS,
        timeoutMs: 180_000
      })
      daemons.push(daemon)
      bootstrap ??= dialAddress(host, daemon.peerId)
      if (stage === driverStage) driver = daemon
      say(`stage ${stage}: ${daemon.peerId.slice(-8)} in ${host.ns} (${host.address})${stage === driverStage ? ', driving' : ''}`)
    }
    const driverHost = net.hosts[driverStage]
    const driverPort = driver!.controlPort
    const take = async (): Promise<Sample> => await sample(driverHost.ns, driverPort, net, driverHost)
    // Warm up: the driver has found every stage and trains.
    const warmUntil = Date.now() + 5 * 60_000
    while ((await take()).driver.completed < 5) {
      if (Date.now() > warmUntil) throw new Error('the driver completed no 5 microbatches in 5 minutes')
      await sleep(2000)
    }
    say(`training; ${rounds} rounds, each measuring every setting for ${Math.round(windowS)} s after ${settleS} s to settle`)
    // Rounds interleave the settings, so that a change of the machine's load hits them all alike.
    const totals = plan.map(() => noTotals)
    for (let round = 0; round < rounds; round++) {
      for (const [i, setting] of plan.entries()) {
        await net.limit(setting.limitMbit)
        for (const relay of relays) relay.stdin?.write(`${setting.delayMs}\n`)
        await sleep(settleS * 1000)
        const a = await take()
        await sleep(windowS * 1000)
        totals[i] = addWindow(totals[i], driverStage, a, await take())
      }
      say(`round ${round + 1}/${rounds} done`)
    }
    say(`${'limit'.padEnd(12)} ${'delay'.padStart(6)} ${'tokens/s'.padStart(9)} ${'fraction'.padStart(9)} ${'driver link MB/microbatch'.padStart(26)} ${'retries'.padStart(7)} ${'link share'.padStart(10)} ${'val loss'.padStart(8)} ${'mbs'.padStart(6)} ${'windows'.padStart(7)}`)
    const reference = result(plan[0], totals[0], undefined).tokens_per_s
    for (const [i, setting] of plan.entries()) {
      const r = result(setting, totals[i], reference)
      console.log(json ? JSON.stringify(r) : row(r))
    }
  }, lastWords)
}
