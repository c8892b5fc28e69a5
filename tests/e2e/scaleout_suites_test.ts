/**
 * The HTTP suites against two scale-out replicas (`main.ts` over one Ceph RGW bucket and one
 * PostgreSQL database) behind a round-robin proxy, every request going to the other replica
 * than the last:
 *
 * - the OCI conformance workflows of `conformance_test.ts` (Pull, Push, Content Discovery,
 *   Content Management) in all four of its runs (teardowns deleting manifests or blobs first,
 *   automatic mounts on or off), each run over a fresh bucket and database; blob GETs are
 *   redirected to the bucket (the default), which the suite's client follows as the Go
 *   suite's does;
 * - the exact Docker, containerd, containers/image and crane request sequences of
 *   `docker_sequences_test.ts`, over one pair serving blob GETs itself
 *   (`storage.redirect.disable`: the sequences read the registry's headers on them), each
 *   test in its own repositories; the proxy's access log stands for the registry's.
 *
 * Outside CI the tests are ignored when RGW or PostgreSQL cannot come up; in CI they fail.
 */

import assert from "node:assert/strict";
import { conformanceSuite } from "./conformance_test.ts";
import { dockerSequences } from "./docker_sequences_test.ts";
import { IN_CI } from "../helpers/clients.ts";
import { scaleOutUnavailable, type TwoReplicas, twoReplicas } from "../helpers/replicas.ts";

const unavailable = await scaleOutUnavailable();
const ignore = unavailable !== null && !IN_CI;

conformanceSuite({
  label: "two replicas: ",
  ignore,
  registry: async (config) => {
    if (unavailable !== null) throw new Error(unavailable);
    const replicas = await twoReplicas({
      env: { REGISTRY_REGISTRY_AUTOMATICMOUNT: String(config.automaticMount ?? true) },
    });
    return {
      url: replicas.url,
      async [Symbol.asyncDispose]() {
        try {
          assert.deepEqual(replicas.errors(), [], "the replicas logged errors");
          assert.deepEqual(replicas.forwarded.filter((r) => r.status >= 500), []);
        } finally {
          await replicas[Symbol.asyncDispose]();
        }
      },
    };
  },
});

/** The sequences' pair, started on first use and stopped after the file's last test. */
let sequencesPair: Promise<TwoReplicas> | undefined;
Deno.test.afterAll(async () => {
  if (sequencesPair) await (await sequencesPair)[Symbol.asyncDispose]();
});

dockerSequences({
  label: "two replicas: ",
  test: (name, fn) =>
    Deno.test({
      name,
      ignore,
      // The pair outlives each test.
      sanitizeOps: false,
      sanitizeResources: false,
      async fn(t) {
        if (unavailable !== null) throw new Error(unavailable);
        await fn(t);
        const replicas = await sequencesPair!;
        assert.deepEqual(replicas.errors(), [], "the replicas logged errors");
        const sent = replicas.forwarded.map((r) => r.backend);
        assert.ok(sent.includes(replicas.a.url) && sent.includes(replicas.b.url));
      },
    }),
  registry: async () => {
    sequencesPair ??= twoReplicas({ env: { REGISTRY_STORAGE_REDIRECT_DISABLE: "true" } });
    const replicas = await sequencesPair;
    return {
      url: replicas.url,
      logs: replicas.logs,
      fetch: replicas.fetch,
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  },
});
