// A stranger attacks a training node on every protocol at once: garbage, huge length prefixes,
// truncated varints, a message cut off mid-way, silent streams left open, and stream floods, on
// the stage, info, manifest and DHT protocols. The node must keep training, keep its memory
// bounded, and cut the flooders off.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync } from 'node:fs'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { averageProtocol, dhtProtocol, infoProtocol, manifestProtocol, stageProtocol, stateProtocol } from '../protocols/ids.js'
import { createClientHost } from '../node/p2p/host.js'
import { TestSwarm, waitFor, type NodeProcess } from './daemon-harness.js'

function varint (n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 128) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return out
}

const frames: Uint8Array[] = [
  new Uint8Array(Array(64).fill(0xff)), // garbage: an endless varint
  new Uint8Array([...varint(2 ** 40), 1, 2, 3]), // a huge length prefix
  new Uint8Array([0xff, 0xff]), // a truncated varint
  new Uint8Array([...varint(1 << 20), ...new Uint8Array(64 << 10)]), // a megabyte announced, 64 KiB sent
  new Uint8Array([...varint(3), 0x0a, 0xff, 0xff]) // an undecodable message
]

function rssBytes (pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find(l => l.startsWith('VmRSS:')) ?? ''
  return Number(/(\d+)/.exec(line)?.[1] ?? 0) * 1024
}

async function completed (swarm: TestSwarm, node: NodeProcess): Promise<number> {
  return (await swarm.pipeline(node)).driver?.completed ?? 0
}

test('garbage, silent streams and floods on every protocol: the node trains on, memory bounded', async () => {
  const swarm = new TestSwarm()
  const attackers: Array<Awaited<ReturnType<typeof createClientHost>>> = []
  try {
    const dir = await swarm.init('victim', ['--stages', '1', '--d-model', '32', '--layers', '1', '--heads', '2', '--seq-len', '32', '--batch-size', '4'])
    const victim = await swarm.start('victim', dir, ['--capacity', '1000', '--threads', '1', '--eval-every', '0'])
    const runId = (await swarm.status(victim)).runId
    const target = multiaddr(victim.address)
    await waitFor('training to start', 60_000, async () => (await completed(swarm, victim)) >= 3 ? true : undefined)
    const rssBefore = rssBytes(victim.child.pid!)
    const doneBefore = await completed(swarm, victim)
    const protocols = [stageProtocol(runId), infoProtocol(runId), manifestProtocol(runId), dhtProtocol(runId), averageProtocol(runId), stateProtocol(runId)]
    const silent: Stream[] = []
    let refused = 0
    await Promise.all(protocols.map(async protocol => {
      // A fresh identity per protocol: strangers cost nothing, and the flood gets each one banned.
      const attacker = await createClientHost({ privateKey: await generateKeyPair('Ed25519') })
      attackers.push(attacker)
      for (const bytes of frames) {
        const stream = await attacker.dialProtocol(target, protocol, { signal: AbortSignal.timeout(15_000) })
        stream.send(bytes)
        await stream.close({ signal: AbortSignal.timeout(5000) }).catch(() => {})
        // Whatever comes back (an error reply, a reset, or nothing: a half-closed stream may linger).
        const drained = (async () => { try { for await (const _ of stream) { /* discard */ } } catch {} })()
        await Promise.race([drained, new Promise(resolve => setTimeout(resolve, 1000))])
        stream.abort(new Error('done'))
      }
      for (let i = 0; i < 8; i++) silent.push(await attacker.dialProtocol(target, protocol, { signal: AbortSignal.timeout(15_000) }))
      // The floods: far more streams at once than libp2p lets a connection hold, then streams
      // opened and dropped in quick succession, far faster than the rate allows.
      const open = (): { signal: AbortSignal, maxOutboundStreams: number } => ({ signal: AbortSignal.timeout(15_000), maxOutboundStreams: 1000 })
      const held = await Promise.allSettled(Array.from({ length: 100 }, async () => await attacker.dialProtocol(target, protocol, open())))
      refused += held.filter(r => r.status === 'rejected').length
      for (const r of held) if (r.status === 'fulfilled') r.value.abort(new Error('flood'))
      for (let batch = 0; batch < 30; batch++) {
        const churn = await Promise.allSettled(Array.from({ length: 20 }, async () => { (await attacker.dialProtocol(target, protocol, open())).abort(new Error('flood')) }))
        refused += churn.filter(r => r.status === 'rejected').length
      }
    }))
    const status = await swarm.status(victim)
    assert.ok(status.network.guard.strikes > 0, 'the floods cost strikes')
    assert.ok(status.network.guard.banned.length > 0, `flooders were banned: ${JSON.stringify(status.network.guard)}`)
    assert.ok(refused > 0, 'flood streams were refused')
    // Training goes on, during and after the attack.
    const doneAfter = await waitFor('training to go on', 60_000, async () => { const n = await completed(swarm, victim); return n >= doneBefore + 5 ? n : undefined })
    assert.ok(doneAfter >= doneBefore + 5)
    assert.is((await swarm.pipeline(victim)).driver?.failed, 0, 'no microbatch failed')
    const grown = rssBytes(victim.child.pid!) - rssBefore
    assert.ok(grown < 150 << 20, `memory grew by ${Math.round(grown / 2 ** 20)} MiB`)
    assert.ok(victim.child.exitCode === null, 'the node is alive')
    for (const stream of silent) stream.abort(new Error('done'))
  } finally {
    await Promise.all(attackers.map(async a => { await a.stop() }))
    await swarm.close()
  }
})

test.run()
