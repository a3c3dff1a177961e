// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
// little-endian data. Reading validates every field: a checkpoint may come from anywhere.
import { UserError } from '../errors.js'

/** A safetensors file that cannot be read: truncated, bad header, bad offsets. */
export class SafetensorsError extends UserError {
  override name = 'SafetensorsError'
}

export interface NamedTensor {
  name: string
  shape: number[]
  data: Float32Array
}

export interface SafetensorsFile {
  tensors: Map<string, NamedTensor>
  /** The free-form `__metadata__` strings. */
  metadata: Record<string, string>
}

/** Headers larger than this are refused before parsing (the reference implementation uses 100 MB too). */
const MAX_HEADER_BYTES = 100_000_000

/**
 * A safetensors file as its pieces, in order: the length and header, then a view of each tensor's
 * data (not copied). Write them one after another (`writeFileAtomic` takes the list), or join them.
 */
export function safetensorsParts (tensors: readonly NamedTensor[], metadata: Record<string, string> = {}): Uint8Array[] {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const t of tensors) {
    if (t.name === '__metadata__' || t.name in header) throw new RangeError(`duplicate or reserved tensor name '${t.name}'`)
    if (count(t.shape) !== t.data.length) throw new RangeError(`tensor '${t.name}': shape [${t.shape.join(', ')}] does not hold ${t.data.length} values`)
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] }
    offset += t.data.byteLength
  }
  let json = JSON.stringify(header)
  // Pad with spaces (allowed by the format) so the data starts 8-byte aligned and can be viewed in place.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8)
  const head = Buffer.from(json)
  const start = new Uint8Array(8 + head.length)
  new DataView(start.buffer).setBigUint64(0, BigInt(head.length), true)
  start.set(head, 8)
  return [start, ...tensors.map(t => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))]
}

export function encodeSafetensors (tensors: readonly NamedTensor[], metadata: Record<string, string> = {}): Uint8Array {
  const parts = safetensorsParts(tensors, metadata)
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/** Parses and validates a safetensors file; `what` names it in errors. Only F32 tensors are supported. */
export function decodeSafetensors (bytes: Uint8Array, what = 'safetensors file'): SafetensorsFile {
  const fail = (problem: string): never => { throw new SafetensorsError(`${what}: ${problem}`) }
  if (bytes.length < 8) fail(`too short (${bytes.length} bytes)`)
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
  if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, bytes.length - 8))) fail(`header length ${headerLength} exceeds the file or the ${MAX_HEADER_BYTES}-byte limit`)
  const dataStart = 8 + Number(headerLength)
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart)))
  } catch {
    fail('the header is not valid UTF-8 JSON')
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return fail('the header is not a JSON object')
  const dataLength = bytes.length - dataStart
  const metadata: Record<string, string> = {}
  const tensors = new Map<string, NamedTensor>()
  const ranges: Array<[number, number, string]> = []
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('__metadata__ is not an object')
      for (const [k, v] of Object.entries(entry as object)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`)
        metadata[k] = v as string
      }
      continue
    }
    const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown, shape?: unknown, data_offsets?: unknown }
    if (dtype !== 'F32') fail(`tensor '${name}' has dtype ${JSON.stringify(dtype)}; only F32 is supported`)
    if (!Array.isArray(shape) || !shape.every(d => Number.isSafeInteger(d) && d >= 0)) return fail(`tensor '${name}' has a bad shape`)
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(o => Number.isSafeInteger(o) && o >= 0)) return fail(`tensor '${name}' has bad data_offsets`)
    const [begin, end] = offsets as [number, number]
    if (begin > end || end > dataLength) fail(`tensor '${name}' has data_offsets [${begin}, ${end}] outside the ${dataLength} data bytes`)
    if (end - begin !== count(shape) * 4) fail(`tensor '${name}' has ${end - begin} bytes for shape [${shape.join(', ')}]`)
    ranges.push([begin, end, name])
    // Copy to an aligned, independent buffer: the file's bytes may be unaligned and are not ours to keep.
    const data = new Float32Array(count(shape))
    new Uint8Array(data.buffer).set(bytes.subarray(dataStart + begin, dataStart + end))
    tensors.set(name, { name, shape: shape as number[], data })
  }
  // The format requires the tensors to cover the data exactly, without holes or overlaps.
  ranges.sort((a, b) => a[0] - b[0])
  let expected = 0
  for (const [begin, end, name] of ranges) {
    if (begin !== expected) fail(`tensor '${name}' starts at byte ${begin}, expected ${expected} (hole or overlap)`)
    expected = end
  }
  if (expected !== dataLength) fail(`${dataLength - expected} trailing data bytes belong to no tensor`)
  return { tensors, metadata }
}

function count (shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}
