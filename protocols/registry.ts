import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface PeerInfo {
  runId: string
  peerId: Uint8Array<ArrayBuffer>
  stage: number
  throughput: number
  queueLength: number
  freeMemory: bigint
  round: bigint
  version: string
  issuedAt: bigint
  expiresAt: bigint
  servedThroughput: number
  ready: boolean
  tokensSinceSync: bigint
  stateHash: Uint8Array<ArrayBuffer>
  drivenTokens: bigint
  trainLoss?: number
  validationLoss?: number
}

export namespace PeerInfo {
  let _codec: Codec<PeerInfo>

  export const codec = (): Codec<PeerInfo> => {
    if (_codec == null) {
      _codec = message<PeerInfo>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.runId != null && obj.runId !== '')) {
          w.uint32(10)
          w.string(obj.runId)
        }

        if ((obj.peerId != null && obj.peerId.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.peerId)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(24)
          w.uint32(obj.stage)
        }

        if ((obj.throughput != null && obj.throughput !== 0)) {
          w.uint32(33)
          w.double(obj.throughput)
        }

        if ((obj.queueLength != null && obj.queueLength !== 0)) {
          w.uint32(40)
          w.uint32(obj.queueLength)
        }

        if ((obj.freeMemory != null && obj.freeMemory !== 0n)) {
          w.uint32(48)
          w.uint64(obj.freeMemory)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(56)
          w.uint64(obj.round)
        }

        if ((obj.version != null && obj.version !== '')) {
          w.uint32(66)
          w.string(obj.version)
        }

        if ((obj.issuedAt != null && obj.issuedAt !== 0n)) {
          w.uint32(72)
          w.uint64(obj.issuedAt)
        }

        if ((obj.expiresAt != null && obj.expiresAt !== 0n)) {
          w.uint32(80)
          w.uint64(obj.expiresAt)
        }

        if ((obj.servedThroughput != null && obj.servedThroughput !== 0)) {
          w.uint32(89)
          w.double(obj.servedThroughput)
        }

        if ((obj.ready != null && obj.ready !== false)) {
          w.uint32(96)
          w.bool(obj.ready)
        }

        if ((obj.tokensSinceSync != null && obj.tokensSinceSync !== 0n)) {
          w.uint32(104)
          w.uint64(obj.tokensSinceSync)
        }

        if ((obj.stateHash != null && obj.stateHash.byteLength > 0)) {
          w.uint32(114)
          w.bytes(obj.stateHash)
        }

        if ((obj.drivenTokens != null && obj.drivenTokens !== 0n)) {
          w.uint32(120)
          w.uint64(obj.drivenTokens)
        }

        if (obj.trainLoss != null) {
          w.uint32(129)
          w.double(obj.trainLoss)
        }

        if (obj.validationLoss != null) {
          w.uint32(137)
          w.double(obj.validationLoss)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          runId: '',
          peerId: uint8ArrayAlloc(0),
          stage: 0,
          throughput: 0,
          queueLength: 0,
          freeMemory: 0n,
          round: 0n,
          version: '',
          issuedAt: 0n,
          expiresAt: 0n,
          servedThroughput: 0,
          ready: false,
          tokensSinceSync: 0n,
          stateHash: uint8ArrayAlloc(0),
          drivenTokens: 0n
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
              obj.peerId = reader.bytes()
              break
            }
            case 3: {
              obj.stage = reader.uint32()
              break
            }
            case 4: {
              obj.throughput = reader.double()
              break
            }
            case 5: {
              obj.queueLength = reader.uint32()
              break
            }
            case 6: {
              obj.freeMemory = reader.uint64()
              break
            }
            case 7: {
              obj.round = reader.uint64()
              break
            }
            case 8: {
              obj.version = reader.string()
              break
            }
            case 9: {
              obj.issuedAt = reader.uint64()
              break
            }
            case 10: {
              obj.expiresAt = reader.uint64()
              break
            }
            case 11: {
              obj.servedThroughput = reader.double()
              break
            }
            case 12: {
              obj.ready = reader.bool()
              break
            }
            case 13: {
              obj.tokensSinceSync = reader.uint64()
              break
            }
            case 14: {
              obj.stateHash = reader.bytes()
              break
            }
            case 15: {
              obj.drivenTokens = reader.uint64()
              break
            }
            case 16: {
              obj.trainLoss = reader.double()
              break
            }
            case 17: {
              obj.validationLoss = reader.double()
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
                field: `${prefix}.peerId`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.throughput`,
                value: reader.double()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.queueLength`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.freeMemory`,
                value: reader.uint64()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.round`,
                value: reader.uint64()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.version`,
                value: reader.string()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.issuedAt`,
                value: reader.uint64()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.expiresAt`,
                value: reader.uint64()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.servedThroughput`,
                value: reader.double()
              }
              break
            }
            case 12: {
              yield {
                field: `${prefix}.ready`,
                value: reader.bool()
              }
              break
            }
            case 13: {
              yield {
                field: `${prefix}.tokensSinceSync`,
                value: reader.uint64()
              }
              break
            }
            case 14: {
              yield {
                field: `${prefix}.stateHash`,
                value: reader.bytes()
              }
              break
            }
            case 15: {
              yield {
                field: `${prefix}.drivenTokens`,
                value: reader.uint64()
              }
              break
            }
            case 16: {
              yield {
                field: `${prefix}.trainLoss`,
                value: reader.double()
              }
              break
            }
            case 17: {
              yield {
                field: `${prefix}.validationLoss`,
                value: reader.double()
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

  export interface PeerInfoRunIdFieldEvent {
    field: '$.runId'
    value: string
  }

  export interface PeerInfoPeerIdFieldEvent {
    field: '$.peerId'
    value: Uint8Array<ArrayBuffer>
  }

  export interface PeerInfoStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface PeerInfoThroughputFieldEvent {
    field: '$.throughput'
    value: number
  }

  export interface PeerInfoQueueLengthFieldEvent {
    field: '$.queueLength'
    value: number
  }

  export interface PeerInfoFreeMemoryFieldEvent {
    field: '$.freeMemory'
    value: bigint
  }

  export interface PeerInfoRoundFieldEvent {
    field: '$.round'
    value: bigint
  }

  export interface PeerInfoVersionFieldEvent {
    field: '$.version'
    value: string
  }

  export interface PeerInfoIssuedAtFieldEvent {
    field: '$.issuedAt'
    value: bigint
  }

  export interface PeerInfoExpiresAtFieldEvent {
    field: '$.expiresAt'
    value: bigint
  }

  export interface PeerInfoServedThroughputFieldEvent {
    field: '$.servedThroughput'
    value: number
  }

  export interface PeerInfoReadyFieldEvent {
    field: '$.ready'
    value: boolean
  }

  export interface PeerInfoTokensSinceSyncFieldEvent {
    field: '$.tokensSinceSync'
    value: bigint
  }

  export interface PeerInfoStateHashFieldEvent {
    field: '$.stateHash'
    value: Uint8Array<ArrayBuffer>
  }

  export interface PeerInfoDrivenTokensFieldEvent {
    field: '$.drivenTokens'
    value: bigint
  }

  export interface PeerInfoTrainLossFieldEvent {
    field: '$.trainLoss'
    value: number
  }

  export interface PeerInfoValidationLossFieldEvent {
    field: '$.validationLoss'
    value: number
  }

  export function encode (obj: Partial<PeerInfo>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, PeerInfo.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PeerInfo>): PeerInfo {
    return decodeMessage(buf, PeerInfo.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PeerInfo>): Generator<PeerInfoRunIdFieldEvent | PeerInfoPeerIdFieldEvent | PeerInfoStageFieldEvent | PeerInfoThroughputFieldEvent | PeerInfoQueueLengthFieldEvent | PeerInfoFreeMemoryFieldEvent | PeerInfoRoundFieldEvent | PeerInfoVersionFieldEvent | PeerInfoIssuedAtFieldEvent | PeerInfoExpiresAtFieldEvent | PeerInfoServedThroughputFieldEvent | PeerInfoReadyFieldEvent | PeerInfoTokensSinceSyncFieldEvent | PeerInfoStateHashFieldEvent | PeerInfoDrivenTokensFieldEvent | PeerInfoTrainLossFieldEvent | PeerInfoValidationLossFieldEvent> {
    return streamMessage(buf, PeerInfo.codec(), opts)
  }
}

export interface SignedPeerInfo {
  info: Uint8Array<ArrayBuffer>
  signature: Uint8Array<ArrayBuffer>
}

export namespace SignedPeerInfo {
  let _codec: Codec<SignedPeerInfo>

  export const codec = (): Codec<SignedPeerInfo> => {
    if (_codec == null) {
      _codec = message<SignedPeerInfo>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.info != null && obj.info.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.info)
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
          info: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.info = reader.bytes()
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
                field: `${prefix}.info`,
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

  export interface SignedPeerInfoInfoFieldEvent {
    field: '$.info'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SignedPeerInfoSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SignedPeerInfo>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SignedPeerInfo.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedPeerInfo>): SignedPeerInfo {
    return decodeMessage(buf, SignedPeerInfo.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedPeerInfo>): Generator<SignedPeerInfoInfoFieldEvent | SignedPeerInfoSignatureFieldEvent> {
    return streamMessage(buf, SignedPeerInfo.codec(), opts)
  }
}

export interface InfoRequest {
  runId: string
}

export namespace InfoRequest {
  let _codec: Codec<InfoRequest>

  export const codec = (): Codec<InfoRequest> => {
    if (_codec == null) {
      _codec = message<InfoRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.runId != null && obj.runId !== '')) {
          w.uint32(10)
          w.string(obj.runId)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          runId: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.runId = reader.string()
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

  export interface InfoRequestRunIdFieldEvent {
    field: '$.runId'
    value: string
  }

  export function encode (obj: Partial<InfoRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, InfoRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<InfoRequest>): InfoRequest {
    return decodeMessage(buf, InfoRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<InfoRequest>): Generator<InfoRequestRunIdFieldEvent> {
    return streamMessage(buf, InfoRequest.codec(), opts)
  }
}
