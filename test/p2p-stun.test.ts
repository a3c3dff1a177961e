// The STUN Binding responder public nodes run for NATed peers' WebRTC, and how a NATed node
// picks its STUN servers and the /webrtc address it upgrades through.
import '../node/shim.js'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createSocket } from 'node:dgram'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createHost } from '../node/p2p/host.js'
import { bindingResponse } from '../node/p2p/stun.js'
import { stunServers, webrtcAddress } from '../node/p2p/webrtc.js'

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'))
/** RFC 5769's sample transaction id. */
const TXID = 'b7e7a701bc34d686fa87dfae'

/** A Binding request header (type, length, magic cookie, transaction id) and `body`. */
function request (body = '', type = '0001', cookie = '2112a442'): Uint8Array {
  return hex(type + (body.length / 2).toString(16).padStart(4, '0') + cookie + TXID + body)
}

test('a Binding request gets a success response with XOR-MAPPED-ADDRESS (RFC 5769 §2.2, §2.3 values)', () => {
  const v4 = bindingResponse(request(), { address: '192.0.2.1', port: 32853 })
  assert.equal(Buffer.from(v4 ?? []).toString('hex'), '0101000c2112a442' + TXID + '00200008' + '0001a147e112a643')
  const v6 = bindingResponse(request(), { address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 })
  assert.equal(Buffer.from(v6 ?? []).toString('hex'), '010100182112a442' + TXID + '002000140002a147' + '0113a9faa5d3f179bc25f4b5bed2b9d9')
  // Attributes (here SOFTWARE, padded, and FINGERPRINT) are allowed and change nothing.
  const withAttributes = bindingResponse(request('802200037374750080280004deadbeef'), { address: '192.0.2.1', port: 32853 })
  assert.equal(withAttributes, v4)
})

test('anything but a well-formed Binding request is ignored, and garbage never throws', () => {
  const from = { address: '192.0.2.1', port: 1 }
  const ignored: Record<string, Uint8Array> = {
    empty: new Uint8Array(0),
    short: request().subarray(0, 19),
    'wrong cookie': request('', '0001', '2112a443'),
    'a Binding response': request('', '0101'),
    'a Binding indication': request('', '0011'),
    'another method': request('', '0003'),
    'length beyond the datagram': hex('000100082112a442' + TXID),
    'length short of the datagram': Uint8Array.from([...request(), 0, 0, 0, 0]),
    'length not a multiple of 4': hex('000100022112a442' + TXID + '0000'),
    'an attribute running past the end': request('0022000800000000'),
    'a truncated attribute header': request('00220000' + '0000').subarray(0, 26),
    oversized: request('8022' + (600 - 4).toString(16).padStart(4, '0') + '00'.repeat(600 - 4)),
    'an RFC 3489 request (no cookie)': request('', '0001', '00000000')
  }
  for (const [what, bytes] of Object.entries(ignored)) assert.is(bindingResponse(bytes, from), undefined, what)
  assert.is(bindingResponse(request(), { address: 'not an address', port: 1 }), undefined)
  let seed = 12345
  const random = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed }
  for (let i = 0; i < 20_000; i++) {
    const bytes = Uint8Array.from({ length: random() % 80 }, () => random() & 0xff)
    // Keep the cookie now and then, so that the later checks get exercised too.
    if (bytes.length >= 8 && i % 2 === 0) {
      bytes.set([0x00, 0x01], 0)
      bytes.set(hex('2112a442'), 4)
    }
    bindingResponse(bytes, from)
  }
})

test('a public host answers STUN on UDP at its TCP port; garbage gets no answer', async () => {
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), runId: 'stun', listen: ['/ip4/127.0.0.1/tcp/0'] })
  const socket = createSocket('udp4')
  try {
    const port = Number(host.getMultiaddrs()[0].getComponents()[1].value)
    assert.ok(host.services.stun?.endpoints.some(e => e.address === '127.0.0.1' && e.port === port), 'a responder beside the TCP listener')
    await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve))
    const replies: Buffer[] = []
    socket.on('message', message => replies.push(message))
    socket.send(hex('deadbeef'), port, '127.0.0.1')
    socket.send(request(), port, '127.0.0.1')
    const deadline = Date.now() + 5000
    while (replies.length === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    await new Promise(resolve => setTimeout(resolve, 200))
    assert.is(replies.length, 1, 'one answer, to the Binding request only')
    assert.equal(new Uint8Array(replies[0]), bindingResponse(request(), { address: '127.0.0.1', port: socket.address().port }))
  } finally {
    socket.close()
    await host.stop()
  }
})

test('a NATed node asks its relays for STUN (their TCP ports), else its bootstrap peers; it upgrades through the relayed address', () => {
  const peer = peerIdFromString('12D3KooWEfDKQCmfUeeM5NnPhoLCNe4Zkzn5Rnezpsm5wAB7uATx')
  const relay = '/ip4/11.0.1.1/tcp/4001/p2p/12D3KooWCWXFRpqc5mcjDhtz6yUzbsBL64r4oMK9yWrZfdiRimGh'
  const own = [multiaddr('/ip4/10.1.0.2/tcp/4001'), multiaddr(`${relay}/p2p-circuit/p2p/${peer}`), multiaddr(`${relay}/p2p-circuit/webrtc/p2p/${peer}`), multiaddr(`/ip6/2001:db8::1/tcp/7/p2p/${peer}/p2p-circuit/p2p/${peer}`)]
  assert.equal(stunServers(own, ['/ip4/11.0.2.1/tcp/4002/p2p/x']), ['stun:11.0.1.1:4001', 'stun:[2001:db8::1]:7'])
  assert.equal(stunServers([own[0]], ['/dns4/boot.example/tcp/4171/p2p/x', 'not an address', '/ip4/11.0.2.1/udp/9']), ['stun:boot.example:4171'])
  assert.is(webrtcAddress(multiaddr(`${relay}/p2p-circuit/p2p/${peer}`), peer).toString(), `${relay}/p2p-circuit/webrtc/p2p/${peer}`)
})

test.run()
