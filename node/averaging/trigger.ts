// When a replica starts an averaging round, and how densely it compresses: pure rules over its
// own progress and what its registry view says, so the daemon's averaging service and the
// simulator (node/sim) run the same decisions.

import type { AveragingSettings } from '../manifest/manifest.js'

/** A replica of the same stage as the registry shows it. */
export interface ReplicaProgress {
  round: number
  tokensSinceSync: number
}

export interface RoundTrigger {
  /** This replica's round and the tokens it trained since that round. */
  round: number
  tokensSinceSync: number
  /** The other replicas of the stage (those at another round do not count). */
  peers: readonly ReplicaProgress[]
  /** Tokens the stage's replicas train together between rounds. */
  tokensPerRound: number
  /** Another member's contribution to the next round has arrived. */
  invited: boolean
}

/** A round is due once the replicas at our round together trained tokensPerRound since it, or when invited to the next. */
export function roundDue (t: RoundTrigger): boolean {
  if (t.invited) return true
  let collective = t.tokensSinceSync
  for (const p of t.peers) if (p.round === t.round) collective += p.tokensSinceSync
  return collective >= t.tokensPerRound
}

type Schedule = Pick<AveragingSettings, 'innerSteps' | 'everyStepUntil' | 'topkDensity' | 'everyStepTopkDensity'>

/**
 * Tokens the stage's replicas train together between rounds, once they have taken `steps` inner
 * steps. A replica alone has nobody to average with: its rounds only checkpoint its outer state,
 * so they stay innerSteps apart.
 */
export function roundTokens (settings: Schedule, tokensPerStep: number, steps: number, replicas: number): number {
  return (steps < settings.everyStepUntil && replicas > 1 ? 1 : settings.innerSteps) * tokensPerStep
}

/** The top-k density of a contribution made after `steps` inner steps. */
export function roundDensity (settings: Schedule, steps: number): number {
  return steps < settings.everyStepUntil ? settings.everyStepTopkDensity : settings.topkDensity
}

/**
 * The densities a contribution may have come with: replicas near the end of the every-step
 * rounds may disagree by a step about which side of it a round falls on.
 */
export function roundDensities (settings: Schedule): number[] {
  return settings.everyStepUntil > 0 ? [settings.topkDensity, settings.everyStepTopkDensity] : [settings.topkDensity]
}
