// Every component logs through its node's logger: with several nodes in one process (tests,
// benchmarks) each log line names the node it comes from, and DEBUG=swarmtrain:* still
// selects them all.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { enable, enabled } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createClientHost } from '../node/p2p/host.js'
import { nodeLogger } from '../node/p2p/logger.js'
import { readSource } from './source-files.js'

/** The name a logger prints in front of its lines. */
function nameOf (log: unknown): string {
  return (log as { namespace: string }).namespace
}

test('a node logger puts the end of the peer id after the top namespace', () => {
  const a = nodeLogger('12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAaaaaaa')
  const b = nodeLogger('12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBbbbbbb')
  assert.is(nameOf(a.forComponent('swarmtrain:registry')), 'swarmtrain:aaaaaa:registry')
  assert.is(nameOf(b.forComponent('swarmtrain:registry')), 'swarmtrain:bbbbbb:registry')
  assert.is(nameOf(a.forComponent('libp2p')), 'libp2p:aaaaaa')
  enable('swarmtrain:*')
  assert.ok(enabled(nameOf(a.forComponent('swarmtrain:pipeline:caller'))), 'DEBUG=swarmtrain:* no longer selects a node logger')
})

test('a host names its node in its logger', async () => {
  const privateKey = await generateKeyPair('Ed25519')
  const host = await createClientHost({ privateKey })
  try {
    const tag = peerIdFromPrivateKey(privateKey).toString().slice(-6)
    assert.is(nameOf(host.logger.forComponent('swarmtrain:registry')), `swarmtrain:${tag}:registry`)
  } finally {
    await host.stop()
  }
})

test('components of a node take its logger instead of a module-level one', () => {
  const components = [
    'node/daemon/node.ts', 'node/registry/registry.ts', 'node/assignment/assigner.ts', 'node/manifest/exchange.ts', 'node/p2p/peers.ts',
    'node/pipeline/swarm.ts', 'node/pipeline/caller.ts', 'node/pipeline/client.ts', 'node/pipeline/server.ts', 'node/pipeline/service.ts', 'node/pipeline/driver.ts'
  ]
  const moduleLevel = components.filter(f => /^const \w+ = logger\(/m.test(readSource(f)))
  assert.equal(moduleLevel, [])
})

test.run()
