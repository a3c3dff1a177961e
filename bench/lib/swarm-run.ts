// A real swarm for the convergence benchmark: daemons on loopback (`swarmtrain start`), two
// replicas per stage, every replica driving its share of the token budget, averaging as the
// manifest says. Optionally one replica is SIGKILLed a third of the way in and a fresh node
// joins at two thirds. The survivors then drive what the killed one would have until the newcomer
// arrives, and the newcomer a driver's share of the last third, so that every driver ends with
// the run (each driver's last validation is the run's final one) at equal tokens in total.
import { mkdtemp, mkdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type DaemonProcess, fetchStatus, spawnDaemon, stopDaemon } from '../../node/daemon/process.js'
import type { NodeStatus } from '../../node/daemon/node.js'
import type { AveragingStatus } from '../../node/averaging/service.js'
import type { PipelineStatus } from '../../node/pipeline/swarm.js'
import { type AveragingSettings, type RunManifest, writeManifest } from '../../node/manifest/manifest.js'
import { SWARM_KEY_FILE, newSwarmKey, writeSwarmKey } from '../../node/p2p/keys.js'
import { LOOPBACK_SWARM_ENV } from '../../node/timing.js'

export interface SwarmRunInit {
  manifest: RunManifest
  averaging: AveragingSettings['mode']
  /** Replicas per stage; every replica drives. */
  replicas: number
  /** Microbatches driven by the whole swarm. */
  microbatches: number
  /** Validation every this many microbatches of each driver. */
  evalEvery: number
  /** Microbatches each driver keeps in flight (default: the daemon's, adaptive). */
  inFlight?: number
  /** Kill one replica at a third of the budget, add a fresh node at two thirds. */
  churn?: boolean
  onProgress?: (line: string) => void
}

export interface SwarmRunResult {
  /** Mean of the drivers' final validation losses. */
  valLoss: number
  tokens: number
  tokensPerSecond: number
  /** Per peer, mean over the peers alive at the end: averaging bytes, and everything else sent. */
  averagingBytesPerPeer: number
  pipelineBytesPerPeer: number
  /** Mean validation loss of the drivers against the swarm's tokens. */
  curve: Array<[number, number]>
  rounds: number
  /**
   * Tokens/s while rounds ran against between them (all rounds of the replicas alive at the
   * end): whether a round's work and bytes in flight slow the pipeline. Undefined with no round.
   */
  roundSpeedRatio?: number
}

interface Member { daemon: DaemonProcess, stage: number, budget: number }

async function statusOf (d: DaemonProcess): Promise<{ node: NodeStatus, pipeline: PipelineStatus, averaging: AveragingStatus }> {
  const node = await fetchStatus(d.controlPort)
  return { node, pipeline: node.services.pipeline as PipelineStatus, averaging: node.services.averaging as AveragingStatus }
}

/** Tokens/s the replicas trained while their rounds ran against between them, all rounds of all replicas together. */
function roundSpeedRatio (statuses: AveragingStatus[]): number | undefined {
  const sum = (key: 'trainedDuringRounds' | 'trainedBetweenRounds', field: 'tokens' | 'ms'): number => statuses.reduce((a, s) => a + s[key][field], 0)
  const during = sum('trainedDuringRounds', 'tokens') / sum('trainedDuringRounds', 'ms')
  const between = sum('trainedBetweenRounds', 'tokens') / sum('trainedBetweenRounds', 'ms')
  return Number.isFinite(during) && between > 0 ? during / between : undefined
}

export async function runSwarm (init: SwarmRunInit): Promise<SwarmRunResult> {
  const { manifest, replicas } = init
  const nStages = manifest.nStages
  const drivers = nStages * replicas
  const tokensPerMicrobatch = manifest.optimizer.batchSize * manifest.model.seqLen
  const perDriver = Math.floor(init.microbatches / drivers)
  const root = await mkdtemp(join(tmpdir(), 'swarmtrain-convergence-'))
  const key = newSwarmKey()
  const members: Member[] = []
  const dead: Member[] = []
  let next = 0
  const start = async (stage: number, budget: number): Promise<Member> => {
    const dir = join(root, `node${next++}`)
    await mkdir(dir)
    await writeManifest(dir, { ...manifest, averaging: { ...manifest.averaging, mode: init.averaging } })
    await writeSwarmKey(join(dir, SWARM_KEY_FILE), key)
    const bootstrap = members.length === 0 ? [] : ['--bootstrap', members[0].daemon.address]
    const daemon = await spawnDaemon({
      args: ['start', '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--stage', String(stage), '--capacity', '1000', '--threads', '1',
        '--max-microbatches', String(budget), '--eval-every', String(init.evalEvery), ...bootstrap,
        ...init.inFlight === undefined ? [] : ['--in-flight', String(init.inFlight)]],
      env: LOOPBACK_SWARM_ENV,
      // A busy machine starts daemons slowly; the run is long anyway.
      timeoutMs: 180_000
    })
    const member = { daemon, stage, budget }
    members.push(member)
    return member
  }
  const started = performance.now()
  try {
    const budget = perDriver * drivers
    // Member i serves stage i % nStages; with churn the victim is the last one, of the last stage.
    const victimIndex = init.churn === true ? drivers - 1 : -1
    const survivorBudget = Math.floor(budget * (1 - 2 / (3 * drivers)) / (drivers - 1))
    const budgetOf = (i: number): number => init.churn !== true || i === victimIndex ? perDriver : survivorBudget
    // The first node is everyone's bootstrap; the others start together, so that no replica
    // trains alone for long while the rest are still starting.
    await start(0, budgetOf(0))
    await Promise.all(Array.from({ length: drivers - 1 }, async (_, i) => await start((i + 1) % nStages, budgetOf(i + 1))))
    const original = [...members]
    let churned = 0
    for (;;) {
      await new Promise(resolve => setTimeout(resolve, 2000))
      const live = members.filter(m => !dead.includes(m))
      const statuses = await Promise.all(live.map(async m => await statusOf(m.daemon)))
      const completed = statuses.reduce((n, s) => n + (s.pipeline.driver?.completed ?? 0), 0) + dead.reduce((n, m) => n + m.budget, 0)
      init.onProgress?.(`${init.averaging}${init.churn === true ? ' churn' : ''}: ${completed}/${budget} microbatches`)
      if (init.churn === true && churned === 0 && completed >= budget / 3) {
        // A replica of the last stage dies; the survivors drive on, and a newcomer drives the rest.
        const victim = members[victimIndex]
        const index = live.indexOf(victim)
        const done = statuses[index].pipeline.driver?.completed ?? 0
        victim.daemon.child.kill('SIGKILL')
        victim.budget = done
        dead.push(victim)
        churned = 1
        init.onProgress?.(`killed a replica of stage ${victim.stage} after ${done} of its microbatches`)
        continue
      }
      if (init.churn === true && churned === 1 && completed >= 2 * budget / 3) {
        const victim = dead[0]
        await start(victim.stage, budget - victim.budget - survivorBudget * (drivers - 1))
        churned = 2
        init.onProgress?.(`a fresh node joined stage ${victim.stage}`)
        continue
      }
      if ((init.churn !== true || churned === 2) && statuses.every(s => s.pipeline.driver?.done === true)) {
        const seconds = (performance.now() - started) / 1000
        const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
        const finals = statuses.map(s => s.pipeline.driver!.validations.at(-1)!)
        // The curve: the evaluations every evalEvery microbatches of the drivers that ran from the
        // start (a newcomer's start late), then every driver's last, at the end of the run.
        const curves = statuses.filter((_, i) => original.includes(live[i])).map(s => s.pipeline.driver!.validations)
        const points = Math.min(...curves.map(c => c.length)) - 1
        const curve: Array<[number, number]> = []
        for (let i = 0; i < points; i++) {
          // A driver of the curve drives budgetOf(0) of the budget, at about a steady share of it.
          const at = Math.min(budget, Math.round((i + 1) * init.evalEvery * budget / budgetOf(0)))
          curve.push([at * tokensPerMicrobatch, mean(curves.map(c => c[i]))])
        }
        curve.push([budget * tokensPerMicrobatch, mean(finals)])
        const averagingBytes = statuses.map(s => s.averaging.bytesSent)
        const allBytes = statuses.map(s => s.node.bytes.sent)
        return {
          valLoss: mean(finals),
          tokens: budget * tokensPerMicrobatch,
          tokensPerSecond: budget * tokensPerMicrobatch / seconds,
          averagingBytesPerPeer: mean(averagingBytes),
          pipelineBytesPerPeer: mean(allBytes.map((b, i) => b - averagingBytes[i])),
          curve,
          rounds: Math.max(...statuses.map(s => s.averaging.round)),
          roundSpeedRatio: roundSpeedRatio(statuses.map(s => s.averaging))
        }
      }
    }
  } finally {
    await Promise.all(members.filter(m => !dead.includes(m)).map(async m => { await stopDaemon(m.daemon.child, 5000) }))
    await rm(root, { recursive: true, force: true })
  }
}
