// The loss plot as a standalone SVG: several named curves of (tokens, loss) points on shared
// axes, with ticks, a legend and no dependencies, so `plot`, the demo and the convergence
// benchmark draw the same picture and any browser or image viewer shows it.

export interface PlotCurve {
  name: string
  /** [tokens, loss] pairs; non-finite pairs are skipped. */
  points: ReadonlyArray<readonly [number, number]>
}

export interface PlotOptions {
  title?: string
  xLabel?: string
  yLabel?: string
  width?: number
  height?: number
}

/** Distinguishable on white, in legend order. */
const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf']

const margin = { left: 64, right: 16, top: 36, bottom: 48 }

/** An SVG document plotting `curves`; throws a RangeError when no curve has a finite point. */
export function lossPlotSvg (curves: readonly PlotCurve[], options: PlotOptions = {}): string {
  const width = options.width ?? 720
  const height = options.height ?? 420
  const clean = curves.map(c => ({ name: c.name, points: c.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }))
  const all = clean.flatMap(c => c.points)
  if (all.length === 0) throw new RangeError('nothing to plot: no curve has a point')
  const xs = niceRange(Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0])))
  const ys = niceRange(Math.min(...all.map(p => p[1])), Math.max(...all.map(p => p[1])))
  const plotW = width - margin.left - margin.right
  const plotH = height - margin.top - margin.bottom
  const px = (x: number): number => margin.left + (x - xs.min) / (xs.max - xs.min) * plotW
  const py = (y: number): number => margin.top + (1 - (y - ys.min) / (ys.max - ys.min)) * plotH
  const f = (v: number): string => v.toFixed(1)

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`
  ]
  if (options.title !== undefined) out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(options.title)}</text>`)
  for (const t of xs.ticks) {
    out.push(`<line x1="${f(px(t))}" y1="${margin.top}" x2="${f(px(t))}" y2="${margin.top + plotH}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${f(px(t))}" y="${margin.top + plotH + 16}" text-anchor="middle">${formatTick(t)}</text>`)
  }
  for (const t of ys.ticks) {
    out.push(`<line x1="${margin.left}" y1="${f(py(t))}" x2="${margin.left + plotW}" y2="${f(py(t))}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${margin.left - 6}" y="${f(py(t) + 4)}" text-anchor="end">${formatTick(t)}</text>`)
  }
  out.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`)
  out.push(`<text x="${margin.left + plotW / 2}" y="${height - 10}" text-anchor="middle">${escapeXml(options.xLabel ?? 'tokens')}</text>`)
  out.push(`<text transform="translate(16 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel ?? 'loss (nats/token)')}</text>`)
  clean.forEach((curve, i) => {
    const color = colors[i % colors.length]
    const sorted = [...curve.points].sort((a, b) => a[0] - b[0])
    if (sorted.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${sorted.map(([x, y]) => `${f(px(x))},${f(py(y))}`).join(' ')}"/>`)
    // A short curve (e.g. a few validations) shows its points too.
    if (sorted.length <= 64) for (const [x, y] of sorted) out.push(`<circle cx="${f(px(x))}" cy="${f(py(y))}" r="2.5" fill="${color}"/>`)
    const ly = margin.top + 14 + 16 * i
    out.push(`<line x1="${margin.left + plotW - 150}" y1="${ly - 4}" x2="${margin.left + plotW - 130}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`)
    out.push(`<text x="${margin.left + plotW - 124}" y="${ly}">${escapeXml(curve.name)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** An axis range widened to round tick values, with 4–8 ticks. */
function niceRange (lo: number, hi: number): { min: number, max: number, ticks: number[] } {
  if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) { lo -= Math.max(1, Math.abs(lo)) * 0.05; hi += Math.max(1, Math.abs(hi)) * 0.05 }
  const raw = (hi - lo) / 6
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map(m => m * magnitude).find(s => s >= raw) ?? 10 * magnitude
  const min = Math.floor(lo / step) * step
  const max = Math.ceil(hi / step) * step
  const ticks: number[] = []
  for (let t = min; t <= max + step / 2; t += step) ticks.push(Number(t.toPrecision(12)))
  return { min, max, ticks }
}

/** 1500000 -> 1.5M, 2.25 -> 2.25. */
function formatTick (v: number): string {
  const abs = Math.abs(v)
  if (abs >= 1e9) return `${Number((v / 1e9).toPrecision(3))}G`
  if (abs >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`
  if (abs >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`
  return String(Number(v.toPrecision(4)))
}

function escapeXml (text: string): string {
  return text.replace(/[<>&"']/g, c => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string)
}
