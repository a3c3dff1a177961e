// npm run bench -- sim [--json] [--peers N] [--hours H] [--seed S]: the project's own stage
// assignment (StageAssigner and policy.ts), router and stage caller (Router, SwarmStage) and
// averaging trigger (roundDue) run in a discrete-event simulation (node/sim) of 10, 100 and
// 1,000 peers with log-normal capacities (sigma 0.7: 5th to 95th percentile ~10x), churn
// (exponential sessions, 30-minute mean, joins at the same rate) and per-pair links.
// Without --hours, 10 and 100 peers run one simulated hour and 1,000 peers ten minutes: a
// simulated hour costs about a hundred times more at 1,000 peers.
import { intOption, numberOption, parse } from '../node/cli/args.js'
import { SwarmSim, type SimReport } from '../node/sim/swarm.js'

const SIZES = [10, 100, 1000]

function defaultHours (peers: number): number {
  return peers >= 1000 ? 1 / 6 : 1
}

export async function run (argv: string[]): Promise<void> {
  const { values } = parse(argv, { json: { type: 'boolean' }, peers: { type: 'string' }, hours: { type: 'string' }, seed: { type: 'string' } })
  const sizes = values.peers === undefined ? SIZES : [intOption('peers', values.peers, 0, 4, 5000)]
  const seed = values.seed ?? '1'
  const json = values.json === true
  if (!json) {
    console.log('simulated swarm: 4 stages, capacities log-normal (median 2000 tokens/s, ~10x spread), sessions exponential (30 min mean), 1/4 of peers drive')
    console.log(`${'peers'.padStart(6)}${'hours'.padStart(7)}${'slowest/ideal'.padStart(15)}${'achieved/ideal'.padStart(16)}${'moves/h'.padStart(9)}${'retried'.padStart(9)}${'lost'.padStart(6)}${'rounds'.padStart(8)}${'complete'.padStart(10)}${'wall s'.padStart(8)}`)
  }
  for (const peers of sizes) {
    const hours = numberOption('hours', values.hours, defaultHours(peers), 0.01, 24)
    const r = await new SwarmSim({ peers, hours, seed }).run()
    if (json) console.log(JSON.stringify(toJson(r)))
    else print(r)
  }
}

function toJson (r: SimReport): Record<string, unknown> {
  const round = (x: number, digits = 3): number => Number(x.toFixed(digits))
  return {
    bench: 'sim',
    peers: r.peers,
    stages: r.stages,
    hours: round(r.hours),
    seed: r.seed,
    throughput_vs_ideal: round(r.throughputVsIdeal),
    achieved_vs_ideal: round(r.achievedVsIdeal),
    moves_per_hour: round(r.movesPerHour, 1),
    retried: round(r.retriedFraction),
    retries: r.retries,
    microbatches: r.microbatches,
    rounds_completed: r.rounds.completed,
    round_completion: round(r.roundCompletion),
    rounds: { ...r.rounds, meanMembers: round(r.rounds.meanMembers, 1), meanMs: Math.round(r.rounds.meanMs) },
    joins: r.joins,
    leaves: r.leaves,
    over_time: r.samples.map(s => ({ minute: Math.round(s.minute), peers: s.peers, slowest_vs_ideal: round(s.slowestVsIdeal), achieved_vs_ideal: round(s.achievedVsIdeal) })),
    events: r.events,
    wall_s: round(r.wallMs / 1000, 1)
  }
}

function print (r: SimReport): void {
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`
  const m = r.microbatches
  console.log(`${String(r.peers).padStart(6)}${r.hours.toFixed(2).padStart(7)}${r.throughputVsIdeal.toFixed(3).padStart(15)}${r.achievedVsIdeal.toFixed(3).padStart(16)}${r.movesPerHour.toFixed(1).padStart(9)}${pct(r.retriedFraction).padStart(9)}${String(m.lost).padStart(6)}${String(r.rounds.completed).padStart(8)}${pct(r.roundCompletion).padStart(10)}${(r.wallMs / 1000).toFixed(0).padStart(8)}`)
  // Over time: one figure per tenth of the run (slowest stage / ideal, achieved / ideal).
  const step = Math.max(1, Math.floor(r.samples.length / 10))
  const series = r.samples.filter((_, i) => (i + 1) % step === 0).map(s => `${s.minute.toFixed(0)}m ${s.slowestVsIdeal.toFixed(2)}/${s.achievedVsIdeal.toFixed(2)}`)
  console.log(`        over time (slowest/achieved vs ideal): ${series.join('  ')}`)
  console.log(`        microbatches ${m.issued} issued, ${m.completed} completed, ${m.lost} lost, ${m.abandoned} ended with their driver; retries by reason ${JSON.stringify(r.retries)}; rounds: ${r.rounds.meanMembers.toFixed(1)} members, ${(r.rounds.meanMs / 1000).toFixed(1)} s, ${r.rounds.resyncs} state loads`)
}
