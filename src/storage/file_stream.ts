/**
 * Streams of an open file's bytes that remember the file they read, so a server that writes
 * responses itself can copy the file to the socket in large reads instead of pulling the
 * stream chunk by chunk. Either way the file is closed exactly once: when the stream ends or
 * is cancelled, or by whoever takes the file with `takeFile` instead.
 */

const CHUNK = 256 * 1024;

/** The file behind a stream: read `length` bytes from its current position, then close it. */
export interface FileSpan {
  readonly file: Deno.FsFile;
  readonly length: number;
}

const spans = new WeakMap<ReadableStream<Uint8Array>, FileSpan>();

/**
 * A stream of the next `length` bytes of an open file (positioned by the caller). Nothing is
 * read before the stream's first pull, so `takeFile` finds the file where the caller left it.
 */
export function fileStream(file: Deno.FsFile, length: number): ReadableStream<Uint8Array> {
  const stream = limitedStream(file, length);
  spans.set(stream, { file, length });
  return stream;
}

/**
 * The file behind a stream made by `fileStream`, handed over once: the caller reads it and
 * closes it, and must not read the stream. Undefined for other streams or when taken.
 */
export function takeFile(stream: ReadableStream<Uint8Array>): FileSpan | undefined {
  const span = spans.get(stream);
  if (span === undefined || stream.locked) return undefined;
  spans.delete(stream);
  return span;
}

function limitedStream(file: Deno.FsFile, length: number): ReadableStream<Uint8Array> {
  let remaining = length;
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      file.close();
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (remaining <= 0) {
        close();
        controller.close();
        return;
      }
      const buffer = new Uint8Array(Math.min(CHUNK, remaining));
      const n = await file.read(buffer);
      if (n === null || n === 0) {
        close();
        controller.error(new Error("Blob file ended before the requested range"));
        return;
      }
      remaining -= n;
      controller.enqueue(n === buffer.length ? buffer : buffer.subarray(0, n));
    },
    cancel() {
      close();
    },
  }, { highWaterMark: 0 });
}
