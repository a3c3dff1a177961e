// Loading: the addon provides every kernel; without it the JS reference stands in after one
// warning line; SWARMTRAIN_NATIVE_PORTABLE=1 forces the portable code path.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as native from '../native/index.js'

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native')

test('the addon builds and loads, with every kernel', () => {
  assert.ok(native.isNative, 'native addon did not load (is build/Release/swarmtrain_native.node there?)')
  const best = native.simdLevel()
  assert.match(best, /^(avx512|avx2|portable)$/)
  assert.is(native.setSimd(false), 'portable')
  assert.is(native.setSimd('portable'), 'portable')
  // A cap gives that path if the CPU has it, else the best below it.
  assert.is(native.setSimd('avx2'), best === 'portable' ? 'portable' : 'avx2')
  assert.is(native.setSimd('avx512'), best)
  assert.is(native.setSimd(true), best)
  assert.throws(() => native.setSimd('sse' as 'avx2'), TypeError)
})

test('axpy matches the reference and rejects bad arguments', () => {
  const a = Float32Array.from([1, 2, 3])
  const b = Float32Array.from([1, 2, 3])
  const x = Float32Array.from([0.5, -1, 2])
  native.axpy(a, x, 2)
  native.reference.axpy(b, x, 2)
  assert.equal(Array.from(a), Array.from(b))
  assert.equal(Array.from(a), [2, 0, 7])
  assert.throws(() => native.axpy(a, new Float32Array(2), 1), /same length/)
  assert.throws(() => native.axpy(a, [1, 2, 3] as unknown as Float32Array, 1), /Float32Array/)
})

const probe = `const k = await import(process.argv[1]);
const a = Float32Array.of(1, 2); k.axpy(a, Float32Array.of(1, 1), 1);
console.log(JSON.stringify({ isNative: k.isNative, simd: k.simdLevel(), a: Array.from(a) }))`

test('without the addon the reference is used, after a one-line warning', () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-native-'))
  try {
    cpSync(nativeDir, join(dir, 'dist', 'native'), { recursive: true }) // no build/ beside it
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', probe, join(dir, 'dist', 'native', 'index.js')], { encoding: 'utf8' })
    assert.is(child.status, 0, child.stderr)
    assert.equal(JSON.parse(child.stdout), { isNative: false, simd: 'js', a: [2, 3] })
    const warnings = child.stderr.split('\n').filter(line => line.includes('swarmtrain'))
    assert.is(warnings.length, 1)
    assert.match(warnings[0], /native addon unavailable, using the JavaScript reference/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('SWARMTRAIN_NATIVE_PORTABLE=1 selects the portable path', () => {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe, join(nativeDir, 'index.js')], { encoding: 'utf8', env: { ...process.env, SWARMTRAIN_NATIVE_PORTABLE: '1' } })
  assert.equal(JSON.parse(out), { isNative: true, simd: 'portable', a: [2, 3] })
})

test.run()
