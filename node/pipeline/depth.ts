// How many microbatches a driver keeps in flight. Enough to keep every stage busy however far
// away the stages are (Little's law: in flight = throughput x latency), no more: extra depth only
// queues at the bottleneck, and every microbatch in flight is weight staleness, since a stage
// may step between a microbatch's forward and its backward.
//
// The control is TCP Vegas's, with microbatches for packets and the servers' own account of
// queueing instead of Vegas's minimum-RTT guess (which a long queue or a noisy machine fools):
// each call's reply says how long it waited for a compute slot, so
//   queued = depth x (time the microbatch waited in queues) / (its latency)
// estimates how many microbatches wait at the bottleneck. Once per round (depth completions)
// depth grows while fewer than one waits and shrinks when more than three do. Staleness caps it:
// when a backward ran more weight versions behind than the run allows, depth shrinks, whatever
// the latency says (every driver of a stage adds to its staleness, so only the stages can tell).
// Growth is allowed at the bound, so a probe may overshoot it by one for a round: the stash
// keeps one version more than the bound so that such backwards still recompute exactly.

export interface DepthControlInit {
  /** Starting depth (e.g. stages + 1: each stage busy while one microbatch travels). */
  initial: number
  /** Staleness a backward may have, in weight versions (the manifest's weightVersions - 2; below 0: none). */
  maxStaleness: number
  /** Hard bound on depth. */
  max?: number
}

export class DepthControl {
  depth: number
  private readonly maxStaleness: number
  private max: number
  private sinceChange = 0
  private latencyMs = 0
  private waitedMs = 0
  private staleness = 0

  constructor (init: DepthControlInit) {
    this.max = init.max ?? 64
    this.maxStaleness = init.maxStaleness
    this.depth = Math.max(1, Math.min(init.initial, this.max))
  }

  /** Changes the hard bound on depth (the swarm's drivers came or went); depth follows at once. */
  bound (max: number): void {
    this.max = Math.max(1, max)
    this.depth = Math.min(this.depth, this.max)
  }

  /**
   * A microbatch completed `latencyMs` after it was issued, having waited `waitedMs` of that in
   * servers' queues, its backwards at most `staleness` weight versions behind their forwards.
   * Returns the new depth.
   */
  completed (latencyMs: number, waitedMs: number, staleness: number): number {
    this.latencyMs += latencyMs
    this.waitedMs += waitedMs
    this.staleness = Math.max(this.staleness, staleness)
    if (++this.sinceChange < this.depth) return this.depth
    // One round since the last change: decide on what it showed.
    const queued = this.depth * this.waitedMs / Math.max(this.latencyMs, 1e-9)
    if (this.staleness > this.maxStaleness || queued > 3) this.depth = Math.max(1, this.depth - 1)
    else if (queued < 1) this.depth = Math.min(this.max, this.depth + 1)
    this.sinceChange = 0
    this.latencyMs = this.waitedMs = this.staleness = 0
    return this.depth
  }
}

/**
 * The peers driving the swarm now: those whose records show driven tokens that grew within
 * `idleMs` (a peer first seen with tokens counts as driving). A record keeps the tokens a peer
 * drove after it stopped, and counting it would keep the others' share of depth small for good.
 */
export class ActiveDrivers {
  private readonly seen = new Map<string, { tokens: number, grewAt: number }>()

  constructor (private readonly idleMs: number) {}

  count (peers: ReadonlyArray<{ peerId: string, drivenTokens: number }>, now: number): number {
    let driving = 0
    const listed = new Set<string>()
    for (const { peerId, drivenTokens } of peers) {
      if (drivenTokens <= 0 || listed.has(peerId)) continue
      listed.add(peerId)
      const last = this.seen.get(peerId)
      if (last === undefined || drivenTokens > last.tokens) this.seen.set(peerId, { tokens: drivenTokens, grewAt: now })
      if (now - this.seen.get(peerId)!.grewAt < this.idleMs) driving++
    }
    for (const peerId of [...this.seen.keys()]) if (!listed.has(peerId)) this.seen.delete(peerId)
    return driving
  }
}
