// What `status` says about the swarm: the drivers' losses, read from their records, weighted by
// the tokens each drove, so a node that only serves shows the swarm's loss too.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { summarize } from '../node/daemon/swarm-summary.js'
import type { NodeStatus } from '../node/daemon/node.js'

type Peer = NodeStatus['stages'][number]['peers'][number]

function peer (peerId: string, fields: Partial<Peer> = {}): Peer {
  return { peerId, throughput: 100, servedThroughput: 50, queueLength: 0, round: 3, ready: true, tokensSinceSync: 0, stateHash: '', version: '0.1.0', freeMemory: 1e9, expiresAt: 0, drivenTokens: 0, ...fields }
}

function status (peerId: string, stages: Peer[][], services: NodeStatus['services'] = {}): NodeStatus {
  return { peerId, stages: stages.map((peers, stage) => ({ stage, throughput: 100, peers })), services } as unknown as NodeStatus
}

test('a serving node shows the drivers\' losses, weighted by the tokens they drove', () => {
  const s = summarize(status('me', [
    [peer('me'), peer('d1', { drivenTokens: 1000, trainLoss: 3, validationLoss: 3.5 })],
    [peer('d2', { drivenTokens: 3000, trainLoss: 2, validationLoss: 2.5 }), peer('server')]
  ]))
  assert.is(s.drivers, 2)
  assert.is(s.loss, 2.25)
  assert.is(s.validationLoss, 2.75)
  assert.is(s.nodes, 4)
  assert.is(s.drivenTokens, 4000)
})

test('a driving node counts its own driver once, from its live stats rather than its record', () => {
  const s = summarize(status('me', [[peer('me', { drivenTokens: 10, trainLoss: 9 })], [peer('d2', { drivenTokens: 100, trainLoss: 2 })]], {
    pipeline: { driver: { tokens: 100, trainLoss: 4 } }
  }))
  assert.is(s.drivers, 2)
  assert.is(s.loss, 3)
  assert.is(s.validationLoss, undefined)
})

test('no driver has reported: no loss', () => {
  const s = summarize(status('me', [[peer('me')], [peer('other')]]))
  assert.is(s.drivers, 0)
  assert.is(s.loss, undefined)
})

test.run()
