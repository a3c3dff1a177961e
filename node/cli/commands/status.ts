// swarmtrain status: the swarm as the local daemon sees it, from its 127.0.0.1 status server.
import { defaultNodeDir } from '../../daemon/dir.js'
import type { AveragingStatus } from '../../averaging/service.js'
import { DAEMON_FILE } from '../../daemon/daemon-file.js'
import type { NodeStatus } from '../../daemon/node.js'
import { fetchStatus } from '../../daemon/process.js'
import { summarize } from '../../daemon/swarm-summary.js'
import { parse } from '../args.js'
import { daemonControlPort } from '../daemon-port.js'

export const summary = "show the swarm as the local daemon sees it: loss, tokens/s, round, each stage's servers and health"

export const usage = `usage: swarmtrain status [--json] [--dir D] [--control-port P]

  --json            print the daemon's status JSON
  --dir D           node directory of the daemon (its ${DAEMON_FILE} names the port)
  --control-port P  ask the daemon on 127.0.0.1:P instead`

function health (servers: number): string {
  if (servers === 0) return 'NO SERVER: nothing trains'
  return servers === 1 ? 'ok (no spare server)' : 'ok'
}

function table (s: NodeStatus): string {
  const short = (id: string): string => `${id.slice(0, 8)}…${id.slice(-6)}`
  const sum = summarize(s)
  const loss = sum.loss === undefined
    ? 'loss - (no driver has reported one yet)'
    : `loss ${sum.loss.toFixed(4)}${sum.validationLoss === undefined ? '' : `  validation ${sum.validationLoss.toFixed(4)}`} (${sum.drivers} driver${sum.drivers === 1 ? '' : 's'})`
  const lines = [
    `peer ${s.peerId}  run ${s.runId}  version ${s.version}`,
    `this node: stage ${s.stage ?? '-'}${s.pinned ? ' (pinned)' : ''}  capacity ${s.throughput.toFixed(1)} tokens/s  connections ${s.connections}  up ${Math.round(s.uptimeMs / 1000)} s`,
    network(s.network),
    `swarm: ${sum.nodes} node(s)  training ${sum.tokensPerSecond.toFixed(1)} tokens/s  round ${sum.round}  ${loss}`,
    ...sum.missing.length > 0 ? [`waiting for a server of stage ${sum.missing.join(', ')}: nothing trains until every stage has one`] : [],
    '',
    'stage  servers  capacity/s  serving/s  health                     members'
  ]
  for (const stage of s.stages) {
    const members = stage.peers.map(p => `${short(p.peerId)}${p.peerId === s.peerId ? '*' : ''} (${p.throughput.toFixed(0)}/s, serving ${p.servedThroughput.toFixed(0)}/s, q${p.queueLength}, r${p.round}, v${p.version})`).join(', ')
    const serving = stage.peers.reduce((n, p) => n + p.servedThroughput, 0)
    lines.push(`${String(stage.stage).padStart(5)}  ${String(stage.peers.length).padStart(7)}  ${stage.throughput.toFixed(1).padStart(10)}  ${serving.toFixed(1).padStart(9)}  ${health(stage.peers.length).padEnd(25)}  ${members}`)
  }
  const avg = s.services.averaging as AveragingStatus | undefined
  if (avg?.stage !== undefined) lines.push(`averaging stage ${avg.stage}  round ${avg.round}  hash ${avg.stateHash.slice(0, 12)}  agreeing ${avg.agreeing}/${avg.replicas}  tokens ${avg.tokensSinceSync}/${avg.tokensPerRound}  syncs ${avg.syncs}`)
  for (const m of s.moves) lines.push(`moved ${new Date(m.at).toISOString()}: stage ${m.from} -> ${m.to} (weakest ${m.before.toFixed(1)} -> ${m.after.toFixed(1)} tokens/s)`)
  return lines.join('\n')
}

/** One line: reachability, relays, direct vs relayed connections, and the guard's refusals. */
function network (n: NodeStatus['network']): string {
  const relay = n.relays.length > 0 ? `  reachable via ${n.relays.length} relay(s)` : ''
  const relaying = n.relayReservations === undefined ? '' : `  relaying for ${n.relayReservations}`
  const guard = n.guard.strikes > 0 || n.guard.refusedConnections > 0 ? `  refused ${n.guard.refusedConnections} conns, ${n.guard.refusedStreams} streams, banned ${n.guard.banned.length}` : ''
  return `network ${n.reachability}${relay}${relaying}  connections ${n.direct} direct${n.webrtc.length > 0 ? ` (${n.webrtc.length} peers over WebRTC)` : ''}, ${n.relayed} relayed${n.relayedOnly.length > 0 ? ` (${n.relayedOnly.length} peers relay-only)` : ''}${guard}`
}

export async function run (argv: string[]): Promise<number> {
  const { values } = parse(argv, { json: { type: 'boolean' }, dir: { type: 'string' }, 'control-port': { type: 'string' } })
  const status = await fetchStatus(await daemonControlPort(values.dir ?? defaultNodeDir(), values['control-port']))
  console.log(values.json === true ? JSON.stringify(status, null, 2) : table(status))
  return 0
}
