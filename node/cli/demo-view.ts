// The demo's compact live view: a few lines drawn from the driving node's status, redrawn in
// place on a terminal.
import type { NodeStatus } from '../daemon/node.js'
import type { LossPoint } from '../metrics/loss-history.js'
import type { PipelineStatus } from '../pipeline/swarm.js'

export interface DemoFrame {
  status: NodeStatus
  elapsedMs: number
  limitMs: number
  /** Tokens/s driven, measured by the caller between two frames. */
  tokensPerSecond: number
}

const bars = '▁▂▃▄▅▆▇█'

/** The loss curve in `width` characters: each column the mean of its share of the points. */
export function sparkline (points: readonly LossPoint[], width: number): string {
  if (points.length === 0) return ''
  const columns = Math.min(width, points.length)
  const means = Array.from({ length: columns }, (_, c) => {
    const from = Math.floor(c * points.length / columns)
    const to = Math.max(from + 1, Math.floor((c + 1) * points.length / columns))
    return points.slice(from, to).reduce((a, p) => a + p[1], 0) / (to - from)
  })
  const lo = Math.min(...means)
  const hi = Math.max(...means)
  return means.map(m => bars[hi - lo < 1e-9 ? 0 : Math.round((m - lo) / (hi - lo) * (bars.length - 1))]).join('')
}

function clock (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

function mib (bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

export function demoView (frame: DemoFrame): string[] {
  const { status } = frame
  const pipeline = status.services.pipeline as PipelineStatus | undefined
  const driver = pipeline?.driver
  const fmt = (v: number | undefined): string => v === undefined ? '-' : v.toFixed(4)
  const lines = [
    `${clock(Math.min(frame.elapsedMs, frame.limitMs))} of ${clock(frame.limitMs)}  tokens ${driver?.tokens ?? 0}  ${frame.tokensPerSecond.toFixed(0)} tokens/s  ` +
      `microbatches ${driver?.completed ?? 0}${driver !== undefined && driver.failed > 0 ? ` (${driver.failed} failed)` : ''}  sent ${mib(status.bytes.sent)}  received ${mib(status.bytes.received)}`,
    `loss ${fmt(driver?.trainLoss)}  validation ${fmt(driver?.validationLoss)}  ${sparkline(pipeline?.history.train ?? [], 40)}`
  ]
  for (const stage of status.stages) {
    lines.push(`stage ${stage.stage}: ${stage.peers.length} peer${stage.peers.length === 1 ? '' : 's'}, serving ${stage.peers.reduce((a, p) => a + p.servedThroughput, 0).toFixed(0)} tokens/s, queues ${stage.peers.map(p => p.queueLength).join('/') || '-'}`)
  }
  const event = status.events.at(-1)
  if (event !== undefined) lines.push(`last event: ${event.text}`)
  return lines
}
