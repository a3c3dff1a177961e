// The *Async kernels when the addon cannot load: the JavaScript reference in a worker thread,
// so that the event loop stays free as with the addon. The arrays are copied to the worker
// (only each view's own bytes) and the ones the kernel writes are copied back into the caller's
// arrays when it is done; meanwhile, as with the addon, the caller must leave them alone.
// One worker, started on the first call, runs the calls in order; it does not keep the
// process alive while idle.
import { Worker } from 'node:worker_threads'
import type * as reference from './reference.js'

type KernelName = 'axpy' | 'sumSquares' | 'adamw' | 'outerStep' | 'compress' | 'decodeAccumulate'
type Kernel<K extends KernelName> = typeof reference[K]

export interface KernelCall { id: number, name: KernelName, args: unknown[] }
interface Reply { id: number, result?: unknown, args?: unknown[], error?: unknown }
interface Pending { resolve: (value: unknown) => void, reject: (reason: unknown) => void, args: unknown[], written: number[] }

const pending = new Map<number, Pending>()
let worker: Worker | undefined
let nextId = 0

function failAll (error: unknown): void {
  for (const call of pending.values()) call.reject(error)
  pending.clear()
  worker = undefined
}

function start (): Worker {
  // The parent's node flags, but --input-type (set for `node -e` scripts) which a worker started
  // from a file refuses.
  const execArgv = process.execArgv.filter(flag => !flag.startsWith('--input-type'))
  const w = new Worker(new URL('./reference-worker.js', import.meta.url), { execArgv })
  w.on('message', ({ id, result, args, error }: Reply) => {
    const call = pending.get(id)
    if (call === undefined) return
    pending.delete(id)
    if (pending.size === 0) w.unref()
    if (error !== undefined) return call.reject(error)
    for (const i of call.written) {
      const target = call.args[i]
      if (ArrayBuffer.isView(target)) (target as Uint8Array).set(args![i] as Uint8Array)
    }
    call.resolve(result)
  })
  w.on('error', failAll)
  w.on('exit', code => failAll(new Error(`the reference worker exited with code ${code}`)))
  return w
}

/** kernel(...args) in the worker; `written` lists the argument positions it writes. */
export function inWorker<K extends KernelName> (name: K, written: number[]): (...args: Parameters<Kernel<K>>) => Promise<ReturnType<Kernel<K>>> {
  return async (...args) => {
    const copies: unknown[] = args.map(a => ArrayBuffer.isView(a) ? (a as Uint8Array).slice() : a)
    const buffers = copies.filter(ArrayBuffer.isView).map(a => a.buffer as ArrayBuffer)
    worker ??= start()
    const id = nextId++
    const result = new Promise((resolve, reject) => pending.set(id, { resolve, reject, args, written }))
    if (pending.size === 1) worker.ref()
    const message: KernelCall = { id, name, args: copies }
    worker.postMessage(message, buffers)
    return await (result as Promise<ReturnType<Kernel<K>>>)
  }
}
