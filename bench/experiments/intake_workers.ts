/**
 * Experiment (issue 5, push-parallel): does receiving request bodies on more than one thread
 * help on this machine? N worker isolates accept on one port (`reusePort`), read chunked
 * bodies with the registry's own `WireBody` into 1 MiB buffers and transfer them to this
 * (main) isolate, which hashes them (native SHA-256, nonblocking FFI) and writes them to files
 * as the registry does. Not part of the registry; run by hand:
 *
 *   deno run -A --unstable-net bench/experiments/intake_workers.ts WORKERS PORT DIR
 *   deno run -A bench/experiments/intake_client.ts PORT 8 128
 */

import { createSha256 } from "../../src/digest/sha256.ts";

const count = Number(Deno.args[0] ?? 2);
const port = Number(Deno.args[1] ?? 18090);
const dir = Deno.args[2] ?? Deno.makeTempDirSync();

interface Upload {
  readonly file: Deno.FsFile;
  readonly hasher: ReturnType<typeof createSha256>;
  chain: Promise<void>;
}

const uploads = new Map<string, Upload>();

for (let i = 0; i < count; i++) {
  const worker = new Worker(new URL("./intake_worker.ts", import.meta.url).href, {
    type: "module",
  });
  worker.onmessage = async (event: MessageEvent) => {
    const message = event.data;
    if (message.type === "start") {
      const file = await Deno.open(`${dir}/${message.id}`, { write: true, create: true });
      uploads.set(message.id, { file, hasher: createSha256(), chain: Promise.resolve() });
      return;
    }
    const upload = uploads.get(message.id);
    if (!upload) return;
    if (message.type === "data") {
      const view = new Uint8Array(message.buffer, 0, message.length);
      upload.chain = upload.chain.then(async () => {
        const write = async () => {
          for (let at = 0; at < view.length;) at += await upload.file.write(view.subarray(at));
        };
        await Promise.all([upload.hasher.updateAsync(view), write()]);
        worker.postMessage({ type: "buffer", buffer: message.buffer }, [message.buffer]);
      });
    } else if (message.type === "end") {
      await upload.chain;
      await upload.file.syncData();
      upload.file.close();
      uploads.delete(message.id);
      worker.postMessage({ type: "done", id: message.id });
    }
  };
  worker.postMessage({ type: "listen", port });
}
console.log(`listening on ${port} with ${count} intake workers, writing to ${dir}`);
