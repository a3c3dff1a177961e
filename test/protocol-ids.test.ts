// Every protocol id and DHT key comes from protocols/ids.ts: the ids name their run, parse
// back, and no other source file builds or matches one by hand.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { readSource, sourceFiles } from './source-files.js'
import { dhtProtocol, infoKey, infoProtocol, manifestProtocol, parseInfoKey, runIdOfProtocol, stageCid, stageProtocol } from '../protocols/ids.js'

const run = '3f9a0c'
const peer = '12D3KooWGzBkqW1dLMxqvxLZ6hXwRkBBsz4Y1QJ2XqpMpnTyfH5Q'

test('protocol ids carry the run id and parse back; other protocols have none', () => {
  for (const id of [dhtProtocol(run), manifestProtocol(run), infoProtocol(run), stageProtocol(run)]) {
    assert.match(id, /^\/swarmtrain\//)
    assert.is(runIdOfProtocol(id), run, id)
  }
  assert.is(new Set([dhtProtocol(run), manifestProtocol(run), infoProtocol(run), stageProtocol(run)]).size, 4)
  assert.is(runIdOfProtocol('/ipfs/id/1.0.0'), undefined)
  assert.is(runIdOfProtocol('/swarmtrain/UPPER/stage/1'), undefined)
  assert.throws(() => stageProtocol('not/a/run'), /run id/)
})

test('info keys parse back; stage provider keys differ per run and stage', async () => {
  assert.equal(parseInfoKey(infoKey(run, peer)), { runId: run, peerId: peer })
  assert.is(parseInfoKey(new TextEncoder().encode(`/swarmtrain/${run}/stage/${peer}`)), undefined)
  assert.is(parseInfoKey(new TextEncoder().encode(`/swarmtrain/${run}/info/0OIl`)), undefined)
  const cids = await Promise.all([stageCid(run, 0), stageCid(run, 1), stageCid('other', 0)])
  assert.is(new Set(cids.map(c => c.toString())).size, 3)
  assert.is((await stageCid(run, 0)).toString(), cids[0].toString())
})

test('no source but protocols/ids.ts builds or matches a protocol id or DHT key', () => {
  const offenders: string[] = []
  for (const file of [...sourceFiles('node'), ...sourceFiles('protocols')]) {
    if (file === join('protocols', 'ids.ts')) continue
    const code = readSource(file).split('\n').filter(line => !/^\s*(\/\/|\*|\/\*\*)/.test(line)).join('\n')
    for (const pattern of [/\bprotocolId\(/, /\\\/swarmtrain\\\//, /`\/?swarmtrain\/\$\{run/, /'\/swarmtrain\//]) {
      if (pattern.test(code)) offenders.push(`${file}: ${pattern.source}`)
    }
  }
  assert.equal(offenders, [])
})

test.run()
