// Signed, expiring peer info records: what a peer tells the swarm about itself. Readers trust
// a record only if its signature matches the peer id in its DHT key, it has not expired, and
// every field is in range.
import { peerIdFromMultihash, peerIdFromString } from '@libp2p/peer-id'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import * as Digest from 'multiformats/hashes/digest'
import { INFO_SIGNATURE_DOMAIN, MAX_BYTES, parseInfoKey } from '../../protocols/ids.js'
import { PeerInfo, SignedPeerInfo } from '../../protocols/registry.js'
import { RECORD_MAX_CLOCK_SKEW_MS, RECORD_MAX_TTL_MS } from '../timing.js'

/** State hashes are 16 bytes; a little room for a longer hash later. */
const MAX_STATE_HASH_BYTES = 32

export interface PeerInfoRecord {
  peerId: string
  stage: number
  /** Tokens per second it can process on its stage (capacity: what assignment balances). */
  throughput: number
  /** Tokens per second it served recently (load). */
  servedThroughput: number
  queueLength: number
  freeMemory: number
  round: number
  /** Its stage state is loaded and its server takes calls (the router calls only ready peers). */
  ready: boolean
  /** Tokens trained since the last averaging round. */
  tokensSinceSync: number
  /** Hex hash of its averaging state after `round` ('' before any). */
  stateHash: string
  /** If it drives: tokens driven, moving-average training loss, last validation loss. */
  drivenTokens: number
  trainLoss?: number
  validationLoss?: number
  version: string
  /** Unix milliseconds. */
  issuedAt: number
  expiresAt: number
}

/** Losses above this (nats per token; a byte model starts near ln 256 = 5.5) are not a real run's. */
const MAX_LOSS = 100

/** An info record that is unsigned, forged, expired, malformed or for another run. */
export class InfoRecordError extends Error {
  override name = 'InfoRecordError'
}

function signedPayload (info: Uint8Array): Uint8Array {
  const out = new Uint8Array(INFO_SIGNATURE_DOMAIN.length + info.length)
  out.set(INFO_SIGNATURE_DOMAIN)
  out.set(info, INFO_SIGNATURE_DOMAIN.length)
  return out
}

/** Encodes and signs `record` with the key of `record.peerId`. */
export async function signInfoRecord (record: PeerInfoRecord, runId: string, privateKey: PrivateKey, peerId: PeerId): Promise<Uint8Array> {
  if (record.peerId !== peerId.toString()) throw new RangeError('a peer signs only its own info record')
  const info = PeerInfo.encode({
    runId,
    peerId: peerId.toMultihash().bytes,
    stage: record.stage,
    throughput: record.throughput,
    servedThroughput: record.servedThroughput,
    queueLength: record.queueLength,
    freeMemory: BigInt(Math.max(0, Math.floor(record.freeMemory))),
    round: BigInt(record.round),
    ready: record.ready,
    tokensSinceSync: BigInt(Math.max(0, Math.floor(record.tokensSinceSync))),
    stateHash: Buffer.from(record.stateHash, 'hex'),
    drivenTokens: BigInt(Math.max(0, Math.floor(record.drivenTokens))),
    trainLoss: record.trainLoss,
    validationLoss: record.validationLoss,
    version: record.version,
    issuedAt: BigInt(record.issuedAt),
    expiresAt: BigInt(record.expiresAt)
  })
  const signature = await privateKey.sign(signedPayload(info))
  return SignedPeerInfo.encode({ info, signature: new Uint8Array(signature) })
}

export interface VerifyOptions {
  runId: string
  nStages: number
  now?: number
}

/** The run and peer of an info record key, or throws InfoRecordError. */
function runAndPeerOf (key: Uint8Array): { runId: string, peerId: PeerId } {
  const parsed = parseInfoKey(key)
  if (parsed === undefined) throw new InfoRecordError('not an info record key')
  try {
    return { runId: parsed.runId, peerId: peerIdFromString(parsed.peerId) }
  } catch {
    throw new InfoRecordError('info record key holds no valid peer id')
  }
}

/** Decodes and checks a signed info record stored under `key`; throws InfoRecordError. */
export async function verifyInfoRecord (key: Uint8Array, value: Uint8Array, options: VerifyOptions): Promise<PeerInfoRecord> {
  const { runId, peerId } = runAndPeerOf(key)
  if (runId !== options.runId) throw new InfoRecordError(`info record of another run (${runId})`)
  if (value.byteLength > MAX_BYTES.infoRecord) throw new InfoRecordError(`info record of ${value.byteLength} bytes exceeds ${MAX_BYTES.infoRecord}`)
  let signed: SignedPeerInfo
  let info: PeerInfo
  try {
    signed = SignedPeerInfo.decode(value)
    info = PeerInfo.decode(signed.info)
  } catch (err) {
    throw new InfoRecordError(`malformed info record: ${(err as Error).message}`)
  }
  if (signed.signature.byteLength === 0) throw new InfoRecordError('unsigned info record')
  let signer: PeerId
  try {
    signer = peerIdFromMultihash(Digest.decode(info.peerId))
  } catch {
    throw new InfoRecordError('info record holds no valid peer id')
  }
  if (!signer.equals(peerId)) throw new InfoRecordError(`info record of ${signer.toString()} stored under ${peerId.toString()}`)
  if (signer.publicKey === undefined) throw new InfoRecordError('info record peer id does not embed its public key')
  if (!await signer.publicKey.verify(signedPayload(signed.info), signed.signature)) throw new InfoRecordError('info record signature does not verify')
  if (info.runId !== options.runId) throw new InfoRecordError(`info record signed for another run (${info.runId})`)
  const now = options.now ?? Date.now()
  const issuedAt = Number(info.issuedAt)
  const expiresAt = Number(info.expiresAt)
  if (expiresAt <= now) throw new InfoRecordError(`info record expired ${now - expiresAt} ms ago`)
  if (issuedAt > now + RECORD_MAX_CLOCK_SKEW_MS) throw new InfoRecordError('info record issued in the future')
  if (expiresAt <= issuedAt || expiresAt - issuedAt > RECORD_MAX_TTL_MS) throw new InfoRecordError('info record lifetime out of range')
  if (info.stage >= options.nStages) throw new InfoRecordError(`info record stage ${info.stage} out of range (run has ${options.nStages})`)
  for (const rate of [info.throughput, info.servedThroughput]) {
    if (!Number.isFinite(rate) || rate < 0 || rate > 1e12) throw new InfoRecordError('info record throughput out of range')
  }
  if ([info.freeMemory, info.round, info.tokensSinceSync, info.drivenTokens].some(n => n > BigInt(Number.MAX_SAFE_INTEGER))) throw new InfoRecordError('info record counter out of range')
  for (const loss of [info.trainLoss, info.validationLoss]) {
    if (loss !== undefined && !(Number.isFinite(loss) && loss >= 0 && loss <= MAX_LOSS)) throw new InfoRecordError('info record loss out of range')
  }
  if (info.stateHash.byteLength > MAX_STATE_HASH_BYTES) throw new InfoRecordError('info record state hash too long')
  if (!/^[\w.+-]{1,32}$/.test(info.version)) throw new InfoRecordError('info record version malformed')
  return {
    peerId: signer.toString(),
    stage: info.stage,
    throughput: info.throughput,
    servedThroughput: info.servedThroughput,
    queueLength: info.queueLength,
    freeMemory: Number(info.freeMemory),
    round: Number(info.round),
    ready: info.ready,
    tokensSinceSync: Number(info.tokensSinceSync),
    stateHash: Buffer.from(info.stateHash).toString('hex'),
    drivenTokens: Number(info.drivenTokens),
    trainLoss: info.trainLoss,
    validationLoss: info.validationLoss,
    version: info.version,
    issuedAt,
    expiresAt
  }
}

/** Of several valid records for one key, the most recently issued wins. */
export function newestRecord (values: Uint8Array[]): number {
  let best = 0
  let bestIssued = -1n
  values.forEach((value, i) => {
    try {
      const issued = PeerInfo.decode(SignedPeerInfo.decode(value).info).issuedAt
      if (issued > bestIssued) { best = i; bestIssued = issued }
    } catch {
      // invalid records were already refused by the validator; never pick one
    }
  })
  return best
}
