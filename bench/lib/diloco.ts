// DiLoCo in one process, with no network and no pipeline: the reference the swarm's averaging
// modes are read against. R replicas of the whole model start from the same weights, each trains
// on its own data at 1/R of the batch (as the replicas of a stage share it), in the swarm's
// microbatches, each stage stepping on its own clipped gradient as a stage server does (with the
// whole replica's norm and its half batch in one call, dense and sparse rounds ended level, 2.0855
// and 2.0936, where the swarm's sparse rounds end 2% above dense ones), and at every round
// (after every step until everyStepUntil, then every innerSteps) they average, as the swarm's
// rounds do with outer SGD at lr 1:
// - dense: all take the mean of their weights;
// - sparse: each sends top-k of its pseudo-gradient through error feedback (the manifest's
//   compression), theta moves by the mean of what was sent, and each replica's weights are theta
//   less the residual it did not send (the swarm's rule; the swarm also clips contributions to the
//   median norm, which this leaves out).
// What this loses against `train --local` at equal tokens is the algorithm's, not the swarm's.
import { axpy, chunkCount, compress, decodeAccumulate, kForDensity, maxPayloadSize, type ValueBits } from '../../native/index.js'
import type { AveragingSettings } from '../../node/manifest/manifest.js'
import { roundCompression } from '../../node/averaging/trigger.js'
import { stageLayout, type ModelConfig } from '../../node/model/index.js'
import type { Corpus } from '../../node/data/corpus.js'
import { BatchSampler, evenBatches } from '../../node/data/sampler.js'
import { evaluateMicrobatch, trainMicrobatch } from '../../node/pipeline/chain.js'
import type { OptimizerConfig } from '../../node/runtime/optimizer-config.js'
import { StageEngine } from '../../node/runtime/stage-engine.js'

export interface DilocoInit {
  model: ModelConfig
  /** The run's optimizer: every replica steps `totalSteps` times on microbatches / replicas microbatches of batchSize sequences. */
  optimizer: OptimizerConfig
  /** The manifest's averaging: innerSteps, everyStepUntil, and for mode 'sparse' the compression. */
  averaging: AveragingSettings
  nStages: number
  corpus: Corpus
  replicas: number
  seed: number
  evalEvery: number
  evalBatches: number
  threads?: number
}

export interface DilocoResult {
  /** Validation loss of replica 0 against the tokens all replicas trained, from the start. */
  curve: Array<[tokens: number, loss: number]>
  rounds: number
  /** Bytes one replica sent over the run (payloads only; dense: float32 pseudo-gradients). */
  bytesPerReplica: number
}

export async function trainDiloco (init: DilocoInit): Promise<DilocoResult> {
  const { model, optimizer, replicas, averaging } = init
  const microbatches = optimizer.microbatches / replicas
  if (!Number.isInteger(microbatches)) throw new RangeError(`a batch of ${optimizer.microbatches} microbatches does not split over ${replicas} replicas`)
  const sequences = microbatches * optimizer.batchSize
  const engines: StageEngine[][] = []
  try {
    for (let r = 0; r < replicas; r++) {
      const stages: StageEngine[] = []
      for (let s = 0; s < init.nStages; s++) stages.push(await StageEngine.create({ model, layout: stageLayout(model, s, init.nStages), optimizer, seed: init.seed, threads: init.threads }))
      engines.push(stages)
    }
    const outer = await Promise.all(engines[0].map(async e => new OuterState((await e.weightsSnapshot()).weights, replicas, averaging)))
    const samplers = engines.map((_, r) => new BatchSampler(init.corpus.train, model.seqLen, optimizer.batchSize, `${init.seed}:${r}`))
    const validation = evenBatches(init.corpus.validation, model.seqLen, optimizer.batchSize, init.evalBatches)
    const evaluate = async (): Promise<number> => {
      let sum = 0
      for (const batch of validation) sum += await evaluateMicrobatch(engines[0], batch)
      return sum / validation.length
    }
    const curve: Array<[number, number]> = [[0, await evaluate()]]
    let lastRound = 0
    let rounds = 0
    for (let step = 1; step <= optimizer.totalSteps; step++) {
      await Promise.all(engines.map(async (stages, r) => {
        for (let i = 0; i < microbatches; i++) await trainMicrobatch(stages, samplers[r].next())
        await Promise.all(stages.map(async e => await e.step()))
      }))
      if (step < averaging.everyStepUntil || step - lastRound >= averaging.innerSteps) {
        for (let s = 0; s < init.nStages; s++) await outer[s].round(engines.map(stages => stages[s]), roundCompression(averaging, step))
        lastRound = step
        rounds++
      }
      if (step % init.evalEvery === 0 || step === optimizer.totalSteps) curve.push([step * sequences * replicas * model.seqLen, await evaluate()])
    }
    return { curve, rounds, bytesPerReplica: outer.reduce((a, o) => a + o.bytesPerReplica, 0) }
  } finally {
    await Promise.all(engines.flat().map(e => e.close()))
  }
}

/** One stage's theta_at_last_sync, and per replica its error feedback. */
class OuterState {
  readonly theta: Float32Array
  private readonly errors: Float32Array[]
  private readonly hints: Float32Array[]
  bytesPerReplica = 0

  constructor (weights: Float32Array, replicas: number, private readonly settings: AveragingSettings) {
    this.theta = weights.slice()
    this.errors = Array.from({ length: replicas }, () => new Float32Array(weights.length))
    this.hints = Array.from({ length: replicas }, () => new Float32Array(chunkCount(weights.length, settings.chunkSize)))
  }

  async round (replicas: StageEngine[], { density, beta }: { density: number, beta: number }): Promise<void> {
    const snapshots = await Promise.all(replicas.map(async e => (await e.weightsSnapshot()).weights))
    const n = this.theta.length
    const share = 1 / replicas.length
    if (this.settings.mode === 'dense') {
      const mean = new Float32Array(n)
      for (const weights of snapshots) axpy(mean, weights, share)
      this.theta.set(mean)
      this.bytesPerReplica += 4 * n
      await Promise.all(replicas.map(async e => { await e.updateWeights(w => { w.set(mean) }) }))
      return
    }
    const { chunkSize: chunk, valueBits } = this.settings
    const k = kForDensity(density, chunk)
    const out = new Uint8Array(maxPayloadSize(n, chunk, k, valueBits as ValueBits))
    const sent = new Float32Array(n)
    const delta = new Float32Array(n)
    snapshots.forEach((weights, r) => {
      // The pseudo-gradient less the residual the weights already hold (the swarm's rule).
      const e = this.errors[r]
      for (let i = 0; i < n; i++) delta[i] = this.theta[i] - weights[i] - e[i]
      const size = compress(e, delta, this.hints[r], out, { beta, chunk, k, bits: valueBits as ValueBits })
      this.bytesPerReplica += size / replicas.length
      decodeAccumulate(sent, out.subarray(0, size), share)
    })
    axpy(this.theta, sent, -1)
    await Promise.all(replicas.map(async (e, r) => { await e.updateWeights(w => { w.set(this.theta); axpy(w, this.errors[r], -1) }) }))
  }
}
