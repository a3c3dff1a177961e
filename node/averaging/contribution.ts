// A member's signed contribution to a round: its pseudo-gradient (compressed, or dense float32),
// its token count and the payload's hash, signed by its peer key. The signature covers the
// encoded bytes as sent, so any peer holding a contribution can relay it and the receiver still
// checks it against the original sender.
import { createHash } from 'node:crypto'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import * as Digest from 'multiformats/hashes/digest'
import { kForDensity, maxPayloadSize, payloadNorm, readHeader, type ValueBits } from '../../native/index.js'
import { roundDensities } from './trigger.js'
import { Contribution, SignedContribution } from '../../protocols/averaging.js'
import type { AveragingSettings } from '../manifest/manifest.js'

const SIGNATURE_DOMAIN = new TextEncoder().encode('swarmtrain/contribution/1:')

/** A contribution that is forged, corrupted, of another round or stage, or of the wrong shape. */
export class ContributionError extends Error {
  override name = 'ContributionError'
}

export interface VerifiedContribution {
  /** Peer id string of the signer. */
  sender: string
  tokens: number
  dense: boolean
  payload: Uint8Array
  /** The bytes as signed, to relay unchanged. */
  signed: SignedContribution
}

/** What a contribution must match to be accepted. */
export interface ContributionScope {
  runId: string
  stage: number
  round: number
  /** Values of the stage's flat parameter vector. */
  params: number
  settings: AveragingSettings
}

export function sha256 (...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const hash = createHash('sha256')
  for (const part of parts) hash.update(part)
  return new Uint8Array(hash.digest())
}

function signedBytes (contribution: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNATURE_DOMAIN.length + contribution.length)
  out.set(SIGNATURE_DOMAIN)
  out.set(contribution, SIGNATURE_DOMAIN.length)
  return out
}

export async function signContribution (scope: ContributionScope, from: { privateKey: PrivateKey, peerId: PeerId }, tokens: number, dense: boolean, payload: Uint8Array<ArrayBuffer>): Promise<SignedContribution> {
  const contribution = Contribution.encode({
    runId: scope.runId,
    stage: scope.stage,
    round: BigInt(scope.round),
    sender: from.peerId.toMultihash().bytes,
    tokens: BigInt(Math.max(0, Math.floor(tokens))),
    payloadHash: sha256(payload),
    dense,
    payload
  })
  return { contribution, signature: new Uint8Array(await from.privateKey.sign(signedBytes(contribution))) }
}

/** Checks signature, scope, hash and payload shape; throws ContributionError naming the problem. */
export async function verifyContribution (signed: SignedContribution, scope: ContributionScope): Promise<VerifiedContribution> {
  let c: Contribution
  try {
    c = Contribution.decode(signed.contribution)
  } catch (err) {
    throw new ContributionError(`malformed contribution: ${(err as Error).message}`)
  }
  let sender: PeerId
  try {
    sender = peerIdFromMultihash(Digest.decode(c.sender))
  } catch {
    throw new ContributionError('contribution holds no valid peer id')
  }
  if (sender.publicKey === undefined) throw new ContributionError('contribution sender does not embed its public key')
  if (!await sender.publicKey.verify(signedBytes(signed.contribution), signed.signature)) throw new ContributionError(`contribution signature of ${sender.toString()} does not verify`)
  if (c.runId !== scope.runId || c.stage !== scope.stage || c.round !== BigInt(scope.round)) {
    throw new ContributionError(`contribution of run ${c.runId} stage ${c.stage} round ${c.round}, expected stage ${scope.stage} round ${scope.round}`)
  }
  if (c.tokens > BigInt(Number.MAX_SAFE_INTEGER)) throw new ContributionError('contribution token count out of range')
  const hash = sha256(c.payload)
  if (c.payloadHash.length !== hash.length || !c.payloadHash.every((b, i) => b === hash[i])) throw new ContributionError('contribution payload does not match its hash')
  // A member that trained nothing since the last round takes part (it leaves with the result)
  // but sends no values.
  if (c.tokens === 0n) {
    if (c.payload.length !== 0) throw new ContributionError('a contribution of 0 tokens carries values')
  } else {
    checkPayload(c.dense, c.payload, scope)
  }
  return { sender: sender.toString(), tokens: Number(c.tokens), dense: c.dense, payload: c.payload, signed }
}

/** The largest payload the run's settings produce for a stage of `params` values: what a message may carry. */
export function largestPayload (params: number, settings: AveragingSettings): number {
  if (settings.mode === 'dense') return 4 * params
  return Math.max(...roundDensities(settings).map(density => maxPayloadSize(params, settings.chunkSize, kForDensity(density, settings.chunkSize), settings.valueBits as ValueBits)))
}

/** The payload has the shape this run's settings produce for this stage (whole sparse payload checked). */
function checkPayload (dense: boolean, payload: Uint8Array, scope: ContributionScope): void {
  const { settings, params } = scope
  if (dense !== (settings.mode === 'dense')) throw new ContributionError(`a ${dense ? 'dense' : 'sparse'} contribution in a ${settings.mode} run`)
  if (dense) {
    if (payload.length !== 4 * params) throw new ContributionError(`dense payload of ${payload.length} bytes, expected ${4 * params}`)
    return
  }
  try {
    const h = readHeader(payload)
    const ks = roundDensities(settings).map(density => kForDensity(density, settings.chunkSize))
    if (h.n !== params || h.chunk !== settings.chunkSize || !ks.includes(h.k) || h.bits !== settings.valueBits) {
      throw new RangeError(`payload of n ${h.n}, chunk ${h.chunk}, k ${h.k}, bits ${h.bits} does not match the run's settings`)
    }
    payloadNorm(payload) // reads every chunk record: throws on any bad field
  } catch (err) {
    throw new ContributionError(`bad sparse payload: ${(err as Error).message}`)
  }
}
