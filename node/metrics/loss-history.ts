// The training and validation loss against tokens trained, bounded: when a curve reaches its
// limit, adjacent pairs merge into their mean and later points are averaged in groups twice as
// large, so a run of any length keeps its whole shape, evenly, in at most `maxPoints` points per
// curve. The dashboard, the metrics and `plot` read it.

export type LossKind = 'train' | 'validation'

/** [tokens trained so far, loss in nats per token]. */
export type LossPoint = [number, number]

export interface LossHistoryJSON {
  train: LossPoint[]
  validation: LossPoint[]
}

class Curve {
  readonly points: LossPoint[] = []
  /** Reports averaged into each point from now on. */
  private group = 1
  /** The group being filled: latest tokens, loss sum, count. */
  private pending?: { tokens: number, sum: number, count: number }

  constructor (private readonly maxPoints: number) {}

  add (tokens: number, loss: number): void {
    const p = this.pending ?? { tokens, sum: 0, count: 0 }
    p.tokens = tokens
    p.sum += loss
    p.count++
    this.pending = p
    if (p.count < this.group) return
    this.points.push([p.tokens, p.sum / p.count])
    this.pending = undefined
    if (this.points.length < this.maxPoints) return
    const merged: LossPoint[] = []
    for (let i = 0; i + 1 < this.points.length; i += 2) merged.push([this.points[i + 1][0], (this.points[i][1] + this.points[i + 1][1]) / 2])
    if (this.points.length % 2 === 1) merged.push(this.points[this.points.length - 1])
    this.points.splice(0, this.points.length, ...merged)
    this.group *= 2
  }

  /** The points, the group being filled included (so the latest report shows at once). */
  toJSON (): LossPoint[] {
    const out = this.points.map((p): LossPoint => [p[0], p[1]])
    if (this.pending !== undefined) out.push([this.pending.tokens, this.pending.sum / this.pending.count])
    return out
  }
}

export class LossHistory {
  private readonly curves: Record<LossKind, Curve>

  constructor (init: { maxPoints?: number } = {}) {
    const maxPoints = Math.max(4, init.maxPoints ?? 512)
    this.curves = { train: new Curve(maxPoints), validation: new Curve(maxPoints) }
  }

  add (kind: LossKind, tokens: number, loss: number): void {
    if (Number.isFinite(tokens) && Number.isFinite(loss)) this.curves[kind].add(tokens, loss)
  }

  toJSON (): LossHistoryJSON {
    return { train: this.curves.train.toJSON(), validation: this.curves.validation.toJSON() }
  }
}
