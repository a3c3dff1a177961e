import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface ManifestRequest {
  runId: string
}

export namespace ManifestRequest {
  let _codec: Codec<ManifestRequest>

  export const codec = (): Codec<ManifestRequest> => {
    if (_codec == null) {
      _codec = message<ManifestRequest>((obj, w, opts = {}) => {
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

  export interface ManifestRequestRunIdFieldEvent {
    field: '$.runId'
    value: string
  }

  export function encode (obj: Partial<ManifestRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ManifestRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ManifestRequest>): ManifestRequest {
    return decodeMessage(buf, ManifestRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ManifestRequest>): Generator<ManifestRequestRunIdFieldEvent> {
    return streamMessage(buf, ManifestRequest.codec(), opts)
  }
}

export interface ManifestResponse {
  error: string
  manifest: Uint8Array<ArrayBuffer>
}

export namespace ManifestResponse {
  let _codec: Codec<ManifestResponse>

  export const codec = (): Codec<ManifestResponse> => {
    if (_codec == null) {
      _codec = message<ManifestResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.error != null && obj.error !== '')) {
          w.uint32(10)
          w.string(obj.error)
        }

        if ((obj.manifest != null && obj.manifest.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.manifest)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          error: '',
          manifest: uint8ArrayAlloc(0)
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
              obj.manifest = reader.bytes()
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
                field: `${prefix}.error`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.manifest`,
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

  export interface ManifestResponseErrorFieldEvent {
    field: '$.error'
    value: string
  }

  export interface ManifestResponseManifestFieldEvent {
    field: '$.manifest'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<ManifestResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ManifestResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ManifestResponse>): ManifestResponse {
    return decodeMessage(buf, ManifestResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ManifestResponse>): Generator<ManifestResponseErrorFieldEvent | ManifestResponseManifestFieldEvent> {
    return streamMessage(buf, ManifestResponse.codec(), opts)
  }
}
