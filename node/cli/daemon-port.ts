// The control port of the daemon a command talks to: --control-port, or the one its node
// directory's daemon.json names.
import { daemonFilePath, readDaemonFile } from '../daemon/daemon-file.js'
import { DaemonUnreachableError } from '../daemon/process.js'
import { intOption } from './args.js'

export async function daemonControlPort (dir: string, given?: string): Promise<number> {
  if (given !== undefined) return intOption('control-port', given, 0, 1, 65535)
  const running = await readDaemonFile(dir)
  if (running !== undefined) return running.controlPort
  throw new DaemonUnreachableError(`no running daemon found (no valid ${daemonFilePath(dir)}); start one or pass --control-port`)
}
