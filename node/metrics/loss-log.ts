// Loss curves from JSON logs (`--log-format json`): the `event: "loss"` lines the driver's
// progress writes, one curve pair per log file. A directory stands for the logs in it and in
// its subdirectories one level down (a demo run keeps one per node directory).
import { createReadStream } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { basename, join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import { UserError } from '../errors.js'
import { parseLogLine } from './log-line.js'
import { LossHistory } from './loss-history.js'
import type { PlotCurve } from './svg-plot.js'

/** The file name a daemon's JSON log gets in a node directory (the demo writes it). */
export const LOG_FILE = 'log.jsonl'

/** Points kept per curve: a long log is thinned the way the daemon's history is. */
const MAX_POINTS = 1024

/** A log that cannot be read or holds no loss lines. */
export class LossLogError extends UserError {
  override name = 'LossLogError'
}

/** The loss history in one JSON log (lines that are not loss records are skipped). */
export async function readLossLog (path: string): Promise<LossHistory> {
  const history = new LossHistory({ maxPoints: MAX_POINTS })
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity })
  try {
    for await (const line of lines) {
      const record = parseLogLine(line)
      if (record?.event !== 'loss' || (record.kind !== 'train' && record.kind !== 'validation')) continue
      if (typeof record.tokens === 'number' && typeof record.loss === 'number') history.add(record.kind, record.tokens, record.loss)
    }
  } catch (err) {
    throw new LossLogError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  return history
}

/** The JSON logs a path stands for: the file itself, or the `*.jsonl` files in a directory and its subdirectories. */
export async function findLossLogs (path: string): Promise<string[]> {
  let info
  try {
    info = await stat(path)
  } catch (err) {
    throw new LossLogError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  if (!info.isDirectory()) return [path]
  const found: string[] = []
  for (const entry of await readdir(path, { withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.jsonl')) found.push(join(path, entry.name))
    if (!entry.isDirectory()) continue
    for (const inner of await readdir(join(path, entry.name), { withFileTypes: true }).catch(() => [])) {
      if (inner.isFile() && inner.name.endsWith('.jsonl')) found.push(join(path, entry.name, inner.name))
    }
  }
  return found.sort()
}

/** Named curves of the loss logs under `path`; logs without loss lines are left out. */
export async function lossCurves (path: string): Promise<PlotCurve[]> {
  const logs = await findLossLogs(path)
  const curves: PlotCurve[] = []
  for (const log of logs) {
    const { train, validation } = (await readLossLog(log)).toJSON()
    const prefix = logs.length > 1 ? `${relative(path, log) || basename(log)} ` : ''
    if (train.length > 0) curves.push({ name: `${prefix}training`, points: train })
    if (validation.length > 0) curves.push({ name: `${prefix}validation`, points: validation })
  }
  if (curves.length === 0) throw new LossLogError(`no loss lines in ${logs.length === 0 ? `${path} (no .jsonl log in it)` : logs.join(', ')}: logs come from 'swarmtrain start --log-format json' on a driving node`)
  return curves
}
