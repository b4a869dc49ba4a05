/**
 * Streaming UTF-8 decoder for token pieces: feed byte pieces as tokens arrive; only complete characters are
 * emitted, a partial multi-byte sequence is held back until its remaining bytes arrive (or `flush()` is
 * called at the end, which emits U+FFFD for an incomplete tail). Invalid bytes decode to U+FFFD.
 */
export class Utf8StreamDecoder {
  // ignoreBOM: a U+FEFF at the start of the stream is text (TextDecoder would drop it by default)
  private decoder = new TextDecoder('utf-8', { ignoreBOM: true });

  /** Feeds the bytes of one or more tokens; returns the newly completed text (possibly ''). */
  push(bytes: Uint8Array): string {
    return this.decoder.decode(bytes, { stream: true });
  }

  /** Ends the stream: returns whatever is still held back (an incomplete sequence becomes U+FFFD). */
  flush(): string {
    const s = this.decoder.decode();
    this.decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    return s;
  }
}
