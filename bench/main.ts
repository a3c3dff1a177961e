// npm run bench -- <name> [--json]: runs bench/<name>.ts. Each benchmark prints a table, or
// with --json one JSON object per line.
import '../node/shim.js'
import { readFileSync, readdirSync } from 'node:fs'
import { UserError } from '../node/errors.js'

const here = new URL('.', import.meta.url)
const available = readdirSync(here).filter(f => f.endsWith('.js') && f !== 'main.js').map(f => f.slice(0, -3)).sort()
const [name, ...args] = process.argv.slice(2)

if (name === undefined || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|')}> [--json]${name === undefined ? '' : `\nunknown benchmark '${name}'`}`)
  process.exit(2)
}
if (args.includes('--help') || args.includes('-h')) {
  // Each benchmark's opening comment is its usage.
  const source = readFileSync(new URL(`${name}.js`, here), 'utf8').split('\n')
  const opening = source.slice(0, source.findIndex(line => !line.startsWith('//')))
  console.log(opening.map(line => line.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(0)
}
const bench = await import(new URL(`${name}.js`, here).href) as { run(args: string[]): Promise<void> }
try {
  await bench.run(args)
} catch (err) {
  // Bad options and bad files are one line, as on the command line; anything else is a bug.
  if (!(err instanceof UserError)) throw err
  console.error(`bench ${name}: ${err.message}`)
  process.exitCode = 2
}
