// swarmtrain init: writes the run manifest (swarm.json), the swarm key when private, and this
// node's identity key.
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { randomBytes } from 'node:crypto'
import { access, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { PEERS_FILE, defaultNodeDir } from '../../daemon/dir.js'
import { MANIFEST_FILE, RUN_NAME, defaultAveraging, defaultManifest, runIdOf, validateManifest, writeManifest } from '../../manifest/manifest.js'
import { SWARM_KEY_FILE, loadOrCreateIdentity, newSwarmKey, writeSwarmKey } from '../../p2p/keys.js'
import { defaultOptimizerConfig } from '../../runtime/optimizer-config.js'
import { intOption, numberOption, parse } from '../args.js'
import { UsageError } from '../errors.js'

const kebab = (key: string): string => key.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)

const modelFlags = { 'vocab-size': 'vocabSize', 'd-model': 'dModel', layers: 'nLayers', heads: 'nHeads', 'seq-len': 'seqLen' } as const
// Optimizer and averaging flags follow their config fields (`weightDecay` -> --weight-decay).
const optimizerFlags = Object.keys(defaultOptimizerConfig).map(key => [kebab(key), key] as const)
const averagingFlags = Object.keys(defaultAveraging).map(key => [kebab(key), key] as const)

export const summary = 'create a run: manifest (swarm.json), swarm key if --private, identity key'

export const usage = `usage: swarmtrain init [--dir D] [--private] [--force] [options]

Writes D/swarm.json (the run manifest; the run id is the hash of its canonical form),
D/swarm.key (a libp2p pre-shared key) with --private, and D/identity.key.

  --dir D            node directory (default $SWARMTRAIN_DIR or ~/.swarmtrain)
  --private          make a private swarm: only peers with swarm.key can connect
  --force            overwrite an existing swarm.json
  --name NAME        the run's name, part of its id (default: random, so that two runs
                     with the same settings never mix)
model:
  --stages N         pipeline stages (default ${defaultManifest().nStages})
${Object.entries(modelFlags).map(([flag, key]) => `  --${flag.padEnd(16)} model.${key} (default ${defaultManifest().model[key]})`).join('\n')}
  --dataset NAME     dataset id (default ${defaultManifest().datasetId})
optimizer (inner AdamW):
${optimizerFlags.map(([flag, key]) => `  --${flag.padEnd(16)} (default ${(defaultOptimizerConfig as unknown as Record<string, number>)[key]})`).join('\n')}
averaging and compression (outer step):
${averagingFlags.map(([flag, key]) => `  --${flag.padEnd(16)} (default ${(defaultAveraging as unknown as Record<string, number | string>)[key]})`).join('\n')}`

export async function run (argv: string[]): Promise<number> {
  const flagNames = [...Object.keys(modelFlags), ...optimizerFlags.map(f => f[0]), ...averagingFlags.map(f => f[0]), 'stages', 'dataset', 'dir', 'name']
  const { values } = parse(argv, {
    ...Object.fromEntries(flagNames.map(name => [name, { type: 'string' as const }])),
    private: { type: 'boolean' },
    force: { type: 'boolean' }
  })
  const opts = values as Record<string, string | boolean | undefined>
  const dir = (opts.dir as string | undefined) ?? defaultNodeDir()
  const manifest = defaultManifest()
  manifest.nStages = intOption('stages', opts.stages, manifest.nStages, 1, 1024)
  for (const [flag, key] of Object.entries(modelFlags)) manifest.model[key] = intOption(flag, opts[flag], manifest.model[key], 1)
  const optimizer = manifest.optimizer as unknown as Record<string, number>
  for (const [flag, key] of optimizerFlags) optimizer[key] = numberOption(flag, opts[flag], optimizer[key], 0)
  // String settings (outer optimizer, mode) are taken as given; validateManifest names the choices.
  const averaging = manifest.averaging as unknown as Record<string, number | string>
  for (const [flag, key] of averagingFlags) {
    const given = opts[flag]
    averaging[key] = typeof averaging[key] === 'string' ? (typeof given === 'string' ? given : averaging[key]) : numberOption(flag, given, averaging[key] as number, 0)
  }
  if (opts.dataset !== undefined) manifest.datasetId = opts.dataset as string
  const name = (opts.name as string | undefined) ?? `run-${randomBytes(6).toString('hex')}`
  if (!RUN_NAME.test(name)) throw new UsageError(`--name must be 1 to 64 letters, digits, '_', '.' or '-', got '${name}'`)
  manifest.name = name
  const checked = validateManifest(manifest)

  await mkdir(dir, { recursive: true, mode: 0o700 })
  const exists = await access(join(dir, MANIFEST_FILE)).then(() => true, () => false)
  if (exists && opts.force !== true) throw new UsageError(`${join(dir, MANIFEST_FILE)} already exists (pass --force to replace it)`)
  await writeManifest(dir, checked)
  // Peers saved for the previous run of this directory belong to that run.
  await rm(join(dir, PEERS_FILE), { force: true })
  // A public run must not keep a key from an earlier private run in the same directory.
  if (opts.private === true) await writeSwarmKey(join(dir, SWARM_KEY_FILE), newSwarmKey())
  else await rm(join(dir, SWARM_KEY_FILE), { force: true })
  const peerId = peerIdFromPrivateKey(await loadOrCreateIdentity(dir))
  console.log(`run id    ${runIdOf(checked)} (${name})`)
  console.log(`manifest  ${join(dir, MANIFEST_FILE)}`)
  if (opts.private === true) console.log(`swarm key ${join(dir, SWARM_KEY_FILE)} (give it to every peer of this run)`)
  console.log(`peer id   ${peerId.toString()}`)
  // Training needs a server on every stage: say how many nodes that takes before anyone waits.
  console.log(`stages    ${checked.nStages}: training starts once ${checked.nStages} node(s) serve, one per stage (see 'swarmtrain start --help')`)
  return 0
}
