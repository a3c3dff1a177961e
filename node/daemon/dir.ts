import { homedir } from 'node:os'
import { join } from 'node:path'

/** The node directory when `--dir` is not given: $SWARMTRAIN_DIR, else ~/.swarmtrain. */
export function defaultNodeDir (): string {
  return process.env.SWARMTRAIN_DIR ?? join(homedir(), '.swarmtrain')
}
