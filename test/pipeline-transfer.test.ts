// What a stage caller measures of a call's transfer (its wall time outside the servers' compute,
// queue waits and onward calls) and teaches its router, for the calls it makes and, from a TRAIN
// reply, for the hops its servers made; and what it refuses to believe of a reply. Simulated
// time: the transport moves the caller's clock on by the call's wall time.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { DType, StageRequest, StageResponse, type Hop } from '../protocols/stage-codec.js'
import { encodeActivations } from '../node/pipeline/activations.js'
import { SwarmStage } from '../node/pipeline/caller.js'
import type { StageTransport } from '../node/pipeline/client.js'
import { Router } from '../node/pipeline/router.js'
import { UnroutableError } from '../node/pipeline/service.js'
import type { Clock } from '../node/util/clock.js'
import type { TokenTensor } from '../node/runtime/tensor.js'

const [B, T, D] = [2, 4, 4]
const REPLICAS = [['a'], ['b'], ['c']]

/** A caller of `stageIndex` (of 3) whose every call takes `wallMs` and is answered with `reply`. */
function setup (wallMs: number, reply: (request: Omit<StageRequest, 'id'>) => Partial<StageResponse>, stageIndex = 0): { stage: SwarmStage, router: Router, requests: Array<Omit<StageRequest, 'id'>> } {
  let now = 0
  const clock: Clock = { now: () => now, monotonic: () => now, setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: h => { clearTimeout(h as NodeJS.Timeout) } }
  const requests: Array<Omit<StageRequest, 'id'>> = []
  const client: StageTransport = {
    call: async (_peer, request) => {
      requests.push(request)
      now += wallMs
      return { id: 0, status: StageResponse.Status.OK, error: '', computeMs: 0, waitMs: 0, queueLength: 0, staleness: 0, hops: [], ...reply(request) }
    }
  }
  const router = new Router({ exploration: 0, now: clock.now })
  const stage = new SwarmStage({ client, router, replicas: { replicas: s => [...REPLICAS[s]] }, clock }, { stage: stageIndex, nStages: 3, dModel: D, seqLen: T, vocabSize: 16, maxTokens: B * T })
  return { stage, router, requests }
}

const tokens = (): TokenTensor => ({ data: new BigInt64Array(B * T), shape: [B, T] })
const activations = (): ReturnType<typeof encodeActivations> => encodeActivations(new Float32Array(B * T * D), [B, T, D], DType.F16)

function hop (peer: string, computeMs: number, waitMs: number, transferMs: number): Hop {
  return { peer, computeMs, waitMs, transferMs, queueLength: 0, staleness: 0 }
}

test('a relayed call: its transfer is its wall time less the server\'s compute and queue wait', async () => {
  const { stage, router } = setup(50, () => ({ y: activations(), computeMs: 20, waitMs: 10 }))
  await stage.forward(tokens())
  assert.equal([...router.transferEstimates()], [['a', 20]])
  assert.is(stage.stats.overheadMs, 20)
  // The next forward of the same size, nothing in flight: the way there, its compute, the way back.
  assert.is(router.expectedBusyMs('a', B * T), 10 + 20 + 10)
})

test('a TRAIN call: each hop\'s transfer as its caller reported it, and this node\'s own link what the hops leave', async () => {
  // 100 ms in all: a computed 20 and waited 5; b (computed 15, 30 on its way from a) and c (10, 2 and 8) took 65.
  const { stage, router } = setup(100, () => ({ loss: 2, computeMs: 20, waitMs: 5, hops: [hop('b', 15, 0, 30), hop('c', 10, 2, 8)] }))
  const result = await stage.train(tokens(), tokens(), ['a', 'b', 'c'])
  assert.equal(result.hops.map(h => [h.peer, h.transferMs]), [['a', 10], ['b', 30], ['c', 8]], 'the reply upstream reports every hop\'s transfer')
  assert.equal(Object.fromEntries(router.transferEstimates()), { a: 10, b: 30, c: 8 })
  // A TRAIN's timeout covers each hop's way there and back.
  const units = 4 * B * T
  assert.ok(router.expectedBusyMs('b', units) > 30)
})

test('hop times are bounded by what this node\'s clock saw; impossible ones make the reply the peer\'s fault', async () => {
  const { stage, router } = setup(100, () => ({ loss: 2, computeMs: 20, waitMs: 5, hops: [hop('b', 15, 0, 1e30), hop('c', 10, 2, 8)] }))
  const result = await stage.train(tokens(), tokens(), ['a', 'b', 'c'])
  assert.equal(result.hops.map(h => [h.peer, h.transferMs]), [['a', 0], ['b', 100], ['c', 8]])
  assert.is(router.transferEstimates().get('b'), 100)
  for (const transferMs of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
    // A stage-0 server's hop to stage 1: b says c's transfer took an impossible time.
    const liar = setup(100, () => ({ loss: 2, y: activations(), computeMs: 20, waitMs: 5, hops: [hop('c', 10, 2, transferMs)] }), 1)
    // A hop tries each replica once: the only one sent a bad reply, so none is left.
    try {
      await liar.stage.hop({ data: new Float32Array(B * T * D), shape: [B, T, D] }, tokens(), ['b', 'c'], 'train')
      assert.unreachable('a reply with an impossible hop time was accepted')
    } catch (err) {
      assert.instance(err, UnroutableError)
    }
    assert.is(liar.stage.stats.retries.misbehaved, 1, `transferMs ${transferMs}`)
    assert.ok(liar.router.isBanned('b'))
    assert.equal([...liar.router.transferEstimates()], [], 'nothing learned from it')
  }
})

test.run()
