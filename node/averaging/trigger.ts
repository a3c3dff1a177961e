// When a replica starts an averaging round: a pure rule over what its registry view says, so
// the daemon's averaging service and the simulator (node/sim) run the same decision.

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

/** Tokens the stage's replicas train together between rounds, once they have taken `steps` inner steps. */
export function roundTokens (settings: Pick<AveragingSettings, 'innerSteps' | 'everyStepUntil'>, tokensPerStep: number, steps: number): number {
  return (steps < settings.everyStepUntil ? 1 : settings.innerSteps) * tokensPerStep
}
