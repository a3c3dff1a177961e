// swarmtrain demo: a private swarm (fresh pre-shared key) of a few daemons on 127.0.0.1, each its own process, trains
// the default model (split in 2 stages) on the bundled Brown corpus. One node drives; its
// progress lines are shown. Bounded: stops after --microbatches and removes everything it made.
import { mkdtemp, mkdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type DaemonProcess, fetchStatus, lastError, spawnDaemon, stopDaemon } from '../../daemon/process.js'
import { defaultManifest, runIdOf, writeManifest } from '../../manifest/manifest.js'
import { SWARM_KEY_FILE, newSwarmKey, writeSwarmKey } from '../../p2p/keys.js'
import type { DriverStats } from '../../pipeline/driver.js'
import { intOption, parse } from '../args.js'
import { UserError } from '../../errors.js'

export const summary = 'train on this machine: a few daemons on 127.0.0.1 form a private swarm (bounded)'

export const usage = `usage: swarmtrain demo [--nodes N] [--microbatches M] [--tiny]

Starts N daemons listening on 127.0.0.1 only, as a private swarm (a fresh pre-shared key),
with the default model split into 2 stages of N/2 replicas each; one node drives microbatches
from the Brown corpus and prints its loss and validation loss (nats per byte; the corpus's
unigram entropy is 3.08).
Stops after M microbatches, or on Ctrl-C, and removes the temporary node directories.

  --nodes N          daemons (default 4, at least 2)
  --microbatches M   microbatches to train (default 400: 100 steps of 4 microbatches)
  --tiny             a small model (d_model 64, 2 layers, 32-byte context) for a quick look`

/** A daemon of the demo died. */
class DemoError extends UserError {
  override name = 'DemoError'
}

const timers = { SWARMTRAIN_RECORD_TTL_MS: '6000', SWARMTRAIN_REFRESH_MS: '2000', SWARMTRAIN_DIAL_TIMEOUT_MS: '5000' }

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, { nodes: { type: 'string' }, microbatches: { type: 'string' }, tiny: { type: 'boolean' } })
  const nodes = intOption('nodes', values.nodes, 4, 2, 16)
  const microbatches = intOption('microbatches', values.microbatches, 400, 1)
  const manifest = defaultManifest()
  manifest.nStages = 2
  if (values.tiny === true) {
    manifest.model = { ...manifest.model, dModel: 64, nLayers: 2, nHeads: 4, seqLen: 32 }
    manifest.optimizer.batchSize = 8
  }

  const root = await mkdtemp(join(tmpdir(), 'swarmtrain-demo-'))
  const key = newSwarmKey()
  const daemons: DaemonProcess[] = []
  let interrupted = false
  const onSignal = (): void => { interrupted = true }
  process.once('SIGINT', onSignal)
  try {
    console.log(`demo run ${runIdOf(manifest)}: ${nodes} daemons, model d${manifest.model.dModel} L${manifest.model.nLayers} T${manifest.model.seqLen}, 2 stages, private swarm in ${root}`)
    for (let i = 0; i < nodes; i++) {
      const dir = join(root, `node${i}`)
      await mkdir(dir)
      await writeManifest(dir, manifest)
      await writeSwarmKey(join(dir, SWARM_KEY_FILE), key)
      const args = ['--stage', String(i % 2), '--capacity', '1000', '--threads', '1']
      if (i === 0) args.push('--max-microbatches', String(microbatches), '--eval-every', String(Math.max(10, Math.round(microbatches / 6))))
      else args.push('--no-drive', '--bootstrap', daemons[0].address)
      daemons.push(await spawnDaemon({
        args: ['start', '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', ...args],
        env: timers,
        onLine: i === 0 ? line => { if (line.startsWith('microbatch')) console.log(line) } : undefined
      }))
      console.log(`node ${i}: stage ${i % 2}${i === 0 ? ', driving' : ''}`)
    }
    while (!interrupted) {
      await new Promise(resolve => setTimeout(resolve, 1000))
      if (interrupted) break
      const dead = daemons.findIndex(d => d.child.exitCode !== null || d.child.signalCode !== null)
      if (dead >= 0) throw new DemoError(`node ${dead} exited early: ${lastError(daemons[dead].stderr())}`)
      const driver = await driverStats(daemons[0]).catch(() => undefined)
      if (driver?.done === true) {
        console.log(`done: ${driver.completed} microbatches, ${driver.failed} failed, final validation loss ${driver.validationLoss?.toFixed(4) ?? '-'} nats/byte`)
        break
      }
    }
    return interrupted ? 130 : 0
  } finally {
    process.removeListener('SIGINT', onSignal)
    await Promise.all(daemons.map(async d => await stopDaemon(d.child)))
    await rm(root, { recursive: true, force: true })
  }
}

async function driverStats (d: DaemonProcess): Promise<DriverStats | undefined> {
  const status = await fetchStatus(d.controlPort) as { services?: { pipeline?: { driver?: DriverStats } } }
  return status.services?.pipeline?.driver
}
