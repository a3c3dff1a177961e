// Chooses which replica of a stage serves the next call. Pure bookkeeping, no I/O: the caller
// reports every call's start and outcome and asks for the replica with the least expected busy
// time. Per peer it keeps moving averages of the server's compute time per unit of work, of the
// queue other callers keep there, and of the time a call spends on the way (transfer: the caller's
// wall time minus the server's compute, queue wait and onward calls), so a replica behind a slow
// or distant link gets fewer calls and longer timeouts; untried peers go first (with one probe in
// flight at a time) so newcomers are measured early; failed peers are banned with exponential backoff.
//
// Transfer is a moving average of ms per call, not latency + bytes / throughput: the replicas of a
// stage, which choose() compares, all get the same mix of calls (the same microbatch shape and
// wire encoding; one call kind per stage when forwarding), so bytes per call hardly vary per peer
// and a two-parameter fit on noisy samples would be ill-conditioned; and on a slow link most of a
// call's transfer is waiting behind this caller's other calls on that link, which an idle link's
// latency and throughput do not predict and the measured average already contains. It is kept per
// peer, not per link: a forwarded hop's transfer is measured on the link from whichever server
// called it, which for a peer behind a slow access link (the common case) is that link anyway.
import { ROUTER_BAN_BASE_MS, ROUTER_BAN_MAX_MS, ROUTER_MIN_CALL_TIMEOUT_MS, ROUTER_UNKNOWN_CALL_TIMEOUT_MS } from '../timing.js'
import { Rng } from '../util/random.js'

export interface RouterInit {
  /** Weight of the newest sample in the moving averages. */
  smoothing?: number
  /** First ban after a failure; doubles with every consecutive failure up to banMaxMs. */
  banBaseMs?: number
  banMaxMs?: number
  /** Chance of calling a random eligible replica instead of the best, to keep estimates fresh. */
  exploration?: number
  /** Floor and multiplier of the per-call timeout computed from the expected busy time. */
  minTimeoutMs?: number
  timeoutFactor?: number
  /** Timeout while nothing is known about a peer. */
  unknownTimeoutMs?: number
  seed?: number
  now?: () => number
}

/** What a finished call teaches the router about a peer. */
export interface CallOutcome {
  /** Work units of the call (e.g. tokens times a per-kind cost), to normalize compute time. */
  work: number
  /** Compute time and queue length reported by the server. */
  computeMs: number
  queueLength: number
  /** The call's time outside the server's compute, queue wait and onward calls, as its caller measured it (0 for a local call). */
  transferMs: number
}

interface PeerStats {
  /** Calls this node has in flight to the peer. */
  inFlight: number
  /** Moving averages: server compute ms per work unit, and the queue other callers keep there. */
  msPerWork?: number
  othersQueue: number
  /** Moving average of a call's transfer ms (set with msPerWork). */
  transferMs: number
  calls: number
  failures: number
  bannedUntil: number
}

export class Router {
  private readonly peers = new Map<string, PeerStats>()
  private readonly rng: Rng
  private readonly now: () => number
  private readonly smoothing: number
  private readonly banBaseMs: number
  private readonly banMaxMs: number
  private readonly exploration: number
  private readonly minTimeoutMs: number
  private readonly timeoutFactor: number
  private readonly unknownTimeoutMs: number

  constructor (init: RouterInit = {}) {
    this.smoothing = init.smoothing ?? 0.2
    this.banBaseMs = init.banBaseMs ?? ROUTER_BAN_BASE_MS
    this.banMaxMs = init.banMaxMs ?? ROUTER_BAN_MAX_MS
    this.exploration = init.exploration ?? 0.02
    this.minTimeoutMs = init.minTimeoutMs ?? ROUTER_MIN_CALL_TIMEOUT_MS
    this.timeoutFactor = init.timeoutFactor ?? 5
    this.unknownTimeoutMs = init.unknownTimeoutMs ?? ROUTER_UNKNOWN_CALL_TIMEOUT_MS
    this.rng = new Rng(init.seed ?? Date.now())
    this.now = init.now ?? Date.now
  }

  /**
   * The replica to call for `work` units among `candidates`, skipping banned peers and those in
   * `exclude` (already failed for this call). Undefined when none is eligible.
   */
  choose (candidates: Iterable<string>, work: number, exclude: ReadonlySet<string> = new Set()): string | undefined {
    const now = this.now()
    const eligible = [...new Set(candidates)].filter(p => !exclude.has(p) && (this.peers.get(p)?.bannedUntil ?? 0) <= now)
    if (eligible.length === 0) return undefined
    const untried = eligible.filter(p => this.peers.get(p)?.msPerWork === undefined)
    const probe = untried.find(p => (this.peers.get(p)?.inFlight ?? 0) === 0)
    if (probe !== undefined) return probe
    const known = eligible.filter(p => this.peers.get(p)?.msPerWork !== undefined)
    // Only probes in flight and nothing measured yet: spread over the untried ones.
    if (known.length === 0) return this.leastLoaded(untried)
    if (known.length > 1 && this.rng.next() < this.exploration) return known[this.rng.int(known.length)]
    let best = known[0]
    let bestTime = Infinity
    for (const p of known) {
      const t = this.expectedBusyMs(p, work)
      if (t < bestTime) { best = p; bestTime = t }
    }
    return best
  }

  /**
   * Expected time until a call of `work` units sent now to `peer` completes: the way there (half
   * the transfer), the server's backlog (the calls in flight and other callers' queue) as far as it
   * is not worked off meanwhile, the call's own compute, and the way back. Adding the whole backlog
   * to the whole transfer would count the calls on the wire twice: in the simulation of a replica
   * 40 ms away under more load than the near one computes (test/pipeline-router.test.ts), the mean
   * call then took 118 ms instead of 94.
   */
  expectedBusyMs (peer: string, work: number): number {
    const s = this.peers.get(peer)
    if (s?.msPerWork === undefined) return Infinity
    const computeMs = s.msPerWork * work
    return s.transferMs / 2 + Math.max(s.transferMs / 2, computeMs * (s.inFlight + s.othersQueue)) + computeMs
  }

  /** How long to wait for a call before giving up on the peer. */
  timeoutMs (peer: string, work: number): number {
    const expected = this.expectedBusyMs(peer, work)
    if (!Number.isFinite(expected)) return this.unknownTimeoutMs
    return Math.max(this.minTimeoutMs, this.timeoutFactor * expected)
  }

  started (peer: string): void {
    this.stats(peer).inFlight++
  }

  /** A call ended without teaching anything about the peer (it was our own fault). */
  released (peer: string): void {
    const s = this.stats(peer)
    s.inFlight = Math.max(0, s.inFlight - 1)
  }

  succeeded (peer: string, outcome: CallOutcome): void {
    const s = this.stats(peer)
    s.inFlight = Math.max(0, s.inFlight - 1)
    s.calls++
    s.failures = 0
    const a = this.smoothing
    const msPerWork = outcome.computeMs / Math.max(outcome.work, 1e-9)
    // The server's queue included our own calls in flight; what remains is other callers' load.
    const others = Math.max(0, outcome.queueLength - s.inFlight)
    const transferMs = Math.max(0, outcome.transferMs)
    if (s.msPerWork === undefined) {
      s.msPerWork = msPerWork
      s.othersQueue = others
      s.transferMs = transferMs
    } else {
      s.msPerWork += a * (msPerWork - s.msPerWork)
      s.othersQueue += a * (others - s.othersQueue)
      s.transferMs += a * (transferMs - s.transferMs)
    }
  }

  /** A call failed or timed out: ban the peer for base * 2^(consecutive failures - 1), capped. */
  failed (peer: string): void {
    const s = this.stats(peer)
    s.inFlight = Math.max(0, s.inFlight - 1)
    s.failures++
    s.bannedUntil = this.now() + Math.min(this.banMaxMs, this.banBaseMs * 2 ** (s.failures - 1))
  }

  /** The peer broke the protocol (garbage, or refused a valid request): a ban as after three failures, and longer with each repeat. */
  misbehaved (peer: string): void {
    this.stats(peer).failures += 2
    this.failed(peer)
  }

  /** The peer answered "busy": no ban, but count its queue as full for a while. */
  busy (peer: string, queueLength: number): void {
    const s = this.stats(peer)
    s.inFlight = Math.max(0, s.inFlight - 1)
    s.othersQueue = Math.max(s.othersQueue, queueLength)
  }

  isBanned (peer: string): boolean {
    return (this.peers.get(peer)?.bannedUntil ?? 0) > this.now()
  }

  /** Calls completed by each peer (for reporting). */
  callCounts (): Map<string, number> {
    return new Map([...this.peers].map(([p, s]) => [p, s.calls]))
  }

  /** The learned transfer ms per call of each measured peer (for reporting). */
  transferEstimates (): Map<string, number> {
    return new Map([...this.peers].filter(([, s]) => s.msPerWork !== undefined).map(([p, s]) => [p, s.transferMs]))
  }

  private leastLoaded (peers: string[]): string {
    return peers.reduce((a, b) => (this.stats(b).inFlight < this.stats(a).inFlight ? b : a))
  }

  private stats (peer: string): PeerStats {
    let s = this.peers.get(peer)
    if (s === undefined) {
      s = { inFlight: 0, othersQueue: 0, transferMs: 0, calls: 0, failures: 0, bannedUntil: 0 }
      this.peers.set(peer, s)
    }
    return s
  }
}
