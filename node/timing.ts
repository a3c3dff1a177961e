// Every timer and timeout of swarmtrain, in milliseconds.
//
// The daemon's configurable timers. Defaults suit real swarms; tests shrink them through environment
// variables so that expiry and rebalancing happen within seconds:
//   SWARMTRAIN_RECORD_TTL_MS     info record lifetime            (default 120000)
//   SWARMTRAIN_REFRESH_MS        republish + re-read the swarm   (default 30000)
//   SWARMTRAIN_REBALANCE_MS      mean time between move checks   (default 120000)
//   SWARMTRAIN_PING_INTERVAL_MS  connection monitor ping period  (default 3000)
//   SWARMTRAIN_PING_TIMEOUT_MS   ...and its timeout              (default 5000)
//   SWARMTRAIN_DIAL_TIMEOUT_MS   dial + identify of a peer       (default 10000)
//   SWARMTRAIN_CHECKPOINT_MS     checkpoint the served stage     (default 30000)
import { UserError } from './errors.js'

export interface Timing {
  recordTtlMs: number
  refreshMs: number
  rebalanceMs: number
  pingIntervalMs: number
  pingTimeoutMs: number
  dialTimeoutMs: number
  checkpointMs: number
}

export const defaultTiming: Timing = {
  recordTtlMs: 120_000,
  refreshMs: 30_000,
  rebalanceMs: 120_000,
  pingIntervalMs: 3000,
  pingTimeoutMs: 5000,
  dialTimeoutMs: 10_000,
  checkpointMs: 30_000
}

const variables: Record<keyof Timing, string> = {
  recordTtlMs: 'SWARMTRAIN_RECORD_TTL_MS',
  refreshMs: 'SWARMTRAIN_REFRESH_MS',
  rebalanceMs: 'SWARMTRAIN_REBALANCE_MS',
  pingIntervalMs: 'SWARMTRAIN_PING_INTERVAL_MS',
  pingTimeoutMs: 'SWARMTRAIN_PING_TIMEOUT_MS',
  dialTimeoutMs: 'SWARMTRAIN_DIAL_TIMEOUT_MS',
  checkpointMs: 'SWARMTRAIN_CHECKPOINT_MS'
}

export function timingFromEnv (env: NodeJS.ProcessEnv = process.env): Timing {
  const timing = { ...defaultTiming }
  for (const key of Object.keys(variables) as Array<keyof Timing>) {
    const text = env[variables[key]]
    if (text === undefined) continue
    const ms = Number(text)
    if (!/^\d+$/.test(text) || ms < 100 || ms > 86_400_000) throw new UserError(`${variables[key]} must be milliseconds from 100 to 86400000, got '${text}'`)
    timing[key] = ms
  }
  if (timing.refreshMs * 2 > timing.recordTtlMs) throw new UserError(`the refresh interval (${timing.refreshMs} ms) must be at most half the record TTL (${timing.recordTtlMs} ms)`)
  return timing
}

// Stopping (SIGINT/SIGTERM). Waits and retries end at once on the node's shutdown signal; the
// only graceful wait is for microbatches in flight, and the whole stop is bounded.

/** How long stopping waits for the driver's microbatches in flight before cutting them off. */
/**
 * Environment for daemons of one swarm on one machine (the demo, the convergence benchmark):
 * records expire and views refresh within seconds, so nodes find each other and notice a dead
 * one quickly on loopback.
 */
export const LOOPBACK_SWARM_ENV = { SWARMTRAIN_RECORD_TTL_MS: '6000', SWARMTRAIN_REFRESH_MS: '2000', SWARMTRAIN_DIAL_TIMEOUT_MS: '5000' }

export const STOP_DRAIN_MS = 3000
/** A daemon whose stop takes longer than this exits anyway (the next signal exits at once). */
export const STOP_LIMIT_MS = 15_000

// Pipeline calls.

/** A stage call is given up when no replica has answered it for this long. */
export const CALL_GIVE_UP_MS = 120_000
/** Pause before looking for replicas again when none is eligible. */
export const CALL_RETRY_PAUSE_MS = 200
/** The router's first ban of a failing peer; it doubles with every failure up to the maximum. */
export const ROUTER_BAN_BASE_MS = 1000
export const ROUTER_BAN_MAX_MS = 60_000
/** The floor of a call's timeout (a multiple of its expected time), and the timeout for an unmeasured peer. */
export const ROUTER_MIN_CALL_TIMEOUT_MS = 5000
export const ROUTER_UNKNOWN_CALL_TIMEOUT_MS = 60_000
/** A stage's weight change waits this long at most for the microbatches holding its weights (runtime/weights-gate.ts). */
export const WEIGHTS_HOLD_MAX_WAIT_MS = 5000
/** A TRAIN call waits this long at most for its replica's step to make room (then BUSY: another replica may have it). */
export const STAGE_ADMISSION_TIMEOUT_MS = 30_000
/** How often a waiting TRAIN call looks again (the stage's replicas, and so its share of a step, may have changed). */
export const STAGE_ADMISSION_RECHECK_MS = 250
/** How often a stage server reports its queue and served throughput to the registry. */
export const LOAD_REPORT_MS = 1000
/** A peer whose driven tokens did not grow for this long no longer counts among the drivers sharing the depth bound. */
export const DRIVER_IDLE_MS = 30_000

// Peers and records.

/** A peer asking for the manifest must send its request within this. */
export const MANIFEST_REQUEST_TIMEOUT_MS = 10_000
/** Info records issued further in the future than this are refused (clock skew)... */
export const RECORD_MAX_CLOCK_SKEW_MS = 60_000
/** ...and so are records that claim a longer life than this. */
export const RECORD_MAX_TTL_MS = 3_600_000
/** The pnet nonce exchange must finish within this (unless libp2p passes its own signal). */
export const PNET_NONCE_TIMEOUT_MS = 5000

// Daemons as child processes (the demo, tests, benchmarks) and `swarmtrain status`.

/** A spawned daemon must print `ready` within this. */
export const DAEMON_READY_TIMEOUT_MS = 60_000
/** A daemon asked to stop (SIGTERM) is killed after this. */
export const DAEMON_STOP_GRACE_MS = 10_000
/** A status request to a daemon's 127.0.0.1 server must be answered within this. */
export const STATUS_REQUEST_TIMEOUT_MS = 5000
/** The demo gives its driving node this long to stop (its microbatches in flight finish)... */
export const DEMO_DRIVER_STOP_MS = 10_000
/** ...and then each server this long. */
export const DEMO_SERVER_STOP_MS = 6_000

// Averaging, metrics and the public-swarm guard.

/** The averaging service looks at its stage's progress this often. */
export const AVERAGING_POLL_MS = 250
/**
 * A round's state goes to disk before the next round starts, unless a round's did less than this
 * ago: rounds that come every step would write the stage's whole state (about 20 MB for the
 * default model) every step. A node that crashes in between resyncs the rounds it lost.
 */
export const ROUND_CHECKPOINT_MS = 10_000
/** When rounds come every step, `start` prints one line per stage this often, plus any round that went wrong. */
export const ROUND_LINE_MS = 10_000
/** A peer asking for a stage's state must send its request within this. */
export const STATE_REQUEST_TIMEOUT_MS = 10_000
/** Prometheus scrapes within this of each other share one status snapshot. */
export const METRICS_SNAPSHOT_MS = 200
/** A stranger's offences count within this window... */
export const GUARD_STRIKE_WINDOW_MS = 10 * 60_000
/** ...three of them ban it this long, doubling with each ban up to the maximum. */
export const GUARD_BAN_BASE_MS = 60_000
export const GUARD_BAN_MAX_MS = 24 * 3600_000
/**
 * A stranger's peer store entry goes this long after its last connection closed (p2p/peers.ts):
 * libp2p may still be writing to it (e.g. the protocol of a stream negotiated as it closed).
 */
export const PEER_FORGET_AFTER_MS = 2000
/** Outside DHT queries start at most one per this many ms (see p2p/host.ts paceQueries). */
export const DHT_QUERY_INTERVAL_MS = 250
/**
 * After a failed WebRTC upgrade, a peer's next try waits this long, doubling per failure up to
 * the maximum (p2p/webrtc.ts). Seconds, not more: a try can fail at random, e.g. where nothing
 * filters the peer's first ICE checks, libdatachannel 0.24 may start DTLS before it applied the
 * SDP answer and reject the peer's certificate (about 1 try in 5 on one machine; upstream
 * paullouisageneau/libdatachannel PR 1612), and the next try usually works.
 */
export const WEBRTC_RETRY_BASE_MS = 2_000
export const WEBRTC_RETRY_MAX_MS = 10 * 60_000
