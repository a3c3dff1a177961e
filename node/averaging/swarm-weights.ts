// Every stage's weights as the swarm holds them now: this node's own stage from its engine,
// every other one from one of its ready replicas (a whole replica state over the state
// protocol; the newest round first). export --swarm turns them into one ONNX model; the
// daemon serves them on its control server at GET /swarm-weights (127.0.0.1 only).
import type { SwarmComponents, SwarmService } from '../daemon/node.js'
import { stageParamLayout } from '../model/index.js'
import { stageWeights, type StageState } from '../runtime/checkpoint.js'
import { encodeSafetensors, type NamedTensor } from '../runtime/safetensors.js'
import { fetchReplicaState } from './state-sync.js'

export const SWARM_WEIGHTS_PATH = '/swarm-weights'
/** The safetensors metadata key of the answer: the run and where each stage came from. */
export const swarmWeightsKey = 'swarmtrain.swarm-weights'

/** Where a stage's weights came from. */
export interface StageSource {
  stage: number
  /** Inner step and averaging round of the replica. */
  step: number
  round: number
  /** The replica's peer id (this node's own when it serves the stage). */
  peer: string
}

export interface SwarmWeightsTag {
  runId: string
  stages: StageSource[]
}

/**
 * Each stage's state from this node or a replica; throws a StateSyncError naming a stage nobody
 * served. `onStage` hears of each stage as it arrives.
 */
export async function swarmWeights (components: SwarmComponents, onStage?: (source: StageSource) => void): Promise<{ tensors: NamedTensor[], tag: SwarmWeightsTag }> {
  const { host, manifest, runId, registry, stageHost } = components
  await registry.refresh().catch(() => {})
  const tensors: NamedTensor[] = []
  const stages: StageSource[] = []
  for (let stage = 0; stage < manifest.nStages; stage++) {
    const layout = stageParamLayout(manifest.model, stage, manifest.nStages)
    const served = stageHost?.served
    let state: StageState
    let peer = host.peerId.toString()
    if (served?.stage === stage) {
      state = await stageHost!.state(served)
    } else {
      const replicas = (registry.view.stages[stage]?.peers ?? []).filter(p => p.ready && p.peerId !== peer).sort((a, b) => b.round - a.round)
      ;({ state, peer } = await fetchReplicaState({ host }, { runId, stage, layout, peers: replicas.map(p => p.peerId), timeoutMs: manifest.averaging.roundTimeoutMs }))
    }
    const weights = stageWeights(state, layout)
    for (const slot of layout.slots) tensors.push({ name: slot.name, shape: slot.shape, data: weights.get(slot.name)! })
    stages.push({ stage, step: state.step, round: state.round, peer })
    onStage?.(stages[stage])
  }
  return { tensors, tag: { runId, stages } }
}

/** The control server's GET /swarm-weights: every stage's weights as one safetensors file. */
export function swarmWeightsService (options: { onStage?: (source: StageSource) => void } = {}): (components: SwarmComponents) => SwarmService {
  return components => ({
    routes: () => ({
      [SWARM_WEIGHTS_PATH]: async () => {
        const { tensors, tag } = await swarmWeights(components, options.onStage)
        return { type: 'application/octet-stream', body: encodeSafetensors(tensors, { [swarmWeightsKey]: JSON.stringify(tag) }) }
      }
    })
  })
}
