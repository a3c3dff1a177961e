// The training and validation loss against tokens trained, bounded: when a curve reaches its
// limit, adjacent pairs merge into their mean, so a run of any length keeps its whole shape in
// at most `maxPoints` points per curve. The dashboard, the metrics and `plot` read it.

export type LossKind = 'train' | 'validation'

/** [tokens trained so far, loss in nats per token]. */
export type LossPoint = [number, number]

export interface LossHistoryJSON {
  train: LossPoint[]
  validation: LossPoint[]
}

export class LossHistory {
  private readonly maxPoints: number
  private readonly curves: LossHistoryJSON = { train: [], validation: [] }

  constructor (init: { maxPoints?: number } = {}) {
    this.maxPoints = Math.max(2, init.maxPoints ?? 512)
  }

  add (kind: LossKind, tokens: number, loss: number): void {
    if (!Number.isFinite(tokens) || !Number.isFinite(loss)) return
    const curve = this.curves[kind]
    curve.push([tokens, loss])
    if (curve.length >= this.maxPoints) this.curves[kind] = halve(curve)
  }

  /** The latest point of a curve. */
  last (kind: LossKind): LossPoint | undefined {
    return this.curves[kind].at(-1)
  }

  toJSON (): LossHistoryJSON {
    return { train: this.curves.train.map(p => [p[0], p[1]]), validation: this.curves.validation.map(p => [p[0], p[1]]) }
  }
}

/** Adjacent pairs merged (at the later point's tokens, the mean loss); an odd last point stays. */
function halve (curve: LossPoint[]): LossPoint[] {
  const out: LossPoint[] = []
  for (let i = 0; i + 1 < curve.length; i += 2) out.push([curve[i + 1][0], (curve[i][1] + curve[i + 1][1]) / 2])
  if (curve.length % 2 === 1) out.push(curve[curve.length - 1])
  return out
}
