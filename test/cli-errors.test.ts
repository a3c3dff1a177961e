// Operator mistakes are one line and a non-zero exit, found before anything is saved: bad
// addresses, bad peer ids, a port in use.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { TestSwarm } from './daemon-harness.js'

const peer = '12D3KooWHGbF4YEGS6XjhrJYkk7uyGQfXXvhWxXJJJYk7ygjdvQW'

test('bad addresses and peer ids: one line, exit 2, nothing written', async () => {
  const swarm = new TestSwarm()
  try {
    const joinDir = swarm.dir('joiner')
    const cases: Array<[string[], RegExp]> = [
      [['join', 'garbage', '--dir', joinDir], /^swarmtrain: 'garbage' is not a multiaddr/],
      [['join', '/ip4/127.0.0.1/tcp/9', '--dir', joinDir], /names no peer: add \/p2p\/<peer id>/],
      [['join', '/ip4/127.0.0.1/tcp/9/p2p/abc', '--dir', joinDir], /has a bad peer id 'abc'/],
      [['join', `/ip4/127.0.0.1/tcp/9/p2p/${peer}`, '--dir', joinDir, '--listen', 'garbage'], /--listen 'garbage' is not a multiaddr/],
      [['join', `/ip4/127.0.0.1/tcp/9/p2p/${peer}`, '--dir', joinDir, '--listen', '/ip4/127.0.0.1/udp/9'], /--listen .* has no TCP port/],
      [['join', `/ip4/127.0.0.1/tcp/9/p2p/${peer}`, '--dir', joinDir, '--control-port', 'x'], /--control-port must be an integer/],
      [['start', '--dir', joinDir, '--bootstrap', '/ip4/127.0.0.1/tcp/9/p2p/Qmnope'], /--bootstrap: .* has a bad peer id 'Qmnope'/]
    ]
    for (const [args, message] of cases) {
      const result = await swarm.run(args)
      assert.is(result.code, 2, `${args.join(' ')}: ${result.stderr}`)
      assert.is(result.stderr.trim().split('\n').length, 1, result.stderr)
      assert.match(result.stderr, message)
    }
    assert.not.ok(existsSync(joinDir), 'join wrote its directory before checking its options')
  } finally {
    await swarm.close()
  }
})

test('a port in use: one line naming the address and what to do', async () => {
  const swarm = new TestSwarm()
  const taken = createServer()
  try {
    await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
    const port = (taken.address() as AddressInfo).port
    const dir = await swarm.init('a', ['--stages', '2'])
    const result = await swarm.run(['start', '--dir', dir, '--no-pipeline', '--capacity', '1', '--listen', `/ip4/127.0.0.1/tcp/${port}`])
    assert.is(result.code, 2, result.stderr)
    assert.is(result.stderr.trim().split('\n').length, 1, result.stderr)
    assert.match(result.stderr, new RegExp(`cannot listen on /ip4/127.0.0.1/tcp/${port}: the port is in use \\(is another daemon running\\? pick a free one with --listen`))
  } finally {
    taken.close()
    await swarm.close()
  }
})

test.run()
