import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import ort from 'onnxruntime-node'
import { encode } from '../node/data/tokenizer.js'
import { evenBatches } from '../node/data/sampler.js'
import { stageLayout, type ModelConfig } from '../node/model/index.js'
import { evaluateMicrobatch } from '../node/pipeline/chain.js'
import { defaultManifest, runIdOf, writeManifest } from '../node/manifest/manifest.js'
import type { StageState } from '../node/runtime/checkpoint.js'
import { readCheckpoint, restoreEngines, saveStageCheckpoint, stageCheckpointPath } from '../node/runtime/checkpoint.js'
import { trainLocal } from '../node/training/local.js'
import { initializerDims } from '../node/runtime/onnx-info.js'
import { defaultOptimizerConfig } from '../node/runtime/optimizer-config.js'
import { StageEngine } from '../node/runtime/stage-engine.js'

const run = promisify(execFile)
const cli = fileURLToPath(new URL('../node/cli/main.js', import.meta.url))
const model: ModelConfig = { vocabSize: 256, dModel: 32, nLayers: 2, nHeads: 2, seqLen: 24 }
const text = encode('the cat sat on the mat. the dog sat on the log. '.repeat(40))
const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-export-'))
const optimizer = { ...defaultOptimizerConfig, lr: 1e-2, warmupSteps: 5, totalSteps: 40, batchSize: 8 }


/** A daemon's stage checkpoint of `engine`, as its stage host would write it before any averaging round. */
async function stageState (engine: StageEngine, runId: string, stage: number): Promise<StageState> {
  const { weights, m, v, step } = await engine.snapshot()
  const zeros = (): Float32Array => new Float32Array(weights.length)
  return { runId, stage, step, round: 0, tokens: 0, layoutHash: engine.params.hash, groups: { weights, 'adamw.m': m, 'adamw.v': v, theta_at_last_sync: weights.slice(), outer_momentum: zeros(), error_feedback: zeros() } }
}

test('export writes one ONNX model whose logits give the training loss; generate continues a prompt', async () => {
  await trainLocal({ model, optimizer, stages: 2, corpus: { source: 'test', train: text, validation: text }, seed: 2, evalEvery: 40, evalBatches: 1, checkpointDir: dir, threads: 1 })
  const out = join(dir, 'model.onnx')
  const { stdout } = await run(process.execPath, [cli, 'export', '--checkpoint', dir, '--out', out])
  assert.match(stdout, /wrote .*model\.onnx: 2 layers x d32, \d+ parameters, step 40/)
  const bytes = readFileSync(out)
  assert.equal(initializerDims(bytes, 'wpe'), [24, 32])

  // The exported graph's cross-entropy equals the stage engines' loss on the same batch.
  const batch = evenBatches(text, 24, 4, 1)[0]
  const engines = await Promise.all([0, 1].map(s => StageEngine.create({ model, layout: stageLayout(model, s, 2), threads: 1 })))
  let expected: number
  try {
    await restoreEngines(engines, await readCheckpoint(dir))
    expected = await evaluateMicrobatch(engines, batch)
  } finally {
    await Promise.all(engines.map(e => e.close()))
  }
  const session = await ort.InferenceSession.create(bytes)
  const { logits } = await session.run({ tokens: new ort.Tensor('int64', batch.x.data, batch.x.shape) })
  assert.equal(logits.dims, [4, 24, 256])
  const l = logits.data as Float32Array
  let loss = 0
  for (let i = 0; i < 4 * 24; i++) {
    const row = l.subarray(i * 256, (i + 1) * 256)
    const max = row.reduce((a, b) => Math.max(a, b), -Infinity)
    const logSum = Math.log(row.reduce((a, b) => a + Math.exp(b - max), 0)) + max
    loss += logSum - row[Number(batch.targets.data[i])]
  }
  loss /= 4 * 24
  assert.ok(Math.abs(loss - expected) < 1e-4, `export loss ${loss} vs engines ${expected}`)
  assert.ok(expected < 2, `the tiny model did not learn its text (loss ${expected})`)
  // Greedy generation's first byte is the argmax of the logits after the prompt.
  const prompt = encode('the dog sat on')
  const next = await session.run({ tokens: new ort.Tensor('int64', BigInt64Array.from(prompt, BigInt), [1, prompt.length]) })
  const last = (next.logits.data as Float32Array).subarray((prompt.length - 1) * 256)
  const argmax = last.indexOf(last.reduce((a, b) => Math.max(a, b), -Infinity))
  await session.release()

  const args = [cli, 'generate', '--model', out, '--prompt', 'the cat', '--tokens', '40', '--seed', '5']
  const a = (await run(process.execPath, args)).stdout
  const b = (await run(process.execPath, args)).stdout
  assert.is(a, b)
  assert.ok(a.startsWith('the cat'), a)
  // 40 bytes; any that are not valid UTF-8 print as one U+FFFD each.
  assert.ok(a.length >= 7 + 10 + 1 && a.length <= 7 + 40 + 1 && a.endsWith('\n'), JSON.stringify(a))
  const greedy = (await run(process.execPath, [cli, 'generate', '--model', out, '--prompt', 'the dog sat on', '--tokens', '8', '--temperature', '0'])).stdout
  assert.is(greedy.charCodeAt(14), argmax, greedy)
  assert.ok(greedy.startsWith('the dog sat on') && greedy.endsWith('\n'), greedy)
})

test('export takes a node directory with every stage checkpoint of its run: the same model as the training checkpoint', async () => {
  // Two daemons' stage files, gathered in one node directory with the run's manifest.
  const node = join(dir, 'node')
  mkdirSync(node)
  const manifest = { ...defaultManifest(), model, nStages: 2 }
  await writeManifest(node, manifest)
  const checkpoint = await readCheckpoint(dir)
  const engines = await Promise.all([0, 1].map(s => StageEngine.create({ model, layout: stageLayout(model, s, 2), threads: 1 })))
  try {
    await restoreEngines(engines, checkpoint)
    await saveStageCheckpoint(stageCheckpointPath(node, 0), await stageState(engines[0], runIdOf(manifest), 0))
    const incomplete = await run(process.execPath, [cli, 'export', '--checkpoint', node, '--out', join(dir, 'x.onnx')]).then(() => undefined, (err: { code: number, stderr: string }) => err)
    assert.is(incomplete?.code, 2)
    assert.match(incomplete?.stderr ?? '', /node has no checkpoint of stage 1 \(of 2\): a daemon keeps only the stages it served/)
    await saveStageCheckpoint(stageCheckpointPath(node, 1), await stageState(engines[1], runIdOf(manifest), 1))
  } finally {
    await Promise.all(engines.map(e => e.close()))
  }
  const out = join(dir, 'from-stages.onnx')
  const { stdout } = await run(process.execPath, [cli, 'export', '--checkpoint', node, '--out', out])
  assert.match(stdout, /wrote .*from-stages\.onnx: 2 layers x d32, \d+ parameters, stage steps 40\/40/)
  assert.equal(readFileSync(out), readFileSync(join(dir, 'model.onnx')))
})

test('export and generate refuse bad input with one line', async () => {
  writeFileSync(join(dir, 'junk.onnx'), 'this is not a model')
  const cases: Array<[string[], RegExp]> = [
    [['export', '--checkpoint', join(dir, 'none'), '--out', join(dir, 'x.onnx')], /cannot read checkpoint/],
    [['export', '--checkpoint', dir], /needs --out/],
    [['export', '--swarm', '--checkpoint', dir, '--out', join(dir, 'x.onnx')], /--checkpoint D or --swarm, not both/],
    [['export', '--checkpoint', dir, '--dir', dir, '--out', join(dir, 'x.onnx')], /--dir and --control-port go with --swarm/],
    [['export', '--swarm', '--dir', join(dir, 'none'), '--out', join(dir, 'x.onnx')], /no run manifest at .*none/],
    [['generate', '--model', join(dir, 'missing.onnx'), '--prompt', 'x'], /cannot read --model .*ENOENT/],
    [['generate', '--model', join(dir, 'junk.onnx'), '--prompt', 'x'], /junk\.onnx: not (an ONNX model|a model written by)/],
    [['generate', '--model', join(dir, 'model.onnx')], /non-empty --prompt/],
    [['generate', '--model', join(dir, 'model.onnx'), '--prompt', 'x', '--temperature=-1'], /--temperature must be a number from 0/]
  ]
  for (const [args, message] of cases) {
    const result = await run(process.execPath, [cli, ...args]).then(() => undefined, (err: { code: number, stderr: string }) => err)
    assert.ok(result !== undefined, `${args.join(' ')} succeeded`)
    assert.is(result.code, 2, args.join(' '))
    const lines = result.stderr.split('\n').filter(line => line !== '' && !/Warning|trace-warnings/.test(line))
    assert.is(lines.length, 1, result.stderr)
    assert.match(lines[0], message)
  }
})

test.after(() => { rmSync(dir, { recursive: true, force: true }) })

test.run()
