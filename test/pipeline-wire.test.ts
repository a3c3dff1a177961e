// Stage messages over real libp2p connections (TCP + noise + yamux, with and without pnet): every
// received message and decoded tensor is kept as delivered and compared, after all the traffic,
// with what was sent. Client and server read messages without copying them and decode in place
// (protons `bytes` fields are views of the input), so a layer that wrote into a buffer after
// handing out a view of it would show here, as would decoding that reads the wrong bytes of a
// shared chunk (it did: activations.ts took Buffer#slice for a copy).
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { DType, StageRequest, type StageResponse } from '../protocols/stage-codec.js'
import { encodeActivations } from '../node/pipeline/activations.js'
import { StageClient } from '../node/pipeline/client.js'
import { StageServer } from '../node/pipeline/server.js'
import type { StageCompute } from '../node/pipeline/service.js'
import { newSwarmKey } from '../node/p2p/keys.js'
import { privateNetwork } from '../node/p2p/pnet.js'
import type { FloatTensor, Tensor } from '../node/runtime/tensor.js'
import type { StepResult, WeightsVersion } from '../node/runtime/stage-engine.js'

const D = 64
const SEQ = 512
const CALLS = 96
const IN_FLIGHT = 8

async function host (swarmKey?: Uint8Array): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(swarmKey === undefined ? {} : { connectionProtector: privateNetwork({ swarmKey }) }),
    connectionManager: { dialTimeout: 5000 }
  })
}

/** Deterministic values for call `i` (a different length per call, so frames straddle chunks at varying offsets). */
function values (i: number, salt: number): Float32Array {
  const tokens = 1 + ((i * 37 + salt) % SEQ)
  const out = new Float32Array(tokens * D)
  let s = (i + 1) * 2654435761 + salt
  for (let k = 0; k < out.length; k++) {
    s = (s * 1103515245 + 12345) >>> 0
    out[k] = (s >>> 8) / (1 << 24) - 0.5
  }
  out[0] = i // names the call, for the engine's reply
  return out
}

/** Stage 1 of 3: forward returns `values(x[0], 1)`; every x it is handed is kept as is. */
class KeepingEngine implements StageCompute {
  readonly received: Array<{ i: number, x: Float32Array }> = []
  accumulatedTokens = 0
  weightsVersion: WeightsVersion = { epoch: 1, version: 0 }
  async forwardAt (x: Tensor): Promise<{ y: FloatTensor, version: WeightsVersion }> {
    const data = x.data as Float32Array
    this.received.push({ i: data[0], x: data })
    const y = values(data[0], 1)
    return { y: { data: y, shape: [1, y.length / D, D] }, version: this.weightsVersion }
  }

  async backwardAt (): Promise<{ version: WeightsVersion }> { throw new Error('not used') }
  async loss (): Promise<number> { throw new Error('not used') }
  async lossBackward (): Promise<{ loss: number }> { throw new Error('not used') }
  async step (): Promise<StepResult> { throw new Error('not used') }
  async hold (): Promise<() => void> { return () => {} }
}

/** Sends CALLS float32 forwards from a to b, IN_FLIGHT at a time, keeping the raw replies. */
async function exchange (swarmKey?: Uint8Array): Promise<{ engine: KeepingEngine, requests: Uint8Array[], replies: StageResponse[] }> {
  const [a, b] = await Promise.all([host(swarmKey), host(swarmKey)])
  const engine = new KeepingEngine()
  const server = new StageServer({ registrar: b, engine }, { runId: 'wire', stage: 1, nStages: 3, dModel: D, seqLen: SEQ, vocabSize: 256, maxTokens: SEQ, stepTokens: 1e9, maxQueue: 2 * IN_FLIGHT })
  // The raw request bytes as the server received them, before any decoding.
  const requests: Uint8Array[] = []
  const handle = server.service.handle.bind(server.service)
  server.service.handle = async (bytes: Uint8Array) => { requests.push(bytes); return await handle(bytes) }
  await server.start()
  await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
  const client = new StageClient({ dialer: a }, { protocol: server.protocol, maxMessageBytes: server.maxMessageBytes })
  const replies: StageResponse[] = []
  try {
    let next = 0
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < CALLS) {
        const i = next++
        const x = values(i, 0)
        replies.push(await client.call(b.peerId.toString(), { stage: 1, kind: StageRequest.Kind.FORWARD, x: encodeActivations(x, [1, x.length / D, D], DType.F32), replyDtype: DType.F32, route: [] }, 30_000))
      }
    }))
  } finally {
    await client.stop()
    await server.stop()
    await Promise.all([a.stop(), b.stop()])
  }
  return { engine, requests, replies }
}

/** A copy as float32 (`new Uint8Array(bytes)`: received bytes may be a Buffer, whose slice() is a view). */
function f32 (bytes: Uint8Array): Float32Array {
  return new Float32Array(new Uint8Array(bytes).buffer)
}

/** Whether `got` holds exactly the values call `i` sent (salt 0) or got back (salt 1). */
function same (got: Float32Array, i: number, salt: number): boolean {
  const want = values(i, salt)
  return got.length === want.length && got.every((v, k) => v === want[k])
}

function assertIntact (result: Awaited<ReturnType<typeof exchange>>): void {
  const { engine, requests, replies } = result
  assert.is(requests.length, CALLS)
  assert.is(engine.received.length, CALLS)
  assert.is(replies.length, CALLS)
  let changed = 0
  for (const bytes of requests) {
    const request = StageRequest.decode(bytes)
    const x = f32(request.x!.data)
    if (!same(x, x[0], 0)) changed++
  }
  for (const { i, x } of engine.received) if (!same(x, i, 0)) changed++
  for (const reply of replies) {
    const y = f32(reply.y!.data)
    if (!same(y, y[0], 1)) changed++
  }
  assert.is(changed, 0, `${changed} received messages changed after delivery`)
}

test('stage messages stay as delivered after later traffic (TCP + noise + yamux)', async () => {
  assertIntact(await exchange())
})

test('stage messages stay as delivered after later traffic (with pnet)', async () => {
  assertIntact(await exchange(newSwarmKey()))
})

test.run()
