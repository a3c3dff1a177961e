// Strangers attack a training node on every protocol at once, for a minute: garbage, huge length
// prefixes, truncated varints, a message cut off mid-way, silent streams left open, and stream
// floods, on the stage, info, manifest, DHT, averaging and state protocols, wave after wave of
// fresh identities. The node must keep training through it, keep its memory bounded, and cut
// the flooders off.
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

type Attacker = Awaited<ReturnType<typeof createClientHost>>

/** How long the attack goes on: waves of fresh attackers until then. */
const ATTACK_MS = 60_000
const SAMPLE_MS = 2000
const HEAP_CAP_MIB = 96
const MiB = 2 ** 20

function rssBytes (pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find(l => l.startsWith('VmRSS:')) ?? ''
  return Number(/(\d+)/.exec(line)?.[1] ?? 0) * 1024
}

async function completed (swarm: TestSwarm, node: NodeProcess): Promise<number> {
  return (await swarm.pipeline(node)).driver?.completed ?? 0
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? NaN
}

test('a minute of garbage, silent streams and floods on every protocol: the node trains on, memory bounded', async () => {
  const swarm = new TestSwarm()
  const attackers: Attacker[] = []
  try {
    const dir = await swarm.init('victim', ['--stages', '1', '--d-model', '32', '--layers', '1', '--heads', '2', '--seq-len', '32', '--batch-size', '4'])
    // The heap is capped (the live heap after a full GC stays at 30-40 MiB through the attack):
    // uncapped, V8 lets the heap grow up to a few times the live data as the attack's garbage
    // piles up between full GCs, +100-180 MiB of RSS in a minute, still growing at its end in
    // some runs, which hides a leak. Capped, the RSS levels off within ~20 s, and a leak in the
    // heap either shows as growth or kills the node.
    const victim = await swarm.start('victim', dir, ['--capacity', '1000', '--threads', '1', '--eval-every', '0'], { NODE_OPTIONS: `--max-old-space-size=${HEAP_CAP_MIB}` })
    const runId = (await swarm.status(victim)).runId
    const target = multiaddr(victim.address)
    const pid = victim.child.pid!
    await waitFor('training to start', 60_000, async () => (await completed(swarm, victim)) >= 3 ? true : undefined)
    const protocols = [stageProtocol(runId), infoProtocol(runId), manifestProtocol(runId), dhtProtocol(runId), averageProtocol(runId), stateProtocol(runId)]
    let refused = 0
    // A stream the node (or its guard, once an attacker is banned) refuses is what it should do.
    const dial = async (attacker: Attacker, protocol: string, maxOutboundStreams?: number): Promise<Stream | undefined> => {
      try {
        return await attacker.dialProtocol(target, protocol, { signal: AbortSignal.timeout(15_000), maxOutboundStreams })
      } catch {
        refused++
        return undefined
      }
    }
    const attack = async (attacker: Attacker, protocol: string): Promise<void> => {
      for (const bytes of frames) {
        const stream = await dial(attacker, protocol)
        if (stream === undefined) continue
        stream.send(bytes)
        await stream.close({ signal: AbortSignal.timeout(5000) }).catch(() => {})
        // Whatever comes back (an error reply, a reset, or nothing: a half-closed stream may linger).
        const drained = (async () => { try { for await (const _ of stream) { /* discard */ } } catch {} })()
        await Promise.race([drained, new Promise(resolve => setTimeout(resolve, 1000))])
        stream.abort(new Error('done'))
      }
      // Silent streams: opened and never written to; they stay open until the attacker leaves.
      for (let i = 0; i < 8; i++) await dial(attacker, protocol)
      // The floods: far more streams at once than libp2p lets a connection hold, then streams
      // opened and dropped in quick succession, far faster than the rate allows.
      const held = await Promise.all(Array.from({ length: 100 }, async () => await dial(attacker, protocol, 1000)))
      for (const stream of held) stream?.abort(new Error('flood'))
      for (let batch = 0; batch < 30; batch++) {
        await Promise.all(Array.from({ length: 20 }, async () => { (await dial(attacker, protocol, 1000))?.abort(new Error('flood')) }))
      }
    }

    // The victim's memory and training, sampled through the attack.
    const samples: Array<{ at: number, rss: number, completed: number }> = []
    const started = performance.now()
    let lost: Error | undefined
    const sample = async (): Promise<void> => {
      try {
        const done = await completed(swarm, victim)
        samples.push({ at: performance.now() - started, rss: rssBytes(pid), completed: done })
      } catch (err) {
        lost ??= err as Error
      }
    }
    await sample()
    let attacking = true
    const sampling = (async () => {
      while (attacking && lost === undefined) {
        await new Promise(resolve => setTimeout(resolve, SAMPLE_MS))
        await sample()
      }
    })()
    let waves = 0
    let previous: Attacker[] = []
    try {
      while (performance.now() - started < ATTACK_MS && lost === undefined) {
        // A fresh identity per protocol and wave: strangers cost nothing, and the flood gets each one banned.
        const wave = await Promise.all(protocols.map(async () => await createClientHost({ privateKey: await generateKeyPair('Ed25519') })))
        attackers.push(...wave)
        await Promise.all(wave.map(async (attacker, i) => { await attack(attacker, protocols[i]) }))
        // The wave before leaves now, its silent streams open until then; so new identities keep
        // coming rather than old ones filling the node's connections from this address.
        await Promise.all(previous.map(async a => { await a.stop() }))
        previous = wave
        waves++
      }
    } finally {
      attacking = false
      await sampling
    }
    assert.ok(lost === undefined, `the node stopped answering during the attack (${lost?.message}): ${victim.stderr().slice(-2000)}`)
    const { guard } = (await swarm.status(victim)).network

    // Training went on in both halves of the attack, not only after it.
    const half = ATTACK_MS / 2
    const first = samples.filter(s => s.at <= half)
    const last = samples[samples.length - 1]
    assert.ok(first[first.length - 1].completed > samples[0].completed, `no microbatch completed in the attack's first half: ${JSON.stringify(samples)}`)
    assert.ok(last.completed > first[first.length - 1].completed, `no microbatch completed in the attack's second half: ${JSON.stringify(samples)}`)
    assert.is((await swarm.pipeline(victim)).driver?.failed, 0, 'no microbatch failed')
    assert.ok(guard.strikes > 0, 'the floods cost strikes')
    assert.ok(guard.bans >= waves, `flooders were banned, at least one per wave: ${JSON.stringify(guard)}`)
    assert.ok(refused > 0, 'flood streams were refused')

    // Memory: the RSS first grows (V8's heap up to its cap, libp2p's and onnxruntime's buffers),
    // by 25-45 MiB here, and how much varies from run to run (an uncapped node grew 100-180 MiB;
    // a fixed bound of 150 failed once at 153). What a leak does and a warm-up does not is keep
    // growing: the median RSS of the attack's last quarter must be within a little of its second
    // quarter's (without a leak: -3 to +10 MiB in 12 runs). A leak of 32 KiB per info stream
    // served killed the node within the minute; one of 8 KiB (~40 MiB a minute) showed +18,
    // under this bound: leaks that slow are for unit tests and heap snapshots. The bound on the
    // peak is generous.
    const quarter = (q: number): number => median(samples.filter(s => s.at > q * ATTACK_MS / 4 && s.at <= (q + 1) * ATTACK_MS / 4).map(s => s.rss))
    const warmup = quarter(1) - samples[0].rss
    const lateGrowth = quarter(3) - quarter(1)
    const peak = Math.max(...samples.map(s => s.rss)) - samples[0].rss
    const mib = (bytes: number): string => `${bytes < 0 ? '-' : '+'}${Math.abs(bytes / MiB).toFixed(0)} MiB`
    const figures = `RSS ${(samples[0].rss / MiB).toFixed(0)} MiB before the attack, ${mib(warmup)} by its 2nd quarter, ${mib(lateGrowth)} from then to its 4th (medians), peak ${mib(peak)}; ${waves} waves, ${samples.length} samples`
    console.log(figures)
    assert.ok(lateGrowth < 24 * MiB, `memory kept growing: ${figures}`)
    assert.ok(peak < 160 * MiB, `memory grew too far: ${figures}`)

    // And after the attack.
    await Promise.all(previous.map(async a => { await a.stop() }))
    const doneAfter = await waitFor('training to go on', 30_000, async () => { const n = await completed(swarm, victim); return n >= last.completed + 5 ? n : undefined })
    assert.ok(doneAfter >= last.completed + 5)
    assert.ok(victim.child.exitCode === null, 'the node is alive')
  } finally {
    await Promise.all(attackers.map(async a => { await a.stop() }))
    await swarm.close()
  }
})

test.run()
