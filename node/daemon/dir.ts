// The node directory: what a daemon keeps between runs besides its manifest and keys. The peers
// it met (so a restart finds the swarm without --bootstrap) and the stage checkpoint it last
// wrote (so a restart resumes that stage).
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { writeFileAtomic } from '../util/fs.js'


/** The node directory when `--dir` is not given: $SWARMTRAIN_DIR, else ~/.swarmtrain. */
export function defaultNodeDir (): string {
  return process.env.SWARMTRAIN_DIR ?? join(homedir(), '.swarmtrain')
}

/** Bootstrap peers given on the command line and peers of the run met since, newest first. */
export const PEERS_FILE = 'peers.json'

/** Enough addresses to find a swarm again, few enough to dial them all at start. */
export const MAX_SAVED_PEERS = 16

/** The saved peer addresses (multiaddrs with /p2p/<id>); none if the file is missing or damaged. */
export async function readSavedPeers (dir: string): Promise<string[]> {
  try {
    const { peers } = JSON.parse(await readFile(join(dir, PEERS_FILE), 'utf8')) as { peers?: unknown }
    if (Array.isArray(peers)) return peers.filter((p): p is string => typeof p === 'string' && p.includes('/p2p/')).slice(0, MAX_SAVED_PEERS)
  } catch {
    // Missing or damaged: the node starts from --bootstrap (or waits for peers), and rewrites it.
  }
  return []
}

/** Saves `peers` (first ones first, no duplicates, at most MAX_SAVED_PEERS) atomically unless they equal `previous`; returns what is saved. */
export async function savePeers (dir: string, peers: readonly string[], previous: readonly string[]): Promise<string[]> {
  const list = [...new Set(peers)].slice(0, MAX_SAVED_PEERS)
  if (list.length === previous.length && list.every((p, i) => p === previous[i])) return list
  await writeFileAtomic(join(dir, PEERS_FILE), JSON.stringify({ peers: list }, null, 2) + '\n')
  return list
}
