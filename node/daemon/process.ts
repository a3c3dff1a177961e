// A daemon as a child process, for whoever runs several on one machine (the demo, tests,
// benchmarks) or talks to a running one (`swarmtrain status`). `swarmtrain start` prints
// `peer id`, `listening` and `status` lines, then `ready`; the status server speaks JSON on
// 127.0.0.1 only.
import { spawn, type ChildProcess } from 'node:child_process'
import { request } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { UserError } from '../errors.js'
import { DAEMON_READY_TIMEOUT_MS, DAEMON_STOP_GRACE_MS, STATUS_REQUEST_TIMEOUT_MS } from '../timing.js'
import { parseLogLine } from '../metrics/log-line.js'
import type { NodeStatus } from './node.js'

/** The command line's entry point, to spawn daemons with the same build. */
export const cliPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js')

/** Status answers larger than this are cut off (a daemon's status is a few KiB). */
const MAX_STATUS_BYTES = 16 << 20

/** The daemon is not running or not answering. */
export class DaemonUnreachableError extends UserError {
  override name = 'DaemonUnreachableError'
}

/** A daemon exited or never printed `ready`. */
export class DaemonStartError extends UserError {
  override name = 'DaemonStartError'
}

export interface DaemonProcess {
  child: ChildProcess
  peerId: string
  /** Its first listen address, with /p2p/<peer id>: what others bootstrap from. */
  address: string
  controlPort: number
  /** Every stdout line so far (the text of JSON log lines). */
  output: string[]
  /** Everything it wrote to stderr. */
  stderr: () => string
}

export interface SpawnDaemonOptions {
  /** Arguments after `swarmtrain`, e.g. ['start', '--dir', dir, ...]. */
  args: string[]
  env?: Record<string, string>
  timeoutMs?: number
  /** Called with every stdout line as printed, e.g. to echo progress or keep a JSON log. */
  onLine?: (line: string) => void
  /** Its own process group, so a terminal's Ctrl-C reaches only the parent, which stops it in order. */
  detached?: boolean
  /** A command that runs the daemon, e.g. ['ip', 'netns', 'exec', 'home1'] for a network namespace. */
  prefix?: string[]
}

/** Spawns `swarmtrain <args>` and resolves once it prints `ready`; rejects if it exits or times out first. */
export async function spawnDaemon (options: SpawnDaemonOptions): Promise<DaemonProcess> {
  const command = [...options.prefix ?? [], process.execPath, '--no-warnings', cliPath, ...options.args]
  const child = spawn(command[0], command.slice(1), {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached
  })
  const output: string[] = []
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => { stderr += c })
  const ready = await new Promise<boolean>(resolve => {
    let buffered = ''
    const timer = setTimeout(() => resolve(false), options.timeoutMs ?? DAEMON_READY_TIMEOUT_MS)
    child.stdout?.on('data', (c: Buffer) => {
      buffered += c
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const raw of lines) {
        // JSON logs (--log-format json) carry the same text in `msg`.
        const line = parseLogLine(raw)?.msg ?? raw
        output.push(line)
        options.onLine?.(raw)
        if (line === 'ready') { clearTimeout(timer); resolve(true) }
      }
    })
    child.once('close', () => { clearTimeout(timer); resolve(false) })
  })
  if (!ready) {
    await stopDaemon(child, 0)
    throw new DaemonStartError(`a daemon did not start: ${lastError(stderr)}`)
  }
  const field = (prefix: string): string => output.find(l => l.startsWith(prefix))?.slice(prefix.length).trim() ?? ''
  return {
    child,
    peerId: field('peer id'),
    address: field('listening'),
    controlPort: Number(/:(\d+)\/status/.exec(field('status'))?.[1]),
    output,
    stderr: () => stderr
  }
}

/** Asks it to stop (SIGTERM), then kills it after `graceMs`; resolves when it has exited. */
export async function stopDaemon (child: ChildProcess, graceMs = DAEMON_STOP_GRACE_MS): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const closed = new Promise(resolve => child.once('close', resolve))
  child.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await closed
  clearTimeout(timer)
}

/** The last few meaningful lines a process wrote to stderr (Node.js ends a crash with its version line). */
export function lastError (stderr: string): string {
  return stderr.trim().split('\n').filter(l => l.trim() !== '' && !l.startsWith('Node.js v')).slice(-3).join(' | ') || 'no output'
}

/**
 * GET http://127.0.0.1:<port><path> from a daemon's control server: the body, refused past
 * `maxBytes`. A non-200 answer's text (the daemon's one-line error) is the error's message.
 */
export async function controlGet (port: number, path: string, options: { maxBytes: number, timeoutMs: number }): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: options.timeoutMs }, res => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > options.maxBytes) req.destroy(new Error(`the answer is over ${options.maxBytes} bytes`))
        else chunks.push(chunk)
      })
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        if (res.statusCode === 200) resolve(body)
        else reject(new DaemonUnreachableError(`127.0.0.1:${port}${path} answered HTTP ${res.statusCode}: ${body.toString('utf8').trim().split('\n')[0]}`))
      })
    })
    req.on('timeout', () => { req.destroy(new Error(`no answer in ${options.timeoutMs} ms`)) })
    req.on('error', err => { reject(new DaemonUnreachableError(`no daemon answers on 127.0.0.1:${port}${path} (${err.message})`)) })
    req.end()
  })
}

/** GET http://127.0.0.1:<port>/status. */
export async function fetchStatus (port: number): Promise<NodeStatus> {
  const body = await controlGet(port, '/status', { maxBytes: MAX_STATUS_BYTES, timeoutMs: STATUS_REQUEST_TIMEOUT_MS })
  try {
    return JSON.parse(body.toString('utf8')) as NodeStatus
  } catch (err) {
    throw new DaemonUnreachableError(`bad answer from 127.0.0.1:${port}/status: ${(err as Error).message}`)
  }
}
