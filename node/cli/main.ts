#!/usr/bin/env node
// The swarmtrain command line. Each command lives in ./commands/<name>.ts and exports
// `summary`, `usage` and `run(argv)`.
import '../shim.js'
import { rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { UserError } from '../errors.js'
import { UsageError } from './errors.js'

export interface Command {
  summary: string
  usage: string
  run(argv: string[]): Promise<number | void>
}

const commands = ['demo', 'init', 'start', 'join', 'status', 'train', 'export', 'generate', 'plot'] as const

async function load (name: string): Promise<Command> {
  return await import(`./commands/${name}.js`) as Command
}

async function help (): Promise<string> {
  const lines = ['usage: swarmtrain <command> [options]', '', 'commands:']
  for (const name of commands) lines.push(`  ${name.padEnd(10)} ${(await load(name)).summary}`)
  lines.push('', "Run 'swarmtrain <command> --help' for a command's options.")
  return lines.join('\n')
}

async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(await help())
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-v') {
    const { version } = await import('../version.js')
    console.log(version)
    return 0
  }
  if (!(commands as readonly string[]).includes(name)) throw new UsageError(`unknown command '${name}' (try 'swarmtrain --help')`)
  const command = await load(name)
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.usage)
    return 0
  }
  return (await command.run(rest)) ?? 0
}

/**
 * onnxruntime's bundled telemetry library creates an empty `mat-debug-<pid>.log` in the temp
 * directory of every process that opens a session, and never removes it: remove ours when empty.
 */
function removeOnnxruntimeDebugLog (): void {
  const path = join(tmpdir(), `mat-debug-${process.pid}.log`)
  try {
    if (statSync(path).size === 0) rmSync(path)
  } catch {}
}
process.on('exit', removeOnnxruntimeDebugLog)

main(process.argv.slice(2)).then(
  code => { process.exitCode = code },
  (err: Error) => {
    // Expected failures (bad input, bad files, refused peers) are one line; anything else is a bug.
    if (err instanceof UserError) {
      console.error(`swarmtrain: ${err.message}`)
      process.exitCode = 2
    } else {
      console.error(`swarmtrain: ${err.stack ?? err.message}`)
      process.exitCode = 1
    }
  }
)
