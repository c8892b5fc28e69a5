/**
 * The schema of the PostgreSQL metadata store, as numbered migrations. `migrate` applies
 * those a database has not seen yet, in order, in one transaction, under an advisory lock:
 * two processes starting at once apply each migration once, and a failed migration leaves
 * the database as it was. A migration, once released, never changes: a change is a new one.
 */

import type { Sql } from "../postgres/client.ts";

/** One step of the schema. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** The advisory lock (two-int form, apart from the bigint keys of the lock manager). */
export const MIGRATION_LOCK: readonly [number, number] = [0x52454749, 1]; // "REGI", 1

/** Every migration, in order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "repositories, layer links, revisions with refs, tags, referrers",
    // Names, digests and tags compare byte-wise (COLLATE "C"), as the other stores list them.
    sql: String.raw`
      create domain repository_name as text collate "C" check (
        length(value) <= 255 and
        value ~ '^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$'
      );
      create domain digest as text collate "C" check (
        value ~ '^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$'
      );
      create domain tag_name as text collate "C" check (
        value ~ '^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$'
      );

      -- A repository has a row exactly while it holds a link, a revision, a tag or a referrer.
      create table repositories (
        name repository_name primary key
      );

      create table layer_links (
        repository repository_name not null references repositories (name),
        digest digest not null,
        primary key (repository, digest)
      );

      create table revisions (
        repository repository_name not null references repositories (name),
        digest digest not null,
        media_type text not null,
        size bigint not null check (size >= 0),
        subject digest,
        -- Records written before refs were known have none (not an empty list).
        has_refs boolean not null,
        primary key (repository, digest)
      );

      create table revision_refs (
        repository repository_name not null,
        revision digest not null,
        position integer not null check (position >= 0),
        ref digest not null,
        primary key (repository, revision, position),
        foreign key (repository, revision) references revisions (repository, digest)
          on delete cascade
      );

      create table tags (
        repository repository_name not null references repositories (name),
        tag tag_name not null,
        digest digest not null,
        primary key (repository, tag)
      );

      create table referrers (
        repository repository_name not null references repositories (name),
        subject digest not null,
        referrer digest not null,
        -- The descriptor as the registry wrote it (text, so it reads back byte for byte);
        -- it must be JSON.
        descriptor text not null check ((descriptor::jsonb) is not null),
        primary key (repository, subject, referrer)
      );
    `,
  },
  {
    version: 2,
    name: "look-ups of a blob across repositories (garbage collection's re-check)",
    sql: String.raw`
      create index layer_links_by_digest on layer_links (digest);
      create index revisions_by_digest on revisions (digest);
    `,
  },
  {
    version: 3,
    name: "when links, revisions and tags were written (garbage collection's push times)",
    // Rows from before this migration count as written now: collection waits a grace window.
    sql: String.raw`
      alter table layer_links add column written_at timestamptz not null default now();
      alter table revisions add column written_at timestamptz not null default now();
      alter table tags add column written_at timestamptz not null default now();
    `,
  },
  {
    version: 4,
    name: "the size of each stored blob (a blob HEAD without asking the bucket)",
    // A row says the blob's bytes are stored in the bucket, with that size; no row says
    // nothing (blobs stored before this migration are not listed). Rows go in after the bytes
    // and out before them, under the blob's lock (src/storage/postgres/blobs.ts).
    sql: String.raw`
      create table blobs (
        digest digest primary key,
        size bigint not null check (size >= 0)
      );
    `,
  },
  {
    version: 5,
    name: "upload sessions (their data stays in the bucket)",
    // A session's repository, start time and SHA-256 state (src/storage/postgres/uploads.ts);
    // no reference to repositories: a session's repository need not exist yet.
    sql: String.raw`
      create table upload_sessions (
        id uuid primary key,
        repository repository_name not null,
        started_at timestamptz not null,
        hash_state text not null
      );
    `,
  },
  {
    version: 6,
    name: "the states of upload data in the bucket (its multipart upload, parts and tail)",
    // The S3 driver's state of an appendable object, kept here instead of an object in the
    // bucket (src/storage/postgres/states.ts); names (with the root directory) compare byte-wise, as the driver lists.
    sql: String.raw`
      create table append_states (
        name text collate "C" primary key,
        state text not null,
        saved_at timestamptz not null default now()
      );
    `,
  },
];

/** Applies the migrations the database lacks; returns the versions it applied (none: up to date). */
export async function migrate(
  sql: Sql,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  return await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK[0]}, ${MIGRATION_LOCK[1]})`;
    await tx`
      create table if not exists schema_migrations (
        version integer primary key check (version > 0),
        name text not null,
        applied_at timestamptz not null default now()
      )`;
    const rows = await tx<{ version: number }[]>`select version from schema_migrations`;
    const done = new Set(rows.map((row) => row.version));
    const applied: number[] = [];
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(migration.version)) continue;
      await tx.unsafe(migration.sql);
      await tx`
        insert into schema_migrations (version, name)
        values (${migration.version}, ${migration.name})`;
      applied.push(migration.version);
    }
    return { applied };
  }).then((result) => result.applied);
}
