// swarmtrain status: the swarm as the local daemon sees it, from its 127.0.0.1 status server.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { defaultNodeDir } from '../../daemon/dir.js'
import { DAEMON_FILE, type NodeStatus } from '../../daemon/node.js'
import { DaemonUnreachableError, fetchStatus } from '../../daemon/process.js'
import { intOption, parse } from '../args.js'

export const summary = "show the swarm as the local daemon sees it: peers, throughput, stage, round"

export const usage = `usage: swarmtrain status [--json] [--dir D] [--control-port P]

  --json            print the daemon's status JSON
  --dir D           node directory of the daemon (its ${DAEMON_FILE} names the port)
  --control-port P  ask the daemon on 127.0.0.1:P instead`

async function controlPort (dir: string, given?: string): Promise<number> {
  if (given !== undefined) return intOption('control-port', given, 0, 1, 65535)
  const path = join(dir, DAEMON_FILE)
  try {
    const port = (JSON.parse(await readFile(path, 'utf8')) as { controlPort?: unknown }).controlPort
    if (typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536) return port
  } catch {}
  throw new DaemonUnreachableError(`no running daemon found (no valid ${path}); start one or pass --control-port`)
}

function table (s: NodeStatus): string {
  const short = (id: string): string => `${id.slice(0, 8)}…${id.slice(-6)}`
  const lines = [
    `peer ${s.peerId}  run ${s.runId}  version ${s.version}`,
    `stage ${s.stage ?? '-'}${s.pinned ? ' (pinned)' : ''}  round ${s.round}  throughput ${s.throughput.toFixed(1)} tokens/s  connections ${s.connections}`,
    network(s.network),
    '',
    'stage  peers  tokens/s  members'
  ]
  for (const stage of s.stages) {
    const members = stage.peers.map(p => `${short(p.peerId)}${p.peerId === s.peerId ? '*' : ''} (${p.throughput.toFixed(0)}/s, serving ${p.servedThroughput.toFixed(0)}/s, q${p.queueLength}, r${p.round}, v${p.version})`).join(', ')
    lines.push(`${String(stage.stage).padStart(5)}  ${String(stage.peers.length).padStart(5)}  ${stage.throughput.toFixed(1).padStart(8)}  ${members || '(no server)'}`)
  }
  for (const m of s.moves) lines.push(`moved ${new Date(m.at).toISOString()}: stage ${m.from} -> ${m.to} (weakest ${m.before.toFixed(1)} -> ${m.after.toFixed(1)} tokens/s)`)
  return lines.join('\n')
}

/** One line: reachability, relays, direct vs relayed connections, and the guard's refusals. */
function network (n: NodeStatus['network']): string {
  const relay = n.relays.length > 0 ? `  reachable via ${n.relays.length} relay(s)` : ''
  const relaying = n.relayReservations === undefined ? '' : `  relaying for ${n.relayReservations}`
  const guard = n.guard.strikes > 0 || n.guard.refusedConnections > 0 ? `  refused ${n.guard.refusedConnections} conns, ${n.guard.refusedStreams} streams, banned ${n.guard.banned.length}` : ''
  return `network ${n.reachability}${relay}${relaying}  connections ${n.direct} direct, ${n.relayed} relayed${n.relayedOnly.length > 0 ? ` (${n.relayedOnly.length} peers relay-only)` : ''}${guard}`
}

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, { json: { type: 'boolean' }, dir: { type: 'string' }, 'control-port': { type: 'string' } })
  const status = await fetchStatus(await controlPort(values.dir ?? defaultNodeDir(), values['control-port']))
  console.log(values.json === true ? JSON.stringify(status, null, 2) : table(status))
  return 0
}
