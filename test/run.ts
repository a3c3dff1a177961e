// Runs every uvu test file (dist/test/**/*.test.js) and ends with one line
// `N passed, N failed, N skipped` that CI reads. Extra arguments filter files by substring:
//   node dist/test/run.js native model
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const uvu = join(dirname(createRequire(import.meta.url).resolve('uvu')), '..', 'bin.js')
const filters = process.argv.slice(2)

function testFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(entry => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return testFiles(path)
    return entry.name.endsWith('.test.js') ? [relative(here, path)] : []
  }).sort()
}

const files = testFiles(here).filter(f => filters.length === 0 || filters.some(s => f.includes(s)))
let passed = 0
let failed = 0
let skipped = 0

// One uvu process per file: a crash or a leaked handle in one file cannot hide the others' results.
for (const file of files) {
  const started = Date.now()
  const output = await new Promise<string>(resolve => {
    const child = spawn(process.execPath, [uvu, here, `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`], { stdio: ['ignore', 'pipe', 'inherit'] })
    let text = ''
    child.stdout.on('data', (chunk: Buffer) => { text += chunk; process.stdout.write(chunk) })
    child.on('close', code => resolve(code === 0 ? text : `${text}\n__exit ${code}`))
  })
  const total = Number(/Total:\s+(\d+)/.exec(output)?.[1] ?? 0)
  const ok = Number(/Passed:\s+(\d+)/.exec(output)?.[1] ?? 0)
  const skip = Number(/Skipped:\s+(\d+)/.exec(output)?.[1] ?? 0)
  const crashed = !/Total:/.test(output) || (/__exit/.test(output) && total === ok)
  passed += ok
  skipped += skip
  failed += (total - ok) + (crashed ? 1 : 0)
  console.log(`# ${file}: ${ok}/${total} passed${crashed ? ' (the file crashed or exited non-zero)' : ''} in ${((Date.now() - started) / 1000).toFixed(1)}s`)
}

console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`)
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0
