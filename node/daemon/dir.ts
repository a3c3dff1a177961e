// The node directory: what a daemon keeps between runs besides its manifest and keys. The peers
// it met (so a restart finds the swarm without --bootstrap) and the stage checkpoint it last
// wrote (so a restart resumes that stage).
import { logger } from '@libp2p/logger'
import { readFile, readdir, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { readStageCheckpoint } from '../runtime/checkpoint.js'
import { stageParamLayout } from '../model/index.js'
import type { RunManifest } from '../manifest/manifest.js'
import { writeFileAtomic } from '../util/fs.js'

const log = logger('swarmtrain:daemon:dir')

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
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.error('ignoring %s: %e', join(dir, PEERS_FILE), err)
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

/** A stage this node checkpointed for its run: what a restart should resume. */
export interface SavedStage {
  stage: number
  step: number
  path: string
}

/**
 * The newest usable `stage-<s>.safetensors` of run `runId` in `dir` (a node that moved keeps
 * the older ones: the newest is the stage it served last).
 */
export async function findSavedStage (dir: string, runId: string, manifest: RunManifest): Promise<SavedStage | undefined> {
  const names = (await readdir(dir).catch(() => [])).filter(name => /^stage-\d+\.safetensors$/.test(name))
  const files = await Promise.all(names.map(async name => ({ stage: Number(/\d+/.exec(name)![0]), path: join(dir, name), mtime: (await stat(join(dir, name)).catch(() => undefined))?.mtimeMs ?? 0 })))
  for (const { stage, path } of files.sort((a, b) => b.mtime - a.mtime)) {
    if (stage >= manifest.nStages) continue
    try {
      const saved = await readStageCheckpoint(path, { runId, stage, layout: stageParamLayout(manifest.model, stage, manifest.nStages) })
      if (saved !== undefined) return { stage, step: saved.step, path }
    } catch (err) {
      log.error('ignoring %s: %e', path, err)
    }
  }
  return undefined
}
