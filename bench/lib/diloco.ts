// DiLoCo in one process, with no network, no pipeline and no compression: the reference the
// swarm's averaging modes are read against. R replicas of the whole model start from the same
// weights, each trains on its own data at 1/R of the batch (as the replicas of a stage share
// it), and every `innerSteps` steps all take the mean of their weights: outer SGD with lr 1 on
// the mean pseudo-gradient, the swarm's dense round (every step until everyStepUntil). What this loses against `train --local`
// at equal tokens is the algorithm's, not the swarm's.
import { axpy } from '../../native/index.js'
import { stageLayout, type ModelConfig } from '../../node/model/index.js'
import type { Corpus } from '../../node/data/corpus.js'
import { BatchSampler, evenBatches } from '../../node/data/sampler.js'
import { evaluateMicrobatch, trainMicrobatch } from '../../node/pipeline/chain.js'
import type { OptimizerConfig } from '../../node/runtime/optimizer-config.js'
import { StageEngine } from '../../node/runtime/stage-engine.js'
import { stepStages } from '../../node/training/local.js'

export interface DilocoInit {
  model: ModelConfig
  /** The run's optimizer: every replica steps `totalSteps` times on batchSize x microbatches / replicas sequences. */
  optimizer: OptimizerConfig
  nStages: number
  corpus: Corpus
  replicas: number
  innerSteps: number
  /** Rounds after every step until this step (the manifest's averaging.everyStepUntil). */
  everyStepUntil?: number
  seed: number
  evalEvery: number
  evalBatches: number
  threads?: number
}

/** Validation loss of replica 0 against the tokens all replicas trained, from the start. */
export async function trainDiloco (init: DilocoInit): Promise<Array<[tokens: number, loss: number]>> {
  const { model, optimizer, replicas } = init
  const sequences = optimizer.batchSize * optimizer.microbatches / replicas
  if (!Number.isInteger(sequences)) throw new RangeError(`a batch of ${optimizer.batchSize * optimizer.microbatches} sequences does not split over ${replicas} replicas`)
  const engines: StageEngine[][] = []
  try {
    for (let r = 0; r < replicas; r++) {
      const stages: StageEngine[] = []
      for (let s = 0; s < init.nStages; s++) stages.push(await StageEngine.create({ model, layout: stageLayout(model, s, init.nStages), optimizer, seed: init.seed, threads: init.threads }))
      engines.push(stages)
    }
    const samplers = engines.map((_, r) => new BatchSampler(init.corpus.train, model.seqLen, sequences, `${init.seed}:${r}`))
    const validation = evenBatches(init.corpus.validation, model.seqLen, optimizer.batchSize, init.evalBatches)
    const evaluate = async (): Promise<number> => {
      let sum = 0
      for (const batch of validation) sum += await evaluateMicrobatch(engines[0], batch)
      return sum / validation.length
    }
    const curve: Array<[number, number]> = [[0, await evaluate()]]
    let lastRound = 0
    for (let step = 1; step <= optimizer.totalSteps; step++) {
      await Promise.all(engines.map(async (stages, r) => {
        await trainMicrobatch(stages, samplers[r].next())
        await stepStages(stages)
      }))
      if (step < (init.everyStepUntil ?? 0) || step - lastRound >= init.innerSteps) {
        await average(engines)
        lastRound = step
      }
      if (step % init.evalEvery === 0 || step === optimizer.totalSteps) curve.push([step * sequences * replicas * model.seqLen, await evaluate()])
    }
    return curve
  } finally {
    await Promise.all(engines.flat().map(e => e.close()))
  }
}

/** Every replica's stage s takes the mean of all replicas' stage s weights. */
async function average (engines: StageEngine[][]): Promise<void> {
  for (let s = 0; s < engines[0].length; s++) {
    const snapshots = await Promise.all(engines.map(async stages => await stages[s].weightsSnapshot()))
    const mean = new Float32Array(snapshots[0].weights.length)
    for (const { weights } of snapshots) axpy(mean, weights, 1 / engines.length)
    await Promise.all(engines.map(async stages => { await stages[s].updateWeights(w => { w.set(mean) }) }))
  }
}
