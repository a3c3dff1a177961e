// What a replica trains while its rounds run against between them: whether a round's work and
// bytes in flight slow the pipeline. Each backward's tokens are spread evenly over the time since
// the backward before it, and that span is split by how much of it a round covered. Counting the
// tokens at the instants backwards complete would be biased: a round starts right after a step,
// which comes right after a backward, so the time between rounds would end on a backward and
// rounds would start just past one.

/** Tokens trained over some time (ms). */
export interface Training {
  tokens: number
  ms: number
}

export class TrainingSplit {
  readonly during: Training = { tokens: 0, ms: 0 }
  readonly between: Training = { tokens: 0, ms: 0 }
  /** When the last backward completed (or the split began). */
  private last: number
  /** Rounds that ended since then, as [start, end]. */
  private ended: Array<[number, number]> = []
  /** When the running round started, if one is. */
  private open?: number

  constructor (now: number) {
    this.last = now
  }

  roundStarted (at: number): void {
    this.open = at
  }

  roundEnded (at: number): void {
    if (this.open === undefined) return
    this.ended.push([this.open, at])
    this.open = undefined
  }

  /** A backward of `tokens` completed at `at`. */
  trained (at: number, tokens: number): void {
    const span = at - this.last
    const overlap = (start: number, end: number): number => Math.max(0, Math.min(end, at) - Math.max(start, this.last))
    let inRounds = this.ended.reduce((sum, [start, end]) => sum + overlap(start, end), 0)
    if (this.open !== undefined) inRounds += overlap(this.open, at)
    // Two backwards in the same instant: the second goes wholly to the state the first left.
    const duringShare = span > 0 ? inRounds / span : (this.open !== undefined ? 1 : 0)
    this.during.tokens += tokens * duringShare
    this.during.ms += inRounds
    this.between.tokens += tokens * (1 - duringShare)
    this.between.ms += span - inRounds
    this.ended = []
    this.last = at
  }
}
