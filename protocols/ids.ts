// Every protocol id and DHT key of swarmtrain, and the size limits of its messages. Each id
// and key carries the run id, so peers of different runs never speak to each other or read
// each other's records; each protocol id carries a version, so a format change never meets an
// old decoder. Limits are enforced before a message is allocated.
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

const NAMESPACE = 'swarmtrain'
const PREFIX = `/${NAMESPACE}`
const RUN_ID = '[a-z0-9]+'
const PROTOCOL_NAME = '[a-z][a-z0-9-]*'
/** A base58btc peer id, as libp2p prints it. */
const PEER_ID = '[1-9A-HJ-NP-Za-km-z]{1,100}'

/** `/swarmtrain/<runId>/<name>/<version>`, e.g. `/swarmtrain/3f9a.../manifest/1`. */
export function protocolId (runId: string, name: string, version: number | string): string {
  if (!new RegExp(`^${RUN_ID}$`).test(runId)) throw new RangeError(`run id must be lowercase alphanumeric, got '${runId}'`)
  if (!new RegExp(`^${PROTOCOL_NAME}$`).test(name)) throw new RangeError(`protocol name must be lowercase, got '${name}'`)
  return `${PREFIX}/${runId}/${name}/${version}`
}

const PROTOCOL_ID = new RegExp(`^${PREFIX}/(${RUN_ID})/${PROTOCOL_NAME}/[^/]+$`)

/** The run id inside a swarmtrain protocol id, or undefined for any other protocol. */
export function runIdOfProtocol (protocol: string): string | undefined {
  return PROTOCOL_ID.exec(protocol)?.[1]
}

/** The kad-dht protocol of a run: a private DHT per run, so runs never share routing tables. */
export function dhtProtocol (runId: string): string {
  return protocolId(runId, 'kad', '1.0.0')
}

/** A newcomer asks a peer for the run manifest (manifest.proto). */
export function manifestProtocol (runId: string): string {
  return protocolId(runId, 'manifest', 1)
}

/** A peer's signed info record, asked of the peer itself (registry.proto). */
export function infoProtocol (runId: string): string {
  return protocolId(runId, 'info', 1)
}

/** Forward, backward, TRAIN and EVALUATE calls to a stage server (stage.proto); 1.1 added EVALUATE, which a 1.0 server cannot decode. */
export function stageProtocol (runId: string): string {
  return protocolId(runId, 'stage', '1.1.0')
}

/** The DHT namespace of info records: kad-dht validators and selectors are keyed by it. */
export const INFO_RECORD_NAMESPACE = NAMESPACE

/** The DHT key of a peer's info record: `/swarmtrain/<runId>/info/<peerId>`. */
export function infoKey (runId: string, peerId: string | { toString(): string }): Uint8Array {
  return new TextEncoder().encode(`${PREFIX}/${runId}/info/${peerId.toString()}`)
}

const INFO_KEY = new RegExp(`^${PREFIX}/(${RUN_ID})/info/(${PEER_ID})$`)

/** The run and peer id in an info record key, or undefined if it is not one. */
export function parseInfoKey (key: Uint8Array): { runId: string, peerId: string } | undefined {
  const match = INFO_KEY.exec(new TextDecoder().decode(key))
  return match === null ? undefined : { runId: match[1], peerId: match[2] }
}

/** Info record signatures cover this tag plus the encoded record, so they cannot be replayed elsewhere. */
export const INFO_SIGNATURE_DOMAIN = new TextEncoder().encode(`${NAMESPACE}/peer-info/1:`)

/** The DHT provider key of a stage's servers: sha256 of `swarmtrain/<runId>/stage/<n>`, raw codec. */
export async function stageCid (runId: string, stage: number): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(`${NAMESPACE}/${runId}/stage/${stage}`)))
}

/** Averaging rounds within a stage: contributions, relays and result hashes (averaging.proto). */
export function averageProtocol (runId: string): string {
  return protocolId(runId, 'average', 1)
}

/** A stage's state (weights, optimizer and outer-loop state), streamed in hashed chunks (state.proto). */
export function stateProtocol (runId: string): string {
  return protocolId(runId, 'state', 1)
}

/** Largest accepted message, in bytes, per protocol or record. */
export const MAX_BYTES = {
  manifestRequest: 256,
  /** A manifest is a few hundred bytes of JSON; 64 KiB leaves room for growth. */
  manifestResponse: 64 * 1024,
  infoRequest: 256,
  /** A signed info record: ~150 bytes of fields plus a 64-byte signature. */
  infoRecord: 1024,
  /** Averaging requests and responses beyond their payload (ids, hashes, signature, framing). */
  averageOverhead: 4096,
  /** State sync: one chunk (and the bytes a chunk message may carry). */
  stateChunk: 1 << 20,
  /** State sync: the manifest message beyond its chunk hashes. */
  stateManifestOverhead: 4096
} as const

/** Largest averaging message whose contribution carries at most `payloadBytes` (the run's mode and densities decide). */
export function averageMessageLimit (payloadBytes: number): number {
  return payloadBytes + MAX_BYTES.averageOverhead
}
