// The round's result, the same on every member: the same contributions, taken in sorted
// sender order, through the same kernels, give the same bits. The rule:
//   1. drop a contribution whose values are not all finite; one of 0 tokens (a member that trained
//      nothing since the last round) has no values and takes no part in what follows;
//   2. scale each one down to the median norm of those left (a 1000x update counts as 1x);
//   3. sum them, each over the members' count R: a replica steps on 1/R of the stage's batch, so
//      its progress is R times one machine's for its tokens. (Not a mean weighted by tokens: a
//      pseudo-gradient already grows with the tokens behind it, and a round after one replica's
//      step, with the others idle, would take that step whole, at R times the run's rate);
//   4. one outer step from theta_at_last_sync: SGD, or Nesterov momentum (none if nobody trained).
import { axpyAsync, decodeAccumulateAsync, outerStepAsync, payloadNorm, sumSquaresAsync } from '../../native/index.js'
import type { AveragingSettings } from '../manifest/manifest.js'

export interface Contribution {
  sender: string
  tokens: number
  dense: boolean
  payload: Uint8Array
}

export interface AggregateResult {
  /** The members whose contributions were used, and those dropped as non-finite. */
  used: string[]
  dropped: string[]
  /** The clip bound: the median norm. */
  medianNorm: number
  /** Members scaled down to the bound, and by how much (a factor below 1). */
  clipped: Map<string, number>
}

/** The values of a dense payload, as an aligned Float32Array (little-endian on the wire). */
export function denseValues (payload: Uint8Array): Float32Array {
  const out = new Float32Array(payload.length / 4)
  new Uint8Array(out.buffer).set(payload)
  return out
}

async function norm (c: Contribution): Promise<number> {
  if (!c.dense) return payloadNorm(c.payload)
  return Math.sqrt(await sumSquaresAsync(denseValues(c.payload)))
}

/**
 * Applies a round's contributions to `theta` (theta_at_last_sync, updated in place) and
 * `momentum`; `scratch`, if given, holds their sum (it is overwritten).
 */
export async function aggregate (contributions: readonly Contribution[], theta: Float32Array, momentum: Float32Array, settings: AveragingSettings, scratch?: Float32Array): Promise<AggregateResult> {
  const sorted = [...contributions].sort((a, b) => a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : 0)
  const norms = new Map<Contribution, number>()
  for (const c of sorted) norms.set(c, c.tokens > 0 ? await norm(c) : 0)
  const finite = sorted.filter(c => Number.isFinite(norms.get(c)))
  const dropped = sorted.filter(c => !finite.includes(c)).map(c => c.sender)
  const used = finite.map(c => c.sender)
  const kept = finite.filter(c => c.tokens > 0)
  const clipped = new Map<string, number>()
  if (kept.length === 0) return { used, dropped, medianNorm: 0, clipped }
  const ordered = kept.map(c => norms.get(c) as number).sort((a, b) => a - b)
  const middle = ordered.length >> 1
  const medianNorm = ordered.length % 2 === 1 ? ordered[middle] : (ordered[middle - 1] + ordered[middle]) / 2
  if (scratch !== undefined && scratch.length !== theta.length) throw new RangeError(`scratch has ${scratch.length} values, theta ${theta.length}`)
  const mean = scratch?.fill(0) ?? new Float32Array(theta.length)
  for (const c of kept) {
    const n = norms.get(c) as number
    if (n > medianNorm) clipped.set(c.sender, medianNorm / n)
    const weight = (clipped.get(c.sender) ?? 1) / used.length
    if (weight === 0) continue
    if (c.dense) await axpyAsync(mean, denseValues(c.payload), weight)
    else await decodeAccumulateAsync(mean, c.payload, weight)
  }
  const nesterov = settings.outerOptimizer === 'nesterov'
  await outerStepAsync(theta, mean, nesterov ? momentum : null, { lr: settings.outerLr, momentum: nesterov ? settings.outerMomentum : 0, nesterov })
  return { used, dropped, medianNorm, clipped }
}
