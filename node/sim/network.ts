// Links between simulated peers: a one-way latency and a bandwidth per pair, drawn from the
// pair's own seeded stream, so a link is the same whenever it is used and nothing is stored
// per pair. Spreads as on the public internet between home and cloud machines: round trips of
// a few to a few hundred ms (median 40), tens of Mbit/s (median 50, 5% below ~16, 5% above ~150).
import { Rng, hashString } from '../util/random.js'

export interface Link {
  latencyMs: number
  /** Bytes per millisecond. */
  bytesPerMs: number
}

export interface NetworkInit {
  seed: string
  medianRttMs?: number
  medianMbitPerS?: number
}

/** Medians of the links' spreads (model parameters, not timers). */
const publicInternet = { medianRttMs: 40, medianMbitPerS: 50 }

export class SimNetwork {
  private readonly seed: number
  private readonly medianOneWayMs: number
  private readonly medianMbit: number

  constructor (init: NetworkInit) {
    this.seed = hashString(init.seed)
    const { medianRttMs, medianMbitPerS } = { ...publicInternet, ...init }
    this.medianOneWayMs = medianRttMs / 2
    this.medianMbit = medianMbitPerS
  }

  /** Links drawn so far, by pair (drawing one takes a fresh Rng: too slow for every message). */
  private readonly links = new Map<number, Link>()

  /** The link between peers `a` and `b` (the same both ways). */
  link (a: number, b: number): Link {
    const key = Math.min(a, b) * 2 ** 26 + Math.max(a, b)
    let link = this.links.get(key)
    if (link === undefined) {
      link = this.draw(a, b)
      this.links.set(key, link)
    }
    return link
  }

  private draw (a: number, b: number): Link {
    if (a === b) return { latencyMs: 0, bytesPerMs: Infinity }
    const rng = new Rng((this.seed ^ Math.imul(Math.min(a, b) + 1, 0x9e3779b1) ^ Math.imul(Math.max(a, b) + 1, 0x85ebca6b)) >>> 0)
    const latencyMs = clamp(this.medianOneWayMs * Math.exp(0.7 * rng.normal()), 1, 250)
    const mbit = clamp(this.medianMbit * Math.exp(0.7 * rng.normal()), 5, 1000)
    return { latencyMs, bytesPerMs: mbit * 1e6 / 8 / 1000 }
  }

  /** How long `bytes` take from `a` to `b`: latency plus serialization at the link's rate. */
  transferMs (a: number, b: number, bytes: number): number {
    const link = this.link(a, b)
    return link.latencyMs + bytes / link.bytesPerMs
  }
}

function clamp (x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x))
}
