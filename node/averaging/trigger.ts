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
  /** Rounds come after every step now (everyStep()). */
  everyStep?: boolean
}

/**
 * A round is due once the replicas at our round together trained tokensPerRound since it, or
 * when invited to the next. In the every-step phase, as soon as this replica stepped since the
 * last round: the others' records lag by seconds, and waiting for them to show the stage's whole
 * batch would make a round every other step at best.
 */
export function roundDue (t: RoundTrigger): boolean {
  if (t.invited) return true
  if (t.everyStep === true && t.tokensSinceSync > 0) return true
  let collective = t.tokensSinceSync
  for (const p of t.peers) if (p.round === t.round) collective += p.tokensSinceSync
  return collective >= t.tokensPerRound
}

type Schedule = Pick<AveragingSettings, 'innerSteps' | 'everyStepUntil' | 'topkDensity' | 'everyStepTopkDensity' | 'beta' | 'everyStepBeta'>

/**
 * Tokens the stage's replicas train together between rounds, once they have taken `steps` inner
 * steps. A replica alone has nobody to average with: its rounds only checkpoint its outer state,
 * so they stay innerSteps apart.
 */
export function roundTokens (settings: Schedule, tokensPerStep: number, steps: number, replicas: number): number {
  return (everyStep(settings, steps, replicas) ? 1 : settings.innerSteps) * tokensPerStep
}

/** Whether rounds come after every step: early in the run (everyStepUntil), when there is someone to average with. */
export function everyStep (settings: Schedule, steps: number, replicas: number): boolean {
  return steps < settings.everyStepUntil && replicas > 1
}

/** The top-k density and error-feedback decay of a contribution made after `steps` inner steps. */
export function roundCompression (settings: Schedule, steps: number): { density: number, beta: number } {
  return steps < settings.everyStepUntil
    ? { density: settings.everyStepTopkDensity, beta: settings.everyStepBeta }
    : { density: settings.topkDensity, beta: settings.beta }
}

/**
 * The densities a contribution may have come with: replicas near the end of the every-step
 * rounds may disagree by a step about which side of it a round falls on.
 */
export function roundDensities (settings: Schedule): number[] {
  return settings.everyStepUntil > 0 ? [settings.topkDensity, settings.everyStepTopkDensity] : [settings.topkDensity]
}
