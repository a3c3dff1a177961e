// How much memory serving a stage takes, so a node never joins a stage it cannot hold. An
// estimate from the model shape: parameters with their gradient, AdamW moments and the outer
// loop's state (weights at the last sync, momentum, error feedback), plus activations of one
// microbatch.
import type { RunManifest } from '../manifest/manifest.js'

/** Blocks [first, end) of `stage` when nLayers are spread as evenly as possible, earlier stages taking the extra. */
export function stageBlocks (nLayers: number, nStages: number, stage: number): [number, number] {
  const base = Math.floor(nLayers / nStages)
  const extra = nLayers % nStages
  const first = stage * base + Math.min(stage, extra)
  return [first, first + base + (stage < extra ? 1 : 0)]
}

/** Floats kept per parameter: weight, gradient, Adam m and v, last-sync weight, outer momentum, error feedback. */
const FLOATS_PER_PARAM = 7

export function stageMemoryBytes (manifest: RunManifest, stage: number): number {
  const { vocabSize: V, dModel: D, seqLen: T } = manifest.model
  const [first, end] = stageBlocks(manifest.model.nLayers, manifest.nStages, stage)
  const blocks = end - first
  let params = blocks * (12 * D * D + 13 * D)
  if (stage === 0) params += V * D + T * D
  if (stage === manifest.nStages - 1) params += 2 * D + D * V
  const tokens = manifest.optimizer.batchSize * T
  // Recomputed forward + backward of one microbatch: ~20 activations of width D per block.
  let activations = tokens * D * 20 * Math.max(1, blocks)
  if (stage === manifest.nStages - 1) activations += tokens * V * 3
  return 4 * (params * FLOATS_PER_PARAM + activations)
}
