// A STUN Binding responder (RFC 8489, the part RFC 5389 already had): a node behind NAT needs
// a server outside its NAT to tell it which address and port its NAT maps it to (its
// server-reflexive address), or WebRTC's ICE has only private candidates to offer and no hole
// is punched. Every public swarmtrain node answers, so a run needs no STUN server of its own:
// a NATed node asks the relays and bootstrap peers it knows anyway (see webrtc.ts).
//
// It answers on UDP at the same address and port number as each of the node's TCP listeners:
// whoever knows a node's TCP address then knows its STUN server with no extra configuration or
// announcement, and an operator opens one port number for both protocols. It binds each
// listening interface address separately (not 0.0.0.0), so that on a host with several
// addresses every answer leaves from the address the request came to.
//
// Only Binding requests get an answer; everything else (other methods, indications, responses,
// malformed or oversized datagrams) is dropped silently. Answers are rate limited (an answer is
// at most 24 bytes larger than a request, so a spoofed source gains an attacker little).
import { createSocket, type Socket } from 'node:dgram'
import { isIPv4 } from 'node:net'
import type { ComponentLogger, Libp2p, Listener, Logger, Startable } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'

const HEADER_BYTES = 20
const MAGIC_COOKIE = 0x2112a442
const BINDING_REQUEST = 0x0001
const BINDING_SUCCESS = 0x0101
const XOR_MAPPED_ADDRESS = 0x0020
/** A request beyond this is no ordinary Binding request (RFC 8489 §6.1: fit the path MTU; 548 for IPv4). */
const MAX_REQUEST_BYTES = 548

/** An IP address and UDP port, as the responder saw it. */
export interface Endpoint {
  address: string
  port: number
}

/**
 * The Binding success response to `request` from `from`, or undefined when `request` is not a
 * well-formed Binding request (RFC 8489 §6.3: two zero bits, the magic cookie, a length that
 * matches and is a multiple of 4, attributes that fit exactly). Attributes are not
 * interpreted: a plain Binding request needs none, and answering is all a responder can do.
 */
export function bindingResponse (request: Uint8Array, from: Endpoint): Uint8Array | undefined {
  if (request.byteLength < HEADER_BYTES || request.byteLength > MAX_REQUEST_BYTES) return undefined
  const view = new DataView(request.buffer, request.byteOffset, request.byteLength)
  const length = view.getUint16(2)
  if (view.getUint16(0) !== BINDING_REQUEST || view.getUint32(4) !== MAGIC_COOKIE) return undefined
  if (length % 4 !== 0 || HEADER_BYTES + length !== request.byteLength) return undefined
  for (let at = HEADER_BYTES; at < request.byteLength;) {
    if (at + 4 > request.byteLength) return undefined
    at += 4 + Math.ceil(view.getUint16(at + 2) / 4) * 4
    if (at > request.byteLength) return undefined
  }
  const ip = ipBytes(from.address)
  if (ip === undefined) return undefined
  const response = new Uint8Array(HEADER_BYTES + 8 + ip.length)
  const out = new DataView(response.buffer)
  out.setUint16(0, BINDING_SUCCESS)
  out.setUint16(2, 8 + ip.length)
  out.setUint32(4, MAGIC_COOKIE)
  response.set(request.subarray(8, HEADER_BYTES), 8) // the transaction id
  out.setUint16(HEADER_BYTES, XOR_MAPPED_ADDRESS)
  out.setUint16(HEADER_BYTES + 2, 4 + ip.length)
  out.setUint8(HEADER_BYTES + 5, ip.length === 4 ? 0x01 : 0x02)
  out.setUint16(HEADER_BYTES + 6, from.port ^ (MAGIC_COOKIE >>> 16))
  // X-Address: the address XORed with the magic cookie, then (IPv6) the transaction id.
  for (let i = 0; i < ip.length; i++) response[HEADER_BYTES + 8 + i] = ip[i] ^ response[4 + i]
  return response
}

/** The bytes of an IP address (a multiaddr's ip4/ip6 component is exactly those after its code). */
function ipBytes (address: string): Uint8Array | undefined {
  try {
    return multiaddr(`/${isIPv4(address) ? 'ip4' : 'ip6'}/${address.split('%')[0]}`).bytes.subarray(1)
  } catch {
    return undefined
  }
}

export interface StunResponderComponents {
  events: Pick<Libp2p, 'addEventListener' | 'removeEventListener'>
  logger: ComponentLogger
}

export interface StunResponderInit {
  /** Answers per second, over all sockets (a burst of as many is allowed). */
  maxAnswersPerSecond?: number
}

/** A libp2p service: a Binding responder on UDP beside each TCP listener of the node. */
export class StunResponder implements Startable {
  private readonly log: Logger
  private readonly sockets = new Map<string, Socket>()
  private readonly maxAnswers: number
  private tokens: number
  private refilledAt = Date.now()
  private started = false
  private readonly onListening = (event: CustomEvent<Listener>): void => {
    for (const address of event.detail.getAddrs()) {
      const [ip, transport] = address.getComponents()
      if ((ip?.name === 'ip4' || ip?.name === 'ip6') && transport?.name === 'tcp') this.bind(ip.value ?? '', Number(transport.value))
    }
  }

  constructor (private readonly components: StunResponderComponents, init: StunResponderInit = {}) {
    this.log = components.logger.forComponent('swarmtrain:p2p:stun')
    this.maxAnswers = init.maxAnswersPerSecond ?? 200
    this.tokens = this.maxAnswers
  }

  readonly [Symbol.toStringTag] = 'swarmtrain:stun'

  start (): void {
    this.started = true
    this.components.events.addEventListener('transport:listening', this.onListening)
  }

  stop (): void {
    this.started = false
    this.components.events.removeEventListener('transport:listening', this.onListening)
    for (const socket of this.sockets.values()) socket.close()
    this.sockets.clear()
  }

  /** The UDP endpoints it answers on. */
  get endpoints (): Endpoint[] {
    return [...this.sockets.values()].map(s => { const a = s.address(); return { address: a.address, port: a.port } })
  }

  private bind (host: string, port: number): void {
    const key = `${host}:${port}`
    if (!this.started || this.sockets.has(key)) return
    const socket = createSocket({ type: isIPv4(host) ? 'udp4' : 'udp6' })
    this.sockets.set(key, socket)
    // A port taken by another program, or an interface gone: the node still runs, only
    // without a STUN answer there.
    socket.on('error', err => {
      this.log.error('STUN on udp %s stopped: %e', key, err)
      socket.close()
      this.sockets.delete(key)
    })
    socket.on('message', (message, from) => { this.answer(socket, message, from) })
    socket.bind(port, host, () => { this.log('answering STUN on udp %s', key) })
  }

  private answer (socket: Socket, message: Uint8Array, from: Endpoint): void {
    const now = Date.now()
    this.tokens = Math.min(this.maxAnswers, this.tokens + (now - this.refilledAt) * this.maxAnswers / 1000)
    this.refilledAt = now
    if (this.tokens < 1) return
    const response = bindingResponse(message, from)
    if (response === undefined) return
    this.tokens--
    socket.send(response, from.port, from.address, err => { if (err != null) this.log('STUN answer to %s:%d failed: %e', from.address, from.port, err) })
  }
}

export function stunResponder (init: StunResponderInit = {}): (components: StunResponderComponents) => StunResponder {
  return components => new StunResponder(components, init)
}
