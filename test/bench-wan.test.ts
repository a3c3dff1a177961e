// The wan bench's parts that run anywhere: it (and the nat bench) skips with one line where it
// cannot build namespaces (here: as an unprivileged user), and its delay relay holds traffic for the delay,
// in order, both ways, on 127.0.0.1.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { namespaceSupport } from '../bench/netns/shell.js'

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'bench')

/** Whether every directory down to the checkout lets others in (so `nobody` can run the bench). */
function othersCanRead (dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o005) !== 0o005) return false
    if (dirname(d) === d) return true
  }
}

/** Runs the bench command; as root, as the unprivileged user `nobody` (uid 65534). */
async function benchAsUser (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const asRoot = process.getuid?.() === 0
  const child = spawn(process.execPath, ['--no-warnings', join(benchDir, 'main.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...asRoot ? { uid: 65534, gid: 65534 } : {} })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c })
  child.stderr.on('data', (c: Buffer) => { stderr += c })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  return { code, stdout, stderr }
}

test('without root, the wan and nat benches print one line saying why they skipped and exit 0', async () => {
  assert.is(await namespaceSupport([], {}, 1000), 'network namespaces need root')
  // As root in a checkout that others cannot enter, the command itself cannot run as nobody.
  if (process.getuid?.() === 0 && !othersCanRead(benchDir)) return
  for (const bench of ['wan', 'nat']) {
    const plain = await benchAsUser([bench])
    assert.is(plain.code, 0, plain.stderr)
    assert.is(plain.stdout, `${bench}: skipped: network namespaces need root\n`)
    const json = await benchAsUser([bench, '--json'])
    assert.is(json.code, 0, json.stderr)
    assert.equal(json.stdout.trim().split('\n').map(l => JSON.parse(l)), [{ bench, skipped: 'network namespaces need root' }])
  }
  // Bad options are refused before anything else.
  const bad = await benchAsUser(['wan', '--limits', 'fast'])
  assert.is(bad.code, 2)
  assert.match(bad.stderr, /--limits/)
})

async function listen (server: Server): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

async function startRelay (targetPort: number, delayMs: number): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, [join(benchDir, 'netns', 'delay-relay.js'), '127.0.0.1', '0', '127.0.0.1', String(targetPort), String(delayMs)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.on('data', (c: Buffer) => { const m = /ready (\d+)/.exec(c.toString()); if (m !== null) resolve(Number(m[1])) })
    child.once('close', () => reject(new Error('the relay exited')))
  })
  return { child, port }
}

/** Resolves with the next `n` bytes the socket receives. */
async function receive (socket: Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let have = 0
  return await new Promise(resolve => {
    const onData = (c: Buffer): void => {
      chunks.push(c)
      have += c.length
      if (have >= n) { socket.off('data', onData); resolve(Buffer.concat(chunks)) }
    }
    socket.on('data', onData)
  })
}

test('the delay relay holds each chunk for the delay each way, and keeps the order when the delay shrinks', async () => {
  // An echo server behind the relay.
  const echo = createServer(s => s.pipe(s))
  const relay = await startRelay(await listen(echo), 250)
  const socket = connect(relay.port, '127.0.0.1')
  try {
    await new Promise(resolve => socket.once('connect', resolve))
    const started = performance.now()
    socket.write('ping')
    assert.is((await receive(socket, 4)).toString(), 'ping')
    const roundTrip = performance.now() - started
    assert.ok(roundTrip >= 2 * 250 - 2, `round trip ${roundTrip.toFixed(1)} ms, 500 ms expected at least`)
    // Numbered chunks sent across a cut of the delay to 0 come back complete and in order.
    const count = 200
    const expected = Buffer.concat(Array.from({ length: count }, (_, i) => Buffer.from(`${String(i).padStart(4, '0')};`)))
    const echoed = receive(socket, expected.length)
    for (let i = 0; i < count; i++) {
      socket.write(`${String(i).padStart(4, '0')};`)
      if (i === count / 2) relay.child.stdin?.write('0\n')
      if (i % 20 === 0) await new Promise(resolve => setTimeout(resolve, 5))
    }
    assert.ok((await echoed).equals(expected), 'the echoed stream differs from what was sent')
    // The new delay applies: a round trip no longer waits 500 ms.
    const again = performance.now()
    socket.write('pong')
    assert.is((await receive(socket, 4)).toString(), 'pong')
    assert.ok(performance.now() - again < 2 * 250, 'the delay did not change')
  } finally {
    socket.destroy()
    const exited = new Promise(resolve => relay.child.once('close', resolve))
    // Its stdin closing (as when the bench exits) ends it.
    relay.child.stdin?.end()
    await exited
    echo.close()
  }
})

test.run()
