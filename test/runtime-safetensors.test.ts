import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeSafetensors, encodeSafetensors, safetensorsParts, SafetensorsError } from '../node/runtime/safetensors.js'

const tensors = [
  { name: 'wte', shape: [3, 2], data: Float32Array.from([1.5, -2, 3e-8, 3.4e38, -0, 7]) },
  { name: 'h.0.ln.bias', shape: [5], data: Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5]) },
  { name: 'scalar', shape: [], data: Float32Array.from([42]) }
]

test('round trip is bit-exact and keeps metadata; the data starts 8-byte aligned', () => {
  const bytes = encodeSafetensors(tensors, { step: '12', note: 'ünïcode' })
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true))
  assert.is((8 + headerLength) % 8, 0)
  const file = decodeSafetensors(bytes)
  assert.equal(file.metadata, { step: '12', note: 'ünïcode' })
  assert.equal([...file.tensors.keys()], ['wte', 'h.0.ln.bias', 'scalar'])
  for (const t of tensors) {
    const back = file.tensors.get(t.name)!
    assert.equal(back.shape, t.shape)
    assert.equal(new Uint8Array(back.data.buffer), new Uint8Array(t.data.buffer), t.name)
  }
})

test('the header matches the safetensors layout other readers expect', () => {
  const bytes = encodeSafetensors(tensors.slice(0, 2))
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true))
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)))
  assert.equal(header.wte, { dtype: 'F32', shape: [3, 2], data_offsets: [0, 24] })
  assert.equal(header['h.0.ln.bias'], { dtype: 'F32', shape: [5], data_offsets: [24, 44] })
  assert.is(bytes.length, 8 + n + 44)
})

test('the parts of a file are its bytes in order, the tensors as views of their data', () => {
  const parts = safetensorsParts(tensors, { step: '12' })
  assert.is(parts.length, 1 + tensors.length)
  assert.ok(tensors.every((t, i) => parts[i + 1].buffer === t.data.buffer), 'a tensor was copied')
  assert.equal(Buffer.concat(parts), Buffer.from(encodeSafetensors(tensors, { step: '12' })))
})

function withHeader (header: unknown, dataBytes: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header))
  const out = new Uint8Array(8 + json.length + dataBytes)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(json, 8)
  return out
}

test('bad files are refused with one-line errors naming the problem', () => {
  const good = encodeSafetensors(tensors)
  const cases: Array<[Uint8Array, RegExp]> = [
    [good.subarray(0, 5), /too short/],
    [good.subarray(0, 40), /header length \d+ exceeds/],
    [good.subarray(0, good.length - 4), /outside the \d+ data bytes|starts at byte/],
    [withHeader([1, 2], 0), /not a JSON object/],
    [withHeader({ a: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }, 2), /dtype "F16"/],
    [withHeader({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /bad shape/],
    [withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4), /4 bytes for shape \[2\]/],
    [withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 8), /hole or overlap/],
    [withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 8), /4 trailing data bytes/],
    [withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 'x'] } }, 8), /bad data_offsets/],
    [withHeader({ __metadata__: { a: 1 } }, 0), /__metadata__.a is not a string/]
  ]
  const bad = new Uint8Array(12)
  bad.set([0xff, 0xfe], 8)
  new DataView(bad.buffer).setBigUint64(0, 4n, true)
  cases.push([bad, /not valid UTF-8 JSON/])
  for (const [bytes, message] of cases) {
    assert.throws(() => decodeSafetensors(bytes, 'ckpt'), (err: Error) => err instanceof SafetensorsError && message.test(err.message) && err.message.startsWith('ckpt: ') && !err.message.includes('\n'), String(message))
  }
  assert.throws(() => encodeSafetensors([tensors[0], tensors[0]]), /duplicate/)
  assert.throws(() => encodeSafetensors([{ name: 'x', shape: [4], data: new Float32Array(3) }]), /does not hold/)
})

test.run()
