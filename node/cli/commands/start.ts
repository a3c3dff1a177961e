// swarmtrain start: runs the daemon until SIGINT/SIGTERM.
import type { StageChangeDetail } from '../../assignment/assigner.js'
import { measureCapacity } from '../../assignment/capacity.js'
import { multiaddr } from '@multiformats/multiaddr'
import { PEERS_FILE, defaultNodeDir } from '../../daemon/dir.js'
import { DAEMON_FILE, readDaemonFile, removeDaemonFileSync } from '../../daemon/daemon-file.js'
import { SwarmNode } from '../../daemon/node.js'
import { STOP_LIMIT_MS, timingFromEnv } from '../../timing.js'
import { readManifest } from '../../manifest/manifest.js'
import { findSwarmKey, readSwarmKey } from '../../p2p/keys.js'
import { parsePeerAddress } from '../../p2p/peers.js'
import { pipelineCliHelp, pipelineCliOptions, pipelineOptionsFrom, roundPrinter, syncPrinter, type PipelineCliValues } from '../pipeline-options.js'
import { averagingService } from '../../averaging/service.js'
import { swarmWeightsService } from '../../averaging/swarm-weights.js'
import { pipelineService } from '../../pipeline/swarm.js'
import { log } from '../log.js'
import { removeOnnxruntimeDebugLog } from '../ort-debug-log.js'
import { intOption, numberOption, parse } from '../args.js'
import { UsageError } from '../errors.js'
import { configureLogFrom, logCliHelp, logCliOptions, type LogCliValues } from '../log-options.js'

export const summary = 'run the daemon: join the swarm, pick a stage, serve status on 127.0.0.1'

export const DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/4171'

/** Options shared by `start` and `join`. */
export const startOptions = {
  dir: { type: 'string' },
  listen: { type: 'string', multiple: true },
  bootstrap: { type: 'string', multiple: true },
  announce: { type: 'string', multiple: true },
  'no-mdns': { type: 'boolean' },
  stage: { type: 'string' },
  'control-port': { type: 'string' },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  'swarm-key': { type: 'string' },
  capacity: { type: 'string' },
  'no-pipeline': { type: 'boolean' },
  ...pipelineCliOptions,
  ...logCliOptions
} as const

export const startHelp = `  --dir D             node directory with swarm.json (default $SWARMTRAIN_DIR or ~/.swarmtrain)
  --listen MA         multiaddr to listen on, repeatable (default ${DEFAULT_LISTEN})
  --bootstrap MA      peer to join through, /p2p/<id> included, repeatable; the peers met
                      are saved in D/${PEERS_FILE}, so a restart needs no --bootstrap
  --announce MA       address to announce instead of the listen addresses, repeatable
  --no-mdns           do not look for the run's peers on the LAN by multicast DNS (default:
                      on, unless every listen address is loopback)
  --stage auto|N      serve stage N and never move (default auto: resume the stage of this
                      node's checkpoint if it needs a server, else the weakest; rebalance)
  --control-port P    port of the status server on 127.0.0.1 (default 0: any free port,
                      recorded in D/${DAEMON_FILE} for 'swarmtrain status'); the dashboard is at /
  --metrics-port P    serve Prometheus metrics at http://127.0.0.1:P/metrics (default: none)
  --metrics-host H    address the metrics endpoint listens on (default 127.0.0.1)
  --swarm-key F       pre-shared key of a private swarm (default D/swarm.key if present)
  --capacity TPS      skip the capacity probe: this node's tokens/s (for tests)
  --no-pipeline       (tests) only discovery and stage assignment: no engine, no training
${logCliHelp}
${pipelineCliHelp}`

export const usage = `usage: swarmtrain start [options]

Runs the daemon: finds peers through the DHT, joins the weakest stage that fits, moves when
that clearly balances the swarm, and stops cleanly on SIGINT/SIGTERM.

${startHelp}`

export interface StartOptions extends PipelineCliValues, LogCliValues {
  dir?: string
  listen?: string[]
  bootstrap?: string[]
  announce?: string[]
  'no-mdns'?: boolean
  stage?: string
  'control-port'?: string
  'metrics-port'?: string
  'metrics-host'?: string
  'swarm-key'?: string
  capacity?: string
  'no-pipeline'?: boolean
}

/** Two daemons with one identity would fight over the peer id: refuse while daemon.json names a live process. */
async function refuseSecondDaemon (dir: string): Promise<void> {
  const pid = (await readDaemonFile(dir))?.pid
  if (pid === undefined || pid === process.pid) return // none running (or a damaged file from a crash)
  try {
    process.kill(pid, 0)
  } catch {
    return // the process is gone: a stale file from a crash
  }
  throw new UsageError(`a daemon (pid ${pid}) already runs in ${dir}; stop it first or use another --dir`)
}

/** Checks the options a manifest is not needed for, before anything is written or dialed. */
export function checkStartOptions (opts: StartOptions): void {
  intOption('control-port', opts['control-port'], 0, 0, 65535)
  if (opts.capacity !== undefined) numberOption('capacity', opts.capacity, 0, 1e-3, 1e12)
  pipelineOptionsFrom(opts)
  for (const [flag, addresses] of [['listen', opts.listen], ['announce', opts.announce]] as const) {
    for (const address of addresses ?? []) {
      let ma
      try {
        ma = multiaddr(address)
      } catch (err) {
        throw new UsageError(`--${flag} '${address}' is not a multiaddr (e.g. ${DEFAULT_LISTEN}): ${(err as Error).message}`)
      }
      if (!ma.getComponents().some(c => c.name === 'tcp')) throw new UsageError(`--${flag} '${address}' has no TCP port: swarmtrain speaks TCP (e.g. ${DEFAULT_LISTEN})`)
    }
  }
  for (const address of opts.bootstrap ?? []) {
    try {
      parsePeerAddress(address, true)
    } catch (err) {
      throw new UsageError(`--bootstrap: ${(err as Error).message}`)
    }
  }
}

/** mDNS announces this node on the LAN: pointless (and noisy) when it only listens on loopback. */
function lanAddresses (listen: string[]): boolean {
  return listen.some(address => {
    const host = multiaddr(address).getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value
    return host === undefined || !(host.startsWith('127.') || host === '::1')
  })
}

/** The listen addresses are taken, or not ours to take: one line instead of libp2p's stack. */
function listenError (err: Error, listen: string[]): Error {
  const text = `${err.name}: ${err.message}`
  if (/EADDRINUSE/.test(text)) return new UsageError(`cannot listen on ${listen.join(', ')}: the port is in use (is another daemon running? pick a free one with --listen /ip4/0.0.0.0/tcp/PORT)`)
  if (/EADDRNOTAVAIL|UnsupportedListenAddress/.test(text)) return new UsageError(`cannot listen on ${listen.join(', ')}: ${/EADDRNOTAVAIL/.test(text) ? 'no interface of this machine has that address' : err.message}`)
  return err
}

/** Starts a daemon from parsed start options and runs it until a signal. */
export async function runDaemon (opts: StartOptions): Promise<number> {
  checkStartOptions(opts)
  configureLogFrom(opts)
  const dir = opts.dir ?? defaultNodeDir()
  const manifest = await readManifest(dir)
  await refuseSecondDaemon(dir)
  const stage = opts.stage === undefined || opts.stage === 'auto' ? undefined : intOption('stage', opts.stage, 0, 0, manifest.nStages - 1)
  const controlPort = intOption('control-port', opts['control-port'], 0, 0, 65535)
  const metricsPort = opts['metrics-port'] === undefined ? undefined : intOption('metrics-port', opts['metrics-port'], 0, 0, 65535)
  const given = opts.capacity === undefined ? undefined : numberOption('capacity', opts.capacity, 0, 1e-3, 1e12)
  const swarmKey = opts['swarm-key'] !== undefined ? await readSwarmKey(opts['swarm-key']) : await findSwarmKey(dir)
  const timing = timingFromEnv()
  const pipeline = pipelineOptionsFrom(opts)
  const capacity = await measureCapacity(manifest, dir, given)
  const listen = opts.listen ?? [DEFAULT_LISTEN]
  const node = new SwarmNode({
    dir,
    manifest,
    listen,
    announce: opts.announce,
    notice: line => { log.info(line) },
    bootstrap: opts.bootstrap,
    mdns: opts['no-mdns'] !== true && lanAddresses(listen),
    swarmKey,
    stage,
    throughput: capacity.throughput,
    freeMemory: capacity.freeMemory,
    controlPort,
    metricsPort,
    metricsHost: opts['metrics-host'],
    timing,
    stageHost: opts['no-pipeline'] === true ? undefined : { threads: pipeline.threads, checkpointEveryMs: timing.checkpointMs },
    // Averaging first: it loads the stage's state before the pipeline's server takes calls.
    services: {
      ...opts['no-pipeline'] === true ? {} : { averaging: averagingService({ onRound: roundPrinter(), onSync: syncPrinter() }), pipeline: pipelineService(pipeline) },
      weights: swarmWeightsService({ onStage: s => { log.info(`export: stage ${s.stage} (step ${s.step}, round ${s.round}) from …${s.peer.slice(-6)}`, { event: 'export', ...s }) } })
    }
  })
  try {
    await node.start()
  } catch (err) {
    throw listenError(err as Error, listen)
  }
  // Visible to operators without debug logging: a move changes what this node computes.
  node.components.assigner.addEventListener('stage', event => {
    const move = (event as CustomEvent<StageChangeDetail>).detail.move
    if (move !== undefined) console.log(`moving from stage ${move.from} to stage ${move.to}: weakest stage ${move.before.toFixed(1)} -> ${move.after.toFixed(1)} tokens/s`)
  })
  const status = node.status()
  log.info(`peer id   ${status.peerId}`, { peerId: status.peerId })
  for (const address of status.addresses) log.info(`listening ${address}`, { address })
  log.info(`run       ${node.runId}${swarmKey === undefined ? '' : ' (private)'}`, { runId: node.runId, private: swarmKey !== undefined })
  log.info(`capacity  ${capacity.throughput.toFixed(1)} tokens/s (${capacity.source})`, { capacity: capacity.throughput, source: capacity.source })
  log.info(`stage     ${status.stage ?? '-'}${status.pinned ? ' (pinned)' : ''}`, { stage: status.stage, pinned: status.pinned })
  log.info(`status    http://127.0.0.1:${node.controlPort}/status`, { controlPort: node.controlPort })
  log.info(`dashboard http://127.0.0.1:${node.controlPort}/`)
  if (node.metricsPort !== undefined) log.info(`metrics   http://${opts['metrics-host'] ?? '127.0.0.1'}:${node.metricsPort}/metrics`, { metricsPort: node.metricsPort })
  log.info('ready')

  const signal = await new Promise<NodeJS.Signals>(resolve => {
    let received = false
    const onSignal = (name: NodeJS.Signals): void => {
      if (received) dieBy(name, dir)
      received = true
      resolve(name)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
  log.info(`${signal}: stopping (again to exit at once)`, { signal })
  // Unref'd and never cleared: it also ends a process that lingers after a clean stop.
  setTimeout(() => {
    removeDaemonFileSync(dir)
    console.error(`swarmtrain: stopping took over ${STOP_LIMIT_MS} ms: exiting`)
    process.exit(1)
  }, STOP_LIMIT_MS).unref()
  await node.stop()
  log.info('stopped')
  return 0
}

/**
 * A second signal: leaves at once, without the final checkpoint but without a stale daemon.json,
 * by dying of the signal as if we had never caught it (a shell then reports 130 for SIGINT). Not
 * `process.exit`: that terminates the session worker threads, and onnxruntime-node aborts the
 * whole process when a session run is cut short that way.
 */
function dieBy (signal: NodeJS.Signals, dir: string): void {
  removeDaemonFileSync(dir)
  removeOnnxruntimeDebugLog()
  console.error(`swarmtrain: ${signal} again: exiting without a clean stop`)
  process.removeAllListeners(signal)
  process.kill(process.pid, signal)
}

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, startOptions)
  return await runDaemon(values)
}
