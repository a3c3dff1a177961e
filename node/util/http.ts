// A small HTTP server for the daemon's local endpoints (status and dashboard, metrics): GET
// routes by path, bound to 127.0.0.1 unless told otherwise, every failure a plain-text answer.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface HttpAnswer {
  type: string
  body: string | Uint8Array
}

export type HttpRoutes = Record<string, () => HttpAnswer | Promise<HttpAnswer>>

export class HttpServer {
  private readonly server: Server

  constructor (routes: HttpRoutes) {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0]
      const route = Object.hasOwn(routes, path) ? routes[path] : undefined
      if (req.method !== 'GET' || route === undefined) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: try GET ${Object.keys(routes).join(', ')}\n`)
        return
      }
      Promise.resolve().then(route).then(
        answer => { res.writeHead(200, { 'content-type': answer.type, 'cache-control': 'no-store' }).end(answer.body) },
        (err: Error) => { res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`) }
      )
    })
  }

  /** Listens on `host` (default 127.0.0.1); port 0 picks a free one. Returns the port. */
  async listen (port: number, host = '127.0.0.1'): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => { this.server.off('error', reject); resolve() })
    })
    return (this.server.address() as AddressInfo).port
  }

  async close (): Promise<void> {
    if (!this.server.listening) return
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => { resolve() }))
  }
}
