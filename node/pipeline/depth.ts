// How many microbatches a driver keeps in flight. Enough to keep every stage busy however far
// away the stages are (Little's law: in flight = throughput x latency), no more: extra depth only
// queues at the bottleneck, and every microbatch in flight is weight staleness, since a stage
// may step between a microbatch's forward and its backward.
//
// The control is TCP Vegas's, with microbatches for packets: the lowest recent latency is the
// pipeline's base latency (compute plus network, nothing queued), so
//   queued = depth x (1 - baseLatency / latency)
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

/**
 * Latency samples that make the base latency: a sliding minimum, long enough that it still holds
 * an unqueued sample when depth has sat at the queueing point for a while, and short enough to
 * follow a slower network after a few hundred microbatches (a faster one it follows at once).
 */
const BASE_WINDOW = 512
/** Weight of the newest sample in the latency average. */
const SMOOTHING = 0.2

export class DepthControl {
  depth: number
  private readonly maxStaleness: number
  private readonly max: number
  private readonly samples: number[] = []
  private latency?: number
  private sinceChange = 0
  private staleness = 0

  constructor (init: DepthControlInit) {
    this.max = init.max ?? 64
    this.maxStaleness = init.maxStaleness
    this.depth = Math.max(1, Math.min(init.initial, this.max))
  }

  /**
   * A microbatch completed after `latencyMs` (issue to completion), its backwards at most
   * `staleness` weight versions behind their forwards. Returns the new depth.
   */
  completed (latencyMs: number, staleness: number): number {
    this.samples.push(latencyMs)
    if (this.samples.length > BASE_WINDOW) this.samples.shift()
    this.latency = this.latency === undefined ? latencyMs : (1 - SMOOTHING) * this.latency + SMOOTHING * latencyMs
    this.staleness = Math.max(this.staleness, staleness)
    if (++this.sinceChange < this.depth) return this.depth
    // One round since the last change: decide on what it showed.
    const queued = this.depth * (1 - Math.min(...this.samples) / this.latency)
    if (this.staleness > this.maxStaleness || queued > 3) this.depth = Math.max(1, this.depth - 1)
    else if (queued < 1) this.depth = Math.min(this.max, this.depth + 1)
    this.sinceChange = 0
    this.staleness = 0
    return this.depth
  }

  /** Waiting that is not the pipeline's (an evaluation holding the stages) must not read as queueing. */
  forgetLatency (): void {
    this.latency = undefined
    this.sinceChange = 0
  }
}
