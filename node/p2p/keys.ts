// The node's persistent identity (a libp2p Ed25519 key) and the optional swarm key (pnet
// pre-shared key). Both live in the node directory, readable by the owner only.
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { generateKey } from '@libp2p/pnet'
import type { PrivateKey } from '@libp2p/interface'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../util/fs.js'
import { IdentityKeyError, SwarmKeyError } from './errors.js'
import { decodeSwarmKey } from './pnet.js'

export const IDENTITY_FILE = 'identity.key'
export const SWARM_KEY_FILE = 'swarm.key'

async function readIfExists (path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Loads the node's identity key from `dir`, creating it (mode 0600) on first use. */
export async function loadOrCreateIdentity (dir: string): Promise<PrivateKey> {
  const path = join(dir, IDENTITY_FILE)
  const bytes = await readIfExists(path)
  if (bytes !== undefined) {
    try {
      return privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new IdentityKeyError(`${path} is not a libp2p private key (${(err as Error).message}); move it away to create a new identity`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  await writeFileAtomic(path, privateKeyToProtobuf(key), 0o600)
  return key
}

/** A fresh pnet swarm key in the standard `/key/swarm/psk/1.0.0/` text format. */
export function newSwarmKey (): Uint8Array {
  const key = new Uint8Array(95)
  generateKey(key)
  return key
}

export async function writeSwarmKey (path: string, key: Uint8Array): Promise<void> {
  await writeFileAtomic(path, key, 0o600)
}

/** Checks a swarm key file's format, so a bad file fails at start, not at the first dial. */
function checkSwarmKey (path: string, bytes: Buffer): Uint8Array {
  try {
    decodeSwarmKey(bytes)
  } catch {
    throw new SwarmKeyError(`${path} is not a swarm key (expected '/key/swarm/psk/1.0.0/', '/base16/' and 64 hex digits)`)
  }
  return new Uint8Array(bytes)
}

/** Reads and checks a swarm key file. */
export async function readSwarmKey (path: string): Promise<Uint8Array> {
  const bytes = await readIfExists(path)
  if (bytes === undefined) throw new SwarmKeyError(`no swarm key at ${path}`)
  return checkSwarmKey(path, bytes)
}

/** The swarm key in `dir` if the run is private, else undefined. */
export async function findSwarmKey (dir: string): Promise<Uint8Array | undefined> {
  const path = join(dir, SWARM_KEY_FILE)
  const bytes = await readIfExists(path)
  return bytes === undefined ? undefined : checkSwarmKey(path, bytes)
}
