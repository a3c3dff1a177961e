// The capacity probe times real forward+backward passes of a stage and caches the result per
// machine and model shape; --capacity overrides it.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CAPACITY_FILE, measureCapacity } from '../node/assignment/capacity.js'
import { stageMemoryBytes } from '../node/assignment/memory.js'
import { defaultManifest } from '../node/manifest/manifest.js'

function tinyManifest () {
  const m = defaultManifest()
  m.model = { vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 2, seqLen: 16 }
  m.nStages = 2
  m.optimizer.batchSize = 2
  return m
}

test('probe, cache, override', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-capacity-'))
  try {
    const manifest = tinyManifest()
    const probed = await measureCapacity(manifest, dir)
    assert.is(probed.source, 'probe')
    assert.ok(probed.throughput > 0 && Number.isFinite(probed.throughput))
    assert.ok(probed.freeMemory > 0)
    const cached = await measureCapacity(manifest, dir)
    assert.is(cached.source, 'cache')
    assert.is(cached.throughput, probed.throughput)
    assert.is(Object.keys(JSON.parse(readFileSync(join(dir, CAPACITY_FILE), 'utf8'))).length, 1)
    // Another model shape is another cache entry.
    const wider = tinyManifest()
    wider.model.dModel = 64
    assert.is((await measureCapacity(wider, dir, 123)).source, 'given')
    assert.is((await measureCapacity(wider, dir, 123)).throughput, 123)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('stage memory grows with the model and includes the head on the last stage', () => {
  const small = tinyManifest()
  const big = tinyManifest()
  big.model.dModel = 64
  assert.ok(stageMemoryBytes(big, 0) > 2 * stageMemoryBytes(small, 0))
  const vocab = tinyManifest()
  vocab.model.vocabSize = 4096
  assert.ok(stageMemoryBytes(vocab, 1) - stageMemoryBytes(small, 1) > 4 * 4096 * 32)
})

test.run()
