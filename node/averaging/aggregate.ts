// The round's result, the same on every member: the same contributions, taken in sorted
// sender order, through the same kernels, give the same bits. The rule:
//   1. drop a contribution whose values are not all finite;
//   2. scale each one down to the median norm of those left (a 1000x update counts as 1x);
//   3. take their mean weighted by tokens (each capped at one round's tokens);
//   4. one outer step from theta_at_last_sync: SGD, or Nesterov momentum.
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
 * `momentum`. `maxTokens` caps each member's claimed tokens.
 */
export async function aggregate (contributions: readonly Contribution[], theta: Float32Array, momentum: Float32Array, settings: AveragingSettings, maxTokens: number): Promise<AggregateResult> {
  const sorted = [...contributions].sort((a, b) => a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : 0)
  const norms = new Map<Contribution, number>()
  for (const c of sorted) norms.set(c, await norm(c))
  const kept = sorted.filter(c => Number.isFinite(norms.get(c)))
  const dropped = sorted.filter(c => !kept.includes(c)).map(c => c.sender)
  if (kept.length === 0) return { used: [], dropped, medianNorm: 0 }
  const ordered = kept.map(c => norms.get(c) as number).sort((a, b) => a - b)
  const middle = ordered.length >> 1
  const medianNorm = ordered.length % 2 === 1 ? ordered[middle] : (ordered[middle - 1] + ordered[middle]) / 2
  const tokens = kept.map(c => Math.min(Math.max(c.tokens, 0), maxTokens))
  const total = tokens.reduce((a, b) => a + b, 0)
  const mean = new Float32Array(theta.length)
  for (const [i, c] of kept.entries()) {
    const share = total > 0 ? tokens[i] / total : 1 / kept.length
    const n = norms.get(c) as number
    const weight = share * (n > medianNorm ? medianNorm / n : 1)
    if (weight === 0) continue
    if (c.dense) await axpyAsync(mean, denseValues(c.payload), weight)
    else await decodeAccumulateAsync(mean, c.payload, weight)
  }
  const nesterov = settings.outerOptimizer === 'nesterov'
  await outerStepAsync(theta, mean, nesterov ? momentum : null, { lr: settings.outerLr, momentum: nesterov ? settings.outerMomentum : 0, nesterov })
  return { used: kept.map(c => c.sender), dropped, medianNorm }
}
