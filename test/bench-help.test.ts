// `npm run bench -- <name> --help` prints the benchmark's usage and runs nothing.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const main = fileURLToPath(new URL('../bench/main.js', import.meta.url))

test('--help prints each benchmark\'s usage and exits 0 at once', async () => {
  for (const name of ['convergence', 'compress', 'sim']) {
    const { stdout } = await run(process.execPath, [main, name, '--help'], { timeout: 10_000 })
    assert.match(stdout, new RegExp(`^npm run bench -- ${name} \\[--json\\]`), stdout)
    assert.not.match(stdout, /^\/\//m)
  }
})

test('an unknown benchmark is a usage error', async () => {
  const failed = await run(process.execPath, [main, 'nonesuch']).then(() => undefined, (err: { code: number, stderr: string }) => err)
  assert.is(failed?.code, 2)
  assert.match(failed?.stderr ?? '', /unknown benchmark 'nonesuch'/)
})

test.run()
