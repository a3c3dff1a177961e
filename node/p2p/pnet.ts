// Private swarms: libp2p's pre-shared-key connection protection (the standard pnet protocol:
// exchange 24-byte nonces, then XSalsa20 both ways), so our nodes interoperate with any
// libp2p pnet peer. We carry our own protector because @libp2p/pnet 3.0.27 (the newest
// release) crashes under traffic: it passes whole messages to xsalsa20's WebAssembly module,
// whose memory grows per message until "Maximum memory size exceeded", and it never
// finalizes its ciphers, leaking a slot of that memory per connection. Upstream fixed both in
// js-libp2p PR #3585 (unreleased as of @libp2p/pnet 3.0.27): xor in bounded chunks, finalize
// on close. Go back to `preSharedKey` from @libp2p/pnet once a release has that fix.
import { InvalidParametersError } from '@libp2p/interface'
import type { AbortOptions, ConnectionProtector, MultiaddrConnection } from '@libp2p/interface'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import type { SendResult } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'
import xsalsa20 from 'xsalsa20'
import { PNET_NONCE_TIMEOUT_MS } from '../timing.js'

const NONCE_LENGTH = 24
/** Small enough that xsalsa20's WebAssembly memory (640 KiB at start) never has to grow. */
const XOR_CHUNK = 16 * 1024

export interface PrivateNetworkInit {
  /** The swarm.key file: `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits. */
  swarmKey: Uint8Array
}

/** Decodes the 32-byte key from a swarm.key file's bytes. */
export function decodeSwarmKey (file: Uint8Array): Uint8Array {
  const lines = new TextDecoder().decode(file).split(/\r?\n|\r/)
  if (lines[0] !== '/key/swarm/psk/1.0.0/' || lines[1] !== '/base16/' || !/^[0-9a-fA-F]{64}$/.test(lines[2] ?? '')) {
    throw new InvalidParametersError('not a swarm key: expected /key/swarm/psk/1.0.0/, /base16/ and 64 hex digits')
  }
  return Uint8Array.from(Buffer.from(lines[2], 'hex'))
}

/** The connection protector for libp2p's `connectionProtector` option. */
export function privateNetwork (init: PrivateNetworkInit): () => ConnectionProtector {
  const psk = decodeSwarmKey(init.swarmKey)
  return () => ({
    async protect (connection: MultiaddrConnection, options?: AbortOptions): Promise<MultiaddrConnection> {
      const log = connection.log.newScope('pnet')
      const localNonce = crypto.getRandomValues(new Uint8Array(NONCE_LENGTH))
      const signal = options?.signal ?? AbortSignal.timeout(PNET_NONCE_TIMEOUT_MS)
      const bytes = byteStream(connection)
      const [remote] = await Promise.all([
        bytes.read({ bytes: NONCE_LENGTH, signal }),
        bytes.write(localNonce, { signal })
      ])
      log('exchanged nonces')
      return new EncryptedConnection(bytes.unwrap(), psk, localNonce, remote.subarray())
    }
  })
}

/** XSalsa20 over a stream, in bounded chunks. */
function xorInChunks (cipher: xsalsa20.Xor, input: Uint8Array): Uint8Array {
  const output = new Uint8Array(input.byteLength)
  for (let i = 0; i < input.byteLength; i += XOR_CHUNK) {
    const end = Math.min(i + XOR_CHUNK, input.byteLength)
    cipher.update(input.subarray(i, end), output.subarray(i, end))
  }
  return output
}

class EncryptedConnection extends AbstractMultiaddrConnection {
  private readonly inner: MultiaddrConnection
  private readonly inbound: xsalsa20.Xor
  private readonly outbound: xsalsa20.Xor
  private finalized = false

  constructor (inner: MultiaddrConnection, psk: Uint8Array, localNonce: Uint8Array, remoteNonce: Uint8Array) {
    super({ log: inner.log, remoteAddr: inner.remoteAddr, direction: inner.direction })
    this.inner = inner
    this.inbound = xsalsa20(remoteNonce, psk)
    this.outbound = xsalsa20(localNonce, psk)

    inner.addEventListener('message', (evt) => {
      if (this.finalized) return
      const data = evt.data
      if (data instanceof Uint8Array) {
        this.onData(xorInChunks(this.inbound, data))
      } else {
        for (const buf of data) this.onData(xorInChunks(this.inbound, buf))
      }
    })
    inner.addEventListener('drain', () => { this.onMuxerDrain() })
    inner.addEventListener('close', (evt) => {
      this.finalize()
      if (evt.error == null) this.onTransportClosed()
      else if (evt.local) this.abort(evt.error)
      else this.onRemoteReset()
    })
  }

  /** Hands the ciphers' slots back to xsalsa20's shared pool and wipes the key from it. */
  private finalize (): void {
    if (this.finalized) return
    this.finalized = true
    this.inbound.finalize()
    this.outbound.finalize()
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    await this.inner.close(options)
  }

  sendData (data: Uint8ArrayList): SendResult {
    if (this.finalized) return { sentBytes: 0, canSendMore: false }
    return { sentBytes: data.byteLength, canSendMore: this.inner.send(xorInChunks(this.outbound, data.subarray())) }
  }

  sendReset (err: Error): void {
    this.inner.abort(err)
  }

  sendPause (): void {
    this.inner.pause()
  }

  sendResume (): void {
    this.inner.resume()
  }
}
