// How much memory serving a stage takes, so a node never joins a stage it cannot hold. An
// estimate from the model shape: parameters with their gradient, AdamW moments, the outer loop's
// state (weights at the last sync, momentum, error feedback) and a round's working copies, plus
// activations of one microbatch.
import { paramCount, stageLayout, stageParams } from '../model/index.js'
import type { RunManifest } from '../manifest/manifest.js'

/**
 * Floats kept per parameter besides the stash: weight, gradient, Adam m and v, last-sync weight,
 * outer momentum, error feedback, and a round's five working copies (averaging/service.ts).
 */
const FLOATS_PER_PARAM = 12

export function stageMemoryBytes (manifest: RunManifest, stage: number): number {
  const { model, nStages } = manifest
  const layout = stageLayout(model, stage, nStages)
  const params = paramCount(stageParams(model, layout))
  const tokens = manifest.optimizer.batchSize * model.seqLen
  // Recomputed forward + backward of one microbatch: ~20 activations of width dModel per block.
  let activations = tokens * model.dModel * 20 * Math.max(1, layout.endLayer - layout.firstLayer)
  if (stage === nStages - 1) activations += tokens * model.vocabSize * 3
  return 4 * (params * (FLOATS_PER_PARAM + manifest.optimizer.weightVersions) + activations)
}
