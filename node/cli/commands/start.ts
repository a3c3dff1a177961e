// swarmtrain start: runs the daemon until SIGINT/SIGTERM.
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { measureCapacity } from '../../assignment/capacity.js'
import { defaultNodeDir } from '../../daemon/dir.js'
import { DAEMON_FILE, SwarmNode } from '../../daemon/node.js'
import { timingFromEnv } from '../../daemon/timing.js'
import { readManifest } from '../../manifest/manifest.js'
import { findSwarmKey, readSwarmKey } from '../../p2p/keys.js'
import { pipelineCliHelp, pipelineCliOptions, pipelineOptionsFrom, type PipelineCliValues } from '../../pipeline/options.js'
import { pipelineService } from '../../pipeline/swarm.js'
import { log } from '../../metrics/log.js'
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
  --bootstrap MA      peer to join through, /p2p/<id> included, repeatable
  --announce MA       address to announce instead of the listen addresses, repeatable
  --stage auto|N      serve stage N and never move (default auto: choose and rebalance)
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
  let pid: unknown
  try {
    pid = (JSON.parse(await readFile(join(dir, DAEMON_FILE), 'utf8')) as { pid?: unknown }).pid
  } catch {
    return // none running (or a damaged file from a crash)
  }
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) return
  try {
    process.kill(pid, 0)
  } catch {
    return // the process is gone: a stale file from a crash
  }
  throw new UsageError(`a daemon (pid ${pid}) already runs in ${dir}; stop it first or use another --dir`)
}

/** Starts a daemon from parsed start options and runs it until a signal. */
export async function runDaemon (opts: StartOptions): Promise<number> {
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
  const pipeline = { ...pipelineOptionsFrom(opts), checkpointEveryMs: timing.checkpointMs }
  const capacity = await measureCapacity(manifest, dir, given)
  const node = new SwarmNode({
    dir,
    manifest,
    listen: opts.listen ?? [DEFAULT_LISTEN],
    announce: opts.announce,
    bootstrap: opts.bootstrap,
    swarmKey,
    stage,
    throughput: capacity.throughput,
    freeMemory: capacity.freeMemory,
    controlPort,
    metricsPort,
    metricsHost: opts['metrics-host'],
    timing,
    services: opts['no-pipeline'] === true ? {} : { pipeline: pipelineService(pipeline) }
  })
  await node.start()
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
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  log.info(`${signal}: stopping`, { signal })
  await node.stop()
  await rm(join(dir, DAEMON_FILE), { force: true })
  log.info('stopped')
  return 0
}

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, startOptions)
  return await runDaemon(values)
}
