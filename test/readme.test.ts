// The README's commands cannot rot: every `npx swarmtrain …` line in its sh blocks names a
// command and options that exist; its configuration reference lists exactly the options each
// command's --help prints; and the examples that finish on their own run, with tiny settings.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { cliPath } from '../node/daemon/process.js'

const exec = promisify(execFile)
const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8')
const dir = mkdtempSync(join(tmpdir(), 'swarmtrain-readme-'))

/** Words of a shell line, double-quoted strings kept whole, a trailing `# comment` dropped. */
function words (line: string): string[] {
  return [...line.replace(/\s#.*$/, '').matchAll(/"([^"]*)"|(\S+)/g)].map(m => m[1] ?? m[2])
}

/** The `npx swarmtrain` lines of the README's sh blocks, as argument lists. */
const examples: string[][] = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
  .flatMap(block => block[1].split('\n'))
  .map(words)
  .filter(w => w[0] === 'npx' && w[1] === 'swarmtrain')
  .map(w => w.slice(2))

async function cli (args: string[], cwd = dir): Promise<{ stdout: string, stderr: string }> {
  return await exec(process.execPath, ['--no-warnings', cliPath, ...args], { cwd, env: { ...process.env, SWARMTRAIN_DIR: join(dir, 'default-dir') } })
}

const helps = new Map<string, string>()
async function help (command: string): Promise<string> {
  if (!helps.has(command)) helps.set(command, (await cli([command, '--help'])).stdout)
  return helps.get(command)!
}

/** The options a --help text documents (the first word of each option line). */
function helpOptions (text: string): Set<string> {
  return new Set([...text.matchAll(/^\s+(--[a-z0-9-]+)/gm)].map(m => m[1]))
}

test('the README has the sections it promises', () => {
  for (const heading of ['Two commands', 'A private swarm across machines, step by step', 'Joining a run', 'Roles: servers and drivers',
    'Configuration reference', 'Architecture', 'How it compares', 'Troubleshooting']) {
    assert.ok(readme.includes(`\n## ${heading}\n`), `no section '${heading}'`)
  }
  assert.ok(examples.length >= 10, `only ${examples.length} examples found`)
})

test('every example names a command and options its --help documents', async () => {
  for (const [command, ...args] of examples) {
    const options = helpOptions(await help(command))
    assert.ok(options.size > 0, `'swarmtrain ${command} --help' documents no options`)
    for (const arg of args.filter(a => a.startsWith('--'))) {
      assert.ok(options.has(arg.split('=')[0]), `README: 'swarmtrain ${command} ${args.join(' ')}' uses ${arg}, which 'swarmtrain ${command} --help' does not list`)
    }
  }
})

test('the configuration reference lists exactly the options of each command', async () => {
  const reference = readme.slice(readme.indexOf('\n## Configuration reference\n'), readme.indexOf('\n## Architecture\n'))
  const sections = [...reference.matchAll(/\n### (.+)\n([\s\S]*?)(?=\n### |$)/g)].filter(s => s[1].includes('`swarmtrain '))
  const covered = new Set<string>()
  for (const [, heading, body] of sections) {
    const documented = new Set([...body.matchAll(/^\| `(--[a-z0-9-]+)/gm)].map(m => m[1]))
    for (const command of [...heading.matchAll(/`swarmtrain ([a-z]+)`/g)].map(m => m[1])) {
      covered.add(command)
      const options = helpOptions(await help(command))
      // `start` has no --run; the shared table marks it (`join` only).
      const expected = command === 'start' ? new Set([...options, '--run']) : options
      assert.equal([...documented].sort(), [...expected].sort(), `reference of '${command}' vs its --help`)
    }
  }
  const commands = [...(await cli(['--help'])).stdout.matchAll(/^ {2}([a-z]+) {2,}/gm)].map(m => m[1])
  assert.equal([...covered].sort(), commands.sort(), 'every command has a reference section')
})

test('the examples that finish on their own run (tiny settings)', async () => {
  // init, as in the private-swarm steps, into a scratch node directory.
  for (const args of examples.filter(a => a[0] === 'init')) {
    const out = (await cli(args.map(a => a === '~/.swarmtrain' ? join(dir, 'node') : a))).stdout
    assert.match(out, /^run id +[0-9a-f]{32} \(run-[0-9a-f]{12}\)$/m)
  }
  // Training on one machine: train, resume, export, generate, each as written plus a short schedule.
  const tiny: Record<string, string[]> = { train: ['--steps', '1', '--eval-every', '1'], generate: ['--tokens', '4'] }
  const local = examples.filter(a => ['train', 'export', 'generate'].includes(a[0]))
  assert.equal(local.map(a => a[0]), ['train', 'train', 'export', 'generate'])
  for (const args of local) {
    const resumed = args.includes('--resume')
    const extra = args[0] === 'train' && resumed ? ['--steps', '2', '--eval-every', '1'] : tiny[args[0]] ?? []
    const { stdout } = await cli([...args, ...extra])
    if (args[0] === 'train') assert.match(stdout, resumed ? /resuming at step 1\n[\s\S]*step +2 +loss/ : /step +1 +loss/)
    if (args[0] === 'export') assert.match(stdout, /wrote model\.onnx: 4 layers x d192, \d+ parameters, step 2/)
    if (args[0] === 'generate') assert.ok(stdout.startsWith('The jury said'), stdout)
  }
  // status without a daemon: the documented command, and a one-line answer.
  const status = await cli(examples.find(a => a[0] === 'status')!.map(a => a === '~/.swarmtrain' ? join(dir, 'node') : a)).then(() => undefined, (err: { code: number, stderr: string }) => err)
  assert.is(status?.code, 2)
  assert.match(status?.stderr ?? '', /^swarmtrain: no running daemon found/)
})

test.after(() => { rmSync(dir, { recursive: true, force: true }) })

test.run()
