// Where a node should serve: pure functions over the stages' total throughputs, so the rule
// is easy to test. Joining picks the weakest stage that fits; rebalancing moves only when the
// swarm's bottleneck (the weakest stage) clearly improves, as in Petals.

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

/** The stage to join: least total throughput among those that fit; ties go to `pick`. */
export function chooseStage (stages: readonly StageLoad[], fits: (stage: number) => boolean, pick: (n: number) => number): number | undefined {
  const candidates = stages.filter(s => fits(s.stage))
  if (candidates.length === 0) return undefined
  const least = Math.min(...candidates.map(s => s.throughput))
  const weakest = candidates.filter(s => s.throughput <= least)
  return weakest[pick(weakest.length)].stage
}

export interface Move {
  from: number
  to: number
  /** The weakest stage's throughput now, and after the move. */
  before: number
  after: number
}

/**
 * The move that raises the weakest stage's throughput the most, if it beats the current
 * bottleneck by more than 1/BALANCE_QUALITY; never leaves `from` without a server.
 */
export function rebalanceMove (stages: readonly StageLoad[], from: number, throughput: number, fits: (stage: number) => boolean): Move | undefined {
  const current = stages.find(s => s.stage === from)
  if (current === undefined || current.servers <= 1) return undefined
  const before = Math.min(...stages.map(s => s.throughput))
  let best: Move | undefined
  for (const target of stages) {
    if (target.stage === from || !fits(target.stage)) continue
    const after = Math.min(...stages.map(s =>
      s.stage === from ? s.throughput - throughput : s.stage === target.stage ? s.throughput + throughput : s.throughput))
    if (best === undefined || after > best.after) best = { from, to: target.stage, before, after }
  }
  return best !== undefined && best.after * BALANCE_QUALITY > best.before ? best : undefined
}
