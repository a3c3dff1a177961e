// Commands for the benchmarks that build network namespaces (nat, wan): run a tool, ask a daemon
// inside a namespace for its status, remove a namespace with whatever still runs in it.
import { execFile as execFileCb } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import type { NodeStatus } from '../../node/daemon/node.js'
import { cliPath } from '../../node/daemon/process.js'

const execFile = promisify(execFileCb)

/** Runs a command to completion (bounded); resolves with its stdout, rejects on failure. */
export async function sh (...command: string[]): Promise<string> {
  const { stdout } = await execFile(command[0], command.slice(1), { timeout: 60_000 })
  return stdout
}

/** `swarmtrain status --json` run inside namespace `ns` (a daemon's status server is on that namespace's 127.0.0.1). */
export async function statusIn (ns: string, controlPort: number): Promise<NodeStatus> {
  const out = await sh('ip', 'netns', 'exec', ns, process.execPath, '--no-warnings', cliPath, 'status', '--json', '--control-port', String(controlPort))
  return JSON.parse(out) as NodeStatus
}

/** Kills whatever still runs inside namespace `name` (only the bench's own processes can), then deletes it. */
export async function removeNamespace (name: string): Promise<void> {
  const pids = (await sh('ip', 'netns', 'pids', name).catch(() => '')).split('\n').filter(p => /^\d+$/.test(p))
  for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL') } catch {} }
  await sh('ip', 'netns', 'del', name)
}

/**
 * Why this machine cannot run a namespace bench, or undefined when it can: Linux, root, and each
 * of `tools` (a command that proves it is installed; `hints` say how to install one). `uid`
 * defaults to this process's.
 */
export async function namespaceSupport (tools: string[][], hints: Record<string, string> = {}, uid = process.getuid?.()): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (uid !== 0) return 'network namespaces need root'
  if (!existsSync('/proc/self/ns/net')) return 'this kernel has no network namespaces'
  for (const tool of tools) {
    try {
      await sh(...tool)
    } catch {
      return `'${tool[0]}' is not installed${hints[tool[0]] === undefined ? '' : ` (${hints[tool[0]]})`}`
    }
  }
  return undefined
}

/**
 * Runs `body`, then `teardown` (once), also on Ctrl-C, on a kill, and when `budgetMs` runs out
 * (then the process exits with 130). A failure of `body` is one line on stderr, after
 * `onFailure` (e.g. the daemons' last words), and exit code 1.
 */
export async function withTeardown (name: string, budgetMs: number, teardown: () => Promise<void>, body: () => Promise<void>, onFailure: () => void = () => {}): Promise<void> {
  let done: Promise<void> | undefined
  let stopping = false
  const once = async (): Promise<void> => { await (done ??= teardown()) }
  const onSignal = (signal: NodeJS.Signals): void => {
    stopping = true
    console.error(`${name}: ${signal}: tearing down`)
    void once().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const budget = setTimeout(() => { console.error(`${name}: time budget exceeded`); onSignal('SIGTERM') }, budgetMs)
  try {
    await body()
  } catch (err) {
    // Stopping on a signal fails whatever the body was waiting for: nothing to report.
    if (stopping) return
    onFailure()
    console.error(`${name}: failed: ${(err as Error).message.split('\n')[0]}`)
    process.exitCode = 1
  } finally {
    clearTimeout(budget)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await once()
  }
}
