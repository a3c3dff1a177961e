// Protocol ids and size limits of every swarmtrain wire protocol. Each id carries the run id,
// so peers of different runs never speak to each other, and a version, so a format change
// never meets an old decoder. Limits are enforced before a message is allocated.

const PREFIX = '/swarmtrain'

/** `/swarmtrain/<runId>/<name>/<version>`, e.g. `/swarmtrain/3f9a.../manifest/1`. */
export function protocolId (runId: string, name: string, version: number | string): string {
  if (!/^[a-z0-9]+$/.test(runId)) throw new RangeError(`run id must be lowercase alphanumeric, got '${runId}'`)
  if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new RangeError(`protocol name must be lowercase, got '${name}'`)
  return `${PREFIX}/${runId}/${name}/${version}`
}

/** The run id inside a swarmtrain protocol id, or undefined for any other protocol. */
export function runIdOfProtocol (protocol: string): string | undefined {
  return /^\/swarmtrain\/([a-z0-9]+)\/[a-z][a-z0-9-]*\/[^/]+$/.exec(protocol)?.[1]
}

/** The kad-dht protocol of a run: a private DHT per run, so runs never share routing tables. */
export function dhtProtocol (runId: string): string {
  return protocolId(runId, 'kad', '1.0.0')
}

export const MANIFEST_PROTOCOL = { name: 'manifest', version: 1 } as const
export const INFO_PROTOCOL = { name: 'info', version: 1 } as const
export const AVERAGE_PROTOCOL = { name: 'average', version: 1 } as const
export const STATE_PROTOCOL = { name: 'state', version: 1 } as const

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

/** Largest averaging message for a stage of `params` values: a dense float32 payload plus overhead. */
export function averageMessageLimit (params: number): number {
  return 4 * params + MAX_BYTES.averageOverhead
}
