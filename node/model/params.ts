// Parameter values: layout, counting and seeded initialization. A parameter's initial values
// depend only on (seed, its name), so the same seed gives the same model whatever the stage split.
import { createHash } from 'node:crypto'
import type { ParamSpec } from './config.js'
import { Rng } from '../util/random.js'

export function paramSize (spec: ParamSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1)
}

export function paramCount (specs: readonly ParamSpec[]): number {
  return specs.reduce((n, s) => n + paramSize(s), 0)
}

/** Where one parameter sits in a stage's flat weight vector. */
export interface ParamSlot {
  name: string
  offset: number
  size: number
  shape: number[]
  /** AdamW's decoupled weight decay applies. */
  decay: boolean
  init: ParamSpec['init']
}

/**
 * The one flat layout of a set of parameters: every weight, gradient, moment, error-feedback
 * and sync buffer of a stage uses it. Grouped (the default), decayed tensors come first and
 * contiguously, so AdamW runs as two kernel calls; otherwise spec order. `hash` names the
 * layout: two replicas exchange flat vectors only when their hashes match.
 */
export class ParamLayout {
  readonly slots: readonly ParamSlot[]
  readonly size: number
  /** Values [0, decayedSize) are the decayed tensors (grouped layouts; 0 otherwise). */
  readonly decayedSize: number
  readonly hash: string
  private readonly byName: Map<string, ParamSlot>

  constructor (specs: readonly ParamSpec[], options: { grouped?: boolean } = {}) {
    const grouped = options.grouped ?? true
    const ordered = grouped ? [...specs.filter(s => s.decay), ...specs.filter(s => !s.decay)] : specs
    let offset = 0
    this.slots = ordered.map(s => {
      const slot = { name: s.name, offset, size: paramSize(s), shape: [...s.shape], decay: s.decay, init: s.init }
      offset += slot.size
      return slot
    })
    this.size = offset
    this.decayedSize = grouped ? paramCount(specs.filter(s => s.decay)) : 0
    this.byName = new Map(this.slots.map(s => [s.name, s]))
    if (this.byName.size !== this.slots.length) throw new RangeError('parameter names must be unique')
    this.hash = createHash('sha256').update(JSON.stringify(this.slots.map(s => [s.name, s.offset, s.shape, s.decay]))).digest('hex').slice(0, 32)
  }

  slot (name: string): ParamSlot | undefined {
    return this.byName.get(name)
  }

  /** The values of parameter `slot` inside a flat vector of this layout. */
  view<A extends Float32Array | Float64Array> (flat: A, slot: ParamSlot): A {
    return flat.subarray(slot.offset, slot.offset + slot.size) as A
  }
}

/** Fills one flat array with every parameter, laid out by `layout` (spec order for a spec list), GPT-2 style. */
export function initParams<A extends Float32Array | Float64Array = Float32Array> (layout: ParamLayout | readonly ParamSpec[], seed: number, out?: A): A {
  const flat = layout instanceof ParamLayout ? layout : new ParamLayout(layout, { grouped: false })
  const values = out ?? new Float32Array(flat.size) as A
  if (values.length !== flat.size) throw new RangeError(`initParams: output holds ${values.length} values, the params need ${flat.size}`)
  for (const slot of flat.slots) {
    const view = flat.view(values, slot)
    const init = slot.init
    if (init.kind === 'normal') {
      const rng = new Rng(`${seed}:${slot.name}`)
      for (let i = 0; i < view.length; i++) view[i] = init.std * rng.normal()
    } else {
      view.fill(init.kind === 'ones' ? 1 : 0)
    }
  }
  return values
}
