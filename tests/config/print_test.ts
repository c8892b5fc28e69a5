/**
 * What the command line prints (src/config/load.ts): `--help`, `--version` from deno.json, and
 * `--print-config` with secrets masked, whose unmasked output loads back to the same settings.
 */

import assert from "node:assert/strict";
import { parseCommandLine } from "../../src/config/mod.ts";
import { printConfig } from "../../src/config/load.ts";
import { USAGE } from "../../src/config/usage.ts";
import { VERSION } from "../../src/version.ts";
import { CASES, file, isScaleOut, load, SCALE_OUT_ENV, yamlOf } from "./helpers.ts";

Deno.test("--help and --version print and need nothing else to be valid", () => {
  assert.deepEqual(parseCommandLine(["--help"], { REGISTRY_PORT: "x" }), {
    action: "help",
    text: USAGE,
  });
  const version = parseCommandLine(["--version", "--config", "/nonexistent"], {});
  assert.deepEqual(version, { action: "version", text: `registry ${VERSION}` });
  assert.match(VERSION, /^\d+\.\d+\.\d+$/);
  const deno = JSON.parse(Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)));
  assert.equal(VERSION, deno.version);
});

Deno.test("--print-config masks http.secret, Authorization headers and URL credentials", () => {
  const path = file(`
http:
  secret: hunter2-secret
  host: https://admin:pw1@reg.example.com
  headers:
    Authorization: [Basic c2VjcmV0]
notifications:
  endpoints:
    - name: a
      url: https://user:pw2@hooks.example.com/e
      headers:
        authorization: [Bearer tok3n]
        X-Api-Key: [k3y]
        Content-Type: [visible]
`);
  const result = parseCommandLine(["--config", path, "--print-config"], {});
  assert.equal(result.action, "print-config");
  const text = "text" in result ? result.text : "";
  const secrets = ["hunter2-secret", "pw1", "pw2", "c2VjcmV0", "tok3n", "k3y", "admin:", "user:"];
  for (const secret of secrets) {
    assert.ok(!text.includes(secret), `${secret} leaked:\n${text}`);
  }
  assert.match(text, /secret: "\*{8}"/);
  assert.match(text, /visible/);
});

Deno.test("--print-config writes a file that loads to the same configuration", () => {
  const entries = Object.entries(CASES).map(([key, c]) => [key, c.yaml] as [string, string]);
  const path = file(yamlOf(entries.filter(([key]) => !isScaleOut(key))));
  const config = load(["--config", path], { REGISTRY_PORT: "7000" });
  const printed = file(printConfig(config, false));
  assert.deepEqual(load(["--config", printed]), config);
  // the scale-out mode (no filesystem root printed then)
  const scaleOut = file(
    yamlOf(
      entries.filter(([key]) =>
        isScaleOut(key) ||
        key !== "storage.filesystem.rootdirectory"
      ),
    ),
  );
  const s3 = load(["--config", scaleOut]);
  assert.equal(s3.s3?.bucket, "images");
  assert.deepEqual(load(["--config", file(printConfig(s3, false))]), s3);
  assert.deepEqual(load(["--config", file(printConfig(load([]), false))]), load([]));
});

Deno.test("--print-config masks the S3 secret key and the database password", () => {
  const result = parseCommandLine(["--print-config"], {
    ...SCALE_OUT_ENV,
    REGISTRY_DATABASE_URL: "postgres://reg:db-pa55@db:5432/registry?password=q-pa55",
  });
  assert.equal(result.action, "print-config");
  const text = "text" in result ? result.text : "";
  for (const secret of ["base-secret", "db-pa55", "q-pa55"]) {
    assert.ok(!text.includes(secret), `${secret} leaked:\n${text}`);
  }
  assert.match(text, /secretkey: "\*{8}"/);
  assert.match(text, /url: postgres:\/\/reg:\*{8}@db:5432\/registry\?password=\*\*\*/);
  assert.match(text, /bucket: base-bucket/);
});
