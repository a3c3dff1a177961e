// The main-thread side of a session worker: starts it, sends it one request at a time, and
// lets main-thread work that touches the shared buffers (an optimizer step) queue between
// requests, so it never overlaps a run. Work that others wait on (an averaging round's snapshot
// and apply) may go ahead of the queued requests.
import { Worker } from 'node:worker_threads'
import { logger } from '@libp2p/logger'
import type { Tensor } from './tensor.js'

const log = logger('swarmtrain:runtime')

/** Where a parameter sits in the flat weight (and gradient) vector. */
export interface ParamSlot {
  name: string
  offset: number
  size: number
  shape: number[]
}

export interface WorkerInit {
  graphs: Record<string, Uint8Array>
  params: ParamSlot[]
  weights: SharedArrayBuffer
  /** When given, `grad.<name>` outputs of runs that ask for it are accumulated here. */
  grads?: SharedArrayBuffer
  /** onnxruntime intra-op threads of every session. */
  threads: number
  /** Weight versions the worker keeps, so a run can ask for one it ran before (at least 1). */
  keepVersions: number
}

export interface HostRequest {
  id: number
  graph: string
  feeds: Record<string, Tensor>
  fetch: string[]
  /** The current weights version (the worker copies the shared weights when it has not seen it). */
  weightsVersion: number
  /** Run on this earlier version if the worker still holds it (else on the current one). */
  atVersion?: number
  /** Accumulate the run's `grad.*` outputs into the shared gradients with this weight. */
  accumulate?: number
}

export interface HostReply {
  id: number
  outputs: Record<string, Tensor>
  /** The weights version the run used. */
  version: number
  transfer: ArrayBuffer[]
}

/** A run's outputs and the weights version it ran on. */
export interface RunResult {
  outputs: Record<string, Tensor>
  version: number
}

type Reply = Omit<HostReply, 'transfer'> | { id: number, error: string }
type Ready = { ready: true } | { ready: false, error: string }

export interface ExclusiveOptions {
  /** It writes the weights: the weights version changes. */
  writes?: boolean
  /** Run it before the requests and work already queued (after earlier urgent work). */
  urgent?: boolean
}

/** The worker died or was closed; every pending and later request fails with this. */
export class SessionClosedError extends Error {
  override name = 'SessionClosedError'
}

/** A request the worker (onnxruntime) refused, e.g. inputs of the wrong shape. */
export class SessionRunError extends Error {
  override name = 'SessionRunError'
}

export class SessionHost {
  private nextId = 0
  private readonly pending = new Map<number, { resolve(r: RunResult): void, reject(e: Error): void }>()
  /** Requests and work waiting their turn, one at a time; the first `urgent` of them are urgent. */
  private readonly queue: Array<() => Promise<void>> = []
  private urgent = 0
  private draining = false
  private closed?: Error
  private version = 0

  private constructor (private readonly worker: Worker) {
    worker.on('message', (reply: Reply) => {
      const call = this.pending.get(reply.id)
      if (call === undefined) return
      this.pending.delete(reply.id)
      if ('error' in reply) call.reject(new SessionRunError(reply.error))
      else call.resolve({ outputs: reply.outputs, version: reply.version })
    })
    const fail = (err: Error) => {
      this.closed ??= err
      for (const call of this.pending.values()) call.reject(this.closed)
      this.pending.clear()
    }
    worker.on('error', err => { log.error('session worker failed: %s', err.message); fail(new SessionClosedError(`session worker failed: ${err.message}`)) })
    worker.on('exit', code => fail(new SessionClosedError(`session worker exited (code ${code})`)))
  }

  static async create (init: WorkerInit): Promise<SessionHost> {
    const worker = new Worker(new URL('./session-worker.js', import.meta.url), { workerData: init })
    let onMessage!: (m: Ready) => void
    let onError!: (err: Error) => void
    let onExit!: (code: number) => void
    const ready = await new Promise<Ready>((resolve, reject) => {
      onMessage = resolve
      onError = reject
      onExit = code => reject(new SessionClosedError(`session worker exited during start (code ${code})`))
      worker.once('message', onMessage).once('error', onError).once('exit', onExit)
    }).finally(() => {
      // Not removeAllListeners: Worker keeps internal listeners of its own.
      worker.off('message', onMessage).off('error', onError).off('exit', onExit)
    })
    if (!ready.ready) {
      await worker.terminate()
      throw new SessionRunError(`cannot load the graphs: ${ready.error}`)
    }
    return new SessionHost(worker)
  }

  /** The version of the current weights: it changes whenever an `exclusive` call writes them. */
  get weightsVersion (): number { return this.version }

  /**
   * Runs `graph` with `feeds` (params are added by the worker) and returns the `fetch` outputs,
   * on the weights of version `at` if the worker still holds it, else on the current weights.
   * `done` runs in the same turn once the run succeeded (nothing queued can come in between:
   * a backward counts its tokens there, so a step queued later sees them, never a failed run's).
   */
  run (graph: string, feeds: Record<string, Tensor>, fetch: string[], options: { accumulate?: number, at?: number, done?: () => void } = {}): Promise<RunResult> {
    return this.exclusive(async () => {
      if (this.closed !== undefined) throw this.closed
      const id = this.nextId++
      const reply = new Promise<RunResult>((resolve, reject) => this.pending.set(id, { resolve, reject }))
      const request: HostRequest = { id, graph, feeds, fetch, weightsVersion: this.version, atVersion: options.at, accumulate: options.accumulate }
      this.worker.postMessage(request)
      const result = await reply
      options.done?.()
      return result
    })
  }

  /**
   * Runs `fn` between requests: the worker is idle and no request is pending, so `fn` may
   * read the gradients and read or write the weights.
   */
  exclusive<T> (fn: () => T | Promise<T>, options: ExclusiveOptions = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const task = async (): Promise<void> => {
        try {
          const value = await fn()
          if (options.writes === true) this.version++
          resolve(value)
        } catch (err) {
          reject(err)
        }
      }
      if (options.urgent === true) this.queue.splice(this.urgent++, 0, task)
      else this.queue.push(task)
      queueMicrotask(() => { void this.drain() })
    })
  }

  private async drain (): Promise<void> {
    if (this.draining) return
    this.draining = true
    while (this.queue.length > 0) {
      const task = this.queue.shift() as () => Promise<void>
      if (this.urgent > 0) this.urgent--
      await task()
    }
    this.draining = false
  }

  async close (): Promise<void> {
    this.closed ??= new SessionClosedError('session closed')
    await this.worker.terminate()
  }
}
