// Length-prefixed protobuf messages over a libp2p 3 stream, with the size limit enforced
// before allocation. Any bad frame (too large, truncated, undecodable) aborts the stream and
// throws a typed error, so a handler can log it and the node keeps serving other streams.
import { InvalidDataLengthError, InvalidDataLengthLengthError, InvalidMessageLengthError, lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { AbortOptions, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { MalformedMessageError, MessageTooLargeError, TruncatedMessageError } from './errors.js'

/** The shape of a protons message namespace (e.g. `ManifestRequest`). */
export interface MessageDecoder<T> {
  decode(bytes: Uint8Array | Uint8ArrayList): T
}

export interface MessageEncoder<T> {
  encode(message: T): Uint8Array
}

/** A stream carrying length-prefixed messages; incoming ones may not exceed `maxBytes`. */
export class MessageStream {
  readonly stream: Stream
  private readonly lp: LengthPrefixedStream<Stream>

  constructor (stream: Stream, readonly maxBytes: number) {
    this.stream = stream
    // The buffer must hold one whole message plus its varint prefix.
    this.lp = lpStream(stream, { maxDataLength: maxBytes, maxBufferSize: maxBytes + 16 })
  }

  /** Reads and decodes one message; on any bad frame aborts the stream and throws a typed error. */
  async read<T> (codec: MessageDecoder<T>, options?: AbortOptions): Promise<T> {
    let bytes: Uint8ArrayList
    try {
      bytes = await this.lp.read(options)
    } catch (err) {
      throw this.fail(classify(err as Error, this.maxBytes))
    }
    try {
      return codec.decode(bytes)
    } catch (err) {
      throw this.fail(new MalformedMessageError(`undecodable message on ${this.stream.protocol}: ${(err as Error).message}`))
    }
  }

  async write<T> (codec: MessageEncoder<T>, message: T, options?: AbortOptions): Promise<void> {
    await this.lp.write(codec.encode(message), options)
  }

  /** Aborts (resets) the stream with `err` and returns it, for `throw stream.fail(...)`. */
  fail (err: Error): Error {
    this.stream.abort(err)
    return err
  }
}

function classify (err: Error, maxBytes: number): Error {
  if (err instanceof InvalidDataLengthError || err instanceof InvalidDataLengthLengthError) return new MessageTooLargeError(`message exceeds ${maxBytes} bytes`)
  if (err instanceof InvalidMessageLengthError) return new MalformedMessageError(err.message)
  if (err.name === 'UnexpectedEOFError') return new TruncatedMessageError('stream ended inside or before a message')
  return err
}
