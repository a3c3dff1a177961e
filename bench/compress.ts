// npm run bench -- compress [--json] [--sizes 1,16,64] [--bits 2|8] [--simd avx512|avx2|portable]
// The compress kernel (error feedback + top-k at density 1/64 + quantization) against the plain
// `e += delta` pass over the same arrays (the memory-bandwidth floor, native, same threads),
// measured in the same run, and against the JS reference; then AdamW native vs JS.
// The timed calls are the async ones (two threads), as used from ~1M elements; the sync
// (one thread) figures are in the table and the JSON rows too (ratio_to_floor_1t). The code path
// is the best the CPU has, or the one --simd names; the table header and the rows name it. Compression is timed in steady state: the first
// calls, which let the per-chunk threshold hints settle, are run before the clock starts.
// Each figure is the best of several runs: the machine is shared, and the fastest run is the one
// least disturbed by other processes (all figures are taken the same way, so ratios are fair).
import { parse } from '../node/cli/args.js'
import { UsageError } from '../node/cli/errors.js'
import { Rng } from '../node/util/random.js'
import * as native from '../native/index.js'

const DENSITY = 1 / 64
const BETA = 0.95

function normal (n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = rng.normal()
  return a
}

async function timeMs (fn: () => unknown): Promise<number> {
  const t = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - t) / 1e6
}

function best (xs: number[]): number {
  return Math.min(...xs)
}

export async function run (args: string[]): Promise<void> {
  const { values } = parse(args, { json: { type: 'boolean' }, sizes: { type: 'string' }, bits: { type: 'string' }, simd: { type: 'string' } })
  const sizes = (values.sizes ?? '1,16,64').split(',').map(s => Number(s))
  if (sizes.some(s => !(s > 0 && s <= 1024))) throw new UsageError(`--sizes must be millions of elements, e.g. 1,16,64; got '${values.sizes}'`)
  const bits = Number(values.bits ?? 2)
  if (bits !== 2 && bits !== 8) throw new UsageError(`--bits must be 2 or 8, got '${values.bits}'`)
  if (!native.isNative) console.error('warning: the native addon is not loaded; native figures are the JS reference')
  if (values.simd !== undefined) {
    if (!(native.SIMD_PATHS as readonly string[]).includes(values.simd)) throw new UsageError(`--simd must be one of ${native.SIMD_PATHS.join(', ')}; got '${values.simd}'`)
    if (native.setSimd(values.simd as native.SimdPath) !== values.simd) throw new UsageError(`--simd ${values.simd}: this machine has no such code path (best: ${native.setSimd(true)})`)
  }

  const chunk = native.DEFAULT_CHUNK
  const options = { beta: BETA, chunk, k: native.kForDensity(DENSITY, chunk), bits: bits as 2 | 8 }
  const rng = new Rng(1)
  const rows: string[][] = []
  for (const millions of sizes) {
    const n = Math.round(millions * 2 ** 20)
    const deltas = [normal(n, rng), normal(n, rng)]
    const e = new Float32Array(n)
    const floorE = new Float32Array(n)
    const hints = new Float32Array(native.chunkCount(n, chunk))
    const out = new Uint8Array(native.maxPayloadSize(n, chunk, options.k, options.bits))
    // Warm-up: the hints settle within a few dozen steps (they persist across rounds in training).
    let size = 0
    for (let i = 0; i < 24; i++) size = await native.compressAsync(e, deltas[i % 2], hints, out, options)

    const repeats = n >= 32 * 2 ** 20 ? 5 : 9
    const t = { sync: [] as number[], async: [] as number[], floorSync: [] as number[], floorAsync: [] as number[] }
    for (let r = 0; r < repeats; r++) {
      const delta = deltas[r % 2]
      t.floorAsync.push(await timeMs(() => native.axpyAsync(floorE, delta, 1)))
      t.async.push(await timeMs(() => native.compressAsync(e, delta, hints, out, options)))
      t.floorSync.push(await timeMs(() => native.axpy(floorE, delta, 1)))
      t.sync.push(await timeMs(() => native.compress(e, delta, hints, out, options)))
    }
    const jsE = e.slice()
    const jsRuns: number[] = []
    for (let r = 0; r < (n >= 32 * 2 ** 20 ? 2 : 3); r++) jsRuns.push(await timeMs(() => native.reference.compress(jsE, deltas[r % 2], hints, out, options)))
    const jsMs = best(jsRuns)

    // AdamW over the same arrays: param = e, grad = delta, m and v reuse the other buffers.
    floorE.fill(0)
    jsE.fill(0)
    const adamOptions = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, gradScale: 1 }
    const adamNative: number[] = []
    for (let r = 0; r < 3; r++) adamNative.push(await timeMs(() => native.adamwAsync(e, deltas[0], floorE, jsE, { ...adamOptions, step: r + 1 })))
    const adamJsRuns: number[] = []
    for (let r = 0; r < 2; r++) adamJsRuns.push(await timeMs(() => native.reference.adamw(e, deltas[0], floorE, jsE, { ...adamOptions, step: 4 + r })))
    const adamJs = best(adamJsRuns)

    const ms = best(t.async)
    const floorMs = best(t.floorAsync)
    const result = {
      bench: 'compress',
      n,
      ms: round(ms),
      floor_ms: round(floorMs),
      js_ms: round(jsMs),
      ratio_to_floor: round(ms / floorMs),
      ratio_to_floor_1t: round(best(t.sync) / best(t.floorSync)),
      speedup_vs_js: round(jsMs / ms),
      compression_ratio: round(4 * n / size),
      sync_ms: round(best(t.sync)),
      sync_floor_ms: round(best(t.floorSync)),
      adamw_ms: round(best(adamNative)),
      adamw_js_ms: round(adamJs),
      adamw_speedup_vs_js: round(adamJs / best(adamNative)),
      simd: native.simdLevel()
    }
    if (values.json === true) console.log(JSON.stringify(result))
    else {
      rows.push([`${millions}M`, fmt(ms), fmt(floorMs), fmt(ms / floorMs), fmt(result.sync_ms), fmt(result.sync_floor_ms), fmt(result.sync_ms / result.sync_floor_ms),
        fmt(jsMs), fmt(jsMs / ms), fmt(result.compression_ratio), fmt(result.adamw_ms), fmt(adamJs), fmt(result.adamw_speedup_vs_js)])
    }
  }
  if (values.json !== true) {
    console.log(`compress: density 1/64 (k ${options.k} of ${chunk}), ${bits}-bit values, beta ${BETA}; ${native.simdLevel()} path; best of several runs, ms`)
    const header = ['n', '2 threads', 'floor', 'ratio', '1 thread', 'floor', 'ratio', 'JS ref', 'speedup', 'size ratio', 'adamw', 'adamw JS', 'speedup']
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
    for (const row of [header, ...rows]) console.log(row.map((c, i) => c.padStart(widths[i])).join('  '))
  }
}

function round (x: number): number {
  return Math.round(x * 1000) / 1000
}

function fmt (x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)
}
