// npm run bench -- nat [--json] [--no-shaping]: volunteers behind NAT, in emulated networks.
// As root, with nftables, it builds (and always removes again) five network namespaces:
//
//   home1 10.1.0.2 ── gw1 (masquerade) 11.0.1.2 ──┐
//                                                  ├── pub 11.0.1.1 / 11.0.2.1: relays A and B
//   home2 10.2.0.2 ── gw2 (masquerade) 11.0.2.2 ──┘
//
// Nothing leaves these namespaces (they have no route to the host), so the "internet" uses
// 11.0.x.x: libp2p treats every reserved range (RFC 1918, TEST-NETs, 198.18/15) as private,
// and the relays must look public. Each home uplink is shaped to 20 Mbit/s (tc tbf).
// Relays A and B (public, stage 1, serving only) relay and bootstrap; volunteers V1 and V2
// (home1, home2; stage 0, driving) join through them, reserve relay slots and train. Midway,
// relay A is killed; training must go on through B. One JSON line sums it up.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from '../node/cli/args.js'
import type { NodeStatus } from '../node/daemon/node.js'
import { cliPath, spawnDaemon, stopDaemon, type DaemonProcess } from '../node/daemon/process.js'
import type { PipelineStatus } from '../node/pipeline/swarm.js'
import { namespaceSupport, removeNamespace, sh, statusIn, withTeardown } from './netns/shell.js'

/** A small model, so that four daemons train visibly within a couple of minutes on 2 cores. */
const MODEL = ['--stages', '2', '--d-model', '64', '--layers', '2', '--heads', '4', '--seq-len', '64', '--batch-size', '8']
/** Daemon timers: records expire within seconds of a node's death; dials get time on a loaded machine. */
const TIMERS = { SWARMTRAIN_RECORD_TTL_MS: '10000', SWARMTRAIN_REFRESH_MS: '2000', SWARMTRAIN_DIAL_TIMEOUT_MS: '15000' }
/** The whole run stops by itself after this long. */
const BUDGET_MS = 8 * 60_000

interface Node {
  name: string
  ns: string
  dir: string
  daemon: DaemonProcess
}

/** Why this machine cannot run the bench, or undefined when it can. */
async function missing (): Promise<string | undefined> {
  return await namespaceSupport([['ip', '-V'], ['nft', '--version'], ['tc', '-V']], { nft: 'apt-get install nftables' })
}

/** The five namespaces, named after this process so that parallel runs never meet. */
class Networks {
  readonly names: Record<'pub' | 'gw1' | 'gw2' | 'home1' | 'home2', string>
  private readonly created: string[] = []

  constructor () {
    const tag = `st${process.pid}`
    this.names = { pub: `${tag}-pub`, gw1: `${tag}-gw1`, gw2: `${tag}-gw2`, home1: `${tag}-home1`, home2: `${tag}-home2` }
  }

  private async ns (name: string, ...command: string[]): Promise<void> {
    await sh('ip', 'netns', 'exec', name, ...command)
  }

  /** Builds the networks; `dir` holds the gateways' nft rule files. */
  async create (dir: string, shaping: boolean): Promise<void> {
    const n = this.names
    for (const name of Object.values(n)) {
      await sh('ip', 'netns', 'add', name)
      this.created.push(name)
      await this.ns(name, 'ip', 'link', 'set', 'lo', 'up')
    }
    for (const i of [1, 2] as const) {
      const gw = n[`gw${i}`]
      const home = n[`home${i}`]
      // pub <-> gw: the gateway's public side; gw <-> home: the home LAN.
      await sh('ip', 'link', 'add', `stp${i}`, 'netns', n.pub, 'type', 'veth', 'peer', 'name', `stu${i}`, 'netns', gw)
      await sh('ip', 'link', 'add', `stl${i}`, 'netns', gw, 'type', 'veth', 'peer', 'name', `sth${i}`, 'netns', home)
      await this.ns(n.pub, 'ip', 'addr', 'add', `11.0.${i}.1/24`, 'dev', `stp${i}`)
      await this.ns(gw, 'ip', 'addr', 'add', `11.0.${i}.2/24`, 'dev', `stu${i}`)
      await this.ns(gw, 'ip', 'addr', 'add', `10.${i}.0.1/24`, 'dev', `stl${i}`)
      await this.ns(home, 'ip', 'addr', 'add', `10.${i}.0.2/24`, 'dev', `sth${i}`)
      await this.ns(n.pub, 'ip', 'link', 'set', `stp${i}`, 'up')
      for (const dev of [`stu${i}`, `stl${i}`]) await this.ns(gw, 'ip', 'link', 'set', dev, 'up')
      await this.ns(home, 'ip', 'link', 'set', `sth${i}`, 'up')
      await this.ns(gw, 'ip', 'route', 'add', 'default', 'via', `11.0.${i}.1`)
      await this.ns(home, 'ip', 'route', 'add', 'default', 'via', `10.${i}.0.1`)
      await this.ns(gw, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
      // The home router: masquerade outgoing traffic, let in only what answers it, and drop
      // unsolicited packets addressed to the router itself (as home routers do). Accepting
      // them would let a peer's first hole-punching probe leave a conntrack entry on the very
      // port the punch needs, and no punch would get through.
      const rules = join(dir, `gw${i}.nft`)
      writeFileSync(rules, [
        'table ip nat {',
        '  chain postrouting {',
        '    type nat hook postrouting priority srcnat; policy accept;',
        `    oifname "stu${i}" masquerade`,
        '  }',
        '}',
        'table ip filter {',
        '  chain forward {',
        '    type filter hook forward priority filter; policy drop;',
        '    ct state established,related accept',
        `    iifname "stl${i}" accept`,
        '  }',
        '  chain input {',
        '    type filter hook input priority filter; policy accept;',
        `    iifname "stu${i}" ct state new drop`,
        '  }',
        '}'
      ].join('\n') + '\n')
      await this.ns(gw, 'nft', '-f', rules)
      if (shaping) await this.ns(gw, 'tc', 'qdisc', 'add', 'dev', `stu${i}`, 'root', 'tbf', 'rate', '20mbit', 'burst', '32kbit', 'latency', '400ms')
    }
    await this.ns(n.pub, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
  }

  /** Kills whatever still runs inside (only our daemons can), then deletes the namespaces. */
  async remove (): Promise<void> {
    for (const name of this.created.reverse()) {
      await removeNamespace(name).catch(err => { console.error(`nat: could not delete namespace ${name}: ${(err as Error).message}`) })
    }
    this.created.length = 0
  }
}

/** `swarmtrain status --json` run inside the node's namespace (its status server is on that namespace's 127.0.0.1). */
async function status (node: Node): Promise<NodeStatus> {
  return await statusIn(node.ns, node.daemon.controlPort)
}

/** Each node's status; a node that does not answer (a loaded machine is slow to start a process) is asked up to three times. */
async function statuses (nodes: Node[]): Promise<Map<Node, NodeStatus>> {
  const out = new Map<Node, NodeStatus>()
  for (let attempt = 0; attempt < 3 && out.size < nodes.length; attempt++) {
    await Promise.all(nodes.filter(node => !out.has(node)).map(async node => {
      try {
        out.set(node, await status(node))
      } catch (err) {
        console.error(`nat: no status from ${node.name}: ${(err as Error).message.split('\n')[0]}`)
      }
    }))
  }
  return out
}

function driver (s: NodeStatus | undefined): PipelineStatus['driver'] {
  return (s?.services.pipeline as PipelineStatus | undefined)?.driver
}

async function waitUntil (what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true
    await new Promise(resolve => setTimeout(resolve, 2000))
  }
  console.error(`nat: gave up waiting ${Math.round(timeoutMs / 1000)} s for ${what}`)
  return false
}

function networkLine (name: string, s: NodeStatus): string {
  const n = s.network
  return `${name.padEnd(3)} ${n.reachability.padEnd(8)} direct ${String(n.direct).padStart(2)} (WebRTC ${n.webrtc.length})  relayed ${String(n.relayed).padStart(2)}  relay-only peers ${n.relayedOnly.length}  relays holding a slot ${n.relays.length}${n.relayReservations === undefined ? '' : `  granted ${n.relayReservations}`}`
}

export async function run (args: string[]): Promise<void> {
  const { values } = parse(args, { json: { type: 'boolean' }, 'no-shaping': { type: 'boolean' } })
  const json = values.json === true
  const reason = await missing()
  if (reason !== undefined) {
    console.log(json ? JSON.stringify({ bench: 'nat', skipped: reason }) : `nat: skipped: ${reason}`)
    return
  }
  const say = (line: string): void => { if (!json) console.log(line) }
  const nets = new Networks()
  const root = mkdtempSync(join(tmpdir(), 'swarmtrain-nat-'))
  const nodes: Node[] = []
  const teardown = async (): Promise<void> => {
    await Promise.all(nodes.map(async n => { await stopDaemon(n.daemon.child, 3000) }))
    await nets.remove()
    rmSync(root, { recursive: true, force: true })
  }
  // Ctrl-C, a kill or the time budget still tear everything down.
  await withTeardown('nat', BUDGET_MS, teardown, async () => {
    await nets.create(root, values['no-shaping'] !== true)
    const seed = join(root, 'seed')
    await sh(process.execPath, '--no-warnings', cliPath, 'init', '--dir', seed, ...MODEL)
    const start = async (name: string, ns: string, port: number, extra: string[]): Promise<Node> => {
      const dir = join(root, name)
      await sh('cp', '-r', seed, dir)
      await sh('rm', '-f', join(dir, 'identity.key'))
      const daemon = await spawnDaemon({
        prefix: ['ip', 'netns', 'exec', ns],
        args: ['start', '--dir', dir, '--listen', `/ip4/0.0.0.0/tcp/${port}`, '--capacity', '1000', '--threads', '1', ...extra],
        env: TIMERS,
        timeoutMs: 180_000
      })
      const node = { name, ns, dir, daemon }
      nodes.push(node)
      return node
    }
    const n = nets.names
    const a = await start('A', n.pub, 4001, ['--stage', '1', '--no-drive'])
    const addrA = `/ip4/11.0.1.1/tcp/4001/p2p/${a.daemon.peerId}`
    const b = await start('B', n.pub, 4002, ['--stage', '1', '--no-drive', '--bootstrap', addrA])
    const addrB = `/ip4/11.0.2.1/tcp/4002/p2p/${b.daemon.peerId}`
    // AutoNAT v2: each relay dials the other's addresses back.
    const relaysPublic = await waitUntil('AutoNAT to confirm the relays', 90_000, async () => [...(await statuses([a, b])).values()].filter(s => s.network.reachability === 'public').length === 2)
    say(`relays A ${a.daemon.peerId.slice(-8)} and B ${b.daemon.peerId.slice(-8)} up in ${n.pub}; AutoNAT: ${relaysPublic ? 'both public' : 'not confirmed'}`)
    const volunteer = ['--stage', '0', '--bootstrap', addrA, '--bootstrap', addrB, '--eval-every', '10']
    const volunteers = await Promise.all([start('V1', n.home1, 4001, volunteer), start('V2', n.home2, 4001, volunteer)])
    say('volunteers V1 (home1 behind gw1) and V2 (home2 behind gw2) started')

    // Phase 1: both volunteers train, hold relay slots, and validate at least twice.
    await waitUntil('both volunteers to train and validate twice', 180_000, async () => {
      const s = await statuses(volunteers)
      return volunteers.every(v => (driver(s.get(v))?.validations.length ?? 0) >= 2 && (s.get(v)?.network.relays.length ?? 0) > 0)
    })
    const before = await statuses(nodes)
    for (const node of nodes) { const s = before.get(node); if (s !== undefined) say(networkLine(node.name, s)) }
    const seenByB = new Set(before.get(b)?.stages.flatMap(st => st.peers.map(p => p.peerId)) ?? [])
    const joined = volunteers.filter(v => { const s = before.get(v); return s?.stage !== undefined && seenByB.has(v.daemon.peerId) && (driver(s)?.completed ?? 0) > 0 }).length
    const direct = volunteers.reduce((sum, v) => sum + (before.get(v)?.network.direct ?? 0), 0)
    const relayed = volunteers.reduce((sum, v) => sum + (before.get(v)?.network.relayed ?? 0), 0)
    // The two volunteers meet through a relay; WebRTC should have punched through both NATs.
    const [v1, v2] = volunteers
    const volunteersDirect = (before.get(v1)?.network.webrtc ?? []).includes(v2.daemon.peerId) || (before.get(v2)?.network.webrtc ?? []).includes(v1.daemon.peerId)

    // Phase 2: kill relay A (a stage-1 replica and one of each volunteer's relays); B must carry on.
    const completedAtKill = volunteers.map(v => driver(before.get(v))?.completed ?? 0)
    await stopDaemon(a.daemon.child, 0)
    nodes.splice(nodes.indexOf(a), 1)
    say('killed relay A')
    const survived = await waitUntil('training to go on without relay A', 120_000, async () => {
      const s = await statuses(volunteers)
      return volunteers.every((v, i) => (driver(s.get(v))?.completed ?? 0) >= completedAtKill[i] + 20 && (driver(s.get(v))?.validations.length ?? 0) >= 3)
    })
    const after = await statuses(volunteers)
    for (const v of volunteers) { const s = after.get(v); if (s !== undefined) say(networkLine(v.name, s)) }
    const validations = volunteers.map(v => driver(after.get(v) ?? before.get(v))?.validations ?? [])
    const mean = (xs: number[]): number => xs.reduce((x, y) => x + y, 0) / Math.max(1, xs.length)
    const result = {
      bench: 'nat',
      volunteers: volunteers.length,
      joined,
      direct_connections: direct,
      relayed_connections: relayed,
      volunteers_direct: volunteersDirect,
      val_loss_first: mean(validations.map(v => v[0]).filter(x => x !== undefined)),
      val_loss_last: mean(validations.map(v => v[v.length - 1]).filter(x => x !== undefined)),
      survived_relay_kill: survived
    }
    if (json) console.log(JSON.stringify(result))
    else {
      for (const [i, v] of volunteers.entries()) say(`${v.name} validation losses: ${validations[i].map(x => x.toFixed(3)).join(' ')}`)
      say(`joined ${joined}/2, volunteers' connections: ${direct} direct, ${relayed} relayed; volunteers connected directly: ${volunteersDirect}; validation loss ${result.val_loss_first.toFixed(3)} -> ${result.val_loss_last.toFixed(3)}; survived relay kill: ${survived}`)
      say(JSON.stringify(result))
    }
  })
}
