// The capacity probe: this machine's training throughput on a stage (tokens/s), timed on a few
// forward+backward microbatches of the real stage graphs, and its free memory. The result is
// cached per machine and model shape (the probe takes seconds and the hardware rarely changes).
import { logger } from '@libp2p/logger'
import { readFile } from 'node:fs/promises'
import { cpus, freemem } from 'node:os'
import { join } from 'node:path'
import type { RunManifest } from '../manifest/manifest.js'
import { stageLayout } from '../model/index.js'
import type { FloatTensor, TokenTensor } from '../runtime/tensor.js'
import { writeFileAtomic } from '../util/fs.js'

const log = logger('swarmtrain:assignment')

export const CAPACITY_FILE = 'capacity.json'
const WARMUP_MICROBATCHES = 1
const TIMED_MICROBATCHES = 3

export interface Capacity {
  /** Tokens per second of forward+backward on the probed stage. */
  throughput: number
  freeMemory: number
  source: 'given' | 'cache' | 'probe'
}

/**
 * `given` (from `--capacity`) wins; else a cached probe for this CPU and model shape; else a
 * fresh probe of the stage with the most blocks (the split puts extra blocks first: stage 0).
 */
export async function measureCapacity (manifest: RunManifest, dir: string, given?: number): Promise<Capacity> {
  const freeMemory = freemem()
  if (given !== undefined) return { throughput: given, freeMemory, source: 'given' }
  const key = cacheKey(manifest)
  const path = join(dir, CAPACITY_FILE)
  const cache = await readCache(path)
  const cached = cache[key]
  if (typeof cached === 'number' && Number.isFinite(cached) && cached > 0) return { throughput: cached, freeMemory, source: 'cache' }
  const throughput = await probeStage(manifest, 0)
  await writeFileAtomic(path, JSON.stringify({ ...cache, [key]: throughput }, null, 2) + '\n')
  return { throughput, freeMemory, source: 'probe' }
}

function cacheKey (manifest: RunManifest): string {
  const cpu = cpus()
  const m = manifest.model
  return `${cpu[0]?.model ?? 'cpu'} x${cpu.length}|V${m.vocabSize} D${m.dModel} L${m.nLayers} H${m.nHeads} T${m.seqLen}|S${manifest.nStages}|B${manifest.optimizer.batchSize}`
}

async function readCache (path: string): Promise<Record<string, unknown>> {
  try {
    const value: unknown = JSON.parse(await readFile(path, 'utf8'))
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : {}
  } catch {
    return {} // no cache yet, or a damaged one: probe again
  }
}

/** Times forward+backward of `stage` on random inputs of the run's microbatch shape. */
export async function probeStage (manifest: RunManifest, stage: number): Promise<number> {
  // Loaded on demand: onnxruntime is heavy and tests pass --capacity.
  const { StageEngine } = await import('../runtime/stage-engine.js')
  const { model, nStages } = manifest
  const layout = stageLayout(model, stage, nStages)
  const engine = await StageEngine.create({ model, layout, optimizer: manifest.optimizer })
  try {
    const b = manifest.optimizer.batchSize
    const t = model.seqLen
    const tokens = (): TokenTensor => ({ data: BigInt64Array.from({ length: b * t }, (_, i) => BigInt((i * 7919) % model.vocabSize)), shape: [b, t] })
    const floats = (): FloatTensor => ({ data: Float32Array.from({ length: b * t * model.dModel }, (_, i) => Math.sin(i) * 0.5), shape: [b, t, model.dModel] })
    const x = stage === 0 ? tokens() : floats()
    const gy = floats()
    const targets = tokens()
    const step = async (): Promise<void> => {
      if (engine.isLast) await engine.lossBackward(x, targets)
      else {
        await engine.forward(x)
        await engine.backward(x, gy)
      }
    }
    for (let i = 0; i < WARMUP_MICROBATCHES; i++) await step()
    const started = performance.now()
    for (let i = 0; i < TIMED_MICROBATCHES; i++) await step()
    const seconds = (performance.now() - started) / 1000
    const throughput = TIMED_MICROBATCHES * b * t / seconds
    log('stage %d: %d tokens/s', stage, Math.round(throughput))
    return throughput
  } finally {
    await engine.close()
  }
}
