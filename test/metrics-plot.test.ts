// The bounded loss history, the SVG loss plot, JSON log lines and `swarmtrain plot`.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sparkline } from '../node/cli/demo-view.js'
import { cliPath } from '../node/daemon/process.js'
import { Log, type LogLevel } from '../node/cli/log.js'
import { parseLogLine } from '../node/metrics/log-line.js'
import { LossHistory } from '../node/metrics/loss-history.js'
import { lossPlotSvg } from '../node/metrics/svg-plot.js'

/** Coordinates of every polyline in an SVG. */
function polylines (svg: string): Array<Array<[number, number]>> {
  return [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map(m => m[1].split(' ').map(p => p.split(',').map(Number) as [number, number]))
}

test('the loss history stays bounded and keeps the whole run', () => {
  const history = new LossHistory({ maxPoints: 64 })
  for (let i = 1; i <= 10_000; i++) history.add('train', i * 256, 5 - i / 4000)
  history.add('train', Number.NaN, 1)
  history.add('validation', 1024, 4.5)
  const { train, validation } = history.toJSON()
  assert.ok(train.length <= 64 && train.length >= 32, `${train.length} points`)
  assert.ok(train[0][0] <= 256 * 512, `the start of the run is still there: ${train[0][0]}`)
  assert.ok(Math.abs(train[0][1] - 5) < 0.1, `at its loss: ${train[0][1]}`)
  assert.is(train[train.length - 1][0], 10_000 * 256, 'and its end')
  for (let i = 1; i < train.length; i++) assert.ok(train[i][0] > train[i - 1][0] && train[i][1] < train[i - 1][1], 'merged points keep the order and the trend')
  assert.equal(validation, [[1024, 4.5]])
})

test('the SVG plot draws each named curve inside the plot area, escapes names, refuses an empty plot', () => {
  const svg = lossPlotSvg([
    { name: 'training <a&b>', points: [[0, 5.5], [1000, 3.1], [2000, 2.6], [3000, Number.NaN]] },
    { name: 'validation', points: [[1000, 3.3], [2000, 2.8]] }
  ], { width: 600, height: 400 })
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="600" height="400"/)
  assert.match(svg, /<\/svg>\n$/)
  assert.match(svg, /training &lt;a&amp;b&gt;/)
  assert.not.match(svg, /<a&b>/)
  const lines = polylines(svg)
  assert.is(lines.length, 2)
  assert.is(lines[0].length, 3, 'the non-finite point is skipped')
  for (const [x, y] of lines.flat()) assert.ok(x >= 0 && x <= 600 && y >= 0 && y <= 400, `${x},${y} inside`)
  // Lower loss is lower down (SVG y grows downwards); more tokens further right.
  assert.ok(lines[0][0][1] < lines[0][2][1] && lines[0][0][0] < lines[0][2][0])
  assert.throws(() => lossPlotSvg([{ name: 'x', points: [] }]), /nothing to plot/)
  assert.ok(polylines(lossPlotSvg([{ name: 'flat', points: [[5, 2], [5, 2]] }])).length === 1, 'a degenerate range still plots')
})

test("the demo's sparkline: one column per share of the points, highest loss the tallest bar", () => {
  const falling = Array.from({ length: 100 }, (_, i): [number, number] => [i, 5 - i / 25])
  const line = sparkline(falling, 10)
  assert.is([...line].length, 10)
  const bars = '▁▂▃▄▅▆▇█'
  for (let i = 1; i < line.length; i++) assert.ok(bars.indexOf(line[i]) <= bars.indexOf(line[i - 1]), `a falling loss gives falling bars: ${line}`)
  assert.is(line[0], '█')
  assert.is(line[line.length - 1], '▁')
  assert.is(sparkline([[1, 2], [2, 2]], 10), '▁▁', 'flat, and never wider than the points')
  assert.is(sparkline([], 10), '')
})

test('JSON log lines carry the text and the fields; levels filter', () => {
  const lines: Array<[string, LogLevel]> = []
  const json = new Log({ format: 'json', level: 'info', write: (line, level) => lines.push([line, level]) })
  json.info('microbatch 10  loss 2.5000', { event: 'loss', kind: 'train', loss: 2.5, tokens: 2560 })
  json.debug('hidden')
  json.error('bad')
  assert.is(lines.length, 2)
  const record = parseLogLine(lines[0][0])
  assert.is(record?.msg, 'microbatch 10  loss 2.5000')
  assert.is(record?.level, 'info')
  assert.is(record?.tokens, 2560)
  assert.ok(!Number.isNaN(Date.parse(String(record?.time))))
  assert.is(parseLogLine(lines[1][0])?.level, 'error')
  const text: string[] = []
  const plain = new Log({ format: 'text', level: 'warn', write: line => text.push(line) })
  plain.info('not shown')
  plain.warn('shown', { a: 1 })
  assert.equal(text, ['shown'])
  assert.is(parseLogLine('microbatch 10'), undefined)
  assert.is(parseLogLine('{"no": "msg"}'), undefined)
  assert.is(parseLogLine('{broken'), undefined)
})

function cli (args: string[]): { code: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, ['--no-warnings', cliPath, ...args], { encoding: 'utf8', timeout: 30_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

function logLines (tokensPerStep: number, steps: number): string {
  const lines = ['peer id   12D3KooWxyz', '{"time":"x","level":"info","msg":"ready"}', '{"broken json', '{"msg":"microbatch","event":"loss","kind":"train","tokens":"not a number","loss":1}']
  for (let i = 1; i <= steps; i++) {
    lines.push(JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: `microbatch ${i}`, event: 'loss', kind: 'train', loss: 5 / Math.sqrt(i), tokens: i * tokensPerStep }))
    if (i % 10 === 0) lines.push(JSON.stringify({ level: 'info', msg: 'validation', event: 'loss', kind: 'validation', loss: 5.2 / Math.sqrt(i), tokens: i * tokensPerStep }))
  }
  return lines.join('\n') + '\n'
}

test('plot draws a log file, a run directory of node logs, and refuses what has no loss lines', () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-plot-'))
  try {
    writeFileSync(join(dir, 'a.jsonl'), logLines(256, 40))
    const one = cli(['plot', join(dir, 'a.jsonl'), '--out', join(dir, 'one.svg')])
    assert.is(one.code, 0, one.stderr)
    assert.match(one.stdout, /wrote .*one\.svg: 2 curves, 44 points/)
    const svg = readFileSync(join(dir, 'one.svg'), 'utf8')
    assert.is(polylines(svg).length, 2)
    assert.match(svg, />training</)
    assert.match(svg, />validation</)

    const run = join(dir, 'run')
    for (const node of ['node0', 'node1']) mkdirSync(join(run, node), { recursive: true })
    writeFileSync(join(run, 'node0', 'log.jsonl'), logLines(256, 30))
    writeFileSync(join(run, 'node1', 'log.jsonl'), logLines(512, 20))
    const both = cli(['plot', run])
    assert.is(both.code, 0, both.stderr)
    const runSvg = readFileSync(join(run, 'loss.svg'), 'utf8')
    assert.is(polylines(runSvg).length, 4)
    assert.match(runSvg, /node1\/log\.jsonl validation/)
    assert.equal(readdirSync(run).filter(f => f.includes('.tmp-')), [], 'no temporary file left')

    writeFileSync(join(dir, 'empty.jsonl'), 'peer id x\nready\n')
    const empty = cli(['plot', join(dir, 'empty.jsonl')])
    assert.is(empty.code, 2)
    assert.match(empty.stderr, /^swarmtrain: no loss lines in .*empty\.jsonl: logs come from 'swarmtrain start --log-format json'/)
    assert.is(empty.stderr.trim().split('\n').length, 1)
    const missing = cli(['plot', join(dir, 'nope')])
    assert.is(missing.code, 2)
    assert.match(missing.stderr, /^swarmtrain: cannot read .*nope \(ENOENT\)\n$/)
    assert.is(cli(['plot']).code, 2)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
