// npm run bench -- convergence [--json] [--steps N] [--modes a,b|all] [--quick]: does the swarm
// learn like one machine? The study (the default) runs local, dense, sparse and churn; --modes
// names others, and `all` runs every mode. Every mode trains the default model on the bundled
// corpus from the same initial weights, on the same microbatches in the same order, for the same
// number of tokens, and reports validation loss against tokens (the same fixed validation
// windows), the final loss and its ratio to `local`, and training tokens/s.
//   local                 train --local: the stages chained in this process, one microbatch at a time
//   pipeline              3 stages x 1 replica on loopback libp2p, forwarded server to server, the driver's default (adaptive) depth
//   pipeline-d1           the same, one microbatch in flight (reference)
//   pipeline-f16          `pipeline` with activations and gradients as float16 on the wire (the
//                         default is int8 with a scale per row)
//   pipeline-latency      `pipeline` with 100 ms added one way to every stage call (200 ms round trip)
//   pipeline-latency-d1   the same at depth 1 (reference: what the latency costs without depth)
//   dense                 a real swarm of daemons, 2 stages x 2 replicas, each replica driving a
//                         quarter of the tokens; replicas average every round, dense float32
//   sparse                the same with the manifest's compression (top-k + 2-bit values)
//   churn                 `sparse`, with one replica SIGKILLed a third of the way in and a fresh
//                         node joining at two thirds; the survivors drive the killed one's share
//                         until then, so that every driver ends with the run
//   diloco                the averaging modes' reference: 2 replicas of the whole model (2 stages)
//                         in this process, each on half the batch, taking the mean of their weights
//                         at the manifest's rounds (dense, outer SGD lr 1); no network or pipeline
//   diloco-sparse         the same with the manifest's compression (top-k + error feedback)
// Depth-1 modes with latency are slow (every call waits out the round trip), so they run for a
// tenth of the tokens: they are there for their tokens/s. All curves go in one SVG (--plot FILE,
// default convergence.svg). --inner-steps N sets the averaging modes' steps per round and
// --every-step-until N the step until which they average after every step, --every-step-density D
// and --topk-density D the top-k density of those rounds and of the later ones, --every-step-beta
// B and --beta B their error feedback's decay (defaults: the manifest's); --batch-size,
// --microbatches, --weight-versions and --in-flight the schedule's.
import { availableParallelism } from 'node:os'
import { loadBrown, type Corpus } from '../node/data/corpus.js'
import { type AveragingSettings, defaultManifest } from '../node/manifest/manifest.js'
import type { ModelConfig } from '../node/model/index.js'
import { combineSignals } from '../node/pipeline/caller.js'
import { Driver, maxDepth, maxStaleness } from '../node/pipeline/driver.js'
import { trainLocal } from '../node/training/local.js'
import type { OptimizerConfig } from '../node/runtime/optimizer-config.js'
import { LoopbackSwarm } from './lib/loopback-swarm.js'
import { defaultWire, wireDTypes, type WireDType } from '../node/pipeline/activations.js'
import { intOption, numberOption, parse } from '../node/cli/args.js'
import { UsageError } from '../node/cli/errors.js'
import { lossPlotSvg } from '../node/metrics/svg-plot.js'
import { writeFileAtomic } from '../node/util/fs.js'
import { runSwarm } from './lib/swarm-run.js'
import { trainDiloco } from './lib/diloco.js'

const runId = 'benchconvergence'
const seed = 1
/** Validation windows per evaluation, as `train --local` uses. */
const evalWindows = 128
const latencyMs = 100

export interface Mode {
  name: string
  /** Microbatches in flight (undefined: the driver's default). */
  inFlight?: number
  latencyMs: number
  /** Fraction of the token budget this mode trains for. */
  share: number
  /** A swarm of daemons with averaging (2 stages x 2 replicas) instead of one replica per stage. */
  swarm?: { averaging: 'dense' | 'sparse', churn?: boolean }
  /** In-process DiLoCo (2 replicas of the whole model) instead of a swarm. */
  diloco?: { averaging: 'dense' | 'sparse' }
  /** Pipeline modes: how activations and gradients travel (default: the daemon's). */
  wire?: WireDType
}

export const modes: Record<string, Mode | undefined> = {
  pipeline: { name: 'pipeline', latencyMs: 0, share: 1 },
  'pipeline-d1': { name: 'pipeline-d1', inFlight: 1, latencyMs: 0, share: 1 },
  'pipeline-f16': { name: 'pipeline-f16', latencyMs: 0, share: 1, wire: 'f16' },
  'pipeline-latency': { name: 'pipeline-latency', latencyMs, share: 1 },
  'pipeline-latency-d1': { name: 'pipeline-latency-d1', inFlight: 1, latencyMs, share: 0.1 },
  dense: { name: 'dense', latencyMs: 0, share: 1, swarm: { averaging: 'dense' } },
  sparse: { name: 'sparse', latencyMs: 0, share: 1, swarm: { averaging: 'sparse' } },
  churn: { name: 'churn', latencyMs: 0, share: 1, swarm: { averaging: 'sparse', churn: true } },
  diloco: { name: 'diloco', latencyMs: 0, share: 1, diloco: { averaging: 'dense' } },
  'diloco-sparse': { name: 'diloco-sparse', latencyMs: 0, share: 1, diloco: { averaging: 'sparse' } }
}

/** What the benchmark runs by default: one machine, and the averaging swarm dense, sparse and under churn. */
const studyModes = ['local', 'dense', 'sparse', 'churn']

/** Stages of the averaging modes (2 x 2 replicas in the swarm; the in-process reference too). */
const swarmStages = 2

export interface ConvergenceResult {
  mode: string
  tokens: number
  val_loss: number
  tokens_per_s: number
  /** Validation loss against training tokens, from the start. */
  curve: Array<[tokens: number, loss: number]>
  depth?: number
  version_misses?: number
  /** Swarm modes: bytes each peer sent for averaging, and for everything else (pipeline, DHT). */
  averaging_bytes_per_peer?: number
  pipeline_bytes_per_peer?: number
  rounds?: number
  /** Swarm modes: tokens/s while rounds ran against between them (target >= 0.9). */
  round_tokens_per_s_ratio?: number
}

export interface Setup {
  model: ModelConfig
  optimizer: OptimizerConfig
  nStages: number
  corpus: Corpus
  /** Inner steps of training (the schedule's length), and evaluations every `evalSteps`. */
  steps: number
  evalSteps: number
  /** onnxruntime threads per engine (default: all cores). */
  threads?: number
  /** Swarm modes: the manifest's averaging settings, changed. */
  averaging?: Partial<AveragingSettings>
}

export async function runLocal (s: Setup): Promise<ConvergenceResult> {
  const perStep = tokensPerStep(s)
  const curve: Array<[number, number]> = []
  let trainSeconds = 0
  let last = 0
  await trainLocal({
    model: s.model, optimizer: s.optimizer, stages: s.nStages, corpus: s.corpus, seed, evalEvery: s.evalSteps, evalBatches: Math.ceil(evalWindows / s.optimizer.batchSize), threads: s.threads,
    onEval: r => {
      curve.push([r.step * perStep, r.valLoss])
      if (r.step > 0) trainSeconds += (r.step - last) * perStep / r.tokensPerS
      last = r.step
    }
  })
  const tokens = s.steps * perStep
  return { mode: 'local', tokens, val_loss: curve[curve.length - 1][1], tokens_per_s: tokens / trainSeconds, curve }
}

/** DiLoCo in this process (bench/lib/diloco.ts), with the swarm modes' stages and averaging settings. */
export async function runDiloco (s: Setup, mode: Mode): Promise<ConvergenceResult> {
  const started = performance.now()
  const { curve, rounds, bytesPerReplica } = await trainDiloco({
    model: s.model, optimizer: s.optimizer, nStages: swarmStages, corpus: s.corpus, replicas: 2,
    averaging: { ...defaultManifest().averaging, ...s.averaging, mode: mode.diloco!.averaging },
    seed, evalEvery: s.evalSteps, evalBatches: Math.ceil(evalWindows / s.optimizer.batchSize), threads: s.threads
  })
  const [tokens, loss] = curve[curve.length - 1]
  return { mode: mode.name, tokens, val_loss: loss, tokens_per_s: tokens / ((performance.now() - started) / 1000), curve, rounds, averaging_bytes_per_peer: Math.round(bytesPerReplica) }
}

/** 2 stages x 2 replicas of daemons, every replica driving, averaging as `mode` says. */
export async function runAveragingSwarm (s: Setup, mode: Mode, onProgress?: (line: string) => void): Promise<ConvergenceResult> {
  const defaults = defaultManifest()
  const manifest = { ...defaults, model: s.model, optimizer: s.optimizer, nStages: swarmStages, averaging: { ...defaults.averaging, ...s.averaging } }
  const result = await runSwarm({
    manifest,
    averaging: mode.swarm!.averaging,
    churn: mode.swarm!.churn,
    replicas: 2,
    microbatches: s.steps * s.optimizer.microbatches,
    evalEvery: Math.max(1, Math.round(s.evalSteps * s.optimizer.microbatches / 4)),
    inFlight: mode.inFlight,
    onProgress
  })
  return {
    mode: mode.name,
    tokens: result.tokens,
    val_loss: result.valLoss,
    tokens_per_s: result.tokensPerSecond,
    curve: result.curve,
    averaging_bytes_per_peer: Math.round(result.averagingBytesPerPeer),
    pipeline_bytes_per_peer: Math.round(result.pipelineBytesPerPeer),
    rounds: result.rounds,
    round_tokens_per_s_ratio: result.roundSpeedRatio === undefined ? undefined : Math.round(result.roundSpeedRatio * 1000) / 1000
  }
}

/** One replica per stage, each on its own libp2p host, and a driver on another, all on loopback; microbatches forwarded server to server. */
export async function runPipeline (s: Setup, mode: Mode): Promise<ConvergenceResult> {
  const { model, optimizer, nStages } = s
  const tokensPerMicrobatch = optimizer.batchSize * model.seqLen
  const swarm = await LoopbackSwarm.create({ runId, model, optimizer, nStages, threads: s.threads ?? availableParallelism(), seed, latencyMs: mode.latencyMs, wireDType: wireDTypes[mode.wire ?? defaultWire] })
  try {
    const callers = swarm.callers()
    const forwarder = swarm.forwarder(callers)
    const microbatches = Math.max(1, Math.round(s.steps * mode.share)) * optimizer.microbatches
    const curve: Array<[number, number]> = []
    // The depth control hears the later stages' staleness and waits through the first stage's caller.
    const driver = new Driver({ stages: callers, train: async batch => await forwarder.train(batch), evaluate: async batch => await forwarder.evaluate(batch), signals: () => combineSignals(callers) }, {
      train: s.corpus.train,
      validation: s.corpus.validation,
      seqLen: model.seqLen,
      batchSize: optimizer.batchSize,
      seed,
      inFlight: mode.inFlight,
      maxStaleness: maxStaleness(optimizer.weightVersions),
      maxInFlight: () => maxDepth(optimizer.microbatches),
      evalEvery: s.evalSteps * optimizer.microbatches,
      evalBatches: Math.ceil(evalWindows / optimizer.batchSize),
      maxMicrobatches: microbatches,
      onProgress: r => { if (r.kind === 'validation') curve.push([r.completed * tokensPerMicrobatch, r.loss]) }
    })
    await driver.evaluate() // the starting point, reported through onProgress
    const started = performance.now()
    driver.start()
    while (!driver.stats.done) await new Promise(resolve => setTimeout(resolve, 100))
    const seconds = (performance.now() - started - driver.stats.evaluationMs) / 1000
    if (driver.stats.failed > 0) throw new Error(`${mode.name}: ${driver.stats.failed} microbatches failed`)
    if (forwarder.stats.relayed > 0) throw new Error(`${mode.name}: ${forwarder.stats.relayed} microbatches were relayed, not forwarded`)
    return {
      mode: mode.name,
      tokens: driver.stats.tokens,
      val_loss: curve[curve.length - 1][1],
      tokens_per_s: driver.stats.tokens / seconds,
      curve,
      depth: driver.depth,
      version_misses: callers.reduce((a, c) => a + c.stats.versionMisses, 0) + swarm.servers.reduce((a, v) => a + v.server.stats().versionMisses, 0)
    }
  } finally {
    await swarm.stop()
  }
}

export async function run (args: string[]): Promise<void> {
  const { values } = parse(args, {
    json: { type: 'boolean' }, steps: { type: 'string' }, modes: { type: 'string' }, quick: { type: 'boolean' },
    'batch-size': { type: 'string' }, microbatches: { type: 'string' }, 'weight-versions': { type: 'string' }, 'in-flight': { type: 'string' },
    plot: { type: 'string' }, 'inner-steps': { type: 'string' }, 'every-step-until': { type: 'string' }, 'every-step-density': { type: 'string' }, 'topk-density': { type: 'string' }, beta: { type: 'string' }, 'every-step-beta': { type: 'string' }
  })
  const manifest = defaultManifest()
  // Overrides of the manifest's schedule, to study it.
  manifest.optimizer.batchSize = intOption('batch-size', values['batch-size'], manifest.optimizer.batchSize, 1)
  manifest.optimizer.microbatches = intOption('microbatches', values.microbatches, manifest.optimizer.microbatches, 1)
  manifest.optimizer.weightVersions = intOption('weight-versions', values['weight-versions'], manifest.optimizer.weightVersions, 1, 64)
  const inFlight = values['in-flight'] === undefined ? undefined : intOption('in-flight', values['in-flight'], 1, 1)
  for (const mode of Object.values(modes)) if (mode !== undefined && mode.inFlight === undefined) mode.inFlight = inFlight
  const steps = intOption('steps', values.steps, values.quick === true ? 60 : 600, 1)
  const names = values.modes === 'all' ? ['local', ...Object.keys(modes)] : values.modes?.split(',') ?? studyModes
  for (const name of names) if (name !== 'local' && modes[name] === undefined) throw new UsageError(`unknown mode '${name}' (local, ${Object.keys(modes).join(', ')})`)
  // The schedule ends with the run, as `train --local --steps N` would.
  const optimizer = { ...manifest.optimizer, totalSteps: steps }
  const setup: Setup = { model: manifest.model, optimizer, nStages: 3, corpus: await loadBrown(), steps, evalSteps: Math.max(1, Math.round(steps / 6)) }
  if (values['inner-steps'] !== undefined) setup.averaging = { innerSteps: intOption('inner-steps', values['inner-steps'], 1, 1) }
  if (values['every-step-until'] !== undefined) setup.averaging = { ...setup.averaging, everyStepUntil: intOption('every-step-until', values['every-step-until'], 0, 0) }
  const density = (name: 'every-step-density' | 'topk-density'): number => numberOption(name, values[name], 0, 1 / manifest.averaging.chunkSize, 1)
  if (values['every-step-density'] !== undefined) setup.averaging = { ...setup.averaging, everyStepTopkDensity: density('every-step-density') }
  if (values['topk-density'] !== undefined) setup.averaging = { ...setup.averaging, topkDensity: density('topk-density') }
  if (values.beta !== undefined) setup.averaging = { ...setup.averaging, beta: numberOption('beta', values.beta, 0, 0, 1) }
  if (values['every-step-beta'] !== undefined) setup.averaging = { ...setup.averaging, everyStepBeta: numberOption('every-step-beta', values['every-step-beta'], 0, 0, 1) }
  const results: ConvergenceResult[] = []
  for (const name of names) {
    const mode = modes[name]
    const progress = values.json === true ? undefined : (line: string): void => { process.stderr.write(`\r${line}   `) }
    const result = name === 'local'
      ? await runLocal(setup)
      : mode!.swarm !== undefined ? await runAveragingSwarm(setup, mode!, progress) : mode!.diloco !== undefined ? await runDiloco(setup, mode!) : await runPipeline(setup, mode!)
    if (progress !== undefined && mode?.swarm !== undefined) process.stderr.write('\n')
    results.push(result)
    const local = results.find(r => r.mode === 'local')
    if (values.json === true) {
      console.log(JSON.stringify({ bench: 'convergence', ...result, ratio_to_local: local === undefined ? undefined : result.val_loss / local.val_loss }))
    } else {
      const ratio = local === undefined ? '' : `  ${(result.val_loss / local.val_loss).toFixed(3)}x local`
      const extra = result.depth !== undefined
        ? `  depth ${result.depth}, ${result.version_misses} version misses`
        : result.rounds !== undefined ? `  ${result.rounds} rounds, ${(result.averaging_bytes_per_peer! / 1e6).toFixed(2)} MB averaging${result.pipeline_bytes_per_peer === undefined ? '' : ` + ${(result.pipeline_bytes_per_peer / 1e6).toFixed(1)} MB other`} per peer${result.round_tokens_per_s_ratio === undefined ? '' : `, tokens/s during rounds ${result.round_tokens_per_s_ratio.toFixed(2)}x between`}` : ''
      console.log(`${result.mode.padEnd(20)} ${String(result.tokens).padStart(9)} tokens  val ${result.val_loss.toFixed(4)}${ratio}  ${result.tokens_per_s.toFixed(0).padStart(6)} tokens/s${extra}`)
    }
  }
  const plot = values.plot ?? 'convergence.svg'
  await writeFileAtomic(plot, lossPlotSvg(results.map(r => ({ name: r.mode, points: r.curve })), { title: `validation loss against tokens, ${steps} steps of ${tokensPerStep(setup)} tokens` }))
  if (values.json !== true) console.log(`plot: ${plot}`)
}

function tokensPerStep (s: Setup): number {
  return s.optimizer.batchSize * s.optimizer.microbatches * s.model.seqLen
}
