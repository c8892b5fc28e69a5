/** The writing side of a connection: whole writes, with progress the idle sweep can watch. */

/** Where a connection's bytes go (a `Deno.Conn` is one). */
export interface ByteWriter {
  /** Writes some of `bytes`; the number written. */
  write(bytes: Uint8Array): Promise<number>;
}

/** Writes whole buffers to a byte sink and tracks when a pending write last progressed. */
export class WireWriter {
  /** The sink written to. */
  readonly sink: ByteWriter;
  /** While a write is pending: when it last made progress (epoch ms); else null. */
  writingSince: number | null = null;

  /** Wraps a sink. */
  constructor(sink: ByteWriter) {
    this.sink = sink;
  }

  /** Writes all of `bytes`. */
  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    this.writingSince = Date.now();
    try {
      while (offset < bytes.length) {
        offset += await this.sink.write(bytes.subarray(offset));
        this.writingSince = Date.now();
      }
    } finally {
      this.writingSince = null;
    }
  }
}
