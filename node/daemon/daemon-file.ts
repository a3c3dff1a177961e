// `<dir>/daemon.json` exists while a daemon runs in `dir`: `swarmtrain status` reads its control
// port from it, and a second `start` in the same directory finds the first by its pid. The
// daemon writes it once it is ready and removes it when it stops; a crash leaves it behind,
// so readers check that the pid is still alive.
import { rmSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../util/fs.js'

export const DAEMON_FILE = 'daemon.json'

export interface DaemonFile {
  pid: number
  peerId: string
  /** Port of the status server on 127.0.0.1. */
  controlPort: number
}

export function daemonFilePath (dir: string): string {
  return join(dir, DAEMON_FILE)
}

export async function writeDaemonFile (dir: string, info: DaemonFile): Promise<void> {
  await writeFileAtomic(daemonFilePath(dir), JSON.stringify(info) + '\n')
}

/** The daemon file of `dir`, or undefined when there is none or it is damaged. */
export async function readDaemonFile (dir: string): Promise<DaemonFile | undefined> {
  let value: unknown
  try {
    value = JSON.parse(await readFile(daemonFilePath(dir), 'utf8'))
  } catch {
    return undefined
  }
  const { pid, peerId, controlPort } = (value ?? {}) as Partial<Record<keyof DaemonFile, unknown>>
  const positiveInt = (n: unknown, max: number): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= max
  if (!positiveInt(pid, 2 ** 31) || !positiveInt(controlPort, 65535) || typeof peerId !== 'string') return undefined
  return { pid, peerId, controlPort }
}

export async function removeDaemonFile (dir: string): Promise<void> {
  await rm(daemonFilePath(dir), { force: true })
}


/** For a process that exits at once (a second signal): no await between here and the exit. */
export function removeDaemonFileSync (dir: string): void {
  rmSync(daemonFilePath(dir), { force: true })
}
