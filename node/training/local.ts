// Training the whole model in one process: S StageEngines chained by the same microbatch code
// the swarm uses, stepped together with one global gradient norm, evaluated on a fixed
// validation sample, checkpointed at every evaluation.
import { logger } from '@libp2p/logger'
import { stageLayout, type ModelConfig } from '../model/index.js'
import { evaluateMicrobatch, trainMicrobatch } from '../pipeline/chain.js'
import type { Corpus } from '../data/corpus.js'
import { BatchSampler, evenBatches, type TokenBatch } from '../data/sampler.js'
import { restoreEngines, saveCheckpoint, type Checkpoint } from '../runtime/checkpoint.js'
import type { OptimizerConfig } from '../runtime/optimizer-config.js'
import { StageEngine } from '../runtime/stage-engine.js'

const log = logger('swarmtrain:train')

export interface LocalTrainingOptions {
  model: ModelConfig
  /** The schedule runs for `optimizer.totalSteps` steps. */
  optimizer: OptimizerConfig
  stages: number
  corpus: Corpus
  seed: number
  /** Evaluate (and checkpoint) every this many steps, and at the end. */
  evalEvery: number
  /** Validation microbatches per evaluation (fixed windows spread over the validation text). */
  evalBatches: number
  checkpointDir?: string
  /** Continue from this checkpoint (its step, weights, optimizer and sampler state). */
  resume?: Checkpoint
  /** Stop after this step instead of at the end of the schedule. */
  stopAfter?: number
  threads?: number
  onEval?(report: EvalReport): void
}

export interface EvalReport {
  step: number
  /** Mean training loss (nats per token) since the last evaluation; at step 0, the loss of a fixed training sample. */
  loss: number
  valLoss: number
  /** Training tokens per second of training time since the last evaluation. */
  tokensPerS: number
  lr: number
  checkpoint?: string
}

/** One optimizer step of every stage of a whole model, clipped by their global gradient norm; returns the learning rate. */
export async function stepStages (engines: readonly StageEngine[]): Promise<number> {
  const squares = await Promise.all(engines.map(e => e.gradNormSquared()))
  const norm = Math.sqrt(squares.reduce((a, b) => a + b, 0))
  // Every engine follows the same schedule, so any one's learning rate is the step's.
  return (await Promise.all(engines.map(e => e.step(norm))))[0].lr
}

export async function trainLocal (o: LocalTrainingOptions): Promise<EvalReport[]> {
  const { model, optimizer } = o
  const engines: StageEngine[] = []
  try {
    for (let s = 0; s < o.stages; s++) {
      engines.push(await StageEngine.create({ model, layout: stageLayout(model, s, o.stages), optimizer, seed: o.seed, threads: o.threads }))
    }
    // A step's microbatches go through as one call: the same windows (the sampler draws them in the
    // same order) and the same mean gradient as the swarm's separate microbatches, in fewer, larger matmuls.
    const sampler = new BatchSampler(o.corpus.train, model.seqLen, optimizer.batchSize * optimizer.microbatches, o.seed)
    const validation = evenBatches(o.corpus.validation, model.seqLen, optimizer.batchSize, o.evalBatches)
    let step = 0
    if (o.resume !== undefined) {
      await restoreEngines(engines, o.resume)
      sampler.restore(o.resume.state.sampler)
      step = o.resume.state.step
    }
    const end = Math.min(o.stopAfter ?? optimizer.totalSteps, optimizer.totalSteps)
    const reports: EvalReport[] = []
    const evaluate = async (loss: number, tokensPerS: number, lr: number): Promise<void> => {
      let sum = 0
      for (const batch of validation) sum += await evaluateMicrobatch(engines, batch)
      const report: EvalReport = { step, loss, valLoss: sum / validation.length, tokensPerS, lr }
      if (o.checkpointDir !== undefined && step > 0) {
        report.checkpoint = await saveCheckpoint(o.checkpointDir, engines, {
          model, optimizer, step, seed: o.seed, data: o.corpus.source, sampler: sampler.state()
        })
      }
      reports.push(report)
      log('step %d loss %f val %f', step, loss, report.valLoss)
      o.onEval?.(report)
    }

    if (o.resume === undefined) {
      const probe = evenBatches(o.corpus.train, model.seqLen, optimizer.batchSize, 1)[0]
      await evaluate(await evaluateMicrobatch(engines, probe), 0, 0)
    }
    let lossSum = 0
    let losses = 0
    let tokens = 0
    let trainMs = 0
    let lr = 0
    while (step < end) {
      const started = performance.now()
      const batch: TokenBatch = sampler.next()
      lossSum += await trainMicrobatch(engines, batch)
      losses++
      tokens += batch.x.data.length
      lr = await stepStages(engines)
      step++
      trainMs += performance.now() - started
      if (step % o.evalEvery === 0 || step === end) {
        await evaluate(lossSum / losses, tokens / (trainMs / 1000), lr)
        lossSum = losses = tokens = trainMs = 0
      }
    }
    return reports
  } finally {
    await Promise.all(engines.map(e => e.close()))
  }
}
