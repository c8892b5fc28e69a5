/**
 * A real S3 server for tests: Ceph RGW brought up by `scripts/s3-ceph.sh up` (which installs
 * it from Debian when missing, as root, and does nothing when it already runs), and a fresh
 * bucket per test run (`reg-<time>-<rand>`), emptied and deleted at the end.
 *
 * In CI (`CI` set) a failure to bring RGW up fails the S3 tests; elsewhere they are ignored
 * (the `clientTest` pattern of `clients.ts`). `scripts/test.sh` (`deno task test`) stops the
 * cluster after the run when the run started it.
 */

import { fileURLToPath } from "node:url";
import { S3Client } from "../../src/storage/drivers/s3_client.ts";
import type { S3DriverOptions } from "../../src/storage/drivers/s3.ts";
import { IN_CI, run } from "./clients.ts";

const SCRIPT = fileURLToPath(new URL("../../scripts/s3-ceph.sh", import.meta.url));

/** Where the test server is, as the script prints it (`REGISTRY_S3_*=…` lines). */
export interface S3Server {
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
}

let server: Promise<S3Server | Error> | undefined;

/** Brings RGW up once per process; the server, or the error that prevented it. */
export function s3Server(): Promise<S3Server | Error> {
  server ??= (async () => {
    try {
      const { stdout } = await run("bash", [SCRIPT, "up"]);
      const env: Record<string, string> = {};
      for (const m of stdout.matchAll(/^REGISTRY_S3_(\w+)=(.*)$/gm)) env[m[1]] = m[2];
      if (!env.ENDPOINT || !env.ACCESS_KEY || !env.SECRET_KEY) {
        throw new Error(`s3-ceph.sh up printed no endpoint and keys:\n${stdout}`);
      }
      return {
        endpoint: env.ENDPOINT,
        accessKey: env.ACCESS_KEY,
        secretKey: env.SECRET_KEY,
        region: env.REGION ?? "us-east-1",
      };
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  })();
  return server;
}

/** A bucket of this test run and the driver options that reach it. */
export interface TestBucket {
  readonly options: S3DriverOptions;
  readonly client: S3Client;
  /** Aborts every unfinished multipart upload, deletes every object, then the bucket. */
  remove(): Promise<void>;
}

/** Creates a fresh bucket `reg-<time>-<rand>`. */
export async function createBucket(s3: S3Server): Promise<TestBucket> {
  const bucket = `reg-${Date.now()}-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
  const client = new S3Client({
    endpoint: s3.endpoint,
    bucket,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    region: s3.region,
  });
  await client.createBucket();
  return {
    client,
    options: {
      accesskey: s3.accessKey,
      secretkey: s3.secretKey,
      region: s3.region,
      regionendpoint: s3.endpoint,
      bucket,
      forcepathstyle: true,
    },
    async remove() {
      for (const u of await client.listMultipart("")) await client.abortMultipart(u.name, u.id);
      const keys = (await client.listAll("")).map((o) => o.key);
      if (keys.length > 0) await client.deleteObjects(keys);
      await client.deleteBucket();
    },
  };
}

/**
 * Registers tests that need the S3 server: `register` is called with a function returning
 * the run's bucket (created on first use, deleted after the last test) when RGW is up. Outside
 * CI the tests are ignored when it cannot be brought up; in CI they fail with the reason.
 */
export async function s3Tests(
  register: (bucket: () => Promise<TestBucket>, ignore: boolean) => void,
): Promise<void> {
  const up = await s3Server();
  const ignore = up instanceof Error && !IN_CI;
  let bucket: Promise<TestBucket> | undefined;
  register(() => {
    if (up instanceof Error) {
      return Promise.reject(
        new Error(`Cannot bring Ceph RGW up (scripts/s3-ceph.sh up): ${up.message}`),
      );
    }
    bucket ??= createBucket(up);
    return bucket;
  }, ignore);
  Deno.test({
    name: "s3: the test run's bucket is deleted",
    ignore,
    async fn() {
      if (up instanceof Error) throw up;
      if (bucket === undefined) return;
      const b = await bucket;
      await b.remove();
      const head = await b.client.request("HEAD", b.client.url(""));
      await head.body?.cancel();
      if (head.status !== 404) throw new Error(`bucket still there: HEAD ${head.status}`);
    },
  });
}
