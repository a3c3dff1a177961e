// A small seeded PRNG (sfc32, 128-bit state) so that parameter init, data sampling and any
// randomized choice can be reproduced from a seed and resumed from a saved state.

export class Rng {
  private s: Uint32Array

  /** Seeds from a number or string via splitmix32, so nearby seeds give unrelated streams. */
  constructor (seed: number | string = 0) {
    let h = typeof seed === 'number' ? seed >>> 0 : hashString(seed)
    this.s = new Uint32Array(4)
    for (let i = 0; i < 4; i++) {
      h = (h + 0x9e3779b9) >>> 0
      let z = h
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      this.s[i] = (z ^ (z >>> 16)) >>> 0
    }
    for (let i = 0; i < 12; i++) this.nextUint32()
  }

  nextUint32 (): number {
    const s = this.s
    const t = (((s[0] + s[1]) >>> 0) + s[3]) >>> 0
    s[3] = (s[3] + 1) >>> 0
    s[0] = s[1] ^ (s[1] >>> 9)
    s[1] = (s[2] + (s[2] << 3)) >>> 0
    s[2] = ((s[2] << 21) | (s[2] >>> 11)) >>> 0
    s[2] = (s[2] + t) >>> 0
    return t
  }

  /** Uniform in [0, 1) with 53 bits. */
  next (): number {
    return (this.nextUint32() * 2 ** 21 + (this.nextUint32() >>> 11)) / 2 ** 53
  }

  /** Uniform integer in [0, n). */
  int (n: number): number {
    return Math.floor(this.next() * n)
  }

  /** Standard normal (Box-Muller). */
  normal (): number {
    const u = 1 - this.next()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next())
  }

  /** The full state, to save in a checkpoint; `restore` continues the same stream. */
  state (): number[] {
    return Array.from(this.s)
  }

  restore (state: readonly number[]): void {
    if (state.length !== 4 || state.some(v => !Number.isInteger(v) || v < 0 || v > 0xffffffff)) throw new RangeError('Rng state must be four uint32 values')
    this.s.set(state)
  }
}

/** FNV-1a, 32 bits: a stable hash of a string, e.g. to derive per-parameter seeds from names. */
export function hashString (text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}
