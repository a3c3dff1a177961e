// One worker thread owning onnxruntime sessions (session.run blocks its thread). Parameters
// arrive in a SharedArrayBuffer; onnxruntime-node refuses SharedArrayBuffer-backed tensors
// ("Invalid argument"), so the worker keeps a private copy, refreshed whenever the host says
// the weights changed (once per optimizer step; ~1.3 ms for the 7 MiB default model).
// Gradient outputs are accumulated into a shared buffer here, so they never cross threads.
import { parentPort, workerData } from 'node:worker_threads'
import ort from 'onnxruntime-node'
import { axpy } from '../../native/index.js'
import type { HostRequest, HostReply, WorkerInit } from './session-host.js'
import type { Tensor } from './tensor.js'

const init = workerData as WorkerInit
const port = parentPort!
const shared = new Float32Array(init.weights)
const local = new Float32Array(shared.length)
const grads = init.grads === undefined ? undefined : new Float32Array(init.grads)
let version = -1

// Param tensors are views of `local`, made once: onnxruntime reads inputs without copying.
const paramFeeds: Record<string, ort.Tensor> = {}
const gradSlices = new Map<string, Float32Array>()
for (const p of init.params) {
  paramFeeds[p.name] = new ort.Tensor('float32', local.subarray(p.offset, p.offset + p.size), p.shape)
  if (grads !== undefined) gradSlices.set(`grad.${p.name}`, grads.subarray(p.offset, p.offset + p.size))
}

const options: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: init.threads,
  interOpNumThreads: 1,
  // With spinning on, several live sessions fight over the cores (2-6x slower, see NOTES.md).
  extra: { session: { intra_op: { allow_spinning: '0' } } },
  graphOptimizationLevel: 'all',
  // Failures come back to the caller as errors; onnxruntime's own logging would only repeat them.
  logSeverityLevel: 4
}

const sessions = new Map<string, ort.InferenceSession>()

async function run (req: HostRequest): Promise<HostReply> {
  const session = sessions.get(req.graph)
  if (session === undefined) throw new Error(`no graph '${req.graph}'`)
  if (req.weightsVersion !== version) {
    local.set(shared)
    version = req.weightsVersion
  }
  const feeds: Record<string, ort.Tensor> = {}
  for (const name of session.inputNames) {
    const t = req.feeds[name]
    if (t !== undefined) feeds[name] = new ort.Tensor(t.data instanceof BigInt64Array ? 'int64' : 'float32', t.data, t.shape)
    else if (paramFeeds[name] !== undefined) feeds[name] = paramFeeds[name]
    else throw new Error(`graph '${req.graph}' needs input '${name}'`)
  }
  const accumulate = req.accumulate !== undefined && grads !== undefined
  const fetch = accumulate ? [...req.fetch, ...session.outputNames.filter(n => gradSlices.has(n))] : req.fetch
  const results = await session.run(feeds, fetch)
  const outputs: Record<string, Tensor> = {}
  const transfer: ArrayBuffer[] = []
  for (const name of req.fetch) {
    const data = results[name].data as Float32Array
    outputs[name] = { data, shape: results[name].dims.map(Number) }
    transfer.push(data.buffer as ArrayBuffer)
  }
  if (accumulate) {
    for (const [name, slice] of gradSlices) {
      if (results[name] !== undefined) axpy(slice, results[name].data as Float32Array, req.accumulate!)
    }
  }
  return { id: req.id, outputs, transfer }
}

async function main (): Promise<void> {
  for (const [name, bytes] of Object.entries(init.graphs)) sessions.set(name, await ort.InferenceSession.create(bytes, options))
  // Requests come one at a time (the host serializes them), but chain them anyway so a
  // misbehaving host cannot run two sessions over the same buffers at once.
  let tail = Promise.resolve()
  port.on('message', (req: HostRequest) => {
    tail = tail.then(async () => {
      try {
        const { transfer, ...reply } = await run(req)
        port.postMessage(reply, transfer)
      } catch (err) {
        port.postMessage({ id: req.id, error: (err as Error).message })
      }
    })
  })
  port.postMessage({ ready: true })
}

main().catch((err: Error) => port.postMessage({ ready: false, error: err.message }))
