// The daemon's Prometheus series: training (loss, tokens, microbatches), pipeline (calls,
// steps, queue, routing), swarm (peers and throughput per stage) and averaging (round, and the
// averaging service's numeric status fields), all read from the node's status JSON when
// scraped, so no component needs to know about Prometheus. libp2p's own metrics
// (@libp2p/prometheus-metrics) share the registry.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { NodeStatus } from '../daemon/node.js'
import type { PipelineStatus } from '../pipeline/swarm.js'
import { METRICS_SNAPSHOT_MS } from '../timing.js'

/** Status snapshots are reused for this long, so one scrape builds the status once. */

export function registerSwarmMetrics (registry: Registry, status: () => NodeStatus): void {
  let cached: { at: number, status: NodeStatus } | undefined
  const snapshot = (): NodeStatus => {
    const now = Date.now()
    if (cached === undefined || now - cached.at > METRICS_SNAPSHOT_MS) cached = { at: now, status: status() }
    return cached.status
  }
  const pipeline = (): PipelineStatus | undefined => snapshot().services.pipeline as PipelineStatus | undefined
  type Set = (value: number, labels?: Record<string, string | number>) => void

  const gauge = (name: string, help: string, labelNames: string[], read: (set: Set) => void): void => {
    new Gauge({ name, help, labelNames, registers: [registry], collect () { this.reset(); read((value, labels = {}) => { this.set(labels, value) }) } })
  }
  // Cumulative values the components already count: a counter set to their total at each scrape.
  const counter = (name: string, help: string, labelNames: string[], read: (set: Set) => void): void => {
    new Counter({ name, help, labelNames, registers: [registry], collect () { this.reset(); read((value, labels = {}) => { this.inc(labels, value) }) } })
  }

  gauge('swarmtrain_info', 'This node: peer id, run id and version (value 1)', ['peer_id', 'run_id', 'version'], set => {
    const s = snapshot()
    set(1, { peer_id: s.peerId, run_id: s.runId, version: s.version })
  })
  gauge('swarmtrain_uptime_seconds', 'Seconds since the node started', [], set => { set(snapshot().uptimeMs / 1000) })
  gauge('swarmtrain_stage', 'The stage this node serves (-1: none yet)', [], set => { set(snapshot().stage ?? -1) })
  gauge('swarmtrain_connections', 'Open libp2p connections', [], set => { set(snapshot().connections) })
  counter('swarmtrain_stage_moves_total', 'Times this node moved to another stage', [], set => { set(snapshot().moves.length) })
  gauge('swarmtrain_swarm_stage_peers', 'Peers serving each stage, as this node sees the swarm', ['stage'], set => {
    for (const s of snapshot().stages) set(s.peers.length, { stage: s.stage })
  })
  gauge('swarmtrain_swarm_stage_throughput_tokens_per_second', 'Announced capacity of each stage, tokens/s', ['stage'], set => {
    for (const s of snapshot().stages) set(s.throughput, { stage: s.stage })
  })

  // Training: the driver on this node.
  gauge('swarmtrain_train_loss', 'Training loss, moving average (nats/token)', [], set => {
    const loss = pipeline()?.driver?.trainLoss
    if (loss !== undefined) set(loss)
  })
  gauge('swarmtrain_validation_loss', 'Latest validation loss (nats/token)', [], set => {
    const loss = pipeline()?.driver?.validationLoss
    if (loss !== undefined) set(loss)
  })
  counter('swarmtrain_trained_tokens_total', 'Training tokens of the microbatches this node drove', [], set => { set(pipeline()?.driver?.tokens ?? 0) })
  counter('swarmtrain_microbatches_total', 'Microbatches this node drove, by outcome', ['outcome'], set => {
    const d = pipeline()?.driver
    set(d?.completed ?? 0, { outcome: 'completed' })
    set(d?.failed ?? 0, { outcome: 'failed' })
  })
  counter('swarmtrain_microbatches_routed_total', 'Microbatches this node trained, by path: forwarded server to server, or relayed through it', ['path'], set => {
    const f = pipeline()?.forwarding
    set(f?.forwarded ?? 0, { path: 'forwarded' })
    set(f?.relayed ?? 0, { path: 'relayed' })
  })
  counter('swarmtrain_evaluations_routed_total', 'Validation microbatches this node evaluated, by path: forwarded server to server, or relayed through it', ['path'], set => {
    const f = pipeline()?.forwarding
    set(f?.evaluationsForwarded ?? 0, { path: 'forwarded' })
    set(f?.evaluationsRelayed ?? 0, { path: 'relayed' })
  })
  counter('swarmtrain_stage_traffic_bytes_total', "Stage protocol bytes of this node's calls (its microbatches and the hops it forwarded), by direction", ['direction'], set => {
    const t = pipeline()?.traffic
    set(t?.sentBytes ?? 0, { direction: 'sent' })
    set(t?.receivedBytes ?? 0, { direction: 'received' })
  })

  // Pipeline: this node's stage server and its router.
  counter('swarmtrain_stage_requests_total', "Calls this node's stage server answered, by result", ['result'], set => {
    const s = pipeline()?.server
    for (const result of ['forward', 'backward', 'trains', 'evaluations', 'unroutable', 'errors', 'busy'] as const) set(s?.[result] ?? 0, { result })
  })
  counter('swarmtrain_inner_steps_total', "Inner optimizer steps of this node's stage", [], set => { set(pipeline()?.server?.steps ?? 0) })
  gauge('swarmtrain_stage_queue_length', "Calls waiting or running on this node's stage", [], set => { set(pipeline()?.load?.queueLength ?? 0) })
  gauge('swarmtrain_stage_served_tokens_per_second', "Tokens/s this node's stage trained, recent average", [], set => { set(pipeline()?.load?.tokensPerSecond ?? 0) })
  counter('swarmtrain_pipeline_calls_total', 'Calls this node made to each stage', ['stage'], set => {
    pipeline()?.calls.forEach((c, stage) => { set(c.calls, { stage }) })
  })
  counter('swarmtrain_pipeline_retries_total', 'Calls sent again to another replica, by stage and reason', ['stage', 'reason'], set => {
    pipeline()?.calls.forEach((c, stage) => { for (const [reason, n] of Object.entries(c.retries)) set(n, { stage, reason }) })
  })
  gauge('swarmtrain_pipeline_banned_peers', 'Peers the router avoids after failed calls', [], set => { set(pipeline()?.banned.length ?? 0) })

  // Averaging: the round every node reports, and whatever numbers the averaging service shows.
  gauge('swarmtrain_averaging_round', "This node's averaging round", [], set => { set(snapshot().round) })
  gauge('swarmtrain_averaging', "The averaging service's numeric status fields", ['field'], set => {
    const averaging = snapshot().services.averaging
    if (typeof averaging !== 'object' || averaging === null) return
    for (const [field, value] of Object.entries(averaging)) if (typeof value === 'number' && Number.isFinite(value)) set(value, { field })
  })
}

/** Bytes this node sent and received over all its connections, from libp2p's transfer counters. */
export async function transferredBytes (registry: Registry): Promise<{ sent: number, received: number }> {
  const metric = registry.getSingleMetric('libp2p_data_transfer_bytes_total')
  const values = metric === undefined ? [] : (await metric.get()).values
  const total = (label: string): number => values.find(v => v.labels.protocol === label)?.value ?? 0
  return { sent: total('global sent'), received: total('global received') }
}
