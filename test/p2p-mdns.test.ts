// LAN discovery: two machines on one link (two network namespaces joined by a veth pair, made
// and removed here; no traffic leaves them) find each other's node of the run by mDNS, with no
// --bootstrap; a node with another swarm key on the same link is not let in.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { cliPath, stopDaemon } from '../node/daemon/process.js'
import { TestSwarm, fastTimers, waitFor } from './daemon-harness.js'

const tag = String(process.pid % 100000)
const namespaces = [`st-mdns-a-${tag}`, `st-mdns-b-${tag}`]
const addresses = ['10.231.0.1', '10.231.0.2']

function ip (...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Two namespaces ("machines") on one veth link, with a multicast route (mDNS needs one). */
function makeLink (): void {
  const [a, b] = namespaces
  for (const ns of namespaces) ip('netns', 'add', ns)
  ip('link', 'add', `sta${tag}`, 'type', 'veth', 'peer', 'name', `stb${tag}`)
  ip('link', 'set', `sta${tag}`, 'netns', a)
  ip('link', 'set', `stb${tag}`, 'netns', b)
  for (const [i, ns] of namespaces.entries()) {
    const dev = i === 0 ? `sta${tag}` : `stb${tag}`
    ip('-n', ns, 'addr', 'add', `${addresses[i]}/24`, 'dev', dev)
    ip('-n', ns, 'link', 'set', dev, 'up')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', dev)
  }
}

function removeLink (): void {
  for (const ns of namespaces) {
    try { ip('netns', 'del', ns) } catch {}
  }
}

interface LanNode { child: ChildProcess, lines: string[] }

/** `swarmtrain start` inside a namespace, on its link address, without --bootstrap. */
function startIn (ns: string, address: string, dir: string): LanNode {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--no-warnings', cliPath, 'start', '--dir', dir,
    '--listen', `/ip4/${address}/tcp/0`, '--no-pipeline', '--capacity', '100'], { env: { ...process.env, ...fastTimers }, stdio: ['ignore', 'pipe', 'pipe'] })
  const node: LanNode = { child, lines: [] }
  let buffered = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk
    const lines = buffered.split('\n')
    buffered = lines.pop() ?? ''
    node.lines.push(...lines)
  })
  child.stderr?.on('data', (chunk: Buffer) => { node.lines.push(`stderr: ${chunk}`) })
  return node
}

test('nodes of a run on one LAN find each other by mDNS; another swarm key stays out', async () => {
  assert.is(process.getuid?.(), 0, 'this test makes network namespaces: it needs root and iproute2')
  const swarm = new TestSwarm()
  const nodes: LanNode[] = []
  try {
    makeLink()
    const dirA = await swarm.init('a', ['--stages', '2', '--private'])
    const dirB = swarm.clone(dirA, 'b')
    const dirC = swarm.clone(dirA, 'c')
    copyFileSync(join(await swarm.init('other', ['--private']), 'swarm.key'), join(dirC, 'swarm.key'))
    const complete = (n: LanNode): boolean => n.lines.some(l => l.startsWith('every stage has a server'))

    // C (another key) and A share the link first; then B (A's key) arrives next to C.
    const a = startIn(namespaces[0], addresses[0], dirA)
    const c = startIn(namespaces[1], addresses[1], dirC)
    nodes.push(a, c)
    await waitFor('A and C to start', 30_000, async () => a.lines.includes('ready') && c.lines.includes('ready') ? true : undefined, () => [...a.lines, ...c.lines].join('\n'))
    const b = startIn(namespaces[1], addresses[1], dirB)
    nodes.push(b)
    await waitFor('A and B to find each other', 60_000, async () => complete(a) && complete(b) ? true : undefined,
      () => `\nA:\n${a.lines.join('\n')}\nB:\n${b.lines.join('\n')}`)
    assert.ok(!complete(c), `C, with another swarm key, got in:\n${c.lines.join('\n')}`)
    assert.ok(c.lines.some(l => l.startsWith('waiting for a server of stage')), c.lines.join('\n'))
  } finally {
    await Promise.all(nodes.map(async n => { await stopDaemon(n.child, 5000) }))
    removeLink()
    await swarm.close()
  }
})

test.run()
