// What a command tells its operator: human-readable lines by default, or JSON lines
// (`--log-format json`: time, level, msg and structured fields, so scripts and `swarmtrain plot`
// read them), filtered by level. Debug also turns on the components' @libp2p/logger output.
import { enable } from '@libp2p/logger'

export const logLevels = ['error', 'warn', 'info', 'debug'] as const
export type LogLevel = typeof logLevels[number]
export const logFormats = ['text', 'json'] as const
export type LogFormat = typeof logFormats[number]

export interface LogInit {
  format: LogFormat
  level: LogLevel
  /** Where lines go (default: stdout, and stderr for warnings and errors in text format). */
  write?: (line: string, level: LogLevel) => void
}

import type { LogFields } from '../metrics/log-line.js'

export type { LogFields }

export class Log {
  readonly format: LogFormat
  readonly level: LogLevel
  private readonly write: (line: string, level: LogLevel) => void

  constructor (init: LogInit) {
    this.format = init.format
    this.level = init.level
    this.write = init.write ?? ((line, level) => {
      // JSON lines stay on one stream, so one file holds the whole log.
      if (this.format === 'text' && (level === 'error' || level === 'warn')) process.stderr.write(line + '\n')
      else process.stdout.write(line + '\n')
    })
  }

  enabled (level: LogLevel): boolean {
    return logLevels.indexOf(level) <= logLevels.indexOf(this.level)
  }

  /** `msg` is the human line; `fields` are its data (only JSON lines carry them). */
  log (level: LogLevel, msg: string, fields: LogFields = {}): void {
    if (!this.enabled(level)) return
    this.write(this.format === 'json' ? JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) : msg, level)
  }

  error (msg: string, fields?: LogFields): void { this.log('error', msg, fields) }
  warn (msg: string, fields?: LogFields): void { this.log('warn', msg, fields) }
  info (msg: string, fields?: LogFields): void { this.log('info', msg, fields) }
  debug (msg: string, fields?: LogFields): void { this.log('debug', msg, fields) }
}

/** The process's log; commands replace it from their --log-format and --log-level options. */
export let log = new Log({ format: 'text', level: 'info' })

export function configureLog (init: LogInit): Log {
  log = new Log(init)
  if (init.level === 'debug') enable('swarmtrain:*')
  return log
}
