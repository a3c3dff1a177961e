// Byte-level tokens: a token is one byte of the UTF-8 text, so the vocabulary is 256 and
// any text (or any file) can be encoded without a learned vocabulary.

export const vocabSize = 256

export function encode (text: string): Uint8Array {
  return new TextEncoder().encode(text)
}

/** Bytes that are not valid UTF-8 (a model can emit them) become U+FFFD. */
export function decode (tokens: ArrayLike<number>): string {
  return new TextDecoder().decode(Uint8Array.from(tokens))
}
