// A TCP relay that holds every chunk for a one-way delay before forwarding it, both ways: the
// delay the kernel's missing netem qdisc would add. The wan bench runs one per namespace:
//   node delay-relay.js LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS
// It prints `ready PORT` once listening (LISTEN_PORT 0: any free port). A line on stdin with a
// number sets a new delay for the chunks that arrive from then on; it exits when stdin closes
// (its parent is gone).
import { createServer, connect, type AddressInfo, type Socket } from 'node:net'
import { createInterface } from 'node:readline'

/**
 * Forwards `from` to `to`, each chunk `delay()` ms after it arrived. The queue is first in, first
 * out: after the delay shrinks, a chunk waits for those before it, so the stream stays in order.
 * A destination that cannot keep up pauses the source: the backlog stays bounded.
 */
function delayedPipe (from: Socket, to: Socket, delay: () => number): void {
  const queue: Array<{ at: number, chunk: Buffer }> = []
  let timer: NodeJS.Timeout | undefined
  let ended = false
  const pump = (): void => {
    timer = undefined
    const now = performance.now()
    while (queue.length > 0 && queue[0].at <= now) {
      if (!to.write(queue.shift()!.chunk) && !from.isPaused()) {
        from.pause()
        to.once('drain', () => from.resume())
      }
    }
    if (queue.length > 0) timer = setTimeout(pump, queue[0].at - now)
    else if (ended) to.end()
  }
  from.on('data', (chunk: Buffer) => {
    queue.push({ at: performance.now() + delay(), chunk })
    if (timer === undefined) timer = setTimeout(pump, queue[0].at - performance.now())
  })
  from.on('end', () => {
    ended = true
    if (timer === undefined && queue.length === 0) to.end()
  })
}

function main (argv: string[]): void {
  const [listenHost, listenPort, targetHost, targetPort, delayMs] = argv
  let delay = Number(delayMs)
  if (argv.length !== 5 || !Number.isFinite(delay) || delay < 0 || !(Number(listenPort) >= 0) || !(Number(targetPort) > 0)) {
    console.error('usage: delay-relay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS')
    process.exit(2)
  }
  // Half-open: an end is forwarded (after the chunks before it) like any chunk.
  const server = createServer({ allowHalfOpen: true }, client => {
    const target = connect({ port: Number(targetPort), host: targetHost, allowHalfOpen: true })
    // A failure on either side ends both.
    const close = (): void => { client.destroy(); target.destroy() }
    for (const socket of [client, target]) {
      socket.setNoDelay(true)
      socket.on('error', close)
    }
    delayedPipe(client, target, () => delay)
    delayedPipe(target, client, () => delay)
  })
  server.listen(Number(listenPort), listenHost, () => console.log(`ready ${(server.address() as AddressInfo).port}`))
  server.on('error', err => { console.error(`delay-relay: ${err.message}`); process.exit(1) })
  const input = createInterface({ input: process.stdin })
  input.on('line', line => {
    const next = Number(line.trim())
    if (Number.isFinite(next) && next >= 0) delay = next
  })
  input.on('close', () => process.exit(0))
}

main(process.argv.slice(2))
