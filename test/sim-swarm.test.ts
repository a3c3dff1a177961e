import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SwarmSim, type SimReport } from '../node/sim/swarm.js'

function withoutWallTime (r: SimReport): Omit<SimReport, 'wallMs'> {
  const { wallMs, ...rest } = r
  return rest
}

test('a run is determined by its seed', async () => {
  const init = { peers: 12, hours: 0.15, seed: 'determinism' }
  const a = await new SwarmSim(init).run()
  const b = await new SwarmSim(init).run()
  assert.ok(a.microbatches.completed > 0, 'microbatches completed')
  assert.ok(a.leaves > 0, 'peers churned')
  assert.equal(withoutWallTime(a), withoutWallTime(b))
  const c = await new SwarmSim({ ...init, seed: 'another' }).run()
  assert.not.equal(withoutWallTime(c).microbatches, a.microbatches)
})

test('equal capacities and no churn: the slowest stage reaches the ideal split', async () => {
  const r = await new SwarmSim({ peers: 16, hours: 0.15, seed: 'equal', capacitySigma: 0, meanSessionMs: Infinity }).run()
  const last = r.samples.at(-1)!
  assert.is(last.peers, 16)
  assert.ok(Math.abs(last.slowestVsIdeal - 1) < 1e-9, `slowest stage / ideal = ${last.slowestVsIdeal}`)
  assert.ok(r.samples.slice(-3).every(s => s.achievedVsIdeal > 0.5), `the pipeline runs near the split: ${r.samples.map(s => s.achievedVsIdeal.toFixed(2)).join(' ')}`)
  assert.is(r.microbatches.lost, 0)
  assert.is(r.leaves, 0)
})

test('killing peers mid-run: calls to them time out and are retried elsewhere, no microbatch is lost', async () => {
  const r = await new SwarmSim({ peers: 16, hours: 0.2, seed: 'kill', meanSessionMs: Infinity, drivers: 1, kill: { at: 4 * 60_000, count: 2 } }).run()
  const m = r.microbatches
  assert.is(r.leaves, 2)
  assert.ok(r.retries.timeout > 0, `timeouts retried: ${JSON.stringify(r.retries)}`)
  assert.ok(m.retried > 0)
  assert.is(m.lost, 0)
  // Every microbatch issued completed, or ended with its own driver (the killed ones, and all at the end of the run).
  assert.is(m.issued, m.completed + m.abandoned)
  assert.ok(m.completed > 100, `completed ${m.completed}`)
})

test.run()
