// The pipeline's command-line options (for `start`, `join` and `demo`) and its progress lines.
import { intOption, numberOption } from './args.js'
import { UsageError } from './errors.js'
import { log } from './log.js'
import { defaultWire, wireDTypes, type WireDType } from '../pipeline/activations.js'
import type { DriverReport } from '../pipeline/driver.js'
import type { PipelineOptions } from '../pipeline/swarm.js'
import type { RoundReport, SyncProgress } from '../averaging/service.js'
import { ROUND_LINE_MS } from '../timing.js'

export const pipelineCliOptions = {
  'no-drive': { type: 'boolean' },
  wire: { type: 'string' },
  'in-flight': { type: 'string' },
  'max-microbatches': { type: 'string' },
  'eval-every': { type: 'string' },
  threads: { type: 'string' },
  'test-slowdown': { type: 'string' }
} as const

export const pipelineCliHelp = `pipeline:
  --no-drive          only serve this node's stage; do not train on this node's data
  --wire int8|f16|f32 activation encoding on the wire (default int8)
  --in-flight N       microbatches this node keeps in flight (default: adapts to latency and staleness)
  --max-microbatches N  stop driving after N microbatches (default: never)
  --eval-every N      validation loss every N microbatches (default 50)
  --threads N         onnxruntime threads for this node's stage (default: all cores)
  --test-slowdown X   (tests) compute X times slower, like a slower machine`

export interface PipelineCliValues {
  'no-drive'?: boolean
  wire?: string
  'in-flight'?: string
  'max-microbatches'?: string
  'eval-every'?: string
  threads?: string
  'test-slowdown'?: string
}

/** The pipeline options the command line sets (the daemon adds its timers). */
export function pipelineOptionsFrom (values: PipelineCliValues): Omit<PipelineOptions, 'checkpointEveryMs'> {
  const optional = (name: keyof PipelineCliValues, min: number): number | undefined =>
    values[name] === undefined ? undefined : intOption(name, values[name], 0, min)
  return {
    drive: values['no-drive'] !== true,
    wire: wireOption(values.wire),
    inFlight: optional('in-flight', 1),
    maxMicrobatches: optional('max-microbatches', 1),
    evalEvery: optional('eval-every', 0),
    threads: optional('threads', 1),
    slowdown: numberOption('test-slowdown', values['test-slowdown'], 1, 1, 1000),
    onProgress: printProgress
  }
}

/** The `--wire` option (default int8). */
export function wireOption (value: string | undefined): WireDType {
  const wire = value ?? defaultWire
  if (!Object.hasOwn(wireDTypes, wire)) throw new UsageError(`--wire must be int8, f16 or f32, got '${wire}'`)
  return wire as WireDType
}

/**
 * One line per validation and every 10th microbatch: `microbatch 120  loss 2.4512  1843 tokens/s`;
 * a JSON log has every microbatch, with the tokens trained (what `swarmtrain plot` reads).
 */
export function printProgress (report: DriverReport): void {
  const fields = { event: 'loss', kind: report.kind, loss: report.loss, tokens: report.tokens, microbatch: report.completed, tokensPerSecond: report.tokensPerSecond }
  if (report.kind === 'validation') log.info(`microbatch ${report.completed}  validation loss ${report.loss.toFixed(4)} nats/byte`, fields)
  else if (report.completed % 10 === 0 || log.format === 'json') log.info(`microbatch ${report.completed}  loss ${report.loss.toFixed(4)}  ${report.tokensPerSecond.toFixed(0)} tokens/s`, fields)
}

/** One line per completed averaging round: `stage 1 round 4: 2 members, 2 agree, 3.1 KB sent in 420 ms`. */
/** State downloads as the operator sees them: a progress line at most every second, then how it ended. */
export function syncPrinter (): (p: SyncProgress) => void {
  let lastAt = 0
  return p => {
    const mb = (n: number): string => (n / 1e6).toFixed(1)
    const what = p.part === 'replica' ? 'a copy of a replica' : 'the shared state'
    const fields = { event: 'sync', stage: p.stage, part: p.part, received: p.received, total: p.total, ...p.done }
    if (p.done === undefined) {
      if (Date.now() - lastAt < 1000) return
      lastAt = Date.now()
      log.info(`stage ${p.stage}: downloading ${what}: ${mb(p.received)} of ${mb(p.total)} MB`, fields)
      return
    }
    lastAt = 0
    const from = p.done.from.map(peer => `…${peer.slice(-6)}`).join(', ')
    if (p.done.ok) log.info(`stage ${p.stage}: took ${what} (round ${p.done.round}) from ${from}: ${mb(p.received)} MB in ${p.done.ms} ms`, fields)
    else log.warn(`stage ${p.stage}: could not download ${what} from ${from} after ${p.done.ms} ms`, fields)
  }
}

/**
 * Prints rounds as they complete. Early in a run they come after every step: then a stage gets
 * one line every ROUND_LINE_MS, counting the rounds since its last line, and at once any round
 * that resynced, or where not every member agreed.
 */
export function roundPrinter (): (stage: number, r: RoundReport) => void {
  const since = new Map<number, { at: number, rounds: number, bytes: number }>()
  return (stage, r) => {
    const last = since.get(stage) ?? { at: -Infinity, rounds: 0, bytes: 0 }
    const rounds = last.rounds + 1
    const bytes = last.bytes + r.bytesSent
    const wrong = r.resynced || r.agreed + 1 < r.members
    if (!wrong && Date.now() - last.at < ROUND_LINE_MS) {
      since.set(stage, { at: last.at, rounds, bytes })
      return
    }
    since.set(stage, { at: Date.now(), rounds: 0, bytes: 0 })
    const fields = { event: 'round', stage, round: r.round, members: r.members, agreed: r.agreed + 1, bytesSent: r.bytesSent, ms: r.ms, resynced: r.resynced, rounds, roundsBytesSent: bytes }
    const tally = rounds > 1 ? ` (${rounds} rounds, ${(bytes / 1000).toFixed(1)} KB since the last line)` : ''
    log.info(`stage ${stage} round ${r.round}: ${r.members} member${r.members === 1 ? '' : 's'}, ${r.agreed + 1} agree, ${(r.bytesSent / 1000).toFixed(1)} KB sent in ${r.ms} ms${r.resynced ? ' (resynced)' : ''}${tally}`, fields)
  }
}
