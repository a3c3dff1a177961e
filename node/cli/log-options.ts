// The logging options of the commands that run for long (start, join, demo).
import { configureLog, logFormats, logLevels, type Log, type LogFormat, type LogLevel } from './log.js'
import { UsageError } from './errors.js'

export const logCliOptions = {
  'log-format': { type: 'string' },
  'log-level': { type: 'string' }
} as const

export const logCliHelp = `  --log-format text|json  human-readable lines (default) or JSON lines (what 'swarmtrain plot' reads)
  --log-level L       error, warn, info (default) or debug (adds the components' debug logs)`

export interface LogCliValues {
  'log-format'?: string
  'log-level'?: string
}

/** Sets the process's log from the options. */
export function configureLogFrom (values: LogCliValues): Log {
  const format = values['log-format'] ?? 'text'
  const level = values['log-level'] ?? 'info'
  if (!(logFormats as readonly string[]).includes(format)) throw new UsageError(`--log-format must be ${logFormats.join(' or ')}, got '${format}'`)
  if (!(logLevels as readonly string[]).includes(level)) throw new UsageError(`--log-level must be one of ${logLevels.join(', ')}, got '${level}'`)
  return configureLog({ format: format as LogFormat, level: level as LogLevel })
}
