import { rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * onnxruntime's bundled telemetry library creates an empty `mat-debug-<pid>.log` in the temp
 * directory of every process that opens a session, and never removes it: remove ours when empty.
 */
export function removeOnnxruntimeDebugLog (): void {
  const path = join(tmpdir(), `mat-debug-${process.pid}.log`)
  try {
    if (statSync(path).size === 0) rmSync(path)
  } catch {}
}
