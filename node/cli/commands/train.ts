// swarmtrain train --local: the whole model in this process, stage graphs chained exactly as
// the swarm chains them, with progress lines (or JSON lines) at every evaluation.
import { loadBrown, loadTextFile, type Corpus } from '../../data/corpus.js'
import { defaultModelConfig } from '../../model/index.js'
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { CheckpointError, checkpointFileName, readCheckpoint, type Checkpoint } from '../../runtime/checkpoint.js'
import { trainLocal, type EvalReport } from '../../training/local.js'
import { defaultOptimizerConfig } from '../../runtime/optimizer-config.js'
import { intOption, parse } from '../args.js'
import { UsageError } from '../errors.js'

export const summary = 'train the whole model in this process (--local), on the Brown corpus or your text'

export const usage = `usage: swarmtrain train --local [options]

  --local             train in this process, all stages chained locally (required for now;
                      training with peers is 'swarmtrain start')
  --steps N           optimizer steps of the schedule (default ${defaultOptimizerConfig.totalSteps})
  --stages S          pipeline stages to split the model into (default 2, at most ${defaultModelConfig.nLayers})
  --eval-every E      evaluate validation loss (and checkpoint) every E steps (default 100)
  --data FILE         train on this UTF-8 text file instead of the Brown corpus
  --checkpoint-dir D  write D/checkpoint.safetensors at every evaluation
  --resume            continue from the checkpoint in --checkpoint-dir
  --force             start afresh even though --checkpoint-dir holds a checkpoint (it is
                      overwritten at the first evaluation)
  --seed N            seed of the initial weights and of the data sampling (default 1)
  --json              one JSON line per evaluation: {"step","loss","val_loss","tokens_per_s",...}

Losses are mean cross-entropy in nats per byte.`

const options = {
  local: { type: 'boolean' },
  steps: { type: 'string' },
  stages: { type: 'string' },
  'eval-every': { type: 'string' },
  data: { type: 'string' },
  'checkpoint-dir': { type: 'string' },
  resume: { type: 'boolean' },
  force: { type: 'boolean' },
  seed: { type: 'string' },
  json: { type: 'boolean' }
} as const

/** Validation windows per evaluation: 128 sequences (16 Ki bytes at the default context). */
const evalWindows = 128

export async function run (argv: string[]): Promise<number> {
  const { values: v } = parse(argv, options)
  if (v.local !== true) throw new UsageError("train needs --local (to train with peers, use 'swarmtrain start')")
  if (v.resume === true && v['checkpoint-dir'] === undefined) throw new UsageError('--resume needs --checkpoint-dir')
  if (v.resume === true && v.force === true) throw new UsageError('--resume continues the checkpoint and --force replaces it: pass one')
  if (v.resume !== true && v.force !== true && v['checkpoint-dir'] !== undefined) await refuseOverwrite(v['checkpoint-dir'])
  const evalEvery = intOption('eval-every', v['eval-every'], 100, 1)
  const seedFlag = intOption('seed', v.seed, 1, 0, 0xffffffff)

  let resume: Checkpoint | undefined
  if (v.resume === true) resume = await readCheckpoint(v['checkpoint-dir']!)
  const model = resume?.state.model ?? defaultModelConfig
  const stages = intOption('stages', v.stages, Math.min(2, model.nLayers), 1, model.nLayers)
  const optimizer = { ...(resume?.state.optimizer ?? defaultOptimizerConfig) }
  optimizer.totalSteps = intOption('steps', v.steps, optimizer.totalSteps, 1)
  if (resume !== undefined && v.seed !== undefined && seedFlag !== resume.state.seed) throw new UsageError(`--seed ${seedFlag} differs from the checkpoint's seed ${resume.state.seed}`)
  const seed = resume?.state.seed ?? seedFlag

  const corpus: Corpus = v.data !== undefined ? await loadTextFile(v.data, model.seqLen + 1) : await loadBrown()
  if (resume !== undefined && resume.state.data !== corpus.source) {
    throw new CheckpointError(`the checkpoint was trained on ${resume.state.data}, not ${corpus.source} (pass the same --data)`)
  }
  if (resume !== undefined && resume.state.step >= optimizer.totalSteps) {
    console.error(`swarmtrain: the checkpoint is at step ${resume.state.step}, the schedule has ${optimizer.totalSteps} steps: nothing to do (raise --steps to train on)`)
    return 0
  }

  const started = performance.now()
  if (v.json !== true) {
    const from = resume !== undefined ? `, resuming at step ${resume.state.step}` : ''
    console.log(`training ${model.nLayers} layers x d${model.dModel} (T ${model.seqLen}) in ${stages} stage(s) on ${corpus.source} ` +
      `(${corpus.train.length} train / ${corpus.validation.length} validation bytes) for ${optimizer.totalSteps} steps of ` +
      `${optimizer.batchSize * optimizer.microbatches}x${model.seqLen} tokens${from}`)
  }
  const print = (r: EvalReport): void => {
    const elapsed = (performance.now() - started) / 1000
    if (v.json === true) {
      console.log(JSON.stringify({ step: r.step, loss: round(r.loss), val_loss: round(r.valLoss), tokens_per_s: Math.round(r.tokensPerS), lr: r.lr, elapsed_s: Math.round(elapsed) }))
    } else {
      console.log(`step ${String(r.step).padStart(5)}  loss ${r.loss.toFixed(3)}  val ${r.valLoss.toFixed(3)}  ` +
        `${Math.round(r.tokensPerS)} tokens/s  lr ${r.lr.toExponential(2)}  ${elapsed.toFixed(0)}s`)
    }
  }
  await trainLocal({
    model, optimizer, stages, corpus, seed, evalEvery, evalBatches: Math.ceil(evalWindows / optimizer.batchSize),
    checkpointDir: v['checkpoint-dir'],
    resume,
    onEval: print
  })
  return 0
}

/** A fresh run would overwrite the checkpoint in `dir` at its first evaluation: only with --force. */
async function refuseOverwrite (dir: string): Promise<void> {
  const path = join(dir, checkpointFileName)
  if (!await access(path).then(() => true, () => false)) return
  const step = await readCheckpoint(path).then(c => ` at step ${c.state.step}`, () => '')
  throw new UsageError(`${path} holds a checkpoint${step}: pass --resume to continue it, or --force to start afresh and overwrite it`)
}

function round (x: number): number {
  return Math.round(x * 10000) / 10000
}
