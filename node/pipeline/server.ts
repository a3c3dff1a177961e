// The stage server: answers `/swarmtrain/<run>/stage/<version>` streams. A caller keeps one
// stream open and sends many length-prefixed requests on it; each is handled as soon as it is
// read (the service bounds the work) and answered with its id, so replies may come back out of
// order. A message over the size limit cannot be skipped safely, so it gets a TOO_LARGE reply
// and the stream is closed; the server itself keeps serving.
import { defaultLogger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import type { ComponentLogger, Logger, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { stageProtocol } from '../../protocols/ids.js'
import { StageResponse, messageBytesFor } from '../../protocols/stage-codec.js'
import { StageService, type NextStage, type StageCompute, type StageLoad, type StageServiceInit, type StageServiceStats } from './service.js'

/** Largest message on a stage stream: x and gy of the largest microbatch as float32, plus framing. */
export function stageMessageLimit (maxTokens: number, dModel: number): number {
  return messageBytesFor(2 * maxTokens * dModel)
}

export interface StageServerComponents {
  registrar: {
    handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
    unhandle(protocol: string): Promise<void>
  }
  engine: StageCompute
  /** Where TRAIN calls go on to (absent: this server answers them UNROUTABLE, and drivers relay). */
  next?: NextStage
  /** Replicas of the stage sharing its batch, this one included (default: alone). */
  replicas?: () => number
  /** Names the node in log lines (default: unnamed). */
  logger?: ComponentLogger
}

export interface StageServerInit extends StageServiceInit {
  runId: string
}

export class StageServer {
  readonly protocol: string
  readonly service: StageService
  readonly maxMessageBytes: number
  private readonly registrar: StageServerComponents['registrar']
  private readonly streams = new Set<Stream>()
  private readonly log: Logger

  constructor (components: StageServerComponents, init: StageServerInit) {
    this.protocol = stageProtocol(init.runId)
    this.registrar = components.registrar
    this.log = (components.logger ?? defaultLogger()).forComponent('swarmtrain:pipeline:server')
    this.service = new StageService(components, init)
    this.maxMessageBytes = stageMessageLimit(init.maxTokens, init.dModel)
  }

  async start (): Promise<void> {
    await this.registrar.handle(this.protocol, stream => { void this.serve(stream) }, { maxInboundStreams: 32 })
  }

  async stop (): Promise<void> {
    await this.registrar.unhandle(this.protocol)
    for (const stream of this.streams) stream.abort(new Error('stage server stopping'))
  }

  /** Queue length and recent throughput, for the registry's info record. */
  load (): StageLoad {
    return this.service.load()
  }

  stats (): StageServiceStats {
    return this.service.stats
  }

  /** Reads requests until the caller closes the stream; each is answered when its work is done. */
  async serve (stream: Stream): Promise<void> {
    this.streams.add(stream)
    const lp = lpStream(stream, { maxDataLength: this.maxMessageBytes, maxBufferSize: 2 * this.maxMessageBytes })
    const reply = async (bytes: Uint8Array): Promise<void> => {
      try {
        await lp.write(bytes)
      } catch (err) {
        this.log('could not reply on a stream: %s', (err as Error).message)
      }
    }
    try {
      while (true) {
        let message: Uint8Array
        try {
          message = (await lp.read()).subarray() // in place: no layer below writes into a chunk it has handed on (test/pipeline-wire.test.ts)
        } catch (err) {
          const name = (err as Error).name
          if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError' || name === 'InvalidMessageLengthError') {
            this.service.stats.errors++
            await reply(StageResponse.encode({ id: 0, status: StageResponse.Status.TOO_LARGE, error: `${(err as Error).message} (limit ${this.maxMessageBytes} bytes)`, computeMs: 0, waitMs: 0, queueLength: 0 }))
            await stream.close().catch(() => stream.abort(err as Error))
          }
          // Otherwise the caller went away (clean close or EOF): nothing to answer.
          return
        }
        void this.service.handle(message).then(reply)
      }
    } finally {
      this.streams.delete(stream)
    }
  }
}
