// swarmtrain join: fetches the run manifest from a peer (checked against the run id its
// protocols name), saves it, and starts the daemon with that peer as bootstrap.
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { copyFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { defaultNodeDir } from '../../daemon/dir.js'
import { timingFromEnv } from '../../timing.js'
import { fetchManifest } from '../../manifest/exchange.js'
import { MANIFEST_FILE, ManifestError, readManifest, runIdOf, writeManifest } from '../../manifest/manifest.js'
import { createClientHost } from '../../p2p/host.js'
import { SWARM_KEY_FILE, findSwarmKey, loadOrCreateIdentity, readSwarmKey } from '../../p2p/keys.js'
import { parsePeerAddress } from '../../p2p/peers.js'
import { parse } from '../args.js'
import { UsageError } from '../errors.js'
import { checkStartOptions, runDaemon, startHelp, startOptions } from './start.js'

export const summary = 'fetch the manifest from a peer, save it, and start'

export const usage = `usage: swarmtrain join MULTIADDR [--run ID] [options]

Asks the peer at MULTIADDR for its run manifest, checks that it hashes to the run id the
peer's protocols name (or to --run ID), saves it as D/${MANIFEST_FILE} and starts the daemon
with that peer as bootstrap. With --swarm-key the key is copied to D/${SWARM_KEY_FILE}.

  --run ID            accept only this run id
${startHelp}`

export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...startOptions, run: { type: 'string' } }, true)
  if (positionals.length !== 1) throw new UsageError('join takes exactly one MULTIADDR (the peer to join through)')
  const address = positionals[0]
  // Every mistake in the options is reported before the manifest is fetched and saved.
  try {
    parsePeerAddress(address, true)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  checkStartOptions(values)
  const dir = values.dir ?? defaultNodeDir()
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const swarmKey = values['swarm-key'] !== undefined ? await readSwarmKey(values['swarm-key']) : await findSwarmKey(dir)
  const privateKey = await loadOrCreateIdentity(dir)
  const { dialTimeoutMs } = timingFromEnv()
  const host = await createClientHost({ privateKey, swarmKey, dialTimeoutMs })
  let fetched
  try {
    fetched = await fetchManifest(host, address, { expectedRunId: values.run, timeoutMs: dialTimeoutMs, keyed: swarmKey !== undefined })
  } finally {
    await host.stop()
  }
  const existing = await readManifest(dir).catch(err => { if (err instanceof ManifestError) return undefined; throw err })
  if (existing !== undefined && runIdOf(existing) !== fetched.runId) {
    throw new UsageError(`${join(dir, MANIFEST_FILE)} belongs to run ${runIdOf(existing)}, not ${fetched.runId}: use another --dir`)
  }
  await writeManifest(dir, fetched.manifest)
  if (values['swarm-key'] !== undefined) await copyFile(values['swarm-key'], join(dir, SWARM_KEY_FILE))
  console.log(`joined run ${fetched.runId} through ${address} as ${peerIdFromPrivateKey(privateKey).toString()}`)
  return await runDaemon({ ...values, dir, bootstrap: [address, ...(values.bootstrap ?? [])] })
}
