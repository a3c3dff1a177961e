import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Contribution {
  runId: string
  stage: number
  round: bigint
  sender: Uint8Array<ArrayBuffer>
  tokens: bigint
  payloadHash: Uint8Array<ArrayBuffer>
  dense: boolean
  payload: Uint8Array<ArrayBuffer>
}

export namespace Contribution {
  let _codec: Codec<Contribution>

  export const codec = (): Codec<Contribution> => {
    if (_codec == null) {
      _codec = message<Contribution>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.runId != null && obj.runId !== '')) {
          w.uint32(10)
          w.string(obj.runId)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(16)
          w.uint32(obj.stage)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(24)
          w.uint64(obj.round)
        }

        if ((obj.sender != null && obj.sender.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.sender)
        }

        if ((obj.tokens != null && obj.tokens !== 0n)) {
          w.uint32(40)
          w.uint64(obj.tokens)
        }

        if ((obj.payloadHash != null && obj.payloadHash.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.payloadHash)
        }

        if ((obj.dense != null && obj.dense !== false)) {
          w.uint32(56)
          w.bool(obj.dense)
        }

        if ((obj.payload != null && obj.payload.byteLength > 0)) {
          w.uint32(66)
          w.bytes(obj.payload)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          runId: '',
          stage: 0,
          round: 0n,
          sender: uint8ArrayAlloc(0),
          tokens: 0n,
          payloadHash: uint8ArrayAlloc(0),
          dense: false,
          payload: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.runId = reader.string()
              break
            }
            case 2: {
              obj.stage = reader.uint32()
              break
            }
            case 3: {
              obj.round = reader.uint64()
              break
            }
            case 4: {
              obj.sender = reader.bytes()
              break
            }
            case 5: {
              obj.tokens = reader.uint64()
              break
            }
            case 6: {
              obj.payloadHash = reader.bytes()
              break
            }
            case 7: {
              obj.dense = reader.bool()
              break
            }
            case 8: {
              obj.payload = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.runId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.round`,
                value: reader.uint64()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.sender`,
                value: reader.bytes()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.tokens`,
                value: reader.uint64()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.payloadHash`,
                value: reader.bytes()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.dense`,
                value: reader.bool()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.payload`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface ContributionRunIdFieldEvent {
    field: '$.runId'
    value: string
  }

  export interface ContributionStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface ContributionRoundFieldEvent {
    field: '$.round'
    value: bigint
  }

  export interface ContributionSenderFieldEvent {
    field: '$.sender'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ContributionTokensFieldEvent {
    field: '$.tokens'
    value: bigint
  }

  export interface ContributionPayloadHashFieldEvent {
    field: '$.payloadHash'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ContributionDenseFieldEvent {
    field: '$.dense'
    value: boolean
  }

  export interface ContributionPayloadFieldEvent {
    field: '$.payload'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Contribution>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Contribution.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Contribution>): Contribution {
    return decodeMessage(buf, Contribution.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Contribution>): Generator<ContributionRunIdFieldEvent | ContributionStageFieldEvent | ContributionRoundFieldEvent | ContributionSenderFieldEvent | ContributionTokensFieldEvent | ContributionPayloadHashFieldEvent | ContributionDenseFieldEvent | ContributionPayloadFieldEvent> {
    return streamMessage(buf, Contribution.codec(), opts)
  }
}

export interface SignedContribution {
  contribution: Uint8Array<ArrayBuffer>
  signature: Uint8Array<ArrayBuffer>
}

export namespace SignedContribution {
  let _codec: Codec<SignedContribution>

  export const codec = (): Codec<SignedContribution> => {
    if (_codec == null) {
      _codec = message<SignedContribution>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.contribution != null && obj.contribution.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.contribution)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          contribution: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.contribution = reader.bytes()
              break
            }
            case 2: {
              obj.signature = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.contribution`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.signature`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SignedContributionContributionFieldEvent {
    field: '$.contribution'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SignedContributionSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SignedContribution>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SignedContribution.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedContribution>): SignedContribution {
    return decodeMessage(buf, SignedContribution.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedContribution>): Generator<SignedContributionContributionFieldEvent | SignedContributionSignatureFieldEvent> {
    return streamMessage(buf, SignedContribution.codec(), opts)
  }
}

export interface AverageRequest {
  stage: number
  round: bigint
  push?: SignedContribution
  want?: Uint8Array<ArrayBuffer>
  stateHash?: Uint8Array<ArrayBuffer>
}

export namespace AverageRequest {
  let _codec: Codec<AverageRequest>

  export const codec = (): Codec<AverageRequest> => {
    if (_codec == null) {
      _codec = message<AverageRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(8)
          w.uint32(obj.stage)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if (obj.push != null) {
          w.uint32(26)
          SignedContribution.codec().encode(obj.push, w)
        }

        if (obj.want != null) {
          w.uint32(34)
          w.bytes(obj.want)
        }

        if (obj.stateHash != null) {
          w.uint32(42)
          w.bytes(obj.stateHash)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          stage: 0,
          round: 0n
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.stage = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.push = SignedContribution.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.push
              })
              break
            }
            case 4: {
              obj.want = reader.bytes()
              break
            }
            case 5: {
              obj.stateHash = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.round`,
                value: reader.uint64()
              }
              break
            }
            case 3: {
              yield * SignedContribution.codec().stream(reader, reader.uint32(), `${prefix}.push`, {
                limits: opts.limits?.push
              })

              break
            }
            case 4: {
              yield {
                field: `${prefix}.want`,
                value: reader.bytes()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.stateHash`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface AverageRequestStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface AverageRequestRoundFieldEvent {
    field: '$.round'
    value: bigint
  }

  export interface AverageRequestPushContributionFieldEvent {
    field: '$.push.contribution'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AverageRequestPushSignatureFieldEvent {
    field: '$.push.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AverageRequestWantFieldEvent {
    field: '$.want'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AverageRequestStateHashFieldEvent {
    field: '$.stateHash'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<AverageRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, AverageRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AverageRequest>): AverageRequest {
    return decodeMessage(buf, AverageRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AverageRequest>): Generator<AverageRequestStageFieldEvent | AverageRequestRoundFieldEvent | AverageRequestPushContributionFieldEvent | AverageRequestPushSignatureFieldEvent | AverageRequestWantFieldEvent | AverageRequestStateHashFieldEvent> {
    return streamMessage(buf, AverageRequest.codec(), opts)
  }
}

export interface AverageResponse {
  ok: boolean
  error: string
  contribution?: SignedContribution
}

export namespace AverageResponse {
  let _codec: Codec<AverageResponse>

  export const codec = (): Codec<AverageResponse> => {
    if (_codec == null) {
      _codec = message<AverageResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.ok != null && obj.ok !== false)) {
          w.uint32(8)
          w.bool(obj.ok)
        }

        if ((obj.error != null && obj.error !== '')) {
          w.uint32(18)
          w.string(obj.error)
        }

        if (obj.contribution != null) {
          w.uint32(26)
          SignedContribution.codec().encode(obj.contribution, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          ok: false,
          error: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.ok = reader.bool()
              break
            }
            case 2: {
              obj.error = reader.string()
              break
            }
            case 3: {
              obj.contribution = SignedContribution.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.contribution
              })
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.ok`,
                value: reader.bool()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.error`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield * SignedContribution.codec().stream(reader, reader.uint32(), `${prefix}.contribution`, {
                limits: opts.limits?.contribution
              })

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface AverageResponseOkFieldEvent {
    field: '$.ok'
    value: boolean
  }

  export interface AverageResponseErrorFieldEvent {
    field: '$.error'
    value: string
  }

  export interface AverageResponseContributionContributionFieldEvent {
    field: '$.contribution.contribution'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AverageResponseContributionSignatureFieldEvent {
    field: '$.contribution.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<AverageResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, AverageResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AverageResponse>): AverageResponse {
    return decodeMessage(buf, AverageResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AverageResponse>): Generator<AverageResponseOkFieldEvent | AverageResponseErrorFieldEvent | AverageResponseContributionContributionFieldEvent | AverageResponseContributionSignatureFieldEvent> {
    return streamMessage(buf, AverageResponse.codec(), opts)
  }
}

export enum StatePart {
  SHARED = 'SHARED',
  REPLICA = 'REPLICA'
}

enum __StatePartValues {
  SHARED = 0,
  REPLICA = 1
}

export namespace StatePart {
  export const codec = (): Codec<StatePart> => {
    return enumeration<StatePart>(__StatePartValues)
  }
}

export interface StateRequest {
  stage: number
  fromChunk: number
  stateHash: Uint8Array<ArrayBuffer>
  chunkCount: number
  part: StatePart
}

export namespace StateRequest {
  let _codec: Codec<StateRequest>

  export const codec = (): Codec<StateRequest> => {
    if (_codec == null) {
      _codec = message<StateRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(8)
          w.uint32(obj.stage)
        }

        if ((obj.fromChunk != null && obj.fromChunk !== 0)) {
          w.uint32(16)
          w.uint32(obj.fromChunk)
        }

        if ((obj.stateHash != null && obj.stateHash.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.stateHash)
        }

        if ((obj.chunkCount != null && obj.chunkCount !== 0)) {
          w.uint32(32)
          w.uint32(obj.chunkCount)
        }

        if (obj.part != null && __StatePartValues[obj.part] !== 0) {
          w.uint32(40)
          StatePart.codec().encode(obj.part, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          stage: 0,
          fromChunk: 0,
          stateHash: uint8ArrayAlloc(0),
          chunkCount: 0,
          part: StatePart.SHARED
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.stage = reader.uint32()
              break
            }
            case 2: {
              obj.fromChunk = reader.uint32()
              break
            }
            case 3: {
              obj.stateHash = reader.bytes()
              break
            }
            case 4: {
              obj.chunkCount = reader.uint32()
              break
            }
            case 5: {
              obj.part = StatePart.codec().decode(reader)
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.fromChunk`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.stateHash`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.chunkCount`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.part`,
                value: StatePart.codec().decode(reader)
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface StateRequestStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface StateRequestFromChunkFieldEvent {
    field: '$.fromChunk'
    value: number
  }

  export interface StateRequestStateHashFieldEvent {
    field: '$.stateHash'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StateRequestChunkCountFieldEvent {
    field: '$.chunkCount'
    value: number
  }

  export interface StateRequestPartFieldEvent {
    field: '$.part'
    value: StatePart
  }

  export function encode (obj: Partial<StateRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, StateRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StateRequest>): StateRequest {
    return decodeMessage(buf, StateRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StateRequest>): Generator<StateRequestStageFieldEvent | StateRequestFromChunkFieldEvent | StateRequestStateHashFieldEvent | StateRequestChunkCountFieldEvent | StateRequestPartFieldEvent> {
    return streamMessage(buf, StateRequest.codec(), opts)
  }
}

export interface StateManifest {
  error: string
  round: bigint
  step: bigint
  totalBytes: bigint
  chunkBytes: number
  chunkHashes: Uint8Array<ArrayBuffer>[]
  stateHash: Uint8Array<ArrayBuffer>
}

export namespace StateManifest {
  let _codec: Codec<StateManifest>

  export const codec = (): Codec<StateManifest> => {
    if (_codec == null) {
      _codec = message<StateManifest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.error != null && obj.error !== '')) {
          w.uint32(10)
          w.string(obj.error)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.step != null && obj.step !== 0n)) {
          w.uint32(24)
          w.uint64(obj.step)
        }

        if ((obj.totalBytes != null && obj.totalBytes !== 0n)) {
          w.uint32(32)
          w.uint64(obj.totalBytes)
        }

        if ((obj.chunkBytes != null && obj.chunkBytes !== 0)) {
          w.uint32(40)
          w.uint32(obj.chunkBytes)
        }

        if (obj.chunkHashes != null && obj.chunkHashes.length > 0) {
          for (const value of obj.chunkHashes) {
            w.uint32(50)
            w.bytes(value)
          }
        }

        if ((obj.stateHash != null && obj.stateHash.byteLength > 0)) {
          w.uint32(58)
          w.bytes(obj.stateHash)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          error: '',
          round: 0n,
          step: 0n,
          totalBytes: 0n,
          chunkBytes: 0,
          chunkHashes: [],
          stateHash: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.error = reader.string()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.step = reader.uint64()
              break
            }
            case 4: {
              obj.totalBytes = reader.uint64()
              break
            }
            case 5: {
              obj.chunkBytes = reader.uint32()
              break
            }
            case 6: {
              if (opts.limits?.chunkHashes != null && obj.chunkHashes.length === opts.limits.chunkHashes) {
                throw new MaxLengthError('Decode error - repeated field "chunkHashes" had too many elements')
              }

              obj.chunkHashes.push(reader.bytes())
              break
            }
            case 7: {
              obj.stateHash = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          chunkHashes: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.error`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.round`,
                value: reader.uint64()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.step`,
                value: reader.uint64()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.totalBytes`,
                value: reader.uint64()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.chunkBytes`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              if (opts.limits?.chunkHashes != null && obj.chunkHashes === opts.limits.chunkHashes) {
                throw new MaxLengthError('Streaming decode error - repeated field "chunkHashes" had too many elements')
              }

              yield {
                field: `${prefix}.chunkHashes[]`,
                index: obj.chunkHashes,
                value: reader.bytes()
              }

              obj.chunkHashes++

              break
            }
            case 7: {
              yield {
                field: `${prefix}.stateHash`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface StateManifestErrorFieldEvent {
    field: '$.error'
    value: string
  }

  export interface StateManifestRoundFieldEvent {
    field: '$.round'
    value: bigint
  }

  export interface StateManifestStepFieldEvent {
    field: '$.step'
    value: bigint
  }

  export interface StateManifestTotalBytesFieldEvent {
    field: '$.totalBytes'
    value: bigint
  }

  export interface StateManifestChunkBytesFieldEvent {
    field: '$.chunkBytes'
    value: number
  }

  export interface StateManifestChunkHashesFieldEvent {
    field: '$.chunkHashes[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface StateManifestStateHashFieldEvent {
    field: '$.stateHash'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<StateManifest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, StateManifest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StateManifest>): StateManifest {
    return decodeMessage(buf, StateManifest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StateManifest>): Generator<StateManifestErrorFieldEvent | StateManifestRoundFieldEvent | StateManifestStepFieldEvent | StateManifestTotalBytesFieldEvent | StateManifestChunkBytesFieldEvent | StateManifestChunkHashesFieldEvent | StateManifestStateHashFieldEvent> {
    return streamMessage(buf, StateManifest.codec(), opts)
  }
}
