// The control server on 127.0.0.1: the status JSON at /status, so the `status` command (and
// operators' scripts) can see the swarm as this daemon does, the web dashboard at / that
// draws it live, and the routes services add (e.g. /swarm-weights for export --swarm). The dashboard's files are served from the package (node/dashboard), uPlot from
// node_modules, so it works offline from any install.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HttpServer, type HttpAnswer, type HttpRoutes } from '../util/http.js'

/** node/dashboard in the package, from dist/node/daemon/control.js or from the source tree. */
const dashboardDir = ['../../../node/dashboard/', '../dashboard/'].map(p => fileURLToPath(new URL(p, import.meta.url))).find(dir => existsSync(join(dir, 'index.html'))) ?? ''
const uplotDir = dirname(createRequire(import.meta.url).resolve('uplot'))

const files: Record<string, [string, string]> = {
  '/': [join(dashboardDir, 'index.html'), 'text/html; charset=utf-8'],
  '/dashboard.js': [join(dashboardDir, 'dashboard.js'), 'text/javascript; charset=utf-8'],
  '/dashboard.css': [join(dashboardDir, 'dashboard.css'), 'text/css; charset=utf-8'],
  '/uplot.js': [join(uplotDir, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
  '/uplot.css': [join(uplotDir, 'uPlot.min.css'), 'text/css; charset=utf-8']
}

export class ControlServer extends HttpServer {
  constructor (status: () => unknown, more: HttpRoutes = {}) {
    const cache = new Map<string, Uint8Array>()
    const routes: HttpRoutes = {
      ...more,
      '/status': () => ({ type: 'application/json', body: JSON.stringify(status(), null, 2) + '\n' })
    }
    for (const [path, [file, type]] of Object.entries(files)) {
      routes[path] = async (): Promise<HttpAnswer> => {
        let body = cache.get(path)
        if (body === undefined) cache.set(path, body = await readFile(file))
        return { type, body }
      }
    }
    super(routes)
  }
}
