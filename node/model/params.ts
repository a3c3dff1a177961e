// Parameter values: counting and seeded initialization. A parameter's initial values depend
// only on (seed, its name), so the same seed gives the same model whatever the stage split.
import type { ParamSpec } from './config.js'
import { Rng } from '../util/random.js'

export function paramSize (spec: ParamSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1)
}

export function paramCount (specs: readonly ParamSpec[]): number {
  return specs.reduce((n, s) => n + paramSize(s), 0)
}

/** Fills one flat array with every parameter, concatenated in spec order (GPT-2 style init). */
export function initParams<A extends Float32Array | Float64Array = Float32Array> (specs: readonly ParamSpec[], seed: number, out?: A): A {
  const total = paramCount(specs)
  const values = out ?? new Float32Array(total) as A
  if (values.length !== total) throw new RangeError(`initParams: output holds ${values.length} values, the params need ${total}`)
  let offset = 0
  for (const spec of specs) {
    const n = paramSize(spec)
    const view = values.subarray(offset, offset + n)
    const init = spec.init
    if (init.kind === 'normal') {
      const rng = new Rng(`${seed}:${spec.name}`)
      for (let i = 0; i < n; i++) view[i] = init.std * rng.normal()
    } else {
      view.fill(init.kind === 'ones' ? 1 : 0)
    }
    offset += n
  }
  return values
}
