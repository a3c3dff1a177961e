import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * Writes a file so that a crash leaves either the old content or the new, never a torn file:
 * write a temporary file beside it, fsync it, rename it over the target, fsync the directory.
 * `data` may come in parts, written one after another (no joined copy of a large file).
 */
export async function writeFileAtomic (path: string, data: Uint8Array | string | readonly Uint8Array[], mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`
  const file = await open(tmp, 'w', mode)
  try {
    // A file handle's writeFile writes from its current position, all of it.
    for (const part of typeof data === 'string' || data instanceof Uint8Array ? [data] : data) await file.writeFile(part)
    await file.sync()
  } catch (err) {
    await file.close()
    await unlink(tmp).catch(() => {})
    throw err
  }
  await file.close()
  await rename(tmp, path)
  const dir = await open(dirname(path), 'r')
  try { await dir.sync() } finally { await dir.close() }
}
