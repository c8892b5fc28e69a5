/**
 * Repository metadata stores: one suite run against `LocalMetadataStore` over a memory driver,
 * against the cache layer (`CachedMetadataStore`) over it, and against `PostgresMetadataStore`
 * (a database of this file's own; the cases that write the driver directly do not apply). It covers layer links, manifest
 * revisions (with and without references and subject), tags, referrers, and which repositories
 * exist (nested names; a repository appears with its first object and disappears with its
 * last). Then what is particular to the cache: a delete is never hidden by a cached value, and
 * a read racing a write never leaves a stale entry behind (a driver that holds reads back
 * forces each interleaving).
 */

import assert from "node:assert/strict";
import { CachedMetadataStore } from "../../src/storage/cache.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { layerKey, revisionKey, tagKey, tagsKey } from "../../src/storage/keys.ts";
import { LocalMetadataStore } from "../../src/storage/metadata/local.ts";
import { PostgresMetadataStore } from "../../src/storage/metadata/postgres.ts";
import type { MetadataStore, RevisionRecord } from "../../src/storage/metadata/metadata.ts";
import type { Digest, RepositoryName, Tag } from "../../src/types/oci.ts";
import { testDatabase } from "../helpers/postgres.ts";
import { HeldDriver, raceAtEveryOffset } from "./held_driver.ts";

const name = (value: string) => value as RepositoryName;
const tag = (value: string) => value as Tag;
/** A sha256 digest whose hex is `seed` repeated (seed: one hex character or two). */
const sha256 = (seed: string) => `sha256:${seed.repeat(64 / seed.length)}` as Digest;
const sha512 = (seed: string) => `sha512:${seed.repeat(128 / seed.length)}` as Digest;

const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";
const APP = name("myorg/app");

/** A store under test: how each case of the suite is registered against it. */
interface Variant {
  readonly label: string;
  /** Registers a case that runs on a fresh, empty store. */
  test(title: string, fn: (store: MetadataStore) => Promise<void>): void;
  /**
   * Registers a case that also reads or writes the driver under the store; null when the
   * store has no driver (those cases do not apply).
   */
  readonly driverTest: ((title: string, fn: DriverCase) => void) | null;
}
type DriverCase = (store: MetadataStore, driver: MemoryDriver) => Promise<void>;

/** A variant over a fresh memory driver per case. */
function overDriver(label: string, make: (driver: MemoryDriver) => MetadataStore): Variant {
  const driverTest = (title: string, fn: DriverCase) =>
    Deno.test(`${label} metadata: ${title}`, () => {
      const driver = new MemoryDriver();
      return fn(make(driver), driver);
    });
  return { label, driverTest, test: (title, fn) => driverTest(title, (store) => fn(store)) };
}

const pg = await testDatabase();
/** The PostgreSQL store: one database for this file, emptied before each case. */
const postgresVariant: Variant = {
  label: "postgres",
  driverTest: null,
  test(title, fn) {
    pg.test(`postgres metadata: ${title}`, async () => {
      const sql = pg.pool();
      try {
        const store = await PostgresMetadataStore.open(sql);
        await sql`
          truncate repositories, layer_links, revisions, revision_refs, tags, referrers`;
        await fn(store);
      } finally {
        await sql.end();
      }
    });
  },
};

const VARIANTS: readonly Variant[] = [
  overDriver("local", (driver) => new LocalMetadataStore(driver)),
  overDriver("cached", (driver) => new CachedMetadataStore(new LocalMetadataStore(driver))),
  postgresVariant,
];

for (const variant of VARIANTS) {
  const test = variant.test;
  /** A case that needs the driver under the store: only where there is one. */
  const driverTest = (title: string, fn: DriverCase) => variant.driverTest?.(title, fn);

  // --- links ---

  test("hasLayer is false until linkLayer, true after", async (store) => {
    const digest = sha256("a1");
    assert.equal(await store.hasLayer(APP, digest), false);
    await store.linkLayer(APP, digest);
    assert.equal(await store.hasLayer(APP, digest), true);
    assert.equal(await store.hasLayer(name("other"), digest), false, "links are per repository");
    assert.equal(await store.hasLayer(APP, sha256("a2")), false);
  });

  driverTest("linkLayer is idempotent", async (store, driver) => {
    const digest = sha512("b2");
    await store.linkLayer(APP, digest);
    await store.linkLayer(APP, digest);
    assert.equal(await store.hasLayer(APP, digest), true);
    assert.deepEqual(await driver.list("repositories/myorg/app/_layers/sha512"), [
      digest.slice(7),
    ]);
  });

  test("unlinkLayer removes a link and tells whether there was one", async (store) => {
    const digest = sha256("c3");
    assert.equal(await store.unlinkLayer(APP, digest), false);
    await store.linkLayer(APP, digest);
    assert.equal(await store.hasLayer(APP, digest), true);
    assert.equal(await store.unlinkLayer(APP, digest), true);
    assert.equal(await store.hasLayer(APP, digest), false);
    assert.equal(await store.unlinkLayer(APP, digest), false);
  });

  // --- revisions ---

  test("a revision without refs or subject reads back exactly", async (store) => {
    const digest = sha256("d4");
    assert.equal(await store.getRevision(APP, digest), null);
    const record: RevisionRecord = { mediaType: MANIFEST, size: 123 };
    await store.putRevision(APP, digest, record);
    assert.deepEqual(await store.getRevision(APP, digest), record);
  });

  test("a revision with refs and subject reads back exactly", async (store) => {
    const digest = sha256("e5");
    const record: RevisionRecord = {
      mediaType: MANIFEST,
      size: 456,
      subject: sha256("01"),
      refs: [sha256("02"), sha512("03")],
    };
    await store.putRevision(APP, digest, record);
    assert.deepEqual(await store.getRevision(APP, digest), record);
  });

  test("putRevision replaces the record of the same digest", async (store) => {
    const digest = sha256("f6");
    await store.putRevision(APP, digest, { mediaType: MANIFEST, size: 1 });
    await store.putRevision(APP, digest, { mediaType: INDEX, size: 2, refs: [] });
    assert.deepEqual(await store.getRevision(APP, digest), {
      mediaType: INDEX,
      size: 2,
      refs: [],
    });
  });

  test("a revision is per repository", async (store) => {
    const digest = sha256("07");
    await store.putRevision(APP, digest, { mediaType: MANIFEST, size: 1 });
    assert.equal(await store.getRevision(name("myorg/other"), digest), null);
  });

  test("deleteRevision removes the record and tells whether there was one", async (store) => {
    const digest = sha256("08");
    assert.equal(await store.deleteRevision(APP, digest), false);
    await store.putRevision(APP, digest, { mediaType: MANIFEST, size: 1 });
    assert.equal(await store.deleteRevision(APP, digest), true);
    assert.equal(await store.getRevision(APP, digest), null);
    assert.equal(await store.deleteRevision(APP, digest), false);
  });

  test("listRevisions gives every revision in byte order, sha256 before sha512", async (store) => {
    const digests = [sha512("00"), sha256("ff"), sha256("0a"), sha256("a0")];
    for (const digest of digests) {
      await store.putRevision(APP, digest, { mediaType: MANIFEST, size: 1 });
    }
    assert.deepEqual(await store.listRevisions(APP), [
      sha256("0a"),
      sha256("a0"),
      sha256("ff"),
      sha512("00"),
    ]);
    assert.deepEqual(await store.listRevisions(name("unknown")), []);
  });

  driverTest("an unreadable revision record reads as null", async (store, driver) => {
    const digest = sha256("09");
    await driver.put(revisionKey(APP, digest), "{not json");
    assert.equal(await store.getRevision(APP, digest), null);
    await driver.put(revisionKey(APP, sha256("0b")), JSON.stringify({ size: 3 }));
    assert.equal(await store.getRevision(APP, sha256("0b")), null);
  });

  driverTest(
    "a record's malformed refs are dropped, its malformed subject ignored",
    async (store, driver) => {
      const digest = sha256("0c");
      await driver.put(
        revisionKey(APP, digest),
        JSON.stringify({ mediaType: MANIFEST, size: 3, refs: ["nope"], subject: "sha256:zz" }),
      );
      assert.deepEqual(await store.getRevision(APP, digest), { mediaType: MANIFEST, size: 3 });
    },
  );

  // --- tags ---

  test("putTag then getTag gives the digest; an unknown tag is null", async (store) => {
    assert.equal(await store.getTag(APP, tag("latest")), null);
    await store.putTag(APP, tag("latest"), sha256("11"));
    assert.equal(await store.getTag(APP, tag("latest")), sha256("11"));
    assert.equal(await store.getTag(APP, tag("other")), null);
    assert.equal(await store.getTag(name("elsewhere"), tag("latest")), null);
  });

  test("putTag moves a tag to another digest", async (store) => {
    await store.putTag(APP, tag("v1"), sha256("12"));
    assert.equal(await store.getTag(APP, tag("v1")), sha256("12"));
    await store.putTag(APP, tag("v1"), sha512("13"));
    assert.equal(await store.getTag(APP, tag("v1")), sha512("13"));
    assert.deepEqual(await store.listTags(APP), ["v1"]);
  });

  test("deleteTag removes a tag and tells whether there was one", async (store) => {
    await store.putTag(APP, tag("keep"), sha256("14"));
    await store.putTag(APP, tag("gone"), sha256("14"));
    assert.equal(await store.deleteTag(APP, tag("gone")), true);
    assert.equal(await store.getTag(APP, tag("gone")), null);
    assert.equal(await store.deleteTag(APP, tag("gone")), false);
    assert.deepEqual(await store.listTags(APP), ["keep"]);
  });

  test("listTags is in byte order (digits, upper case, underscore, lower case)", async (store) => {
    for (const value of ["b", "a", "Z", "_x", "10", "9", "a.b", "a-b", "A"]) {
      await store.putTag(APP, tag(value), sha256("15"));
    }
    assert.deepEqual(await store.listTags(APP), [
      "10",
      "9",
      "A",
      "Z",
      "_x",
      "a",
      "a-b",
      "a.b",
      "b",
    ]);
  });

  test("listTags is null for an unknown repository, empty for one without tags", async (store) => {
    assert.equal(await store.listTags(APP), null);
    await store.linkLayer(APP, sha256("16"));
    assert.deepEqual(await store.listTags(APP), []);
  });

  test("listTags follows puts and deletes after a first listing", async (store) => {
    await store.putTag(APP, tag("b"), sha256("17"));
    assert.deepEqual(await store.listTags(APP), ["b"]);
    await store.putTag(APP, tag("a"), sha256("17"));
    await store.putTag(APP, tag("c"), sha256("17"));
    assert.deepEqual(await store.listTags(APP), ["a", "b", "c"]);
    await store.deleteTag(APP, tag("b"));
    assert.deepEqual(await store.listTags(APP), ["a", "c"]);
    await store.deleteTag(APP, tag("a"));
    await store.deleteTag(APP, tag("c"));
    assert.equal(await store.listTags(APP), null, "the repository held only tags");
  });

  driverTest("a tag object that does not hold a digest reads as null", async (store, driver) => {
    await driver.put(tagKey(APP, tag("broken")), "not a digest");
    assert.equal(await store.getTag(APP, tag("broken")), null);
    await driver.put(tagKey(APP, tag("spaced")), `${sha256("18")}\n`);
    assert.equal(await store.getTag(APP, tag("spaced")), sha256("18"), "trailing space trimmed");
  });

  // --- referrers ---

  test("listReferrers gives the descriptors ordered by referrer digest", async (store) => {
    const subject = sha256("21");
    const referrers = [sha512("01"), sha256("ff"), sha256("00"), sha256("7f")];
    for (const referrer of referrers) {
      await store.putReferrer(APP, subject, referrer, JSON.stringify({ digest: referrer }));
    }
    const listed = (await store.listReferrers(APP, subject)).map((text) => JSON.parse(text).digest);
    assert.deepEqual(listed, [sha256("00"), sha256("7f"), sha256("ff"), sha512("01")]);
  });

  test("listReferrers is empty for an unknown subject or repository", async (store) => {
    await store.putReferrer(APP, sha256("22"), sha256("23"), "{}");
    assert.deepEqual(await store.listReferrers(APP, sha256("24")), []);
    assert.deepEqual(await store.listReferrers(name("nowhere"), sha256("22")), []);
  });

  test("putReferrer of the same referrer replaces its descriptor", async (store) => {
    const subject = sha256("25");
    await store.putReferrer(APP, subject, sha256("26"), `{"v":1}`);
    await store.putReferrer(APP, subject, sha256("26"), `{"v":2}`);
    assert.deepEqual(await store.listReferrers(APP, subject), [`{"v":2}`]);
  });

  test("deleteReferrer removes one entry; deleting an absent one is no error", async (store) => {
    const subject = sha256("27");
    await store.putReferrer(APP, subject, sha256("28"), `"a"`);
    await store.putReferrer(APP, subject, sha256("29"), `"b"`);
    await store.deleteReferrer(APP, subject, sha256("28"));
    assert.deepEqual(await store.listReferrers(APP, subject), [`"b"`]);
    await store.deleteReferrer(APP, subject, sha256("28"));
    await store.deleteReferrer(APP, sha256("2a"), sha256("2b"));
    assert.deepEqual(await store.listReferrers(APP, subject), [`"b"`]);
  });

  // --- which repositories exist ---

  test("listRepositories lists nested names in byte order, parents only when they hold something", async (store) => {
    assert.deepEqual(await store.listRepositories(), []);
    for (const value of ["b", "a/b/c", "a", "a/b-c", "a/b/d", "z9/y"]) {
      await store.linkLayer(name(value), sha256("31"));
    }
    assert.deepEqual(await store.listRepositories(), ["a", "a/b-c", "a/b/c", "a/b/d", "b", "z9/y"]);
    assert.equal(await store.repositoryExists(name("a/b")), false, "only a prefix of others");
    assert.equal(await store.repositoryExists(name("z9")), false);
    assert.equal(await store.repositoryExists(name("a/b/c")), true);
  });

  test("listLayers and removeRepository: one repository's links, and all it holds gone", async (store) => {
    const nested = name("myorg/app/sub");
    await store.linkLayer(APP, sha256("b2"));
    await store.linkLayer(APP, sha256("b1"));
    await store.linkLayer(nested, sha256("b3"));
    await store.putRevision(APP, sha256("b4"), { mediaType: MANIFEST, size: 10 });
    await store.putTag(APP, tag("v1"), sha256("b4"));
    await store.putReferrer(APP, sha256("b4"), sha256("b5"), `"r"`);
    assert.deepEqual(await store.listLayers(APP), [sha256("b1"), sha256("b2")]);
    assert.equal(await store.removeRepository(APP), true);
    assert.deepEqual(await store.listLayers(APP), []);
    assert.equal(await store.getTag(APP, tag("v1")), null);
    assert.equal(await store.getRevision(APP, sha256("b4")), null);
    assert.deepEqual(await store.listReferrers(APP, sha256("b4")), []);
    assert.equal(await store.repositoryExists(APP), false);
    assert.deepEqual(await store.listRepositories(), [nested], "a nested repository stays");
    assert.equal(await store.removeRepository(APP), false, "nothing left to remove");
  });

  test("repositoriesAfter gives the names after any mark in byte order", async (store) => {
    const names = ["b", "a/b/c", "a", "a-b", "a.b", "a/b", "a/b-c", "a0", "a/b.c/d", "ab/c"];
    for (const value of names) await store.linkLayer(name(value), sha256("34"));
    const sorted = [...names].sort();
    assert.deepEqual(await store.listRepositories(), sorted);
    const marks = [null, "", "a", "a-", "a/", "a/b", "a/b/", "a/b/c", "a/c", "a0", "ab", "b", "zz"];
    for (const after of [...marks, ...names]) {
      const got: string[] = [];
      for await (const repository of store.repositoriesAfter(after)) got.push(repository);
      assert.deepEqual(got, sorted.filter((n) => after === null || n > after), `after ${after}`);
    }
  });

  test("a parent repository going away leaves its nested repositories listed", async (store) => {
    await store.linkLayer(name("a"), sha256("32"));
    await store.linkLayer(name("a/b"), sha256("32"));
    assert.deepEqual(await store.listRepositories(), ["a", "a/b"]);
    await store.unlinkLayer(name("a"), sha256("32"));
    assert.deepEqual(await store.listRepositories(), ["a/b"]);
    assert.equal(await store.repositoryExists(name("a")), false);
    assert.equal(await store.repositoryExists(name("a/b")), true);
  });

  driverTest("upload sessions and blobs make no repository", async (store, driver) => {
    await driver.put("uploads/0f0e0d0c-0b0a-4098-8776-655443322110/repository", "app");
    await driver.put(`blobs/sha256/33/${"33".repeat(32)}`, "bytes");
    assert.deepEqual(await store.listRepositories(), []);
  });

  const kinds: {
    kind: string;
    write: (store: MetadataStore, repo: RepositoryName) => Promise<void>;
    remove: (store: MetadataStore, repo: RepositoryName) => Promise<unknown>;
  }[] = [
    {
      kind: "link",
      write: (s, r) => s.linkLayer(r, sha256("41")),
      remove: (s, r) => s.unlinkLayer(r, sha256("41")),
    },
    {
      kind: "revision",
      write: (s, r) => s.putRevision(r, sha256("42"), { mediaType: MANIFEST, size: 1 }),
      remove: (s, r) => s.deleteRevision(r, sha256("42")),
    },
    {
      kind: "tag",
      write: (s, r) => s.putTag(r, tag("t"), sha256("43")),
      remove: (s, r) => s.deleteTag(r, tag("t")),
    },
    {
      kind: "referrer",
      write: (s, r) => s.putReferrer(r, sha256("44"), sha256("45"), "{}"),
      remove: (s, r) => s.deleteReferrer(r, sha256("44"), sha256("45")),
    },
  ];
  for (const { kind, write, remove } of kinds) {
    test(`a repository appears with its first ${kind} and disappears with its last`, async (store) => {
      const repo = name("team/nested/app");
      // Listed (and so possibly cached) before anything is written.
      assert.equal(await store.repositoryExists(repo), false);
      assert.deepEqual(await store.listRepositories(), []);
      await write(store, repo);
      assert.equal(await store.repositoryExists(repo), true);
      assert.deepEqual(await store.listRepositories(), [repo]);
      await remove(store, repo);
      assert.equal(await store.repositoryExists(repo), false);
      assert.deepEqual(await store.listRepositories(), []);
      assert.equal(await store.listTags(repo), null);
    });
  }

  test("a repository stays while anything is left in it", async (store) => {
    await store.linkLayer(APP, sha256("46"));
    await store.putTag(APP, tag("t"), sha256("47"));
    await store.putRevision(APP, sha256("47"), { mediaType: MANIFEST, size: 1 });
    assert.deepEqual(await store.listRepositories(), [APP]);
    await store.deleteTag(APP, tag("t"));
    await store.deleteRevision(APP, sha256("47"));
    assert.deepEqual(await store.listRepositories(), [APP], "the link is left");
    assert.deepEqual(await store.listTags(APP), []);
    await store.unlinkLayer(APP, sha256("46"));
    assert.deepEqual(await store.listRepositories(), []);
  });
}

// --- the cache layer in particular ---

function cachedOver(driver: MemoryDriver): MetadataStore {
  return new CachedMetadataStore(new LocalMetadataStore(driver));
}

Deno.test("cache: a deleted tag, link, revision or tag list entry is never served from the cache", async () => {
  const driver = new MemoryDriver();
  const store = cachedOver(driver);
  const digest = sha256("51");
  await store.linkLayer(APP, digest);
  await store.putRevision(APP, digest, { mediaType: MANIFEST, size: 1 });
  await store.putTag(APP, tag("t"), digest);
  // Read everything once so that every cache holds it.
  assert.equal(await store.hasLayer(APP, digest), true);
  assert.ok(await store.getRevision(APP, digest));
  assert.equal(await store.getTag(APP, tag("t")), digest);
  assert.deepEqual(await store.listTags(APP), ["t"]);
  assert.deepEqual(await store.listRepositories(), [APP]);

  assert.equal(await store.deleteTag(APP, tag("t")), true);
  assert.equal(await store.getTag(APP, tag("t")), null);
  assert.deepEqual(await store.listTags(APP), []);
  assert.equal(await store.deleteRevision(APP, digest), true);
  assert.equal(await store.getRevision(APP, digest), null);
  assert.equal(await store.unlinkLayer(APP, digest), true);
  assert.equal(await store.hasLayer(APP, digest), false);
  assert.equal(await store.repositoryExists(APP), false);
  assert.deepEqual(await store.listRepositories(), []);
  assert.equal(await store.listTags(APP), null);
});

Deno.test("cache: values cached by reads are served without the driver", async () => {
  const driver = new MemoryDriver();
  const digest = sha256("52");
  const local = new LocalMetadataStore(driver);
  await local.putTag(APP, tag("t"), digest);
  await local.linkLayer(APP, digest);
  const store = cachedOver(driver);
  assert.equal(await store.getTag(APP, tag("t")), digest);
  assert.equal(await store.hasLayer(APP, digest), true);
  // Removed behind the cache's back (only possible with a second writer): still cached.
  await driver.deleteAll("repositories");
  assert.equal(await store.getTag(APP, tag("t")), digest);
  assert.equal(await store.hasLayer(APP, digest), true);
});

Deno.test("cache: a getTag racing a putTag leaves no stale entry", async () => {
  const driver = new HeldDriver();
  await new LocalMetadataStore(driver).putTag(APP, tag("t"), sha256("61"));
  const store = cachedOver(driver);
  const release = driver.hold("get", tagKey(APP, tag("t")));
  const racing = store.getTag(APP, tag("t"));
  await driver.whenHeld("get", tagKey(APP, tag("t")));
  await store.putTag(APP, tag("t"), sha256("62"));
  release();
  assert.equal(await racing, sha256("61"), "the racing read started before the write");
  assert.equal(await store.getTag(APP, tag("t")), sha256("62"));
  assert.equal(await store.getTag(APP, tag("t")), sha256("62"));
});

Deno.test("cache: a getTag racing a deleteTag leaves no stale entry", async () => {
  const driver = new HeldDriver();
  await new LocalMetadataStore(driver).putTag(APP, tag("t"), sha256("63"));
  const store = cachedOver(driver);
  const release = driver.hold("get", tagKey(APP, tag("t")));
  const racing = store.getTag(APP, tag("t"));
  await driver.whenHeld("get", tagKey(APP, tag("t")));
  assert.equal(await store.deleteTag(APP, tag("t")), true);
  release();
  assert.equal(await racing, sha256("63"));
  assert.equal(await store.getTag(APP, tag("t")), null);
});

Deno.test("cache: a getRevision racing a putRevision leaves no stale entry", async () => {
  const driver = new HeldDriver();
  const digest = sha256("64");
  await new LocalMetadataStore(driver).putRevision(APP, digest, { mediaType: MANIFEST, size: 1 });
  const store = cachedOver(driver);
  const release = driver.hold("get", revisionKey(APP, digest));
  const racing = store.getRevision(APP, digest);
  await driver.whenHeld("get", revisionKey(APP, digest));
  const filled: RevisionRecord = { mediaType: MANIFEST, size: 1, refs: [sha256("65")] };
  await store.putRevision(APP, digest, filled);
  release();
  assert.deepEqual(await racing, { mediaType: MANIFEST, size: 1 });
  assert.deepEqual(await store.getRevision(APP, digest), filled);
});

Deno.test("cache: a getRevision racing a deleteRevision leaves no stale entry", async () => {
  const driver = new HeldDriver();
  const digest = sha256("66");
  await new LocalMetadataStore(driver).putRevision(APP, digest, { mediaType: MANIFEST, size: 1 });
  const store = cachedOver(driver);
  const release = driver.hold("get", revisionKey(APP, digest));
  const racing = store.getRevision(APP, digest);
  await driver.whenHeld("get", revisionKey(APP, digest));
  assert.equal(await store.deleteRevision(APP, digest), true);
  release();
  assert.ok(await racing);
  assert.equal(await store.getRevision(APP, digest), null);
});

Deno.test("cache: a hasLayer racing an unlinkLayer leaves no stale entry", async () => {
  const driver = new HeldDriver();
  const digest = sha256("67");
  await new LocalMetadataStore(driver).linkLayer(APP, digest);
  const store = cachedOver(driver);
  const release = driver.hold("stat", layerKey(APP, digest));
  const racing = store.hasLayer(APP, digest);
  await driver.whenHeld("stat", layerKey(APP, digest));
  assert.equal(await store.unlinkLayer(APP, digest), true);
  release();
  assert.equal(await racing, true);
  assert.equal(await store.hasLayer(APP, digest), false);
});

Deno.test("cache: a listTags racing a putTag leaves no stale tag list", async () => {
  const driver = new HeldDriver();
  await new LocalMetadataStore(driver).putTag(APP, tag("a"), sha256("68"));
  const store = cachedOver(driver);
  const release = driver.hold("list", tagsKey(APP));
  const racing = store.listTags(APP);
  await driver.whenHeld("list", tagsKey(APP));
  await store.putTag(APP, tag("b"), sha256("68"));
  release();
  assert.deepEqual(await racing, ["a"]);
  assert.deepEqual(await store.listTags(APP), ["a", "b"]);
});

Deno.test("cache: a listRepositories racing the first write of a repository leaves no stale list", async () => {
  const driver = new HeldDriver();
  await new LocalMetadataStore(driver).linkLayer(name("first"), sha256("69"));
  const store = cachedOver(driver);
  const release = driver.hold("list", "repositories");
  const racing = store.listRepositories();
  await driver.whenHeld("list", "repositories");
  await store.putTag(name("second"), tag("t"), sha256("69"));
  release();
  assert.deepEqual(await racing, ["first"]);
  assert.deepEqual(await store.listRepositories(), ["first", "second"]);
  assert.equal(await store.repositoryExists(name("second")), true);
});

Deno.test("cache: a listRepositories racing the last delete of a repository leaves no stale list", async () => {
  const driver = new HeldDriver();
  await new LocalMetadataStore(driver).putTag(name("gone"), tag("t"), sha256("6a"));
  const store = cachedOver(driver);
  // Held once the walk saw that `gone` holds something (`_manifests`).
  const release = driver.hold("list", "repositories/gone");
  const racing = store.listRepositories();
  await driver.whenHeld("list", "repositories/gone");
  await store.deleteTag(name("gone"), tag("t"));
  release();
  assert.deepEqual(await racing, ["gone"]);
  assert.deepEqual(await store.listRepositories(), []);
  assert.equal(await store.repositoryExists(name("gone")), false);
});

// The reads below start while the write is already inside the store, and resume at every
// microtask around its end.

Deno.test("cache: a getTag starting during a putTag never caches the old digest", async () => {
  await raceAtEveryOffset(async () => {
    const driver = new HeldDriver();
    await new LocalMetadataStore(driver).putTag(APP, tag("t"), sha256("73"));
    const store = cachedOver(driver);
    return {
      driver,
      race: {
        writeCall: "put",
        writeKey: tagKey(APP, tag("t")),
        readCall: "get",
        readKey: tagKey(APP, tag("t")),
        write: () => store.putTag(APP, tag("t"), sha256("74")),
        read: () => store.getTag(APP, tag("t")),
        check: async () => assert.equal(await store.getTag(APP, tag("t")), sha256("74")),
      },
    };
  });
});

Deno.test("cache: a getRevision starting during a deleteRevision never caches the record", async () => {
  const digest = sha256("75");
  await raceAtEveryOffset(async () => {
    const driver = new HeldDriver();
    await new LocalMetadataStore(driver).putRevision(APP, digest, { mediaType: MANIFEST, size: 1 });
    const store = cachedOver(driver);
    return {
      driver,
      race: {
        writeCall: "delete",
        writeKey: revisionKey(APP, digest),
        readCall: "get",
        readKey: revisionKey(APP, digest),
        write: () => store.deleteRevision(APP, digest),
        read: () => store.getRevision(APP, digest),
        check: async () => assert.equal(await store.getRevision(APP, digest), null),
      },
    };
  });
});

Deno.test("cache: a listTags starting during a putTag never caches a list without the tag", async () => {
  await raceAtEveryOffset(async () => {
    const driver = new HeldDriver();
    await new LocalMetadataStore(driver).putTag(APP, tag("a"), sha256("71"));
    const store = cachedOver(driver);
    return {
      driver,
      race: {
        writeCall: "put",
        writeKey: tagKey(APP, tag("b")),
        readCall: "list",
        readKey: tagsKey(APP),
        write: () => store.putTag(APP, tag("b"), sha256("71")),
        read: () => store.listTags(APP),
        check: async () => assert.deepEqual(await store.listTags(APP), ["a", "b"]),
      },
    };
  });
});

Deno.test("cache: a listRepositories starting during a first write never caches a list without it", async () => {
  await raceAtEveryOffset(async () => {
    const driver = new HeldDriver();
    await new LocalMetadataStore(driver).linkLayer(name("first"), sha256("72"));
    const store = cachedOver(driver);
    return {
      driver,
      race: {
        writeCall: "put",
        writeKey: layerKey(name("second"), sha256("72")),
        readCall: "list",
        readKey: "repositories",
        write: () => store.linkLayer(name("second"), sha256("72")),
        read: () => store.listRepositories(),
        check: async () => assert.deepEqual(await store.listRepositories(), ["first", "second"]),
      },
    };
  });
});

Deno.test("repositoriesAfter reads only as much of the store as its consumer takes", async () => {
  let lists = 0;
  class CountingDriver extends MemoryDriver {
    override list(prefix: string, options?: Parameters<MemoryDriver["list"]>[1]) {
      lists++;
      return super.list(prefix, options);
    }
  }
  const store = new LocalMetadataStore(new CountingDriver());
  for (let i = 0; i < 100; i++) {
    await store.linkLayer(name(`org${i % 10}/app${String(i).padStart(3, "0")}`), sha256("35"));
  }
  lists = 0;
  const first: string[] = [];
  for await (const repository of store.repositoriesAfter(null)) {
    first.push(repository);
    if (first.length === 3) break;
  }
  assert.deepEqual(first, ["org0/app000", "org0/app010", "org0/app020"]);
  assert.ok(lists <= 8, `${lists} folder listings for three names`);
  lists = 0;
  const later: string[] = [];
  for await (const repository of store.repositoriesAfter("org8/app098")) later.push(repository);
  assert.deepEqual(later, [
    "org9/app009",
    "org9/app019",
    "org9/app029",
    "org9/app039",
    "org9/app049",
    "org9/app059",
    "org9/app069",
    "org9/app079",
    "org9/app089",
    "org9/app099",
  ]);
  assert.ok(lists <= 25, `${lists} folder listings after a mark near the end`);
});
