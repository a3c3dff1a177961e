// swarmtrain plot: the loss plot (SVG) of a run from its nodes' JSON logs.
import { stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { lossCurves } from '../../metrics/loss-log.js'
import { lossPlotSvg } from '../../metrics/svg-plot.js'
import { writeFileAtomic } from '../../util/fs.js'
import { parse } from '../args.js'
import { UsageError } from '../errors.js'

export const summary = 'draw the loss against tokens (SVG) from a node\'s JSON log'

export const usage = `usage: swarmtrain plot LOG_OR_DIR [--out FILE]

Reads the loss lines of JSON logs ('swarmtrain start --log-format json' on a driving node;
the demo keeps one per node as node*/log.jsonl) and draws the training and validation loss
against tokens trained, one pair of curves per log.

  LOG_OR_DIR   a JSON log, or a directory: its *.jsonl files and those one level down
  --out FILE   where to write the SVG (default: loss.svg in the directory, or beside the log)`

export async function run (argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { out: { type: 'string' } }, true)
  if (positionals.length !== 1) throw new UsageError('plot needs one LOG_OR_DIR (try --help)')
  const path = positionals[0]
  const curves = await lossCurves(path)
  const isDir = (await stat(path)).isDirectory()
  const out = values.out ?? join(isDir ? path : dirname(path), 'loss.svg')
  try {
    await writeFileAtomic(out, lossPlotSvg(curves, { title: 'swarmtrain loss' }))
  } catch (err) {
    throw new UsageError(`cannot write ${out} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  const points = curves.reduce((n, c) => n + c.points.length, 0)
  console.log(`wrote ${out}: ${curves.length} curve${curves.length === 1 ? '' : 's'}, ${points} points`)
  return 0
}
