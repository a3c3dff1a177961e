// Shared by the multi-process averaging tests: a tiny one-stage run, and waiting for replicas
// to agree on their state.
import type { AveragingStatus } from '../node/averaging/service.js'
import { TestSwarm, waitFor, type NodeProcess } from './daemon-harness.js'

/** `init` flags of a one-stage model small enough for many rounds on a busy machine. */
export const tinyRun = ['--stages', '1', '--d-model', '32', '--layers', '1', '--heads', '2', '--seq-len', '16', '--batch-size', '4', '--microbatches', '1', '--private']
export const daemonFlags = ['--capacity', '1000', '--threads', '1', '--eval-every', '0']
/** Daemons may take long to start when the machine is busy. */
export const START_MS = 120_000

export async function averagingStatus (swarm: TestSwarm, node: NodeProcess): Promise<AveragingStatus> {
  return (await swarm.status(node)).services.averaging as AveragingStatus
}

/** Waits until the nodes stand at one round >= `minRound` with one state hash. */
export async function agreed (swarm: TestSwarm, nodes: NodeProcess[], minRound: number, timeoutMs: number): Promise<AveragingStatus[]> {
  let seen: AveragingStatus[] = []
  return await waitFor(`${nodes.length} replicas at one round >= ${minRound} with one state hash`, timeoutMs, async () => {
    seen = await Promise.all(nodes.map(async n => await averagingStatus(swarm, n)))
    const [first] = seen
    return first.round >= minRound && seen.every(s => s.round === first.round && s.stateHash === first.stateHash) ? seen : undefined
  }, () => JSON.stringify(seen.map(s => ({ round: s.round, hash: s.stateHash, syncs: s.syncs, last: s.rounds.at(-1) }))))
}
