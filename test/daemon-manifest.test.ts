// The run manifest (canonical form, run id, validation) and the files `init` writes.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { canonicalJson, defaultManifest, ManifestError, parseManifest, readManifest, runIdOf, validateManifest } from '../node/manifest/manifest.js'
import { loadOrCreateIdentity, readSwarmKey } from '../node/p2p/keys.js'
import { TestSwarm } from './daemon-harness.js'

test('canonical form ignores key order; the run id changes with any setting', () => {
  assert.is(canonicalJson({ b: 1, a: { d: [1, { z: 2, y: 3 }], c: 'x' } }), '{"a":{"c":"x","d":[1,{"y":3,"z":2}]},"b":1}')
  const m = defaultManifest()
  const shuffled = JSON.parse(JSON.stringify({ datasetId: m.datasetId, averaging: m.averaging, nStages: m.nStages, optimizer: m.optimizer, model: m.model, formatVersion: m.formatVersion }))
  assert.is(runIdOf(validateManifest(shuffled)), runIdOf(m))
  assert.match(runIdOf(m), /^[0-9a-f]{32}$/)
  const ids = new Set([runIdOf(m)])
  for (const change of [
    (x: typeof m) => { x.nStages = 2 },
    (x: typeof m) => { x.model.dModel = 96 },
    (x: typeof m) => { x.optimizer.lr *= 2 },
    (x: typeof m) => { x.averaging.topkDensity = 0.02 },
    (x: typeof m) => { x.datasetId = 'other' }
  ]) {
    const copy = structuredClone(m)
    change(copy)
    ids.add(runIdOf(copy))
  }
  assert.is(ids.size, 6)
})

test('validation names the problem', () => {
  const bad = (edit: (m: Record<string, any>) => void, pattern: RegExp): void => {
    const m: Record<string, any> = structuredClone(defaultManifest())
    edit(m)
    assert.throws(() => validateManifest(m), (err: Error) => err instanceof ManifestError && pattern.test(err.message))
  }
  bad(m => { m.extra = 1 }, /unknown field 'extra'/)
  bad(m => { m.model.nHeads = 5 }, /nHeads \(5\) must divide model.dModel/)
  bad(m => { m.nStages = 9 }, /nStages \(9\) cannot exceed/)
  bad(m => { m.formatVersion = 2 }, /formatVersion must be 1/)
  bad(m => { m.optimizer.lr = 'fast' }, /optimizer.lr/)
  bad(m => { m.averaging.chunkSize = 0.5 }, /averaging.chunkSize/)
  bad(m => { delete m.model.seqLen }, /model.seqLen/)
  bad(m => { m.datasetId = '../etc' }, /datasetId/)
  bad(m => { m.name = 'a b' }, /'name' must be 1 to 64/)
  assert.throws(() => parseManifest('{"formatVersion": 1,', 'peer X'), /peer X is not valid JSON/)
  assert.throws(() => parseManifest(new Uint8Array([0xff, 0xfe]), 'peer X'), /not valid JSON/)
})

test('init writes the manifest, keys with owner-only modes, and refuses to overwrite', async () => {
  const swarm = new TestSwarm()
  try {
    const dir = swarm.dir('node')
    const first = await swarm.run(['init', '--dir', dir, '--private', '--stages', '2', '--d-model', '96', '--lr', '0.001', '--inner-steps', '20'])
    assert.is(first.code, 0, first.stderr)
    const manifest = await readManifest(dir)
    assert.is(manifest.nStages, 2)
    assert.is(manifest.model.dModel, 96)
    assert.is(manifest.optimizer.lr, 0.001)
    assert.is(manifest.averaging.innerSteps, 20)
    assert.match(first.stdout, new RegExp(`run id +${runIdOf(manifest)}`))
    assert.is(statSync(join(dir, 'identity.key')).mode & 0o777, 0o600)
    assert.is(statSync(join(dir, 'swarm.key')).mode & 0o777, 0o600)
    assert.is((await readSwarmKey(join(dir, 'swarm.key'))).length, 95)
    // The identity persists: loading it again gives the same peer.
    const key = await loadOrCreateIdentity(dir)
    assert.equal((await loadOrCreateIdentity(dir)).raw, key.raw)
    const again = await swarm.run(['init', '--dir', dir])
    assert.is(again.code, 2)
    assert.match(again.stderr, /already exists \(pass --force/)
    const forced = await swarm.run(['init', '--dir', dir, '--force'])
    assert.is(forced.code, 0)
    assert.throws(() => statSync(join(dir, 'swarm.key')), /ENOENT/, 'a public run drops the old swarm key')
    const badFlag = await swarm.run(['init', '--dir', swarm.dir('other'), '--heads', '5'])
    assert.is(badFlag.code, 2)
    assert.is(badFlag.stderr.trim().split('\n').length, 1)
    assert.match(badFlag.stderr, /nHeads \(5\) must divide/)
    const noDaemon = await swarm.run(['status', '--dir', dir])
    assert.is(noDaemon.code, 2)
    assert.match(noDaemon.stderr, /no running daemon found/)
    // Default settings, yet two runs: each init draws a name; a given name reproduces the run.
    const runIds = async (args: string[]): Promise<string[]> => await Promise.all(['x', 'y'].map(async sub => {
      const result = await swarm.run(['init', '--dir', swarm.dir(`${args.length}-${sub}`), ...args])
      assert.is(result.code, 0, result.stderr)
      return runIdOf(await readManifest(swarm.dir(`${args.length}-${sub}`)))
    }))
    const [x, y] = await runIds([])
    assert.is.not(x, y)
    const [p, q] = await runIds(['--name', 'brown-d192'])
    assert.is(p, q)
    assert.is((await readManifest(swarm.dir('2-x'))).name, 'brown-d192')
    assert.match(forced.stdout, /training starts once 3 node\(s\) serve, one per stage/)
    const badKey = await swarm.run(['start', '--dir', dir, '--swarm-key', join(dir, 'swarm.json')])
    assert.is(badKey.code, 2)
    assert.match(badKey.stderr, /is not a swarm key/)
    assert.ok(readFileSync(join(dir, 'swarm.json'), 'utf8').endsWith('}\n'))
  } finally {
    await swarm.close()
  }
})

test.run()
