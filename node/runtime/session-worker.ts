// One worker thread owning onnxruntime sessions (session.run blocks its thread). Parameters
// arrive in a SharedArrayBuffer; onnxruntime-node refuses SharedArrayBuffer-backed tensors
// ("Invalid argument"), so the worker keeps private copies, refreshed whenever the host says
// the weights changed (once per optimizer step; ~1.3 ms for the 7 MiB default model). It keeps
// the last `keepVersions` copies (a weight stash, as PipeDream's): a pipeline backward asks for
// the version its forward ran on, so its gradient is the gradient of what later stages saw.
// Gradient outputs are accumulated into a shared buffer here, so they never cross threads.
import { parentPort, workerData } from 'node:worker_threads'
import ort from 'onnxruntime-node'
import { axpy } from '../../native/index.js'
import type { HostRequest, HostReply, WorkerInit } from './session-host.js'
import type { Tensor } from './tensor.js'

const init = workerData as WorkerInit
const port = parentPort!
const shared = new Float32Array(init.weights)
const grads = init.grads === undefined ? undefined : new Float32Array(init.grads)
const gradSlices = new Map<string, Float32Array>()
if (grads !== undefined) for (const p of init.params) gradSlices.set(`grad.${p.name}`, grads.subarray(p.offset, p.offset + p.size))

/** A private copy of the weights at one version, with param tensors viewing it (onnxruntime reads inputs without copying). */
interface WeightCopy { weights: Float32Array, feeds: Record<string, ort.Tensor> }
/** Versions held, oldest first; at most `init.keepVersions`. */
const stash = new Map<number, WeightCopy>()

function weightCopy (weights: Float32Array): WeightCopy {
  const feeds: Record<string, ort.Tensor> = {}
  for (const p of init.params) feeds[p.name] = new ort.Tensor('float32', weights.subarray(p.offset, p.offset + p.size), p.shape)
  return { weights, feeds }
}

/** The weights for a run: `at` if still stashed, else the current version (copied in once). */
function weightsFor (current: number, at: number | undefined): { version: number, copy: WeightCopy } {
  if (at !== undefined) {
    const old = stash.get(at)
    if (old !== undefined) return { version: at, copy: old }
  }
  let copy = stash.get(current)
  if (copy === undefined) {
    // Recycle the oldest copy once the stash is full: no allocation per step in steady state.
    let recycled: WeightCopy | undefined
    if (stash.size >= Math.max(1, init.keepVersions)) {
      const [oldest, oldCopy] = stash.entries().next().value as [number, WeightCopy]
      stash.delete(oldest)
      recycled = oldCopy
    }
    copy = recycled ?? weightCopy(new Float32Array(shared.length))
    copy.weights.set(shared)
    stash.set(current, copy)
  }
  return { version: current, copy }
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
  const { version, copy } = weightsFor(req.weightsVersion, req.atVersion)
  const feeds: Record<string, ort.Tensor> = {}
  for (const name of session.inputNames) {
    const t = req.feeds[name]
    if (t !== undefined) feeds[name] = new ort.Tensor(t.data instanceof BigInt64Array ? 'int64' : 'float32', t.data, t.shape)
    else if (copy.feeds[name] !== undefined) feeds[name] = copy.feeds[name]
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
  return { id: req.id, outputs, version, transfer }
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
