// The control server: JSON status on http://127.0.0.1:<port>/status, loopback only, so the
// `status` command (and operators' scripts) can see the swarm as this daemon does.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export class ControlServer {
  private readonly server: Server

  constructor (status: () => unknown) {
    this.server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/status') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /status\n')
        return
      }
      let body: string
      try {
        body = JSON.stringify(status(), null, 2)
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`)
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(body + '\n')
    })
  }

  /** Listens on 127.0.0.1 only; port 0 picks a free one. Returns the port. */
  async listen (port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => { this.server.off('error', reject); resolve() })
    })
    return (this.server.address() as AddressInfo).port
  }

  async close (): Promise<void> {
    if (!this.server.listening) return
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => { resolve() }))
  }
}
