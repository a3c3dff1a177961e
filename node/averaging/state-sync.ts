// State sync (/swarmtrain/<run>/state/1): a replica streams a part of its stage's state as a
// manifest of chunk hashes followed by the chunks.
// - The shared state (theta_at_last_sync and the outer momentum, which every member of the last
//   round holds bit for bit, tagged with the round): agreeing replicas hold the same bytes, so a
//   fetch splits the chunks among them and resumes a failed range from another. A replica that
//   missed a round adopts it and keeps its own weights' progress, moments and error feedback.
// - A replica's whole stage state (its checkpoint, taken at one instant): a newcomer copies one
//   replica, so it starts where that replica stands (weights with their unsent residual, AdamW
//   moments that fit the schedule's step) rather than from theta with fresh moments; and
//   export --swarm reads each stage's weights from it. Only its shared part can be checked
//   against the other replicas: the rest is that replica's word.
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { MAX_BYTES, stateProtocol } from '../../protocols/ids.js'
import { StateManifest, StatePart, StateRequest } from '../../protocols/averaging.js'
import { axpy } from '../../native/index.js'
import type { ServedStage } from '../daemon/stage-host.js'
import { decodeStageState, encodeStageState, stageGroups, type StageState } from '../runtime/checkpoint.js'
import type { ParamLayout } from '../model/index.js'
import type { Host } from '../p2p/host.js'
import { MessageStream } from '../p2p/messages.js'
import { decodeSafetensors, encodeSafetensors } from '../runtime/safetensors.js'
import { sha256 } from './contribution.js'
import { STATE_REQUEST_TIMEOUT_MS } from '../timing.js'

const log = logger('swarmtrain:averaging:state')

const sharedKey = 'swarmtrain.shared'

/** A state sync that failed: no replica answered, or every answer was refused. */
export class StateSyncError extends Error {
  override name = 'StateSyncError'
}

/** The state every member of a stage's last round holds identically. */
export interface SharedState {
  round: number
  /** Tokens the stage trained through round `round` (OuterState.tokens). */
  tokens: number
  /** The serving replica's inner step (its schedule position; not covered by the hash). */
  step: number
  theta: Float32Array
  momentum: Float32Array
}

/**
 * Takes the stage's shared state (theta_at_last_sync, outer momentum, round, the schedule's
 * step) and moves the weights by what theta moved, weights += theta_new - theta_ours: the
 * replica keeps its inner moments, its error feedback and the progress it made since its own
 * last round, which its next contribution carries. A newcomer's weights are its theta, so it
 * starts from the stage's; a replica that only missed a round, or whose round went another way,
 * loses none of its training.
 */
export async function adoptSharedState (served: ServedStage, state: SharedState): Promise<void> {
  const moved = state.theta.slice()
  axpy(moved, served.outer.theta, -1)
  await served.engine.updateWeights(weights => { axpy(weights, moved, 1) }, { schedule: () => state.step })
  served.outer.theta.set(state.theta)
  served.outer.momentum.set(state.momentum)
  served.outer.round = state.round
  served.outer.tokens = state.tokens
}

/** Hex hash of a shared state: sha256 of round, tokens, theta and momentum, first 16 bytes. */
export function stateHash ({ round, tokens, theta, momentum }: Pick<SharedState, 'round' | 'tokens' | 'theta' | 'momentum'>): string {
  const view = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
  return Buffer.from(sha256(new TextEncoder().encode(`${round}:${tokens}:`), view(theta), view(momentum)).subarray(0, 16)).toString('hex')
}

/** Bytes of the largest answer to a request for `part` of a stage of `params` values (its groups plus a header). */
export function maxStateBytes (params: number, part: StatePart = StatePart.SHARED): number {
  return (part === StatePart.SHARED ? 2 : stageGroups.length) * 4 * params + 4096
}

export function encodeSharedState (runId: string, stage: number, layout: ParamLayout, state: SharedState): Uint8Array {
  return encodeSafetensors([
    { name: 'theta_at_last_sync', shape: [state.theta.length], data: state.theta },
    { name: 'outer_momentum', shape: [state.momentum.length], data: state.momentum }
  ], { [sharedKey]: JSON.stringify({ runId, stage, round: state.round, tokens: state.tokens, layoutHash: layout.hash }) })
}

function decodeSharedState (bytes: Uint8Array, expect: { runId: string, stage: number, layout: ParamLayout, round: number, step: number }): SharedState {
  const { tensors, metadata } = decodeSafetensors(bytes, 'synced state')
  let tag: { runId?: unknown, stage?: unknown, round?: unknown, tokens?: unknown, layoutHash?: unknown }
  try {
    tag = JSON.parse(metadata[sharedKey] ?? '') as typeof tag
  } catch {
    throw new StateSyncError('synced state has no metadata')
  }
  if (tag?.runId !== expect.runId || tag.stage !== expect.stage || tag.round !== expect.round || tag.layoutHash !== expect.layout.hash) {
    throw new StateSyncError('synced state is of another run, stage, round or layout')
  }
  if (!Number.isSafeInteger(tag.tokens) || (tag.tokens as number) < 0) throw new StateSyncError('synced state has no count of the stage\'s tokens')
  const theta = tensors.get('theta_at_last_sync')?.data
  const momentum = tensors.get('outer_momentum')?.data
  if (theta?.length !== expect.layout.size || momentum?.length !== expect.layout.size || tensors.size !== 2) throw new StateSyncError('synced state groups do not fit the stage')
  return { round: expect.round, tokens: tag.tokens as number, step: expect.step, theta, momentum }
}

const rawBytes = { encode: (b: Uint8Array) => b, decode: (b: Uint8Array | Uint8ArrayList) => b.subarray() }

export interface StateServerInit {
  runId: string
  chunkBytes?: number
}

/** What a state server serves: the stage this node holds, its shared state, and a way to take its whole state. */
export interface ServedState {
  stage: number
  layout: ParamLayout
  state: SharedState
  hash: string
  /** The replica's whole stage state, its engine's taken between calls. */
  replica: () => Promise<StageState>
}

/** What a state response sends: the encoded state, its chunks' hashes, and its manifest's round and step. */
interface StateAnswer {
  bytes: Uint8Array
  hashes: Array<Uint8Array<ArrayBuffer>>
  round: number
  step: number
}

/** Serves the stage state of the stage this node holds (`current` gives it, or undefined). */
export class StateServer {
  private readonly protocol: string
  private readonly chunkBytes: number
  private cache?: { key: string, bytes: Uint8Array, hashes: Array<Uint8Array<ArrayBuffer>> }

  constructor (
    private readonly components: { host: Host },
    private readonly init: StateServerInit,
    private readonly current: () => ServedState | undefined
  ) {
    this.protocol = stateProtocol(init.runId)
    this.chunkBytes = init.chunkBytes ?? MAX_BYTES.stateChunk
  }

  async start (): Promise<void> {
    await this.components.host.handle(this.protocol, async (stream: Stream) => { await this.serve(stream) }, { maxInboundStreams: 8 })
  }

  async stop (): Promise<void> {
    await this.components.host.unhandle(this.protocol)
  }

  private async serve (stream: Stream): Promise<void> {
    const messages = new MessageStream(stream, 256)
    const refuse = async (error: string): Promise<void> => {
      await messages.write(StateManifest, { error, round: 0n, step: 0n, totalBytes: 0n, chunkBytes: 0, chunkHashes: [], stateHash: new Uint8Array() })
      await stream.close()
    }
    try {
      const request = await messages.read(StateRequest, { signal: AbortSignal.timeout(STATE_REQUEST_TIMEOUT_MS) })
      const current = this.current()
      const wanted = Buffer.from(request.stateHash).toString('hex')
      if (current === undefined || current.stage !== request.stage || (wanted !== '' && wanted !== current.hash)) {
        await refuse(`no state of stage ${request.stage}${wanted === '' ? '' : ` with hash ${wanted}`}`)
        return
      }
      const answer = request.part === StatePart.REPLICA ? await this.replicaAnswer(current) : this.sharedAnswer(current)
      if (answer === undefined) {
        await refuse(`the state of stage ${request.stage} moved on during the snapshot; ask again`)
        return
      }
      const { bytes, hashes, round, step } = answer
      await messages.write(StateManifest, {
        error: '',
        round: BigInt(round),
        step: BigInt(step),
        totalBytes: BigInt(bytes.length),
        chunkBytes: this.chunkBytes,
        chunkHashes: hashes,
        stateHash: Buffer.from(current.hash, 'hex')
      })
      const end = request.chunkCount === 0 ? hashes.length : Math.min(hashes.length, request.fromChunk + request.chunkCount)
      for (let i = request.fromChunk; i < end; i++) await messages.write(rawBytes, bytes.subarray(i * this.chunkBytes, (i + 1) * this.chunkBytes))
      await stream.close()
    } catch (err) {
      log('state request failed: %e', err)
      stream.abort(err as Error)
    }
  }

  /** The shared state's bytes, kept while its hash stays: agreeing replicas' fetches come in ranges. */
  private sharedAnswer (current: ServedState): StateAnswer {
    const key = `${current.stage}:${current.hash}`
    if (this.cache?.key !== key) {
      const bytes = encodeSharedState(this.init.runId, current.stage, current.layout, current.state)
      this.cache = { key, bytes, hashes: this.chunkHashes(bytes) }
    }
    return { ...this.cache, round: current.state.round, step: current.state.step }
  }

  /** The whole stage state at one instant, or undefined if a round ended meanwhile (its theta would not match the hash). */
  private async replicaAnswer (current: ServedState): Promise<StateAnswer | undefined> {
    const state = await current.replica()
    if (this.current()?.hash !== current.hash) return undefined
    const bytes = encodeStageState(state)
    return { bytes, hashes: this.chunkHashes(bytes), round: state.round, step: state.step }
  }

  private chunkHashes (bytes: Uint8Array): Array<Uint8Array<ArrayBuffer>> {
    const hashes: Array<Uint8Array<ArrayBuffer>> = []
    for (let at = 0; at < bytes.length; at += this.chunkBytes) hashes.push(sha256(bytes.subarray(at, at + this.chunkBytes)))
    return hashes
  }
}

export interface FetchStateInit {
  runId: string
  stage: number
  layout: ParamLayout
  /** Replicas to fetch from (peer id strings). */
  peers: string[]
  timeoutMs: number
  /** Called with a peer that served a corrupted chunk or manifest (to ban repeat offenders). */
  onOffence?: (peer: string, reason: string) => void
  /** Called after every good chunk with the bytes received so far and the state's size. */
  onProgress?: (received: number, total: number) => void
}

/** Requests for parts of a stage state, with the size limits checked before anything is allocated. */
class StateClient {
  private readonly protocol: string
  private received = 0

  constructor (private readonly host: Host, private readonly init: FetchStateInit) {
    this.protocol = stateProtocol(init.runId)
  }

  /** Opens a state stream and reads its manifest; a manifest that breaks the limits is an offence. */
  async open (peer: string, request: Omit<StateRequest, 'stage'>): Promise<{ stream: Stream, messages: MessageStream, manifest: StateManifest, signal: AbortSignal }> {
    const limit = maxStateBytes(this.init.layout.size, request.part)
    const maxChunks = Math.ceil(limit / MAX_BYTES.stateChunk) + 1
    const signal = AbortSignal.timeout(this.init.timeoutMs)
    const stream = await this.host.dialProtocol(peerIdFromString(peer), this.protocol, { signal })
    const messages = new MessageStream(stream, Math.max(MAX_BYTES.stateManifestOverhead + 40 * maxChunks, MAX_BYTES.stateChunk))
    await messages.write(StateRequest, { ...request, stage: this.init.stage }, { signal })
    const manifest = await messages.read(StateManifest, { signal })
    if (manifest.error !== '') {
      stream.abort(new Error(manifest.error))
      throw new StateSyncError(manifest.error)
    }
    const total = Number(manifest.totalBytes)
    if (total > limit || manifest.chunkBytes < 1 || manifest.chunkBytes > MAX_BYTES.stateChunk || manifest.chunkHashes.length !== Math.ceil(total / manifest.chunkBytes) ||
      manifest.round > BigInt(Number.MAX_SAFE_INTEGER) || manifest.step > BigInt(Number.MAX_SAFE_INTEGER)) {
      stream.abort(new Error('bad manifest'))
      this.init.onOffence?.(peer, 'bad state manifest')
      throw new StateSyncError(`${peer} sent a bad state manifest`)
    }
    return { stream, messages, manifest, signal }
  }

  /**
   * Reads chunks [from, to) of `manifest` from an open stream into `bytes`, checking each
   * against its hash; marks each good chunk done, and stops at the first bad one (an offence).
   */
  async read (peer: string, opened: { stream: Stream, messages: MessageStream, signal: AbortSignal }, manifest: StateManifest, from: number, to: number, bytes: Uint8Array, done: boolean[]): Promise<void> {
    const { stream, messages, signal } = opened
    const total = Number(manifest.totalBytes)
    for (let i = from; i < to; i++) {
      const chunk = await messages.read(rawBytes, { signal })
      const expected = Math.min(manifest.chunkBytes, total - i * manifest.chunkBytes)
      if (chunk.length !== expected || !Buffer.from(sha256(chunk)).equals(Buffer.from(manifest.chunkHashes[i]))) {
        this.init.onOffence?.(peer, `state chunk ${i} is truncated or corrupted`)
        stream.abort(new Error('bad chunk'))
        return
      }
      bytes.set(chunk, i * manifest.chunkBytes)
      done[i] = true
      this.received += chunk.length
      this.init.onProgress?.(this.received, total)
    }
    await stream.close()
  }
}

/**
 * Fetches a stage's shared state from its replicas: asks each for its manifest, keeps those
 * that agree with the most common state hash, splits the chunks among them, checks every chunk
 * against the manifest and fetches a failed range again from another agreeing replica.
 */
export async function fetchStageState (components: { host: Host }, init: FetchStateInit): Promise<SharedState & { hash: string }> {
  const client = new StateClient(components.host, init)
  const part = StatePart.SHARED
  const manifests = new Map<string, StateManifest>()
  await Promise.all(init.peers.map(async peer => {
    try {
      const { stream, manifest } = await client.open(peer, { part, fromChunk: 0, chunkCount: 1, stateHash: new Uint8Array() })
      stream.abort(new Error('manifest only'))
      manifests.set(peer, manifest)
    } catch (err) {
      log('no state manifest from %s: %e', peer, err)
    }
  }))
  // The replicas that agree with the most common state (ties: the higher round).
  const byHash = new Map<string, string[]>()
  for (const [peer, m] of manifests) {
    const key = `${Buffer.from(m.stateHash).toString('hex')}`
    byHash.set(key, [...(byHash.get(key) ?? []), peer])
  }
  const [hash, sources] = [...byHash.entries()].sort((a, b) => b[1].length - a[1].length || Number(manifests.get(b[1][0])!.round - manifests.get(a[1][0])!.round))[0] ?? []
  if (hash === undefined || sources === undefined) throw new StateSyncError(`no replica of stage ${init.stage} served its state (asked ${init.peers.length})`)
  const manifest = manifests.get(sources[0])!
  const count = manifest.chunkHashes.length
  const bytes = new Uint8Array(Number(manifest.totalBytes))
  const done = new Array<boolean>(count).fill(false)
  const agreed = new Uint8Array(Buffer.from(hash, 'hex'))

  /** Fetches chunks [from, to) from `peer`, as far as it gets. */
  const fetchRange = async (peer: string, from: number, to: number): Promise<void> => {
    try {
      const opened = await client.open(peer, { part, fromChunk: from, chunkCount: to - from, stateHash: agreed })
      await client.read(peer, opened, manifest, from, to, bytes, done)
    } catch (err) {
      log('state range %d-%d from %s failed: %e', from, to, peer, err)
    }
  }

  // Split the chunks among the agreeing replicas; then retry what is missing from each in turn.
  const share = Math.ceil(count / sources.length)
  await Promise.all(sources.map(async (peer, i) => { if (i * share < count) await fetchRange(peer, i * share, Math.min(count, (i + 1) * share)) }))
  for (const peer of sources) {
    const first = done.indexOf(false)
    if (first < 0) break
    await fetchRange(peer, first, count)
  }
  if (done.includes(false)) throw new StateSyncError(`could not fetch every state chunk of stage ${init.stage} from ${sources.length} replicas`)
  const state = decodeSharedState(bytes, { runId: init.runId, stage: init.stage, layout: init.layout, round: Number(manifest.round), step: Number(manifest.step) })
  const got = stateHash(state)
  if (got !== hash) throw new StateSyncError(`synced state hashes to ${got}, the replicas announced ${hash}`)
  return { ...state, hash }
}

/**
 * Fetches one replica's whole stage state: asks `init.peers` in turn until one serves it whole,
 * with its shared part hashing to `stateHash` when given (the state the replicas agree on).
 * Returns it with the replica that served it. The public entry point for anyone who needs a
 * stage as a replica holds it (a newcomer, export --swarm).
 */
export async function fetchReplicaState (components: { host: Host }, init: FetchStateInit & { stateHash?: string }): Promise<{ state: StageState, peer: string }> {
  const failures: string[] = []
  for (const peer of init.peers) {
    const client = new StateClient(components.host, init)
    try {
      const opened = await client.open(peer, { part: StatePart.REPLICA, fromChunk: 0, chunkCount: 0, stateHash: new Uint8Array(Buffer.from(init.stateHash ?? '', 'hex')) })
      const { manifest } = opened
      const bytes = new Uint8Array(Number(manifest.totalBytes))
      const done = new Array<boolean>(manifest.chunkHashes.length).fill(false)
      await client.read(peer, opened, manifest, 0, done.length, bytes, done)
      if (done.includes(false)) throw new StateSyncError('a chunk was truncated or corrupted')
      const state = decodeStageState(bytes, `stage ${init.stage} state from ${peer}`, init)
      const g = state.groups
      const hash = stateHash({ round: state.round, tokens: state.tokens, theta: g.theta_at_last_sync, momentum: g.outer_momentum })
      if (hash !== Buffer.from(manifest.stateHash).toString('hex') || (init.stateHash !== undefined && hash !== init.stateHash)) {
        init.onOffence?.(peer, 'replica state does not hash as announced')
        throw new StateSyncError(`its shared state hashes to ${hash}, not as announced`)
      }
      return { state, peer }
    } catch (err) {
      log('no replica state of stage %d from %s: %e', init.stage, peer, err)
      failures.push(`${peer}: ${(err as Error).message}`)
    }
  }
  throw new StateSyncError(`no replica of stage ${init.stage} served its state (${failures.length === 0 ? 'none to ask' : failures.join('; ')})`)
}
