// Import directions, read from the sources: protocols/ and native/ depend on nothing of ours,
// only the command line imports cli/ (and only it prints), runtime/ does not import the
// pipeline that drives it, and reading a manifest or daemon.json loads neither the native
// addon, libp2p, onnxruntime nor the model builder (statically, and in a child process for
// the addon).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { readSource, repoRoot as root, sourceFiles } from './source-files.js'

const dist = join(root, 'dist')

/**
 * The modules a source file loads at run time: `import`/`export ... from` and dynamic
 * `import()`, leaving out imports TypeScript erases (`import type`, or only `type` names).
 * Relative ones are resolved to repository paths (`node/a/b.ts`); packages stay as named.
 */
function runtimeImports (file: string): string[] {
  const text = readSource(file)
  const found: string[] = []
  for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?([^'"]*?)\s*from\s+'([^']+)'/gm)) {
    const [, , typeOnly, clause, specifier] = m
    const names = /\{([^}]*)\}/.exec(clause)?.[1]
    const onlyTypes = names !== undefined && !/^[\s\w]+,/.test(clause) && names.split(',').every(n => n.trim() === '' || n.trim().startsWith('type '))
    if (typeOnly === undefined && !onlyTypes) found.push(specifier)
  }
  for (const m of text.matchAll(/^\s*import\s+'([^']+)'/gm)) found.push(m[1])
  for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) found.push(m[1])
  return found.map(s => s.startsWith('.') ? relative(root, resolve(root, dirname(file), s)).replace(/\.js$/, '.ts') : s)
}

const files = [...sourceFiles('protocols'), ...sourceFiles('native'), ...sourceFiles('node')]

function violations (from: (file: string) => boolean, to: (target: string) => boolean): string[] {
  return files.filter(from).flatMap(file => runtimeImports(file).filter(to).map(target => `${file} -> ${target}`))
}

test('the scanner sees static, re-exported, side-effect and dynamic imports and skips type-only ones', () => {
  assert.ok(runtimeImports('node/cli/main.ts').some(t => t.startsWith('node/')), 'node/cli/main.ts imports nothing of ours?')
  assert.ok(runtimeImports('node/runtime/optimizer.ts').includes('native/index.ts'))
  assert.not.ok(runtimeImports('node/daemon/process.ts').includes('node/daemon/node.ts'), 'a type-only import counted')
})

test('protocols/ and native/ import nothing from node/', () => {
  assert.equal(violations(f => /^(protocols|native)\//.test(f), t => t.startsWith('node/')), [])
})

test('only the command line imports cli/', () => {
  assert.equal(violations(f => !f.startsWith('node/cli/'), t => t.startsWith('node/cli/')), [])
})

test('runtime/ does not import the pipeline or training that drive it', () => {
  assert.equal(violations(f => f.startsWith('node/runtime/'), t => /^node\/(pipeline|training)\//.test(t)), [])
})

test('library code does not write to stdout: it logs or emits events, and the command line prints', () => {
  const printing = files.filter(f => f.startsWith('node/') && !f.startsWith('node/cli/'))
    .filter(f => /\bconsole\.(log|info)\(|process\.stdout\.write/.test(readSource(f)))
  assert.equal(printing, [])
})

test('timers and timeouts are named in node/timing.ts, with their unit', () => {
  const literal = /\b[A-Z_]+_MS\s*=\s*[\d_]+|AbortSignal\.timeout\(\s*[\d_]+|Ms\s*\?\?\s*[\d_]+|Ms\s*=\s*[\d_]+\)/
  const offenders = files.filter(f => f.startsWith('node/') && f !== 'node/timing.ts')
    .filter(f => literal.test(readSource(f)))
  assert.equal(offenders, [])
})

/** Every module `entry` loads at run time, through our own files. */
function closure (entry: string): Set<string> {
  const seen = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    if (file.endsWith('.ts') && existsSync(join(root, file))) for (const target of runtimeImports(file)) visit(target)
  }
  visit(entry)
  return seen
}

const light = ['node/manifest/manifest.ts', 'node/daemon/daemon-file.ts', 'node/cli/commands/status.ts']
// native/format.ts is the addon's plain-TypeScript description of its formats (no binding).
const heavy = /^(native\/(?!format\.ts$)|node\/model\/(graph|gpt|onnx|stages|autodiff)|node\/p2p\/|libp2p$|@libp2p\/|onnxruntime-node)/

test('reading a manifest or daemon.json loads no addon, libp2p, onnxruntime or model builder', () => {
  for (const entry of light) {
    assert.equal([...closure(entry)].filter(m => heavy.test(m)), [], `${entry} loads heavy modules`)
  }
})

test('in a child process, parsing a manifest and reading daemon.json open no native addon', () => {
  const url = (file: string): string => pathToFileURL(join(dist, file.replace(/\.ts$/, '.js'))).href
  const script = `
    const opened = []
    const dlopen = process.dlopen
    process.dlopen = (module, file, ...rest) => { opened.push(file); return dlopen.call(process, module, file, ...rest) }
    const { defaultManifest, parseManifest, canonicalJson } = await import(${JSON.stringify(url('node/manifest/manifest.ts'))})
    const { readDaemonFile } = await import(${JSON.stringify(url('node/daemon/daemon-file.ts'))})
    parseManifest(canonicalJson(defaultManifest()), 'test')
    await readDaemonFile(${JSON.stringify(root)})
    process.stdout.write(JSON.stringify(opened))`
  const opened = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[]
  assert.equal(opened, [])
  // The probe itself works: loading the optimizer opens the addon.
  const control = script.replace("process.stdout.write", `await import(${JSON.stringify(url('node/runtime/optimizer.ts'))}); process.stdout.write`)
  const openedByOptimizer = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', control], { encoding: 'utf8' })) as string[]
  assert.ok(openedByOptimizer.some(f => f.endsWith('.node')), `the probe saw no addon load: ${openedByOptimizer.join(', ')}`)
})

test.run()
