/**
 * A ceiling for single pushes on this machine: what a push reaches when its bytes never
 * touch the disk (our registry with its data root on tmpfs, pushed with curl as the
 * curl-put row does), alone and while the disk is kept busy with direct writes
 * (`dd oflag=direct` into the rows' data root, in a loop), and what `dd` reaches meanwhile.
 *
 * A push to the disk receives and hashes every byte while the disk takes the bytes before
 * them: both at once. Neither the push with its writes taken away nor the disk can then go
 * faster than they do side by side here, and on a VM whose disk work costs CPU time the guest
 * does not see, side by side is slower than either alone (BENCHMARKS.md).
 */

import { diskWrite, run, syncAll } from "./ceilings.ts";
import type { BesideDisk } from "./report.ts";
import { startOurs } from "./servers.ts";

const MiB = 1024 * 1024;

/** Where a tmpfs is mounted for every user (`/dev/shm` on Linux), or null. */
export async function sharedTmpfs(): Promise<string | null> {
  const mounts = await Deno.readTextFile("/proc/mounts").catch(() => "");
  const shm = mounts.split("\n").map((line) => line.split(" ")).find((f) => f[1] === "/dev/shm");
  return shm?.[2] === "tmpfs" ? "/dev/shm" : null;
}

/**
 * Pushes `file` (`size` bytes, `digest`) `runs` times into our registry on a data root in
 * `tmpfs`, each push alone and then one beside a `dd` loop of `ddMiB` MiB direct writes into
 * `diskDir`, alternately. Logs go to `logDir`. The registry and its data root are removed.
 */
export async function pushBesideDisk(o: {
  repoRoot: string;
  tmpfs: string;
  logDir: string;
  diskDir: string;
  file: string;
  digest: string;
  size: number;
  ddMiB: number;
  runs: number;
}): Promise<BesideDisk> {
  const root = await Deno.makeTempDir({ dir: o.tmpfs, prefix: "bench-beside-disk-" });
  const result = { alone: [] as number[], besideDd: [] as number[], dd: [] as number[] };
  try {
    const server = await startOurs(root, o.logDir, {
      repoRoot: o.repoRoot,
      logName: "ours-beside-disk.log",
      allowAll: true,
      env: { REGISTRY_LOG_REQUESTS: "0" },
    });
    try {
      const push = async () => {
        const rate = await curlPut(server.base, o.file, o.digest, o.size);
        await Deno.remove(server.blobPath(o.digest.slice("sha256:".length)));
        return rate;
      };
      for (let i = 0; i < o.runs; i++) {
        result.alone.push(await push());
        await syncAll();
        // dd runs until the push is done; every dd run that began before that counts
        let pushing = true;
        const loop = (async () => {
          while (pushing) result.dd.push(await diskWrite(o.diskDir, o.ddMiB, true));
        })();
        loop.catch(() => {}); // a failed dd is thrown below, once the push is done

        try {
          // let the first dd reach its writes (it starts in a few ms; 200 ms is generous)
          await new Promise((r) => setTimeout(r, 200));
          result.besideDd.push(await push());
        } finally {
          pushing = false;
          await loop;
        }
      }
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
  return result;
}

/** POST, then `curl -T file` to the upload's URL with `?digest=`; MiB/s of the PUT. */
async function curlPut(base: string, file: string, digest: string, size: number) {
  const started = await fetch(`${base}/v2/bench/beside-disk/blobs/uploads/`, { method: "POST" });
  await started.body?.cancel();
  const location = started.headers.get("location");
  if (started.status !== 202 || location === null) {
    throw new Error(`POST upload: HTTP ${started.status}`);
  }
  const url = new URL(location, base);
  url.searchParams.set("digest", digest);
  const t0 = performance.now();
  const { stdout } = await run("curl", [
    "-s",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "-T",
    file,
    "-H",
    "Content-Type: application/octet-stream",
    url.href,
  ]);
  const seconds = (performance.now() - t0) / 1000;
  if (stdout.trim() !== "201") throw new Error(`curl -T PUT: HTTP ${stdout.trim()}`);
  return size / MiB / seconds;
}
