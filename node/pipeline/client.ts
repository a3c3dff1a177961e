// The caller's side of the stage protocol: one long-lived stream per peer (a new stream per call
// costs several milliseconds), requests multiplexed on it by id, replies matched as they come,
// in any order. A call fails with a StageCallError on timeout, on an error reply, or when its
// stream dies (a killed peer looks like a clean close, so every pending call is failed then);
// choosing another replica is the caller's job.
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { AbortOptions, ComponentLogger, Logger, PeerId, Stream } from '@libp2p/interface'
import { StageRequest, StageResponse, decodeResponse } from '../../protocols/stage-codec.js'
import { defaultTiming } from '../timing.js'
import { timeoutOrShutdown } from '../util/abort.js'
import { UnroutableError } from './service.js'

/**
 * Why a stage call did not produce a result, as far as the client can tell:
 * - transient (try another replica): `timeout`, `closed`, `dial`, `busy`, and `failed` (the
 *   server's own computation failed);
 * - `misbehaved`: the peer broke the protocol (an undecodable or ill-fitting reply);
 * - `refused`: the server called our request bad (BAD_REQUEST, TOO_LARGE). Whose fault that is
 *   only the caller can tell, by checking its own request (see caller.ts).
 */
export type StageCallFailure = 'timeout' | 'closed' | 'dial' | 'busy' | 'failed' | 'misbehaved' | 'refused'

/** The client was stopped (the node is shutting down): calls end instead of being retried. */
export class StageClientStoppedError extends Error {
  override name = 'StageClientStoppedError'
}

/** A stage call that did not produce a result; `reason` tells the router how to treat the peer. */
export class StageCallError extends Error {
  override name = 'StageCallError'
  constructor (message: string, readonly reason: StageCallFailure, readonly queueLength = 0) {
    super(message)
  }
}

export interface StageClientComponents {
  dialer: { dialProtocol(peer: PeerId, protocols: string | string[], options?: AbortOptions): Promise<Stream> }
  /** Ends dials at once when the node stops (stop() waits for dials in progress). */
  shutdown?: AbortSignal
  /** Names the node in log lines (default: unnamed). */
  logger?: ComponentLogger
}

export interface StageClientInit {
  protocol: string
  /** Largest response accepted. */
  maxMessageBytes: number
  dialTimeoutMs?: number
  /** Benchmarks only: hold every request and every reply this long, as a long link would (one way, ms). */
  addedLatencyMs?: number
}

/** Stage messages this client wrote and read (their encoded bytes, without stream framing). */
export interface StageTraffic {
  sentBytes: number
  receivedBytes: number
}

/** What a stage caller needs of a client: one call to one peer (the simulator has its own). */
export type StageTransport = Pick<StageClient, 'call'>

export class StageClient {
  readonly traffic: StageTraffic = { sentBytes: 0, receivedBytes: 0 }
  private readonly channels = new Map<string, Promise<Channel>>()
  private readonly dialer: StageClientComponents['dialer']
  private readonly shutdown?: AbortSignal
  private readonly log: Logger
  private readonly init: Required<StageClientInit>
  private stopped = false

  constructor (components: StageClientComponents, init: StageClientInit) {
    this.dialer = components.dialer
    this.shutdown = components.shutdown
    this.log = (components.logger ?? defaultLogger()).forComponent('swarmtrain:pipeline:client')
    this.init = { ...init, dialTimeoutMs: init.dialTimeoutMs ?? defaultTiming.dialTimeoutMs, addedLatencyMs: init.addedLatencyMs === undefined ? 0 : Math.max(init.addedLatencyMs, 0) }
  }

  /** Sends one request to `peer` and resolves with its OK response (error replies reject; UNROUTABLE with an UnroutableError). */
  async call (peer: string, request: Omit<StageRequest, 'id'>, timeoutMs: number): Promise<StageResponse> {
    if (this.stopped) throw new StageClientStoppedError('the stage client is stopped')
    const latency = this.init.addedLatencyMs
    if (latency > 0) await sleep(latency)
    const channel = await this.channel(peer)
    const response = await channel.request(request, timeoutMs).catch(err => {
      throw this.stopped ? new StageClientStoppedError('the stage client is stopped') : err
    })
    if (latency > 0) await sleep(latency)
    if (response.status === StageResponse.Status.OK) return response
    if (response.status === StageResponse.Status.UNROUTABLE) throw new UnroutableError(`${peer} could not reach a later stage: ${response.error}`)
    const reason: StageCallFailure = response.status === StageResponse.Status.BUSY ? 'busy' : response.status === StageResponse.Status.FAILED ? 'failed' : 'refused'
    throw new StageCallError(`${peer} answered ${response.status}: ${response.error}`, reason, response.queueLength)
  }

  /** Closes every stream; pending calls fail. */
  async stop (): Promise<void> {
    this.stopped = true
    const channels = await Promise.allSettled(this.channels.values())
    this.channels.clear()
    for (const c of channels) if (c.status === 'fulfilled') c.value.close()
  }

  private async channel (peer: string): Promise<Channel> {
    let channel = this.channels.get(peer)
    if (channel === undefined) {
      channel = this.open(peer)
      this.channels.set(peer, channel)
      // A failed dial is not cached: the next call dials again (the router decides when).
      channel.catch(() => this.channels.delete(peer))
    }
    return await channel
  }

  private async open (peer: string): Promise<Channel> {
    let stream: Stream
    try {
      stream = await this.dialer.dialProtocol(peerIdFromString(peer), this.init.protocol, { signal: timeoutOrShutdown(this.init.dialTimeoutMs, this.shutdown) })
    } catch (err) {
      throw new StageCallError(`cannot open a stage stream to ${peer}: ${(err as Error).message}`, 'dial')
    }
    this.log('opened a stage stream to %s', peer)
    return new Channel(stream, this.init.maxMessageBytes, this.traffic, () => this.channels.delete(peer))
  }
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

interface Pending {
  resolve: (response: StageResponse) => void
  reject: (err: Error) => void
  timer: ReturnType<typeof setTimeout>
}

/** One stream to one peer with its calls in flight. */
class Channel {
  private readonly lp: LengthPrefixedStream<Stream>
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private closed: StageCallError | undefined

  constructor (private readonly stream: Stream, maxMessageBytes: number, private readonly traffic: StageTraffic, private readonly onClose: () => void) {
    this.lp = lpStream(stream, { maxDataLength: maxMessageBytes, maxBufferSize: 2 * maxMessageBytes })
    void this.readReplies()
  }

  async request (request: Omit<StageRequest, 'id'>, timeoutMs: number): Promise<StageResponse> {
    if (this.closed !== undefined) throw this.closed
    const id = this.nextId
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1
    const reply = new Promise<StageResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new StageCallError(`no reply within ${Math.round(timeoutMs)} ms`, 'timeout'))
      }, timeoutMs)
      this.pending.set(id, { resolve, reject, timer })
    })
    try {
      const bytes = StageRequest.encode({ ...request, id })
      this.traffic.sentBytes += bytes.byteLength
      await this.lp.write(bytes)
    } catch (err) {
      this.fail(new StageCallError(`stream failed: ${(err as Error).message}`, 'closed'))
    }
    return await reply
  }

  close (): void {
    this.fail(new StageCallError('client stopped', 'closed'))
  }

  private async readReplies (): Promise<void> {
    try {
      while (true) {
        const bytes = (await this.lp.read()).subarray() // in place: no layer below writes into a chunk it has handed on (test/pipeline-wire.test.ts)
        this.traffic.receivedBytes += bytes.byteLength
        let response: StageResponse
        try {
          response = decodeResponse(bytes)
        } catch (err) {
          this.fail(new StageCallError(`undecodable reply: ${(err as Error).message}`, 'misbehaved'))
          return
        }
        const call = this.pending.get(response.id)
        // id 0: the server refused the stream itself (an oversized message) and closes it.
        if (response.id === 0) {
          this.fail(new StageCallError(`the server refused the stream: ${response.status}: ${response.error}`, 'refused'))
          return
        }
        if (call === undefined) continue // timed out already
        this.pending.delete(response.id)
        clearTimeout(call.timer)
        call.resolve(response)
      }
    } catch (err) {
      this.fail(new StageCallError(`stream closed: ${(err as Error).message}`, 'closed'))
    }
  }

  /** Fails every pending call and retires the stream: the next call to this peer opens a new one. */
  private fail (err: StageCallError): void {
    if (this.closed !== undefined) return
    this.closed = err
    this.onClose()
    for (const call of this.pending.values()) {
      clearTimeout(call.timer)
      call.reject(err)
    }
    this.pending.clear()
    this.stream.abort(err)
  }
}
