import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { tempRegistry } from "../helpers/registry.ts";

const SCRIPT = fileURLToPath(new URL("./curl_flow.sh", import.meta.url));

Deno.test("curl flow: monolithic push, a real tar.gz layer round trip, and the chunked flow", async () => {
  await using reg = await tempRegistry();
  const { code, stdout, stderr } = await new Deno.Command("bash", {
    args: [SCRIPT, reg.url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, `curl_flow.sh failed:\n${out}\n${err}`);
  const steps = out.split("\n").filter((line) => line.startsWith("ok "));
  assert.equal(steps.length, 13, out);
  for (const step of ["ok monolithic:", "ok layer:", "ok chunked:", "ok streaming:"]) {
    assert.ok(steps.some((line) => line.startsWith(step)), `missing "${step}" in\n${out}`);
  }
});
