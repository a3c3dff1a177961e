import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BROWN_DATASET, DataFileError, DatasetError, loadBrown, loadDataset, loadTextFile, stripTags } from '../node/data/corpus.js'
import { defaultManifest } from '../node/manifest/manifest.js'
import { BatchSampler, evenBatches } from '../node/data/sampler.js'
import { decode, encode } from '../node/data/tokenizer.js'

const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-data-'))

test('stripTags keeps the words and rejoins punctuation and quotes', () => {
  const tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, Atlanta's/np$ 1/2/cd ./.\n\n\n\tNext/ap ./.\n"
  assert.is(stripTags(tagged), 'The jury said "no evidence", Atlanta\'s 1/2.\nNext.')
})

test('the Brown corpus loads without tags, split deterministically by file', async () => {
  const a = await loadBrown()
  const b = await loadDataset(defaultManifest().datasetId)
  // One name: the manifest's dataset id is the corpus's source and a checkpoint's data.
  assert.is(a.source, BROWN_DATASET)
  assert.is(b.source, BROWN_DATASET)
  await loadDataset('no-such-corpus').then(() => assert.unreachable('an unknown dataset loaded'), err => {
    assert.instance(err, DatasetError)
    assert.match(err.message, /unknown dataset 'no-such-corpus'/)
  })
  assert.equal(a.validation, b.validation)
  const text = decode(a.train.subarray(0, 2000))
  assert.ok(text.startsWith('The Fulton County Grand Jury said Friday'), text.slice(0, 60))
  assert.not.ok(/\/(at|nn|vbd)\b/.test(decode(a.train.subarray(0, 200_000))), 'tags left in the text')
  const total = a.train.length + a.validation.length
  assert.ok(total > 5_000_000 && total < 7_000_000, `corpus size ${total}`)
  const share = a.validation.length / total
  assert.ok(share > 0.07 && share < 0.13, `validation share ${share}`)
  // Validation documents are not in the training text.
  const probe = decode(a.validation.subarray(1000, 1100))
  assert.not.ok(decode(a.train).includes(probe), 'a validation passage appears in train')
})

test('a user text file is split, and bad files give one-line DataFileErrors', async () => {
  const good = join(dir, 'good.txt')
  writeFileSync(good, 'héllo wörld. '.repeat(100))
  const corpus = await loadTextFile(good, 33)
  assert.is(corpus.train.length + corpus.validation.length, encode('héllo wörld. '.repeat(100)).length)
  assert.ok(corpus.validation.length >= 33)

  const cases: Array<[string, string | Uint8Array, RegExp]> = [
    ['empty.txt', '', /empty/],
    ['latin1.txt', Uint8Array.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x21]), /not valid UTF-8/],
    ['short.txt', 'too short', /too short \(9 bytes.*at least 66/]
  ]
  for (const [name, content, message] of cases) {
    writeFileSync(join(dir, name), content)
    await assertDataError(loadTextFile(join(dir, name), 33), message)
  }
  await assertDataError(loadTextFile(join(dir, 'missing.txt'), 33), /cannot read it \(ENOENT\)/)
  await assertDataError(loadTextFile(dir, 33), /not a regular file/)
})

async function assertDataError (promise: Promise<unknown>, message: RegExp): Promise<void> {
  try {
    await promise
  } catch (err) {
    assert.instance(err, DataFileError)
    assert.match((err as Error).message, message)
    assert.not.match((err as Error).message, /\n/)
    return
  }
  assert.unreachable('no error')
}

test('BatchSampler windows are next-token pairs, seeded and resumable', () => {
  const tokens = encode('abcdefghijklmnopqrstuvwxyz'.repeat(4))
  const s = new BatchSampler(tokens, 8, 3, 7)
  const batch = s.next()
  assert.equal(batch.x.shape, [3, 8])
  for (let r = 0; r < 3; r++) {
    for (let t = 0; t < 8; t++) {
      const x = Number(batch.x.data[r * 8 + t])
      assert.is(Number(batch.targets.data[r * 8 + t]), x === 122 ? 97 : x + 1)
    }
  }
  const saved = s.state()
  const after = s.next()
  const again = new BatchSampler(tokens, 8, 3, 99)
  again.restore(saved)
  assert.equal(again.next(), after)
  assert.equal(new BatchSampler(tokens, 8, 3, 7).next(), batch)
  assert.throws(() => new BatchSampler(tokens.subarray(0, 8), 8, 1, 0), /at least 9 tokens/)
})

test('evenBatches covers the text from start to end, the same every time', () => {
  const tokens = encode('0123456789'.repeat(10))
  const batches = evenBatches(tokens, 5, 2, 3)
  assert.is(batches.length, 3)
  assert.is(decode(Array.from(batches[0].x.data.subarray(0, 5), Number)), '01234')
  const last = batches[2].targets.data
  assert.is(decode(Array.from(last.subarray(last.length - 5), Number)), '56789')
  assert.equal(evenBatches(tokens, 5, 2, 3), batches)
})

test.after(() => { rmSync(dir, { recursive: true, force: true }) })

test.run()
