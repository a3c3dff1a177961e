// Argument parsing shared by the commands: node's own parseArgs, with every mistake turned
// into a one-line UsageError that names the problem.
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from './errors.js'

type Options = NonNullable<ParseArgsConfig['options']>

export function parse<O extends Options> (argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals })
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0])
  }
}

/** An integer option within [min, max], or the default when it was not given. */
export function intOption (name: string, value: unknown, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (typeof value !== 'string' || !/^-?\d+$/.test(value.trim()) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got '${String(value)}'`)
  }
  return n
}

/** A finite number option within [min, max], or the default when it was not given. */
export function numberOption (name: string, value: unknown, fallback: number, min = -Infinity, max = Infinity): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a number from ${min} to ${max}, got '${String(value)}'`)
  }
  return n
}
