// The worker thread of reference-async.ts: runs one reference kernel per message and sends back
// the result and the arrays (transferred, not copied), or the error.
import { parentPort } from 'node:worker_threads'
import * as reference from './reference.js'
import type { KernelCall } from './reference-async.js'

parentPort?.on('message', ({ id, name, args }: KernelCall) => {
  try {
    const result = (reference[name] as (...a: unknown[]) => unknown)(...args)
    const buffers = args.filter(ArrayBuffer.isView).map(a => a.buffer as ArrayBuffer)
    parentPort?.postMessage({ id, result, args }, buffers)
  } catch (error) {
    parentPort?.postMessage({ id, error })
  }
})
