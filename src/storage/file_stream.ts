/**
 * A stream of an open file's bytes, for replies: a byte stream (`type: "bytes"`) read in
 * reads of at most 1 MiB. A BYOB reader gets the bytes read straight into its own buffers
 * (the built-in server reads so, into reused buffers, with the next read started while the
 * previous chunk is written); a default reader gets a fresh buffer per read. The file is
 * closed exactly once: when the stream ends, is cancelled (after a read under way), or fails.
 */

/** The most bytes per read. */
const CHUNK = 1024 * 1024;

/**
 * A stream of the next `length` bytes of an open file (positioned by the caller), which it
 * owns from now on. Nothing is read before the consumer's first read, so a stream cancelled
 * unread (a HEAD reply) never reads the file.
 */
export function fileStream(file: Deno.FsFile, length: number): ReadableStream<Uint8Array> {
  let remaining = length;
  /** The read under way, or null. */
  let reading: Promise<number | null> | null = null;
  let cancelled = false;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      file.close();
    } catch { /* already closed */ }
  };
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: Math.max(1, Math.min(CHUNK, length)),
    start(controller) {
      if (length <= 0) {
        close();
        controller.close();
      }
    },
    async pull(controller) {
      // With `autoAllocateChunkSize`, every pull has a request: the reader's buffer.
      const request = controller.byobRequest!;
      const view = request.view!;
      const into = new Uint8Array(
        view.buffer,
        view.byteOffset,
        Math.min(view.byteLength, CHUNK, remaining),
      );
      let n: number | null;
      try {
        reading = file.read(into);
        n = await reading;
      } catch (error) {
        if (cancelled) return;
        close();
        controller.error(error);
        return;
      } finally {
        reading = null;
      }
      if (cancelled) return; // `cancel` closes the file
      if (n === null || n === 0) {
        close();
        controller.error(new Error("Blob file ended before the requested range"));
        return;
      }
      remaining -= n;
      request.respond(n);
      if (remaining <= 0) {
        close();
        controller.close();
      }
    },
    async cancel() {
      cancelled = true;
      // A read under way finishes before the file closes under it.
      await reading?.catch(() => null);
      close();
    },
  });
}
