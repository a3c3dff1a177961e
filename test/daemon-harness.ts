// Multi-process swarms for the daemon tests: each node is a `swarmtrain start` child process
// with its own directory, listening on 127.0.0.1 port 0, with fast test timers. Every child
// is killed in close(), so a failing test leaks no process.
import { spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NodeStatus } from '../node/daemon/node.js'
import { MANIFEST_FILE } from '../node/manifest/manifest.js'
import { SWARM_KEY_FILE } from '../node/p2p/keys.js'
import { cliPath, type DaemonProcess, fetchStatus, spawnDaemon, stopDaemon } from '../node/daemon/process.js'
import type { PipelineStatus } from '../node/pipeline/swarm.js'

/**
 * Test timers (see node/timing.ts): records live 6 s and are republished every second,
 * so a dead node drops out within seconds; generous enough for a loaded 2-core machine.
 */
export const fastTimers = {
  SWARMTRAIN_RECORD_TTL_MS: '6000',
  SWARMTRAIN_REFRESH_MS: '1000',
  SWARMTRAIN_REBALANCE_MS: '2000',
  SWARMTRAIN_DIAL_TIMEOUT_MS: '5000'
}

/** A daemon of the test swarm (its stderr is there for failure messages; DEBUG=swarmtrain:* adds logs). */
export interface NodeProcess extends DaemonProcess {
  name: string
  dir: string
}

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

export class TestSwarm {
  readonly root = mkdtempSync(join(tmpdir(), 'swarmtrain-swarm-'))
  readonly nodes: NodeProcess[] = []
  private readonly children = new Set<ChildProcess>()
  /** Daemons still starting: close() waits for them, or a start racing a failed one would leak its process. */
  private readonly starting = new Set<Promise<unknown>>()
  private closed = false

  dir (name: string): string {
    return join(this.root, name)
  }

  /** Runs a CLI command to completion (bounded). */
  async run (args: string[], timeoutMs = 30_000): Promise<RunResult> {
    const child = spawn(process.execPath, ['--no-warnings', cliPath, ...args], { env: { ...process.env, ...fastTimers }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.children.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c })
    child.stderr.on('data', (c: Buffer) => { stderr += c })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    const code = await new Promise<number | null>(resolve => child.on('close', resolve))
    clearTimeout(timer)
    this.children.delete(child)
    return { code, stdout, stderr }
  }

  /** `init` in a new node directory; returns the directory. */
  async init (name: string, args: string[] = []): Promise<string> {
    const dir = this.dir(name)
    const result = await this.run(['init', '--dir', dir, ...args])
    if (result.code !== 0) throw new Error(`init failed: ${result.stderr}`)
    return dir
  }

  /**
   * A fresh node of `from`'s run: a copy of its manifest (and swarm key, if any), nothing of its
   * state (`from` may be running: its checkpoints and peers are not the newcomer's).
   */
  clone (from: string, name: string): string {
    const dir = this.dir(name)
    mkdirSync(dir, { recursive: true })
    for (const file of [MANIFEST_FILE, SWARM_KEY_FILE]) {
      if (existsSync(join(from, file))) copyFileSync(join(from, file), join(dir, file))
    }
    return dir
  }

  /** Starts `swarmtrain start` in `dir` and waits for its ready line. */
  async start (name: string, dir: string, args: string[], env: Record<string, string> = {}, timeoutMs?: number): Promise<NodeProcess> {
    return await this.launch(name, dir, ['start', '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', ...args], env, timeoutMs)
  }

  /** Runs `swarmtrain join address` into `dir` and waits for the daemon's ready line. */
  async join (name: string, dir: string, address: string, args: string[]): Promise<NodeProcess> {
    return await this.launch(name, dir, ['join', address, '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', ...args], {})
  }

  private async launch (name: string, dir: string, args: string[], env: Record<string, string>, timeoutMs = 30_000): Promise<NodeProcess> {
    let spawned: DaemonProcess
    const starting = spawnDaemon({ args, env: { ...fastTimers, ...env }, timeoutMs })
    this.starting.add(starting)
    try {
      spawned = await starting
    } catch (err) {
      throw new Error(`node ${name} did not start: ${(err as Error).message}`)
    } finally {
      this.starting.delete(starting)
    }
    // A node that became ready after close() (its siblings failed, the test ended) would live on.
    if (this.closed) {
      await stopDaemon(spawned.child, 0)
      throw new Error(`node ${name} started after the swarm was closed`)
    }
    this.children.add(spawned.child)
    spawned.child.on('close', () => this.children.delete(spawned.child))
    const node: NodeProcess = { name, dir, ...spawned }
    this.nodes.push(node)
    return node
  }

  /** One line per node: its stage, and the peers per stage in its view. */
  static describe (statuses: NodeStatus[]): string {
    return statuses.map(s => `\n  ${s.peerId.slice(-6)} stage ${s.stage} sees ${s.stages.map(st => `[${st.peers.map(p => p.peerId.slice(-6)).join(' ')}]`).join(' ')} moves ${s.moves.length} conns ${s.connections}`).join('')
  }

  async status (node: NodeProcess): Promise<NodeStatus> {
    return await fetchStatus(node.controlPort)
  }

  /** The pipeline service's part of a node's status. */
  async pipeline (node: NodeProcess): Promise<PipelineStatus> {
    return (await this.status(node)).services.pipeline as PipelineStatus
  }

  /** Kills one node and waits for it to exit. */
  async kill (node: NodeProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const index = this.nodes.indexOf(node)
    if (index >= 0) this.nodes.splice(index, 1)
    if (node.child.exitCode !== null || node.child.signalCode !== null) return node.child.exitCode
    const closed = new Promise<number | null>(resolve => node.child.once('close', code => resolve(code)))
    node.child.kill(signal)
    return await closed
  }

  async close (): Promise<void> {
    this.closed = true
    // A daemon that is still starting either becomes a child (killed below) or kills itself.
    await Promise.allSettled([...this.starting])
    await Promise.all([...this.children].map(async child => { await stopDaemon(child, 0) }))
    rmSync(this.root, { recursive: true, force: true })
  }
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs` with the last reason and state. */
export async function waitFor<T> (what: string, timeoutMs: number, check: () => Promise<T | undefined>, state: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`} ${state()}`)
}
