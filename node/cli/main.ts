#!/usr/bin/env node
// The swarmtrain command line. Each command lives in ./commands/<name>.ts and exports
// `summary`, `usage` and `run(argv)`.
import '../shim.js'
import { UserError } from '../errors.js'
import { UsageError } from './errors.js'
import { removeOnnxruntimeDebugLog } from './ort-debug-log.js'

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
