// Averaging rounds among simulated replicas. When a round starts is the real rule (roundDue,
// the one AveragingService.poll() runs, with its resync when a replica is ahead); the round
// itself is modelled: each member pushes its compressed contribution to every other member,
// one push after another over its own uplink, and ends once it holds every member's
// contribution or after a third of the round timeout (no relays, no hash exchange).
import { roundDue } from '../averaging/trigger.js'
import type { PeerInfoRecord } from '../registry/record.js'
import type { LocalInfo } from '../registry/registry.js'
import type { SimClock } from './clock.js'
import type { SimNetwork } from './network.js'

interface RoundState {
  round: number
  members: string[]
  started: number
  /** Members whose push has not been sent yet, and when the last one sent arrives. */
  pending: Set<string>
  lastArrival: number
  timer?: unknown
}

/** What averaging keeps per peer. */
export interface AveragingPeer {
  index: number
  id: string
  alive: boolean
  diedAt: number
  record: PeerInfoRecord
  /** Tokens it trained on its stage, and that count at its last round or state load. */
  trained: number
  synced: number
  inRound?: RoundState
  /** Contributions pushed to it: round -> sender -> arrival time. */
  inbox: Map<number, Map<string, number>>
  pollTimer?: unknown
}

/** The swarm around the replicas. */
export interface AveragingHost {
  clock: SimClock
  network: SimNetwork
  peer(id: string): AveragingPeer | undefined
  /** Ready replicas of the peer's stage in the view, except itself. */
  replicaRecords(peer: AveragingPeer): PeerInfoRecord[]
  update(peer: AveragingPeer, info: Partial<LocalInfo>): void
  /** Loads the stage state again (the daemon's resync). */
  attach(peer: AveragingPeer, moved: boolean): void
}

export interface SimAveragingInit {
  tokensPerRound: number
  payloadBytes: number
  pollMs: number
  roundTimeoutMs: number
}

export class SimAveraging {
  /** Member rounds started and ended, ended with every contribution, summed members and ms; state loads. */
  started = 0
  completed = 0
  full = 0
  members = 0
  ms = 0
  resyncs = 0

  constructor (private readonly host: AveragingHost, private readonly init: SimAveragingInit) {}

  /** Checks the trigger now and every pollMs, as AveragingService.poll() does. */
  poll (peer: AveragingPeer): void {
    this.host.clock.clearTimeout(peer.pollTimer)
    peer.pollTimer = this.host.clock.setTimeout(() => { this.poll(peer) }, this.init.pollMs)
    if (!peer.alive || !peer.record.ready || peer.inRound !== undefined) return
    const peers = this.host.replicaRecords(peer)
    const round = peer.record.round
    const ahead = peers.filter(p => p.round > round)
    if (ahead.length > 0) {
      this.host.attach(peer, false)
      return
    }
    const invited = this.invited(peer, round + 1)
    if (!roundDue({ round, tokensSinceSync: peer.record.tokensSinceSync, peers, tokensPerRound: this.init.tokensPerRound, invited })) return
    this.startRound(peer, round + 1, peers.filter(p => p.round === round).map(p => p.peerId))
  }

  private box (peer: AveragingPeer, round: number): Map<string, number> {
    let box = peer.inbox.get(round)
    if (box === undefined) {
      box = new Map()
      peer.inbox.set(round, box)
    }
    return box
  }

  /** Whether `sender`'s push reached `peer` by now (a sender that died first never finished sending it). */
  private arrived (peer: AveragingPeer, round: number, sender: string): boolean {
    const at = peer.inbox.get(round)?.get(sender)
    return at !== undefined && at <= this.host.clock.now() && (this.host.peer(sender)?.diedAt ?? Infinity) > at
  }

  private invited (peer: AveragingPeer, round: number): boolean {
    for (const sender of peer.inbox.get(round)?.keys() ?? []) if (this.arrived(peer, round, sender)) return true
    return false
  }

  private startRound (peer: AveragingPeer, round: number, known: string[]): void {
    const own = this.box(peer, round)
    const members = [...new Set([...known, ...own.keys()])].filter(m => m !== peer.id)
    const pending = new Set(members.filter(m => !own.has(m)))
    const state: RoundState = { round, members, started: this.host.clock.now(), pending, lastArrival: Math.max(this.host.clock.now(), ...members.filter(m => own.has(m)).map(m => own.get(m) as number)) }
    peer.inRound = state
    this.started++
    // All-to-all over this peer's uplink, one push after another.
    let sent = this.host.clock.now()
    for (const m of members) {
      const member = this.host.peer(m) as AveragingPeer
      const link = this.host.network.link(peer.index, member.index)
      sent += this.init.payloadBytes / link.bytesPerMs
      const at = sent + link.latencyMs
      if (!member.alive) continue
      this.box(member, round).set(peer.id, at)
      const theirs = member.inRound
      if (theirs?.round === round && theirs.pending.delete(peer.id)) {
        theirs.lastArrival = Math.max(theirs.lastArrival, at)
        if (theirs.pending.size === 0) this.host.clock.setTimeout(() => { this.checkRound(member) }, theirs.lastArrival - this.host.clock.now())
      }
    }
    state.timer = this.host.clock.setTimeout(() => { this.endRound(peer) }, this.init.roundTimeoutMs / 3)
    if (pending.size === 0) this.host.clock.setTimeout(() => { this.checkRound(peer) }, state.lastArrival - this.host.clock.now())
  }

  /** Ends the round early once every member's contribution is in. */
  private checkRound (peer: AveragingPeer): void {
    const state = peer.inRound
    if (state === undefined || !peer.alive) return
    if (state.members.every(m => this.arrived(peer, state.round, m))) this.endRound(peer)
  }

  private endRound (peer: AveragingPeer): void {
    const state = peer.inRound
    if (state === undefined) return
    this.host.clock.clearTimeout(state.timer)
    const missing = state.members.filter(m => !this.arrived(peer, state.round, m)).length
    this.completed++
    this.members += state.members.length + 1
    this.ms += this.host.clock.now() - state.started
    if (missing === 0) this.full++
    peer.inRound = undefined
    for (const r of [...peer.inbox.keys()]) if (r <= state.round) peer.inbox.delete(r)
    peer.synced = peer.trained
    this.host.update(peer, { round: state.round, tokensSinceSync: 0 })
  }
}
