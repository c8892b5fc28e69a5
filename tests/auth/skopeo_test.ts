/**
 * A real client against htpasswd authentication: skopeo copies a small OCI layout with
 * `--dest-creds` (Basic over plain HTTP on 127.0.0.1), is refused without them, and pulls it
 * back with `--src-creds`.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DEFAULTS } from "../../src/config/mod.ts";
import { clientTest, hostOf, run, Workspace } from "../helpers/clients.ts";
import { tempRegistry } from "../helpers/registry.ts";
import { htpasswdFile, TEST_AUTH, USERS } from "./helpers.ts";

async function writeBlob(
  dir: string,
  bytes: Uint8Array,
): Promise<{ digest: string; size: number }> {
  const hex = createHash("sha256").update(bytes).digest("hex");
  await Deno.writeFile(join(dir, "blobs", "sha256", hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/** A one-layer OCI image layout under `dir`. */
async function ociLayout(dir: string): Promise<void> {
  await Deno.mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  await Deno.writeTextFile(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  const layerBytes = new Uint8Array(
    await new Response(
      new Blob([crypto.getRandomValues(new Uint8Array(2048))]).stream().pipeThrough(
        new CompressionStream("gzip"),
      ),
    ).arrayBuffer(),
  );
  const layer = await writeBlob(dir, layerBytes);
  const config = await writeBlob(
    dir,
    new TextEncoder().encode(JSON.stringify({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [`sha256:${"0".repeat(64)}`] },
    })),
  );
  const manifest = await writeBlob(
    dir,
    new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layer }],
    })),
  );
  await Deno.writeTextFile(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...manifest,
        annotations: { "org.opencontainers.image.ref.name": "v1" },
      }],
    }),
  );
}

await clientTest("skopeo copies an OCI layout with --dest-creds and reads it with --src-creds", [
  "skopeo",
], async () => {
  await using file = await htpasswdFile();
  await using reg = await tempRegistry({
    config: { auth: { ...DEFAULTS.auth, ...TEST_AUTH, htpasswdPath: file.path } },
  });
  await using ws = await Workspace.create();
  const layout = await ws.path("layout");
  await ociLayout(layout);
  const host = hostOf(reg.url);
  const copy = (creds: string[]) =>
    run("skopeo", [
      "copy",
      "--dest-tls-verify=false",
      ...creds,
      `oci:${layout}:v1`,
      `docker://${host}/team/skopeo:v1`,
    ], { env: ws.env, allowFailure: true });
  const anonymous = await copy([]);
  assert.notEqual(anonymous.code, 0);
  assert.match(anonymous.stderr, /unauthorized|authentication required/i);
  const carol = await copy(["--dest-creds", `carol:${USERS.carol}`]);
  assert.notEqual(carol.code, 0, "a pull-only user pushed");
  const bob = await copy(["--dest-creds", `bob:${USERS.bob}`]);
  assert.equal(bob.code, 0, bob.stderr);
  const inspect = await run("skopeo", [
    "inspect",
    "--tls-verify=false",
    "--creds",
    `carol:${USERS.carol}`,
    "--raw",
    `docker://${host}/team/skopeo:v1`,
  ], { env: ws.env });
  assert.equal(JSON.parse(inspect.stdout).layers.length, 1);
  const back = await ws.path("back");
  await run("skopeo", [
    "copy",
    "--src-tls-verify=false",
    "--src-creds",
    `carol:${USERS.carol}`,
    `docker://${host}/team/skopeo:v1`,
    `oci:${back}:v1`,
  ], { env: ws.env });
  const text = reg.logs.join("\n");
  assert.match(text, /user=bob/);
  assert.ok(!text.includes(USERS.bob) && !text.includes(USERS.carol));
});
