// The swarm as a whole, from what a node's status holds: size, training rate, round, and the
// drivers' losses from their records (so a node that only serves shows them too). In the
// status JSON as `swarm`, for `swarmtrain status` and the dashboard.
import type { NodeStatus } from './node.js'

export interface SwarmSummary {
  nodes: number
  /** Tokens trained per second: the slowest stage's served rate (every microbatch passes every stage). */
  tokensPerSecond: number
  /** The highest averaging round any node reports. */
  round: number
  /** The drivers' training and validation losses, each weighted by the tokens it drove, and how many drivers report them. */
  loss?: number
  validationLoss?: number
  drivers: number
  /** Tokens the drivers have driven, all together (the loss's x axis). */
  drivenTokens: number
  /** Stages with no server: nothing trains while there is one. */
  missing: number[]
}

/** What a driving node's pipeline status tells (structurally; the pipeline's own type stays in its room). */
interface DriverProgress { tokens: number, trainLoss?: number, validationLoss?: number }

export function summarize (s: Pick<NodeStatus, 'peerId' | 'stages' | 'services'>): SwarmSummary {
  const peers = s.stages.flatMap(stage => stage.peers)
  // This node's own driver is fresher than its published record.
  const driver = (s.services.pipeline as { driver?: DriverProgress } | undefined)?.driver
  const drivers = peers.filter(p => p.peerId !== s.peerId).map(p => ({ tokens: p.drivenTokens, train: p.trainLoss, validation: p.validationLoss }))
  if (driver !== undefined) drivers.push({ tokens: driver.tokens, train: driver.trainLoss, validation: driver.validationLoss })
  return {
    nodes: peers.length,
    tokensPerSecond: Math.min(...s.stages.map(stage => stage.peers.reduce((sum, p) => sum + p.servedThroughput, 0))),
    round: Math.max(0, ...peers.map(p => p.round)),
    loss: weightedMean(drivers.map(d => [d.train, d.tokens])),
    validationLoss: weightedMean(drivers.map(d => [d.validation, d.tokens])),
    drivers: drivers.filter(d => d.train !== undefined).length,
    drivenTokens: drivers.reduce((sum, d) => sum + d.tokens, 0),
    missing: s.stages.filter(stage => stage.peers.length === 0).map(stage => stage.stage)
  }
}

/** The mean of the defined values, weighted (equally when no weight is positive); undefined if none. */
function weightedMean (pairs: Array<[number | undefined, number]>): number | undefined {
  const known = pairs.filter((p): p is [number, number] => p[0] !== undefined)
  if (known.length === 0) return undefined
  const total = known.reduce((sum, [, w]) => sum + Math.max(0, w), 0)
  return total > 0 ? known.reduce((sum, [v, w]) => sum + v * Math.max(0, w), 0) / total : known.reduce((sum, [v]) => sum + v, 0) / known.length
}
