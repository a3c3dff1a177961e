// Where a node should serve: pure functions over the stages' total throughputs, so the rule
// is easy to test. Joining picks the weakest stage that fits; rebalancing moves only when the
// swarm's bottleneck (the weakest stage) clearly improves, as in Petals.
import { hashString } from '../util/random.js'

/**
 * Petals' balance quality: move only if the weakest stage's throughput would grow by more
 * than a factor 1/0.75. Below that, noise in the measurements would make peers oscillate.
 */
export const BALANCE_QUALITY = 0.75

export interface StageLoad {
  stage: number
  /** Total tokens/s of the stage's servers. */
  throughput: number
  servers: number
}

/**
 * The stage to join: least total throughput among those that fit. Ties go to `preferred` (the
 * stage this node holds a checkpoint of) when it is among them, else to `pick`.
 */
export function chooseStage (stages: readonly StageLoad[], fits: (stage: number) => boolean, pick: (n: number) => number, preferred?: number): number | undefined {
  const candidates = stages.filter(s => fits(s.stage))
  if (candidates.length === 0) return undefined
  const least = Math.min(...candidates.map(s => s.throughput))
  const weakest = candidates.filter(s => s.throughput <= least)
  if (weakest.some(s => s.stage === preferred)) return preferred
  return weakest[pick(weakest.length)].stage
}

export interface Move {
  from: number
  to: number
  /** The weakest stage's throughput now, and once the swarm has settled after the move. */
  before: number
  after: number
}

/** One server as the registry sees it. */
export interface Server {
  id: string
  stage: number
  /** Tokens/s. */
  throughput: number
}

export type Fits = (server: Server, stage: number) => boolean

/** Stage loads of `servers` over `nStages` stages. */
export function stageLoads (servers: readonly Server[], nStages: number): StageLoad[] {
  const loads = Array.from({ length: nStages }, (_, stage) => ({ stage, throughput: 0, servers: 0 }))
  for (const s of servers) {
    loads[s.stage].throughput += s.throughput
    loads[s.stage].servers++
  }
  return loads
}

/**
 * Whether server `me` should move, and where: Petals' rule. For each stage it could move to,
 * simulate the move and then let every server greedily re-choose until nobody would (one move
 * alone cannot fix a swarm with two weak stages, e.g. 1, 4, 1 servers); move only if the
 * weakest stage of the settled swarm beats today's weakest by more than 1/BALANCE_QUALITY.
 * The move itself must also raise the stage throughputs sorted from the weakest up, so moves
 * can never cycle. Never leaves a stage without a server.
 */
export function rebalanceMove (servers: readonly Server[], nStages: number, me: string, fits: Fits): Move | undefined {
  const self = servers.find(s => s.id === me)
  if (self === undefined) return undefined
  const loads = stageLoads(servers, nStages)
  if (loads[self.stage].servers <= 1) return undefined
  const now = sorted(loads.map(l => l.throughput))
  const before = now[0]
  let best: Move | undefined
  for (let to = 0; to < nStages; to++) {
    if (to === self.stage || !fits(self, to)) continue
    const moved = servers.map(s => s.id === me ? { ...s, stage: to } : { ...s })
    if (compare(sorted(stageLoads(moved, nStages).map(l => l.throughput)), now) <= 0) continue
    const after = Math.min(...stageLoads(settle(moved, nStages, fits), nStages).map(l => l.throughput))
    if (best === undefined || after > best.after) best = { from: self.stage, to, before, after }
  }
  return best !== undefined && best.after * BALANCE_QUALITY > best.before ? best : undefined
}

/** The time slot a rebalancing check at `now` falls in (the mover rotates with it). */
export function rebalanceSlot (now: number, rebalanceMs: number): number {
  return Math.floor(now / (2 * rebalanceMs))
}

/**
 * Who moves in `slot`: several servers usually see the same worthwhile move, and if they all
 * took it they would just move the imbalance (or empty a stage). So one moves at a time: among
 * the willing (those rebalanceMove finds a move for, memory aside), the one with the least hash
 * of (id, slot), the first in `servers` on a tie. Servers with the same view agree on it. Looks
 * at servers in hash order and stops at the first willing one: a large swarm costs a few policy
 * evaluations, not one per server.
 */
export function moverInSlot (servers: readonly Server[], nStages: number, slot: number): Server | undefined {
  const order = servers.map((server, i) => ({ server, i, hash: hashString(`${server.id}:${slot}`) })).sort((a, b) => a.hash - b.hash || a.i - b.i)
  return order.find(({ server }) => rebalanceMove(servers, nStages, server.id, () => true) !== undefined)?.server
}

/**
 * Lets servers (in id order) greedily move to the weakest stage that fits whenever that
 * raises the stage throughputs sorted from the weakest up; each such move raises that vector,
 * so this ends. Mutates and returns `servers`.
 */
export function settle (servers: Server[], nStages: number, fits: Fits, maxRounds = 100): Server[] {
  const order = [...servers].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const loads = stageLoads(servers, nStages)
  for (let round = 0; round < maxRounds; round++) {
    let moved = false
    for (const s of order) {
      if (loads[s.stage].servers <= 1) continue
      const now = sorted(loads.map(l => l.throughput))
      let bestStage = -1
      let bestAfter = now
      for (let to = 0; to < nStages; to++) {
        if (to === s.stage || !fits(s, to)) continue
        const after = sorted(loads.map(l => l.stage === s.stage ? l.throughput - s.throughput : l.stage === to ? l.throughput + s.throughput : l.throughput))
        if (compare(after, bestAfter) > 0) { bestStage = to; bestAfter = after }
      }
      if (bestStage >= 0) {
        loads[s.stage].throughput -= s.throughput
        loads[s.stage].servers--
        loads[bestStage].throughput += s.throughput
        loads[bestStage].servers++
        s.stage = bestStage
        moved = true
      }
    }
    if (!moved) break
  }
  return servers
}

function sorted (values: number[]): number[] {
  return values.sort((a, b) => a - b)
}

/** Lexicographic order; throughputs within a millionth of each other count as equal (sums of measured rates). */
function compare (a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) {
    if (Math.abs(a[i] - b[i]) > 1e-6 * Math.max(Math.abs(a[i]), Math.abs(b[i]))) return a[i] - b[i]
  }
  return 0
}
