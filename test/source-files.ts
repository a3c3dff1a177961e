// The repository's TypeScript sources, for tests that check how the code is laid out.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root (tests run from dist/test/). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** Every .ts file below `dir`, as repository paths like `node/p2p/host.ts`. */
export function sourceFiles (dir: string): string[] {
  return readdirSync(join(repoRoot, dir), { withFileTypes: true }).flatMap(entry => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : []
  })
}

/** The text of a repository file. */
export function readSource (file: string): string {
  return readFileSync(join(repoRoot, file), 'utf8')
}
