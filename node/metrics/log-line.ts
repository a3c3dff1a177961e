// Reading back what a command logged: a JSON log line (`--log-format json`, see cli/log.ts) is
// one record with its human text in `msg`.

export type LogFields = Record<string, unknown>

/** A JSON log line's record, or undefined for any other line. */
export function parseLogLine (line: string): (LogFields & { msg: string }) | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    const record = JSON.parse(line) as unknown
    if (typeof record === 'object' && record !== null && typeof (record as { msg?: unknown }).msg === 'string') return record as LogFields & { msg: string }
  } catch {}
  return undefined
}
