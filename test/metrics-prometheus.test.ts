// /metrics on a running 2-node swarm answers in Prometheus text format with the training,
// pipeline and swarm series and libp2p's own. (The daemon logs JSON here: its start-up lines
// still reach the harness, which reads their text.)
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { request } from 'node:http'
import type { PipelineStatus } from '../node/pipeline/swarm.js'
import { TestSwarm, waitFor } from './daemon-harness.js'

async function get (port: number, path: string): Promise<{ status: number, type: string, body: string }> {
  return await new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, timeout: 10_000 }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }))
    }).on('error', reject).end()
  })
}

/** Samples by series (name and labels as written), checking every line is valid text format. */
function parseExposition (text: string): Map<string, number> {
  const samples = new Map<string, number>()
  const typed = new Set<string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) /.exec(line)
    if (meta !== null) {
      if (meta[1] === 'TYPE') typed.add(meta[2])
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line)
    assert.ok(sample !== null, `not Prometheus text format: ${line}`)
    const name = sample[1]
    assert.ok([...typed].some(t => name === t || name.startsWith(`${t}_`)), `${name} has no # TYPE line`)
    samples.set(`${name}${sample[2] ?? ''}`, Number(sample[3]))
  }
  return samples
}

test('/metrics answers in Prometheus format with training, pipeline, swarm and libp2p series', async () => {
  const swarm = new TestSwarm()
  try {
    const seed = await swarm.init('a', ['--stages', '2', '--d-model', '64', '--layers', '2', '--heads', '4', '--seq-len', '32', '--batch-size', '8'])
    const common = ['--capacity', '1000', '--threads', '1']
    const a = await swarm.start('a', seed, [...common, '--stage', '0', '--eval-every', '10', '--metrics-port', '0', '--log-format', 'json'])
    await swarm.start('b', swarm.clone(seed, 'b'), [...common, '--stage', '1', '--no-drive', '--bootstrap', a.address])
    const port = Number(/:(\d+)\/metrics$/.exec(a.output.find(l => l.startsWith('metrics')) ?? '')?.[1])
    assert.ok(port > 0, `the daemon printed its metrics address: ${a.output.join(' | ')}`)

    await waitFor('a validation on the driver', 120_000, async () => {
      const p = await swarm.pipeline(a) as PipelineStatus
      return p.history.validation.length >= 1 && (p.driver?.completed ?? 0) >= 12 ? true : undefined
    })
    const res = await get(port, '/metrics')
    assert.is(res.status, 200)
    assert.match(res.type, /^text\/plain; version=0\.0\.4/)
    const samples = parseExposition(res.body)
    const value = (series: string): number => {
      assert.ok(samples.has(series), `missing ${series}`)
      return samples.get(series) as number
    }
    const status = await swarm.pipeline(a) as PipelineStatus
    assert.ok(value('swarmtrain_train_loss') > 0 && value('swarmtrain_train_loss') < 10)
    assert.ok(value('swarmtrain_validation_loss') > 0)
    assert.ok(value('swarmtrain_trained_tokens_total') >= 12 * 8 * 32)
    assert.ok(value('swarmtrain_microbatches_total{outcome="completed"}') >= 12)
    assert.ok(value('swarmtrain_microbatches_total{outcome="completed"}') <= (status.driver?.completed ?? 0), 'the counter is not ahead of the status read after it')
    assert.is(value('swarmtrain_microbatches_total{outcome="failed"}'), 0)
    assert.is(value('swarmtrain_stage'), 0)
    assert.is(value('swarmtrain_swarm_stage_peers{stage="0"}'), 1)
    assert.is(value('swarmtrain_swarm_stage_peers{stage="1"}'), 1)
    assert.ok(value('swarmtrain_stage_requests_total{result="backward"}') > 0)
    assert.ok(value('swarmtrain_pipeline_calls_total{stage="1"}') > 0)
    // a's own stage 0 forwards to b: forwarded microbatches, a's stage traffic the activations it sent.
    assert.ok(value('swarmtrain_microbatches_routed_total{path="forwarded"}') >= 12)
    // The validation loss above came from evaluations forwarded the same way, through a's own stage.
    assert.ok(value('swarmtrain_evaluations_routed_total{path="forwarded"}') > 0)
    assert.ok(value('swarmtrain_stage_requests_total{result="evaluations"}') > 0)
    assert.ok(value('swarmtrain_stage_traffic_bytes_total{direction="sent"}') > 12 * 8 * 32 * 64)
    assert.is(value('swarmtrain_averaging_round'), 0)
    assert.ok(value('libp2p_data_transfer_bytes_total{protocol="global sent"}') > 100_000, 'libp2p counts the activations it sent')
    assert.ok([...samples.keys()].some(k => k.startsWith('libp2p_kad_dht')), "kad-dht's own series are there")

    assert.is((await get(port, '/status')).status, 404, 'the metrics port serves only /metrics')
  } finally {
    await swarm.close()
  }
})

test.run()
