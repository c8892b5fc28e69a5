/**
 * Access control proven with real clients (issue 12), over HTTPS with a CA the test makes with
 * openssl, in both modes: htpasswd (`Basic` on every request) and the built-in token server
 * (`Bearer` tokens from `/token`). Each mode runs its own registry (`main.ts` with a
 * config.yml) and CA, shared by the steps:
 *
 * - podman login, push and pull (`--cert-dir`, a private `--authfile`);
 * - skopeo copy with `--dest-creds`, and with `--src-creds` and `--dest-creds` of two owners
 *   (alice owns `alice/*`, bob `bob/*`; alice may pull `bob/shared`, not `bob/private`);
 * - buildah push with `--cert-dir` and `--creds`;
 * - containerd: the test's own daemon, `ctr images pull` and `push` with `--hosts-dir` (a
 *   `hosts.toml` naming the CA) and `--user`;
 * - anonymous pull allowed on `public/*` and refused on `alice/*`, without credentials;
 * - a pull-only user (carol, on `alice/*`) refused a push by skopeo, podman, buildah and ctr,
 *   with nothing stored.
 *
 * No client is told to skip verification: each trusts the CA, and one that does not is refused.
 * What is pulled is compared with what was pushed (manifest digests, config digests, diff_ids,
 * file contents). A missing tool ignores the test (or the containerd step), except in CI.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  buildImage,
  type BuiltImage,
  clientStep,
  clientTest,
  diffIdOf,
  extractLayers,
  filesUnder,
  imageFiles,
  type ImageManifest,
  inspectImage,
  readOciImage,
  run,
  type RunResult,
  Workspace,
} from "../helpers/clients.ts";
import { startContainerd, writeHostsToml } from "../helpers/containerd.ts";
import { spawnRegistry } from "../helpers/registry.ts";
import { makeCertificates, type TestCertificates } from "../helpers/tls_ca.ts";
import { basic, htpasswdLines, USERS } from "../auth/helpers.ts";
import { challengeOf } from "../auth/token_helpers.ts";

type Mode = "htpasswd" | "token";
type User = keyof typeof USERS;

const SERVICE = "auth-clients";
const creds = (user: User, password: string = USERS[user]) => `${user}:${password}`;

/**
 * The policies of both modes: alice and bob own their namespaces; alice may pull
 * `bob/shared`; carol only pulls `alice/*`; alice publishes `public/*`, which anyone pulls.
 */
const POLICIES = `
    policies:
      - repositories: ["alice/*"]
        users: [alice]
        actions: [pull, push]
      - repositories: ["bob/*"]
        users: [bob]
        actions: [pull, push]
      - repositories: [bob/shared]
        users: [alice]
        actions: [pull]
      - repositories: ["alice/*"]
        users: [carol]
        actions: [pull]
      - repositories: ["public/*"]
        users: [alice]
        actions: [push]
      - repositories: ["public/*"]
        anonymous: true
        actions: [pull]
`;

/**
 * The registry's config.yml for `mode`. No failure delay: the clients' wrong passwords come
 * from the one loopback address, and ctr retries (tests/auth/htpasswd_test.ts tests the delay).
 */
function configYaml(mode: Mode, certs: TestCertificates, htpasswd: string): string {
  const token = mode === "token";
  return `version: 0.1
http:
  draintimeout: 5s
  tls:
    certificate: ${certs.certificate}
    key: ${certs.key}
auth:
  htpasswd:
    realm: auth-clients
    path: ${htpasswd}
${token ? `  token:\n    service: ${SERVICE}\n    issuer: auth-clients-issuer\n` : ""}registry:
  auth:
${token ? "    token:\n      builtin: true\n" : ""}    faildelay: 0s
${POLICIES}`;
}

/** A registry over HTTPS, run as `main.ts` with the config of a mode. */
interface SecureRegistry extends AsyncDisposable {
  /** `https://127.0.0.1:PORT`. */
  readonly url: string;
  /** host:port, for image references. */
  readonly host: string;
  readonly certs: TestCertificates;
  /** A folder holding only `ca.crt`, for the `--cert-dir` options of containers/image tools. */
  readonly certDir: string;
  /** A request as `user` (null: none) to `/v2/<repository>/<path>`, trusting the CA. */
  request(
    user: User | null,
    repository: string,
    path: string,
    method?: string,
  ): Promise<Response>;
}

async function secureRegistry(mode: Mode, ws: Workspace): Promise<SecureRegistry> {
  const dir = await ws.path(`registry-${mode}`);
  const certs = await makeCertificates(dir, "registry");
  const certDir = await ws.path(`certs-${mode}`);
  await Deno.copyFile(certs.caFile, join(certDir, "ca.crt"));
  const htpasswd = join(dir, "htpasswd");
  await Deno.writeTextFile(htpasswd, await htpasswdLines(USERS));
  const config = join(dir, "config.yml");
  await Deno.writeTextFile(config, configYaml(mode, certs, htpasswd));
  const data = await ws.path(`data-${mode}`);
  const registry = await spawnRegistry(data, ["--config", config]);
  const url = registry.url;
  if (!/^https:\/\/127\.0\.0\.1:\d+$/.test(url)) {
    await registry.kill("SIGKILL");
    throw new Error(`The registry does not serve HTTPS: ${url}`);
  }
  const client = Deno.createHttpClient({ caCerts: [certs.ca] });
  /** The Authorization header `user` sends for `scope` (Basic, or a token from /token). */
  const authorization = async (user: User, scope: string): Promise<string> => {
    if (mode === "htpasswd") return basic(user, USERS[user]);
    const query = new URLSearchParams({ service: SERVICE, scope });
    const response = await fetch(`${url}/token?${query}`, {
      client,
      headers: { authorization: basic(user, USERS[user]) },
    });
    assert.equal(response.status, 200, `token for ${user}`);
    return `Bearer ${((await response.json()) as { token: string }).token}`;
  };
  return {
    url,
    host: new URL(url).host,
    certs,
    certDir,
    async request(user, repository, path, method = "GET") {
      const headers: Record<string, string> = {};
      if (user !== null) {
        headers.authorization = await authorization(user, `repository:${repository}:pull`);
      }
      return await fetch(`${url}/v2/${repository}/${path}`, { client, method, headers });
    },
    async [Symbol.asyncDispose]() {
      client.close();
      await registry.kill("SIGTERM");
    },
  };
}

/** A manifest as the registry serves it to an authorized user. */
interface Stored {
  readonly digest: string;
  readonly bytes: Uint8Array;
  readonly manifest: ImageManifest;
}

async function stored(
  reg: SecureRegistry,
  user: User,
  repository: string,
  reference: string,
): Promise<Stored> {
  const response = await reg.request(user, repository, `manifests/${reference}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  assert.equal(response.status, 200, `GET ${repository}:${reference} as ${user}`);
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  assert.equal(response.headers.get("docker-content-digest"), digest);
  return { digest, bytes, manifest: JSON.parse(new TextDecoder().decode(bytes)) };
}

/** Asserts nothing is stored under `repository`: its tag and the image's blobs are 404 to alice. */
async function assertNothingStored(
  reg: SecureRegistry,
  repository: string,
  image: Stored,
): Promise<void> {
  const tag = await reg.request("alice", repository, "manifests/v1");
  await tag.body?.cancel();
  assert.equal(tag.status, 404, `${repository}:v1 was stored`);
  for (
    const digest of [
      image.manifest.config.digest,
      ...image.manifest.layers.map((l) => l.digest),
    ]
  ) {
    const blob = await reg.request("alice", repository, `blobs/${digest}`, "HEAD");
    assert.equal(blob.status, 404, `${repository} has blob ${digest}`);
  }
}

/** A pattern matching `text` as a client prints it (quotes maybe escaped, as logrus does). */
function says(text: string): RegExp {
  return new RegExp(text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&").replaceAll('"', '\\\\?"'));
}

/** Asserts a client failed (exit code 1 or more) and said each of `messages` on stderr. */
function assertRefused(result: RunResult, messages: (string | RegExp)[], what: string): void {
  assert.notEqual(result.code, 0, `${what} succeeded: ${result.stdout}`);
  for (const message of messages) {
    const pattern = typeof message === "string" ? says(message) : message;
    assert.match(result.stderr, pattern, `${what}: ${result.stderr}`);
  }
}

/**
 * What podman, skopeo and buildah (containers/image) print when the registry refuses `user`
 * (null: no credentials) `action` on `repository`: our error's message, and in token mode the
 * `insufficient_scope` of the challenge, which they report as `denied`.
 */
function refusal(mode: Mode, user: User | null, action: string, repository: string): string[] {
  if (mode === "token") {
    return [
      "denied: requested access to the resource is denied",
      `unauthorized: The token does not allow to ${action} "${repository}"`,
    ];
  }
  return user === null
    ? [`unauthorized: Authentication required to ${action} "${repository}"`]
    : [`denied: User "${user}" may not ${action} "${repository}"`];
}

/** The text of a file a client wrote (`--digestfile`). */
const readDigest = async (path: string) => (await Deno.readTextFile(path)).trim();

for (const mode of ["htpasswd", "token"] as const) {
  await clientTest(
    `${mode}: podman, skopeo, buildah and ctr over TLS with a test CA, as the policies allow`,
    ["skopeo", "podman", "buildah"],
    async (t) => {
      await using ws = await Workspace.create();
      await using reg = await secureRegistry(mode, ws);
      const { host, certDir } = reg;
      const build = await ws.store();
      let image!: BuiltImage;
      /** alice's push of the image with podman: what the registry stored. */
      let pushed!: Stored;

      await t.step(
        "the registry challenges as configured; a client without the CA is refused",
        async () => {
          const challenge = await reg.request(null, "alice/app", "manifests/v1");
          await challenge.body?.cancel();
          assert.equal(challenge.status, 401);
          if (mode === "token") {
            assert.deepEqual(challengeOf(challenge), {
              realm: `${reg.url}/token`,
              service: SERVICE,
              scope: "repository:alice/app:pull",
            });
          } else {
            assert.equal(challenge.headers.get("www-authenticate"), 'Basic realm="auth-clients"');
          }
          const untrusting = await run("skopeo", [
            "inspect",
            "--creds",
            creds("alice"),
            `docker://${host}/alice/app:v1`,
          ], { env: ws.env, allowFailure: true });
          assertRefused(untrusting, ["x509: certificate signed by unknown authority"], "no CA");
          image = await buildImage(ws, build, `auth-${mode}`, {
            layers: [
              { "/hello.txt": new TextEncoder().encode(`hello ${mode} ${crypto.randomUUID()}\n`) },
              { "/data/blob.bin": { random: 256 * 1024 } },
            ],
            arch: "amd64",
            os: "linux",
          });
        },
      );

      await t.step("podman login, push and pull with a private auth file", async () => {
        const authfile = join(ws.dir, "podman-auth.json");
        const login = (password: string) =>
          run("podman", [
            "login",
            "--cert-dir",
            certDir,
            "--authfile",
            authfile,
            "-u",
            "alice",
            "-p",
            password,
            host,
          ], { env: ws.env, allowFailure: true });
        const wrong = await login("not-her-password");
        assert.equal(wrong.code, 125, wrong.stderr);
        assertRefused(
          wrong,
          [`Error: logging into "${host}": invalid username/password`],
          "a wrong password",
        );
        const ok = await login(USERS.alice);
        assert.equal(ok.code, 0, ok.stderr);
        assert.match(ok.stdout, /Login Succeeded!/);
        const auths = JSON.parse(await Deno.readTextFile(authfile)).auths;
        assert.deepEqual(Object.keys(auths), [host]);

        const digestfile = join(ws.dir, "podman.digest");
        await build.podman(
          "push",
          "--quiet",
          "--cert-dir",
          certDir,
          "--authfile",
          authfile,
          "--format",
          "oci",
          "--digestfile",
          digestfile,
          image.name,
          `${host}/alice/app:v1`,
        );
        pushed = await stored(reg, "alice", "alice/app", "v1");
        assert.equal(await readDigest(digestfile), pushed.digest);
        assert.equal(pushed.manifest.config.digest, image.configDigest);

        const fresh = await ws.store();
        const ref = `${host}/alice/app:v1`;
        await fresh.podman("pull", "--quiet", "--cert-dir", certDir, "--authfile", authfile, ref);
        const info = await inspectImage(fresh, ref);
        assert.equal(info.manifestDigest, pushed.digest);
        assert.equal(info.configDigest, image.configDigest);
        assert.deepEqual(info.diffIds, image.diffIds);
        assert.deepEqual(await imageFiles(fresh, ref, image.files), image.files);
      });

      await t.step(
        "skopeo copy between owners: --dest-creds, then --src-creds and --dest-creds",
        async () => {
          const copy = (args: string[]) =>
            run("skopeo", ["copy", "--quiet", ...args], { env: ws.env, allowFailure: true });
          const fromStore = (repository: string, user: User) => [
            "--dest-cert-dir",
            certDir,
            "--dest-creds",
            creds(user),
            build.ref(image.name),
            `docker://${host}/${repository}:v1`,
          ];
          const between = (from: string, to: string, src: User, dest: User) => [
            "--src-cert-dir",
            certDir,
            "--dest-cert-dir",
            certDir,
            "--src-creds",
            creds(src),
            "--dest-creds",
            creds(dest),
            `docker://${host}/${from}:v1`,
            `docker://${host}/${to}:v1`,
          ];
          for (const repository of ["bob/shared", "bob/private"]) {
            const result = await copy(fromStore(repository, "bob"));
            assert.equal(result.code, 0, result.stderr);
          }
          const shared = await stored(reg, "bob", "bob/shared", "v1");
          assert.equal(shared.manifest.config.digest, image.configDigest);

          // bob's credentials read his repository, alice's write hers.
          const twoOwners = await copy(between("bob/shared", "alice/from-bob", "bob", "alice"));
          assert.equal(twoOwners.code, 0, twoOwners.stderr);
          assert.equal((await stored(reg, "alice", "alice/from-bob", "v1")).digest, shared.digest);
          // alice may pull bob/shared herself, not bob/private.
          const hers = await copy(between("bob/shared", "alice/shared", "alice", "alice"));
          assert.equal(hers.code, 0, hers.stderr);
          assert.equal((await stored(reg, "alice", "alice/shared", "v1")).digest, shared.digest);
          const privateOne = await copy(between("bob/private", "alice/private", "alice", "alice"));
          assertRefused(
            privateOne,
            refusal(mode, "alice", "pull", "bob/private"),
            "alice pulling bob/private",
          );
          await assertNothingStored(reg, "alice/private", shared);
          // bob may not write to alice's namespace.
          const intoAlice = await copy(between("bob/shared", "alice/by-bob", "bob", "bob"));
          // bob may not even read there: skopeo's first look (HEAD of a blob) is refused,
          // a 403 in htpasswd mode, a 401 with insufficient_scope (and no body) with tokens.
          assertRefused(
            intoAlice,
            mode === "token"
              ? [
                `exists in ${host}/alice/by-bob: errors:`,
                "denied: requested access to the resource is denied",
              ]
              : ["failed to read from destination repository alice/by-bob: 403 (Forbidden)"],
            "bob pushing to alice/by-bob",
          );
          await assertNothingStored(reg, "alice/by-bob", shared);

          // What alice pulls back is what bob pushed.
          const inspected = JSON.parse(
            (await run("skopeo", [
              "inspect",
              "--cert-dir",
              certDir,
              "--creds",
              creds("alice"),
              `docker://${host}/alice/from-bob:v1`,
            ], { env: ws.env })).stdout,
          ) as { Digest: string };
          assert.equal(inspected.Digest, shared.digest);
          const dir = join(ws.dir, `skopeo-${mode}`);
          const back = await copy([
            "--src-cert-dir",
            certDir,
            "--src-creds",
            creds("alice"),
            `docker://${host}/alice/from-bob:v1`,
            `oci:${dir}:v1`,
          ]);
          assert.equal(back.code, 0, back.stderr);
          const pulled = await readOciImage(dir);
          assert.equal(pulled.manifestDigest, shared.digest);
          assert.equal(pulled.configDigest, image.configDigest);
          const diffIds = [];
          for (const layer of pulled.manifest.layers) {
            diffIds.push(await diffIdOf(pulled.blobPath(layer.digest), layer.mediaType));
          }
          assert.deepEqual(diffIds, image.diffIds);
          const rootfs = join(ws.dir, `skopeo-${mode}-rootfs`);
          await extractLayers(pulled, rootfs);
          assert.deepEqual(await filesUnder(rootfs, image.files), image.files);
        },
      );

      await t.step("buildah push with --cert-dir and --creds", async () => {
        const digestfile = join(ws.dir, "buildah.digest");
        await build.buildah(
          "push",
          "--quiet",
          "--cert-dir",
          certDir,
          "--creds",
          creds("alice"),
          "--digestfile",
          digestfile,
          image.name,
          `docker://${host}/alice/buildah:v1`,
        );
        const result = await stored(reg, "alice", "alice/buildah", "v1");
        assert.equal(await readDigest(digestfile), result.digest);
        assert.equal(result.manifest.config.digest, image.configDigest);
      });

      await clientStep(
        t,
        "containerd: ctr images pull and push with --hosts-dir (hosts.toml naming the CA) and --user",
        ["containerd", "ctr"],
        async () => {
          await using containerd = await startContainerd(await ws.path(`containerd-${mode}`));
          const hostsDir = await ws.path(`hosts-${mode}`);
          await writeHostsToml(hostsDir, host, reg.certs.caFile);
          const ctr = (args: string[]) => containerd.ctr(args, { allowFailure: true });
          const ref = `${host}/alice/app:v1`;
          const pull = (user: string) =>
            ctr([
              "images",
              "pull",
              "--hosts-dir",
              hostsDir,
              "--user",
              user,
              "--snapshotter",
              "native",
              ref,
            ]);
          const wrong = await pull(creds("alice", "not-her-password"));
          assertRefused(wrong, [
            `ctr: failed to resolve reference "${ref}": ` +
            (mode === "token"
              ? "failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized"
              : `pulling from host ${host} failed with status code [manifests v1]: 401 Unauthorized`),
          ], "ctr with a wrong password");
          // hosts.toml gives the CA to every host ctr tries.
          assert.doesNotMatch(wrong.stderr, /x509/);
          const ok = await pull(creds("alice"));
          assert.equal(ok.code, 0, ok.stderr);
          assert.doesNotMatch(ok.stderr, /x509/);
          // The image containerd recorded is the one podman pushed, byte for byte.
          const listed = await ctr(["images", "ls"]);
          const row = listed.stdout.split("\n").find((line) => line.startsWith(`${ref} `));
          assert.ok(row, listed.stdout);
          assert.ok(row.split(/\s+/).includes(pushed.digest), row);
          const manifest = await ctr(["content", "get", pushed.digest]);
          assert.equal(manifest.stdout, new TextDecoder().decode(pushed.bytes));
          // containerd checks each blob against its digest as it stores it.
          const blobs = (await ctr(["content", "ls", "--quiet"])).stdout.split("\n");
          for (const { digest } of [pushed.manifest.config, ...pushed.manifest.layers]) {
            assert.ok(blobs.includes(digest), `containerd has no ${digest}`);
          }

          const pushAs = async (user: User, repository: string) => {
            const target = `${host}/${repository}:v1`;
            const tag = await ctr(["images", "tag", "--force", ref, target]);
            assert.equal(tag.code, 0, tag.stderr);
            return await ctr([
              "images",
              "push",
              "--hosts-dir",
              hostsDir,
              "--user",
              creds(user),
              target,
            ]);
          };
          const pushedByCtr = await pushAs("alice", "alice/ctr");
          assert.equal(pushedByCtr.code, 0, pushedByCtr.stderr);
          const copy = await stored(reg, "alice", "alice/ctr", "v1");
          assert.equal(copy.digest, pushed.digest);
          assert.deepEqual(copy.bytes, pushed.bytes);

          const carol = await pushAs("carol", "alice/ctr-carol");
          assertRefused(
            carol,
            [
              mode === "token"
                ? "ctr: server message: insufficient_scope: authorization failed"
                : "ctr: unexpected status: 403 Forbidden",
            ],
            "ctr push as carol",
          );
          await assertNothingStored(reg, "alice/ctr-carol", pushed);
        },
      );

      await t.step("anonymous pull: allowed on public/app, refused on alice/app", async () => {
        const published = await run("skopeo", [
          "copy",
          "--quiet",
          "--dest-cert-dir",
          certDir,
          "--dest-creds",
          creds("alice"),
          build.ref(image.name),
          `docker://${host}/public/app:v1`,
        ], { env: ws.env, allowFailure: true });
        assert.equal(published.code, 0, published.stderr);
        const publicImage = await stored(reg, "alice", "public/app", "v1");
        // No credentials anywhere: the workspace's auth file is empty.
        assert.deepEqual(JSON.parse(await Deno.readTextFile(ws.env.REGISTRY_AUTH_FILE)).auths, {});
        const inspect = (repository: string) =>
          run("skopeo", [
            "inspect",
            "--cert-dir",
            certDir,
            `docker://${host}/${repository}:v1`,
          ], { env: ws.env, allowFailure: true });
        const open = await inspect("public/app");
        assert.equal(open.code, 0, open.stderr);
        assert.equal((JSON.parse(open.stdout) as { Digest: string }).Digest, publicImage.digest);
        const anonymous = await ws.store();
        await anonymous.podman(
          "pull",
          "--quiet",
          "--cert-dir",
          certDir,
          `${host}/public/app:v1`,
        );
        const info = await inspectImage(anonymous, `${host}/public/app:v1`);
        assert.equal(info.configDigest, image.configDigest);
        assert.deepEqual(info.diffIds, image.diffIds);

        const closed = await inspect("alice/app");
        assert.equal(closed.code, 1, closed.stderr);
        assertRefused(closed, refusal(mode, null, "pull", "alice/app"), "anonymous inspect");
        const copied = await run("skopeo", [
          "copy",
          "--src-cert-dir",
          certDir,
          `docker://${host}/alice/app:v1`,
          `oci:${join(ws.dir, `anonymous-${mode}`)}:v1`,
        ], { env: ws.env, allowFailure: true });
        assert.equal(copied.code, 1, copied.stderr);
        assertRefused(copied, refusal(mode, null, "pull", "alice/app"), "anonymous copy");
      });

      await t.step("a pull-only user's push is refused by skopeo, podman and buildah", async () => {
        // carol may pull alice/*: she reads alice/app...
        const read = await run("skopeo", [
          "inspect",
          "--cert-dir",
          certDir,
          "--creds",
          creds("carol"),
          `docker://${host}/alice/app:v1`,
        ], { env: ws.env, allowFailure: true });
        assert.equal(read.code, 0, read.stderr);
        assert.equal((JSON.parse(read.stdout) as { Digest: string }).Digest, pushed.digest);
        // ...and every client fails to write there, leaving nothing behind.
        const skopeo = await run("skopeo", [
          "copy",
          "--dest-cert-dir",
          certDir,
          "--dest-creds",
          creds("carol"),
          build.ref(image.name),
          `docker://${host}/alice/carol-skopeo:v1`,
        ], { env: ws.env, allowFailure: true });
        assertRefused(
          skopeo,
          refusal(mode, "carol", "push", "alice/carol-skopeo"),
          "skopeo copy as carol",
        );
        await assertNothingStored(reg, "alice/carol-skopeo", pushed);

        const authfile = join(ws.dir, "carol-auth.json");
        await build.podman(
          "login",
          "--cert-dir",
          certDir,
          "--authfile",
          authfile,
          "-u",
          "carol",
          "-p",
          USERS.carol,
          host,
        );
        const podman = await build.podmanRun([
          "push",
          "--cert-dir",
          certDir,
          "--authfile",
          authfile,
          image.name,
          `${host}/alice/carol-podman:v1`,
        ], { allowFailure: true });
        assertRefused(
          podman,
          refusal(mode, "carol", "push", "alice/carol-podman"),
          "podman push as carol",
        );
        await assertNothingStored(reg, "alice/carol-podman", pushed);

        const buildah = await build.buildahRun([
          "push",
          "--cert-dir",
          certDir,
          "--creds",
          creds("carol"),
          image.name,
          `docker://${host}/alice/carol-buildah:v1`,
        ], { allowFailure: true });
        assertRefused(
          buildah,
          refusal(mode, "carol", "push", "alice/carol-buildah"),
          "buildah push as carol",
        );
        await assertNothingStored(reg, "alice/carol-buildah", pushed);
      });
    },
  );
}
