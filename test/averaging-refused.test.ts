// A member that refuses our contribution is not waited for. Two replicas starting together: the
// first finishes round 1 before the second is in its view, then refuses the second's push for
// that round ("not open here"); the second used to wait a third of the round timeout for a
// contribution that could not come, while the first waited for it as a laggard.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { averageProtocol, infoProtocol } from '../protocols/ids.js'
import { AverageRequest, AverageResponse } from '../protocols/averaging.js'
import { InfoRequest } from '../protocols/registry.js'
import { averagingService, type AveragingService } from '../node/averaging/service.js'
import { SwarmNode } from '../node/daemon/node.js'
import { defaultManifest } from '../node/manifest/manifest.js'
import { createHost } from '../node/p2p/host.js'
import { MessageStream } from '../node/p2p/messages.js'
import { signInfoRecord } from '../node/registry/record.js'
import { registryDhtConfig } from '../node/registry/registry.js'
import { version } from '../node/version.js'

const rawBytes = { encode: (b: Uint8Array) => b }

test('a member that refuses our contribution (it finished the round without us) is not waited for', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-refused-'))
  const manifest = { ...defaultManifest(), model: { vocabSize: 64, dModel: 16, nLayers: 1, nHeads: 2, seqLen: 8 }, nStages: 1 }
  const third = manifest.averaging.roundTimeoutMs / 3
  const node = new SwarmNode({
    dir,
    manifest,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    stage: 0,
    throughput: 100,
    timing: { refreshMs: 500, recordTtlMs: 5000 },
    stageHost: { threads: 1, checkpointEveryMs: 3_600_000 },
    services: { averaging: averagingService() }
  })
  await node.start()
  const key = await generateKeyPair('Ed25519')
  const other = await createHost({ privateKey: key, runId: node.runId, listen: ['/ip4/127.0.0.1/tcp/0'], ...registryDhtConfig(node.runId, 1) })
  try {
    // The other replica: ready at round 0 in its record (the registry lags), past round 1 by its answers.
    const now = Date.now()
    const record = await signInfoRecord({ peerId: other.peerId.toString(), stage: 0, throughput: 100, servedThroughput: 0, queueLength: 0, freeMemory: 0, round: 0, ready: true, tokensSinceSync: 0, stateHash: '', drivenTokens: 0, version, issuedAt: now, expiresAt: now + 60_000 }, node.runId, key, other.peerId)
    await other.handle(infoProtocol(node.runId), async (stream: Stream) => {
      const messages = new MessageStream(stream, 1 << 16)
      await messages.read(InfoRequest)
      await messages.write(rawBytes, record)
      await stream.close()
    })
    await other.handle(averageProtocol(node.runId), async (stream: Stream) => {
      const messages = new MessageStream(stream, 1 << 20)
      await messages.read(AverageRequest)
      await messages.write(AverageResponse, { ok: false, error: 'round 1 is not open here (at round 1)' })
      await stream.close()
    })
    await other.dial(node.components.host.getMultiaddrs()[0])
    // The registry asks the peers it is connected to; the node counts the connection a moment after the dial.
    while (node.components.host.getConnections(other.peerId).length === 0) await new Promise(resolve => setTimeout(resolve, 20))
    const view = await node.components.registry.refresh()
    assert.ok(view.stages[0].peers.some(p => p.peerId === other.peerId.toString()), 'the other replica is not in the view')
    const report = await node.service<AveragingService>('averaging')!.roundNow()
    assert.ok(report !== undefined, 'no round')
    assert.is(report.members, 1)
    assert.is(report.missing, 1)
    assert.ok(report.ms < third / 2, `the round waited ${report.ms} ms for a member that refused it`)
  } finally {
    await other.stop()
    await node.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
