import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export enum DType {
  F32 = 'F32',
  F16 = 'F16',
  INT8 = 'INT8',
  I32 = 'I32'
}

enum __DTypeValues {
  F32 = 0,
  F16 = 1,
  INT8 = 2,
  I32 = 3
}

export namespace DType {
  export const codec = (): Codec<DType> => {
    return enumeration<DType>(__DTypeValues)
  }
}

export interface Tensor {
  dtype: DType
  shape: number[]
  data: Uint8Array<ArrayBuffer>
  scales: Uint8Array<ArrayBuffer>
}

export namespace Tensor {
  let _codec: Codec<Tensor>

  export const codec = (): Codec<Tensor> => {
    if (_codec == null) {
      _codec = message<Tensor>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.dtype != null && __DTypeValues[obj.dtype] !== 0) {
          w.uint32(8)
          DType.codec().encode(obj.dtype, w)
        }

        if (obj.shape != null && obj.shape.length > 0) {
          for (const value of obj.shape) {
            w.uint32(16)
            w.uint32(value)
          }
        }

        if ((obj.data != null && obj.data.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.data)
        }

        if ((obj.scales != null && obj.scales.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.scales)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          dtype: DType.F32,
          shape: [],
          data: uint8ArrayAlloc(0),
          scales: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.dtype = DType.codec().decode(reader)
              break
            }
            case 2: {
              if (opts.limits?.shape != null && obj.shape.length === opts.limits.shape) {
                throw new MaxLengthError('Decode error - repeated field "shape" had too many elements')
              }

              obj.shape.push(reader.uint32())
              break
            }
            case 3: {
              obj.data = reader.bytes()
              break
            }
            case 4: {
              obj.scales = reader.bytes()
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
          shape: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.dtype`,
                value: DType.codec().decode(reader)
              }
              break
            }
            case 2: {
              if (opts.limits?.shape != null && obj.shape === opts.limits.shape) {
                throw new MaxLengthError('Streaming decode error - repeated field "shape" had too many elements')
              }

              yield {
                field: `${prefix}.shape[]`,
                index: obj.shape,
                value: reader.uint32()
              }

              obj.shape++

              break
            }
            case 3: {
              yield {
                field: `${prefix}.data`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.scales`,
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

  export interface TensorDtypeFieldEvent {
    field: '$.dtype'
    value: DType
  }

  export interface TensorShapeFieldEvent {
    field: '$.shape[]'
    index: number
    value: number
  }

  export interface TensorDataFieldEvent {
    field: '$.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface TensorScalesFieldEvent {
    field: '$.scales'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Tensor>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Tensor.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Tensor>): Tensor {
    return decodeMessage(buf, Tensor.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Tensor>): Generator<TensorDtypeFieldEvent | TensorShapeFieldEvent | TensorDataFieldEvent | TensorScalesFieldEvent> {
    return streamMessage(buf, Tensor.codec(), opts)
  }
}

export interface StageRequest {
  id: number
  kind: StageRequest.Kind
  stage: number
  x?: Tensor
  gy?: Tensor
  targets?: Tensor
  replyDtype: DType
  at?: WeightsVersion
  route: string[]
}

export namespace StageRequest {
  export enum Kind {
    FORWARD = 'FORWARD',
    BACKWARD = 'BACKWARD',
    TRAIN = 'TRAIN',
    EVALUATE = 'EVALUATE'
  }

  enum __KindValues {
    FORWARD = 0,
    BACKWARD = 1,
    TRAIN = 2,
    EVALUATE = 3
  }

  export namespace Kind {
    export const codec = (): Codec<Kind> => {
      return enumeration<Kind>(__KindValues)
    }
  }

  let _codec: Codec<StageRequest>

  export const codec = (): Codec<StageRequest> => {
    if (_codec == null) {
      _codec = message<StageRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id !== 0)) {
          w.uint32(8)
          w.uint32(obj.id)
        }

        if (obj.kind != null && __KindValues[obj.kind] !== 0) {
          w.uint32(16)
          StageRequest.Kind.codec().encode(obj.kind, w)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(24)
          w.uint32(obj.stage)
        }

        if (obj.x != null) {
          w.uint32(34)
          Tensor.codec().encode(obj.x, w)
        }

        if (obj.gy != null) {
          w.uint32(42)
          Tensor.codec().encode(obj.gy, w)
        }

        if (obj.targets != null) {
          w.uint32(50)
          Tensor.codec().encode(obj.targets, w)
        }

        if (obj.replyDtype != null && __DTypeValues[obj.replyDtype] !== 0) {
          w.uint32(56)
          DType.codec().encode(obj.replyDtype, w)
        }

        if (obj.at != null) {
          w.uint32(66)
          WeightsVersion.codec().encode(obj.at, w)
        }

        if (obj.route != null && obj.route.length > 0) {
          for (const value of obj.route) {
            w.uint32(74)
            w.string(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: 0,
          kind: Kind.FORWARD,
          stage: 0,
          replyDtype: DType.F32,
          route: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.uint32()
              break
            }
            case 2: {
              obj.kind = StageRequest.Kind.codec().decode(reader)
              break
            }
            case 3: {
              obj.stage = reader.uint32()
              break
            }
            case 4: {
              obj.x = Tensor.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.x
              })
              break
            }
            case 5: {
              obj.gy = Tensor.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.gy
              })
              break
            }
            case 6: {
              obj.targets = Tensor.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.targets
              })
              break
            }
            case 7: {
              obj.replyDtype = DType.codec().decode(reader)
              break
            }
            case 8: {
              obj.at = WeightsVersion.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.at
              })
              break
            }
            case 9: {
              if (opts.limits?.route != null && obj.route.length === opts.limits.route) {
                throw new MaxLengthError('Decode error - repeated field "route" had too many elements')
              }

              obj.route.push(reader.string())
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
          route: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.id`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.kind`,
                value: StageRequest.Kind.codec().decode(reader)
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
              yield * Tensor.codec().stream(reader, reader.uint32(), `${prefix}.x`, {
                limits: opts.limits?.x
              })

              break
            }
            case 5: {
              yield * Tensor.codec().stream(reader, reader.uint32(), `${prefix}.gy`, {
                limits: opts.limits?.gy
              })

              break
            }
            case 6: {
              yield * Tensor.codec().stream(reader, reader.uint32(), `${prefix}.targets`, {
                limits: opts.limits?.targets
              })

              break
            }
            case 7: {
              yield {
                field: `${prefix}.replyDtype`,
                value: DType.codec().decode(reader)
              }
              break
            }
            case 8: {
              yield * WeightsVersion.codec().stream(reader, reader.uint32(), `${prefix}.at`, {
                limits: opts.limits?.at
              })

              break
            }
            case 9: {
              if (opts.limits?.route != null && obj.route === opts.limits.route) {
                throw new MaxLengthError('Streaming decode error - repeated field "route" had too many elements')
              }

              yield {
                field: `${prefix}.route[]`,
                index: obj.route,
                value: reader.string()
              }

              obj.route++

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

  export interface StageRequestIdFieldEvent {
    field: '$.id'
    value: number
  }

  export interface StageRequestKindFieldEvent {
    field: '$.kind'
    value: StageRequest.Kind
  }

  export interface StageRequestStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface StageRequestXDtypeFieldEvent {
    field: '$.x.dtype'
    value: DType
  }

  export interface StageRequestXShapeFieldEvent {
    field: '$.x.shape[]'
    index: number
    value: number
  }

  export interface StageRequestXDataFieldEvent {
    field: '$.x.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StageRequestXScalesFieldEvent {
    field: '$.x.scales'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StageRequestGyDtypeFieldEvent {
    field: '$.gy.dtype'
    value: DType
  }

  export interface StageRequestGyShapeFieldEvent {
    field: '$.gy.shape[]'
    index: number
    value: number
  }

  export interface StageRequestGyDataFieldEvent {
    field: '$.gy.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StageRequestGyScalesFieldEvent {
    field: '$.gy.scales'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StageRequestTargetsDtypeFieldEvent {
    field: '$.targets.dtype'
    value: DType
  }

  export interface StageRequestTargetsShapeFieldEvent {
    field: '$.targets.shape[]'
    index: number
    value: number
  }

  export interface StageRequestTargetsDataFieldEvent {
    field: '$.targets.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StageRequestTargetsScalesFieldEvent {
    field: '$.targets.scales'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StageRequestReplyDtypeFieldEvent {
    field: '$.replyDtype'
    value: DType
  }

  export interface StageRequestAtEpochFieldEvent {
    field: '$.at.epoch'
    value: number
  }

  export interface StageRequestAtVersionFieldEvent {
    field: '$.at.version'
    value: number
  }

  export interface StageRequestRouteFieldEvent {
    field: '$.route[]'
    index: number
    value: string
  }

  export function encode (obj: Partial<StageRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, StageRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StageRequest>): StageRequest {
    return decodeMessage(buf, StageRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StageRequest>): Generator<StageRequestIdFieldEvent | StageRequestKindFieldEvent | StageRequestStageFieldEvent | StageRequestXDtypeFieldEvent | StageRequestXShapeFieldEvent | StageRequestXDataFieldEvent | StageRequestXScalesFieldEvent | StageRequestGyDtypeFieldEvent | StageRequestGyShapeFieldEvent | StageRequestGyDataFieldEvent | StageRequestGyScalesFieldEvent | StageRequestTargetsDtypeFieldEvent | StageRequestTargetsShapeFieldEvent | StageRequestTargetsDataFieldEvent | StageRequestTargetsScalesFieldEvent | StageRequestReplyDtypeFieldEvent | StageRequestAtEpochFieldEvent | StageRequestAtVersionFieldEvent | StageRequestRouteFieldEvent> {
    return streamMessage(buf, StageRequest.codec(), opts)
  }
}

export interface Hop {
  peer: string
  computeMs: number
  queueLength: number
  waitMs: number
  staleness: number
  transferMs: number
}

export namespace Hop {
  let _codec: Codec<Hop>

  export const codec = (): Codec<Hop> => {
    if (_codec == null) {
      _codec = message<Hop>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peer != null && obj.peer !== '')) {
          w.uint32(10)
          w.string(obj.peer)
        }

        if ((obj.computeMs != null && obj.computeMs !== 0)) {
          w.uint32(21)
          w.float(obj.computeMs)
        }

        if ((obj.queueLength != null && obj.queueLength !== 0)) {
          w.uint32(24)
          w.uint32(obj.queueLength)
        }

        if ((obj.waitMs != null && obj.waitMs !== 0)) {
          w.uint32(37)
          w.float(obj.waitMs)
        }

        if ((obj.staleness != null && obj.staleness !== 0)) {
          w.uint32(40)
          w.uint32(obj.staleness)
        }

        if ((obj.transferMs != null && obj.transferMs !== 0)) {
          w.uint32(53)
          w.float(obj.transferMs)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peer: '',
          computeMs: 0,
          queueLength: 0,
          waitMs: 0,
          staleness: 0,
          transferMs: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peer = reader.string()
              break
            }
            case 2: {
              obj.computeMs = reader.float()
              break
            }
            case 3: {
              obj.queueLength = reader.uint32()
              break
            }
            case 4: {
              obj.waitMs = reader.float()
              break
            }
            case 5: {
              obj.staleness = reader.uint32()
              break
            }
            case 6: {
              obj.transferMs = reader.float()
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
                field: `${prefix}.peer`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.computeMs`,
                value: reader.float()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.queueLength`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.waitMs`,
                value: reader.float()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.staleness`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.transferMs`,
                value: reader.float()
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

  export interface HopPeerFieldEvent {
    field: '$.peer'
    value: string
  }

  export interface HopComputeMsFieldEvent {
    field: '$.computeMs'
    value: number
  }

  export interface HopQueueLengthFieldEvent {
    field: '$.queueLength'
    value: number
  }

  export interface HopWaitMsFieldEvent {
    field: '$.waitMs'
    value: number
  }

  export interface HopStalenessFieldEvent {
    field: '$.staleness'
    value: number
  }

  export interface HopTransferMsFieldEvent {
    field: '$.transferMs'
    value: number
  }

  export function encode (obj: Partial<Hop>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Hop.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Hop>): Hop {
    return decodeMessage(buf, Hop.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Hop>): Generator<HopPeerFieldEvent | HopComputeMsFieldEvent | HopQueueLengthFieldEvent | HopWaitMsFieldEvent | HopStalenessFieldEvent | HopTransferMsFieldEvent> {
    return streamMessage(buf, Hop.codec(), opts)
  }
}

export interface WeightsVersion {
  epoch: number
  version: number
}

export namespace WeightsVersion {
  let _codec: Codec<WeightsVersion>

  export const codec = (): Codec<WeightsVersion> => {
    if (_codec == null) {
      _codec = message<WeightsVersion>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(13)
          w.fixed32(obj.epoch)
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(16)
          w.uint32(obj.version)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          epoch: 0,
          version: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.epoch = reader.fixed32()
              break
            }
            case 2: {
              obj.version = reader.uint32()
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
                field: `${prefix}.epoch`,
                value: reader.fixed32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.version`,
                value: reader.uint32()
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

  export interface WeightsVersionEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface WeightsVersionVersionFieldEvent {
    field: '$.version'
    value: number
  }

  export function encode (obj: Partial<WeightsVersion>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, WeightsVersion.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsVersion>): WeightsVersion {
    return decodeMessage(buf, WeightsVersion.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsVersion>): Generator<WeightsVersionEpochFieldEvent | WeightsVersionVersionFieldEvent> {
    return streamMessage(buf, WeightsVersion.codec(), opts)
  }
}

export interface StageResponse {
  id: number
  status: StageResponse.Status
  error: string
  y?: Tensor
  loss?: number
  computeMs: number
  queueLength: number
  waitMs: number
  version?: WeightsVersion
  staleness: number
  hops: Hop[]
}

export namespace StageResponse {
  export enum Status {
    OK = 'OK',
    BAD_REQUEST = 'BAD_REQUEST',
    BUSY = 'BUSY',
    TOO_LARGE = 'TOO_LARGE',
    FAILED = 'FAILED',
    UNROUTABLE = 'UNROUTABLE'
  }

  enum __StatusValues {
    OK = 0,
    BAD_REQUEST = 1,
    BUSY = 2,
    TOO_LARGE = 3,
    FAILED = 4,
    UNROUTABLE = 5
  }

  export namespace Status {
    export const codec = (): Codec<Status> => {
      return enumeration<Status>(__StatusValues)
    }
  }

  let _codec: Codec<StageResponse>

  export const codec = (): Codec<StageResponse> => {
    if (_codec == null) {
      _codec = message<StageResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id !== 0)) {
          w.uint32(8)
          w.uint32(obj.id)
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(16)
          StageResponse.Status.codec().encode(obj.status, w)
        }

        if ((obj.error != null && obj.error !== '')) {
          w.uint32(26)
          w.string(obj.error)
        }

        if (obj.y != null) {
          w.uint32(34)
          Tensor.codec().encode(obj.y, w)
        }

        if (obj.loss != null) {
          w.uint32(45)
          w.float(obj.loss)
        }

        if ((obj.computeMs != null && obj.computeMs !== 0)) {
          w.uint32(53)
          w.float(obj.computeMs)
        }

        if ((obj.queueLength != null && obj.queueLength !== 0)) {
          w.uint32(56)
          w.uint32(obj.queueLength)
        }

        if ((obj.waitMs != null && obj.waitMs !== 0)) {
          w.uint32(69)
          w.float(obj.waitMs)
        }

        if (obj.version != null) {
          w.uint32(74)
          WeightsVersion.codec().encode(obj.version, w)
        }

        if ((obj.staleness != null && obj.staleness !== 0)) {
          w.uint32(80)
          w.uint32(obj.staleness)
        }

        if (obj.hops != null && obj.hops.length > 0) {
          for (const value of obj.hops) {
            w.uint32(90)
            Hop.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: 0,
          status: Status.OK,
          error: '',
          computeMs: 0,
          queueLength: 0,
          waitMs: 0,
          staleness: 0,
          hops: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.uint32()
              break
            }
            case 2: {
              obj.status = StageResponse.Status.codec().decode(reader)
              break
            }
            case 3: {
              obj.error = reader.string()
              break
            }
            case 4: {
              obj.y = Tensor.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.y
              })
              break
            }
            case 5: {
              obj.loss = reader.float()
              break
            }
            case 6: {
              obj.computeMs = reader.float()
              break
            }
            case 7: {
              obj.queueLength = reader.uint32()
              break
            }
            case 8: {
              obj.waitMs = reader.float()
              break
            }
            case 9: {
              obj.version = WeightsVersion.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.version
              })
              break
            }
            case 10: {
              obj.staleness = reader.uint32()
              break
            }
            case 11: {
              if (opts.limits?.hops != null && obj.hops.length === opts.limits.hops) {
                throw new MaxLengthError('Decode error - repeated field "hops" had too many elements')
              }

              obj.hops.push(Hop.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.hops$
              }))
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
          hops: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.id`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.status`,
                value: StageResponse.Status.codec().decode(reader)
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.error`,
                value: reader.string()
              }
              break
            }
            case 4: {
              yield * Tensor.codec().stream(reader, reader.uint32(), `${prefix}.y`, {
                limits: opts.limits?.y
              })

              break
            }
            case 5: {
              yield {
                field: `${prefix}.loss`,
                value: reader.float()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.computeMs`,
                value: reader.float()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.queueLength`,
                value: reader.uint32()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.waitMs`,
                value: reader.float()
              }
              break
            }
            case 9: {
              yield * WeightsVersion.codec().stream(reader, reader.uint32(), `${prefix}.version`, {
                limits: opts.limits?.version
              })

              break
            }
            case 10: {
              yield {
                field: `${prefix}.staleness`,
                value: reader.uint32()
              }
              break
            }
            case 11: {
              if (opts.limits?.hops != null && obj.hops === opts.limits.hops) {
                throw new MaxLengthError('Streaming decode error - repeated field "hops" had too many elements')
              }

              for (const evt of Hop.codec().stream(reader, reader.uint32(), `${prefix}.hops[]`, {
                limits: opts.limits?.hops$
              })) {
                yield {
                  ...evt,
                  index: obj.hops
                }
              }

              obj.hops++

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

  export interface StageResponseIdFieldEvent {
    field: '$.id'
    value: number
  }

  export interface StageResponseStatusFieldEvent {
    field: '$.status'
    value: StageResponse.Status
  }

  export interface StageResponseErrorFieldEvent {
    field: '$.error'
    value: string
  }

  export interface StageResponseYDtypeFieldEvent {
    field: '$.y.dtype'
    value: DType
  }

  export interface StageResponseYShapeFieldEvent {
    field: '$.y.shape[]'
    index: number
    value: number
  }

  export interface StageResponseYDataFieldEvent {
    field: '$.y.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StageResponseYScalesFieldEvent {
    field: '$.y.scales'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StageResponseLossFieldEvent {
    field: '$.loss'
    value: number
  }

  export interface StageResponseComputeMsFieldEvent {
    field: '$.computeMs'
    value: number
  }

  export interface StageResponseQueueLengthFieldEvent {
    field: '$.queueLength'
    value: number
  }

  export interface StageResponseWaitMsFieldEvent {
    field: '$.waitMs'
    value: number
  }

  export interface StageResponseVersionEpochFieldEvent {
    field: '$.version.epoch'
    value: number
  }

  export interface StageResponseVersionVersionFieldEvent {
    field: '$.version.version'
    value: number
  }

  export interface StageResponseStalenessFieldEvent {
    field: '$.staleness'
    value: number
  }

  export interface StageResponseHopsPeerFieldEvent {
    field: '$.hops[].peer'
    value: string
    index: number
  }

  export interface StageResponseHopsComputeMsFieldEvent {
    field: '$.hops[].computeMs'
    value: number
    index: number
  }

  export interface StageResponseHopsQueueLengthFieldEvent {
    field: '$.hops[].queueLength'
    value: number
    index: number
  }

  export interface StageResponseHopsWaitMsFieldEvent {
    field: '$.hops[].waitMs'
    value: number
    index: number
  }

  export interface StageResponseHopsStalenessFieldEvent {
    field: '$.hops[].staleness'
    value: number
    index: number
  }

  export interface StageResponseHopsTransferMsFieldEvent {
    field: '$.hops[].transferMs'
    value: number
    index: number
  }

  export function encode (obj: Partial<StageResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, StageResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StageResponse>): StageResponse {
    return decodeMessage(buf, StageResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StageResponse>): Generator<StageResponseIdFieldEvent | StageResponseStatusFieldEvent | StageResponseErrorFieldEvent | StageResponseYDtypeFieldEvent | StageResponseYShapeFieldEvent | StageResponseYDataFieldEvent | StageResponseYScalesFieldEvent | StageResponseLossFieldEvent | StageResponseComputeMsFieldEvent | StageResponseQueueLengthFieldEvent | StageResponseWaitMsFieldEvent | StageResponseVersionEpochFieldEvent | StageResponseVersionVersionFieldEvent | StageResponseStalenessFieldEvent | StageResponseHopsPeerFieldEvent | StageResponseHopsComputeMsFieldEvent | StageResponseHopsQueueLengthFieldEvent | StageResponseHopsWaitMsFieldEvent | StageResponseHopsStalenessFieldEvent | StageResponseHopsTransferMsFieldEvent> {
    return streamMessage(buf, StageResponse.codec(), opts)
  }
}
