// Recent events of the swarm as this node sees them (peers joining and leaving stages, this
// node's moves, peers banned by the router, failed microbatches), found by comparing successive
// status snapshots, so the components need not report them. Bounded: the newest are kept.
import type { NodeStatus } from '../daemon/node.js'
import type { PipelineStatus } from '../pipeline/swarm.js'

export type SwarmEventKind = 'join' | 'leave' | 'move' | 'ban' | 'failure'

export interface SwarmEvent {
  at: number
  kind: SwarmEventKind
  text: string
}

interface Seen {
  members: Set<string>
  moves: number
  banned: Set<string>
  failed: number
}

export class SwarmEvents {
  private readonly max: number
  private readonly events: SwarmEvent[] = []
  private seen?: Seen

  constructor (init: { max?: number } = {}) {
    this.max = init.max ?? 100
  }

  /** Compares `status` with the last one seen and records what changed. */
  observe (status: NodeStatus, now = Date.now()): void {
    const pipeline = status.services.pipeline as PipelineStatus | undefined
    const next: Seen = {
      members: new Set(status.stages.flatMap(s => s.peers.map(p => `${s.stage}/${p.peerId}`))),
      moves: status.moves.length,
      banned: new Set(pipeline?.banned ?? []),
      failed: pipeline?.driver?.failed ?? 0
    }
    const last = this.seen
    this.seen = next
    if (last === undefined) {
      for (const member of next.members) this.joined(member, now)
      return
    }
    for (const member of next.members) if (!last.members.has(member)) this.joined(member, now)
    for (const member of last.members) {
      if (next.members.has(member)) continue
      const [stage, peer] = member.split('/')
      this.add({ at: now, kind: 'leave', text: `${short(peer)} left stage ${stage}` })
    }
    for (const move of status.moves.slice(last.moves)) this.add({ at: move.at, kind: 'move', text: `this node moved from stage ${move.from} to ${move.to}` })
    for (const peer of next.banned) if (!last.banned.has(peer)) this.add({ at: now, kind: 'ban', text: `${short(peer)} banned after a failed call` })
    if (next.failed > last.failed) this.add({ at: now, kind: 'failure', text: `${next.failed - last.failed} microbatch${next.failed - last.failed > 1 ? 'es' : ''} failed` })
  }

  /** Newest last. */
  recent (): SwarmEvent[] {
    return [...this.events]
  }

  private joined (member: string, now: number): void {
    const [stage, peer] = member.split('/')
    this.add({ at: now, kind: 'join', text: `${short(peer)} serves stage ${stage}` })
  }

  private add (event: SwarmEvent): void {
    this.events.push(event)
    if (this.events.length > this.max) this.events.splice(0, this.events.length - this.max)
  }
}

function short (peerId: string): string {
  return peerId.length > 14 ? `${peerId.slice(0, 8)}…${peerId.slice(-6)}` : peerId
}
