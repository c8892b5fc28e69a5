/**
 * Repository metadata in PostgreSQL (schema: `migrations.ts`). The database states the
 * invariants it can: names, digests and tags have their formats, a link, revision, tag or
 * referrer belongs to a repository row, a revision's refs belong to the revision. A
 * repository's row exists exactly while it holds something: each write adds it in the same
 * transaction, each removal drops it in the same transaction once it holds nothing.
 *
 * Several registry processes can share one database; what serializes their writes to a
 * repository is the lock manager over advisory locks (`../postgres/locks.ts`), as the
 * services take the repository's lock around each write. Without it a write racing the
 * removal of a repository's last entry fails (a foreign-key violation, retried here a few
 * times) rather than losing data.
 */

import type { Digest, RepositoryName, Tag } from "../../types/oci.ts";
import {
  databaseFailure,
  type Sql,
  sqlState,
  transaction,
  type TransactionSql,
} from "../postgres/client.ts";
import { blobKey } from "../keys.ts";
import type { MetadataStore, RevisionRecord, WrittenKind } from "./metadata.ts";
import { migrate } from "./migrations.ts";

/** How many names one query of `repositoriesAfter` reads. */
const PAGE = 100;
/** Attempts of a write transaction that meets a concurrent one (FK violation, deadlock). */
const ATTEMPTS = 5;
/** foreign_key_violation, serialization_failure, deadlock_detected. */
const RETRIED = new Set(["23503", "40001", "40P01"]);

/** Repository metadata in a PostgreSQL database. */
export class PostgresMetadataStore implements MetadataStore {
  readonly #sql: Sql;

  /** A store over a pool whose database is migrated (see `open`). */
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Migrates the database of `sql` to the current schema, then makes a store over it. */
  static async open(sql: Sql): Promise<PostgresMetadataStore> {
    await migrate(sql);
    return new PostgresMetadataStore(sql);
  }

  /** @inheritdoc */
  async hasLayer(name: RepositoryName, digest: Digest): Promise<boolean> {
    const rows = await this.#read`
      select 1 from layer_links where repository = ${name} and digest = ${digest}`;
    return rows.length > 0;
  }

  /**
   * Whether any repository links the blob or holds it as a revision, or the data of a live
   * upload is stored at the blob's key (the S3 driver names it `@<root>/<blob key>` in the
   * upload data's state, saved under the blob's lock: see `WholeBytes`): one query, which
   * sees every replica's writes (garbage collection's re-check under the blob's lock). The
   * states are those of live uploads only, a small table.
   */
  readonly blobReferenced = async (digest: Digest): Promise<boolean> => {
    // A digest has no `%`, `_` or `\`: the pattern needs no escape.
    const stored = `%"@%${blobKey(digest)}"%`;
    const rows = await this.#read`
      select 1 where exists (select 1 from layer_links where digest = ${digest})
        or exists (select 1 from revisions where digest = ${digest})
        or exists (select 1 from append_states where state like ${stored})`;
    return rows.length > 0;
  };

  /** @inheritdoc */
  async writtenAt(kind: WrittenKind, name: RepositoryName, key: string): Promise<number | null> {
    const rows = kind === "tag"
      ? await this.#read<{ at: Date }[]>`
          select written_at as at from tags where repository = ${name} and tag = ${key}`
      : kind === "revision"
      ? await this.#read<{ at: Date }[]>`
          select written_at as at from revisions where repository = ${name} and digest = ${key}`
      : await this.#read<{ at: Date }[]>`
          select written_at as at from layer_links where repository = ${name} and digest = ${key}`;
    return rows[0] === undefined ? null : rows[0].at.getTime();
  }

  /** @inheritdoc */
  linkLayer(name: RepositoryName, digest: Digest): Promise<void> {
    return this.#write(name, async (tx) => {
      await tx`
        insert into layer_links (repository, digest) values (${name}, ${digest})
        on conflict do nothing`;
    });
  }

  /** @inheritdoc */
  unlinkLayer(name: RepositoryName, digest: Digest): Promise<boolean> {
    return this.#remove(name, async (tx) => {
      const rows = await tx`
        delete from layer_links where repository = ${name} and digest = ${digest}`;
      return rows.count > 0;
    });
  }

  /** @inheritdoc */
  async listLayers(name: RepositoryName): Promise<readonly Digest[]> {
    const rows = await this.#read<{ digest: Digest }[]>`
      select digest::text as digest from layer_links where repository = ${name}
      order by digest`;
    return rows.map((row) => row.digest);
  }

  /** @inheritdoc */
  async getRevision(name: RepositoryName, digest: Digest): Promise<RevisionRecord | null> {
    const rows = await this.#read<
      {
        media_type: string;
        size: string | number;
        subject: string | null;
        has_refs: boolean;
        refs: string[] | null;
      }[]
    >`
      select r.media_type, r.size, r.subject::text as subject, r.has_refs,
        array(
          select f.ref::text from revision_refs f
          where f.repository = r.repository and f.revision = r.digest
          order by f.position
        ) as refs
      from revisions r where r.repository = ${name} and r.digest = ${digest}`;
    const row = rows[0];
    if (row === undefined) return null;
    const record: { -readonly [K in keyof RevisionRecord]: RevisionRecord[K] } = {
      mediaType: row.media_type,
      size: Number(row.size),
    };
    if (row.subject !== null) record.subject = row.subject as Digest;
    if (row.has_refs) record.refs = (row.refs ?? []) as Digest[];
    return record;
  }

  /** @inheritdoc */
  putRevision(name: RepositoryName, digest: Digest, record: RevisionRecord): Promise<void> {
    return this.#write(name, async (tx) => {
      await tx`
        insert into revisions (repository, digest, media_type, size, subject, has_refs)
        values (${name}, ${digest}, ${record.mediaType}, ${record.size},
          ${record.subject ?? null}, ${record.refs !== undefined})
        on conflict (repository, digest) do update set
          media_type = excluded.media_type, size = excluded.size,
          subject = excluded.subject, has_refs = excluded.has_refs, written_at = now()`;
      await tx`delete from revision_refs where repository = ${name} and revision = ${digest}`;
      const refs = record.refs ?? [];
      if (refs.length > 0) {
        await tx`
          insert into revision_refs (repository, revision, position, ref)
          select ${name}, ${digest}, u.position - 1, u.ref
          from unnest(${tx.array([...refs])}::text[]) with ordinality as u(ref, position)`;
      }
    });
  }

  /** @inheritdoc */
  deleteRevision(name: RepositoryName, digest: Digest): Promise<boolean> {
    return this.#remove(name, async (tx) => {
      const rows = await tx`
        delete from revisions where repository = ${name} and digest = ${digest}`;
      return rows.count > 0;
    });
  }

  /** @inheritdoc */
  async listRevisions(name: RepositoryName): Promise<readonly Digest[]> {
    const rows = await this.#read<{ digest: Digest }[]>`
      select digest::text as digest from revisions where repository = ${name}
      order by digest`;
    return rows.map((row) => row.digest);
  }

  /** @inheritdoc */
  async getTag(name: RepositoryName, tag: Tag): Promise<Digest | null> {
    const rows = await this.#read<{ digest: Digest }[]>`
      select digest::text as digest from tags where repository = ${name} and tag = ${tag}`;
    return rows[0]?.digest ?? null;
  }

  /** @inheritdoc */
  putTag(name: RepositoryName, tag: Tag, digest: Digest): Promise<void> {
    return this.#write(name, async (tx) => {
      await tx`
        insert into tags (repository, tag, digest) values (${name}, ${tag}, ${digest})
        on conflict (repository, tag) do update set digest = excluded.digest, written_at = now()`;
    });
  }

  /** @inheritdoc */
  deleteTag(name: RepositoryName, tag: Tag): Promise<boolean> {
    return this.#remove(name, async (tx) => {
      const rows = await tx`delete from tags where repository = ${name} and tag = ${tag}`;
      return rows.count > 0;
    });
  }

  /** @inheritdoc */
  async listTags(name: RepositoryName): Promise<readonly Tag[] | null> {
    const rows = await this.#read<{ tags: Tag[] }[]>`
      select array(
        select t.tag::text from tags t where t.repository = r.name order by t.tag
      ) as tags
      from repositories r where r.name = ${name}`;
    return rows[0]?.tags ?? null;
  }

  /** @inheritdoc */
  putReferrer(
    name: RepositoryName,
    subject: Digest,
    referrer: Digest,
    descriptor: string,
  ): Promise<void> {
    return this.#write(name, async (tx) => {
      await tx`
        insert into referrers (repository, subject, referrer, descriptor)
        values (${name}, ${subject}, ${referrer}, ${descriptor})
        on conflict (repository, subject, referrer) do update
          set descriptor = excluded.descriptor`;
    });
  }

  /** @inheritdoc */
  async deleteReferrer(name: RepositoryName, subject: Digest, referrer: Digest): Promise<void> {
    await this.#remove(name, async (tx) => {
      await tx`
        delete from referrers
        where repository = ${name} and subject = ${subject} and referrer = ${referrer}`;
      return true;
    });
  }

  /** @inheritdoc */
  async listReferrers(name: RepositoryName, subject: Digest): Promise<string[]> {
    const rows = await this.#read<{ descriptor: string }[]>`
      select descriptor from referrers where repository = ${name} and subject = ${subject}
      order by referrer`;
    return rows.map((row) => row.descriptor);
  }

  /** @inheritdoc */
  async repositoryExists(name: RepositoryName): Promise<boolean> {
    const rows = await this.#read`select 1 from repositories where name = ${name}`;
    return rows.length > 0;
  }

  /** @inheritdoc */
  removeRepository(name: RepositoryName): Promise<boolean> {
    return this.#transaction(async (tx) => {
      let removed = 0;
      removed += (await tx`delete from referrers where repository = ${name}`).count;
      removed += (await tx`delete from tags where repository = ${name}`).count;
      removed += (await tx`delete from revisions where repository = ${name}`).count;
      removed += (await tx`delete from layer_links where repository = ${name}`).count;
      removed += (await tx`delete from repositories where name = ${name}`).count;
      return removed > 0;
    });
  }

  /** @inheritdoc */
  async listRepositories(): Promise<readonly RepositoryName[]> {
    const found: RepositoryName[] = [];
    for await (const name of this.repositoriesAfter(null)) found.push(name);
    return found;
  }

  /** Reads the names a page at a time (an index range scan), each page when it is reached. */
  async *repositoriesAfter(after: string | null): AsyncGenerator<RepositoryName> {
    let mark = after;
    while (true) {
      const rows = mark === null
        ? await this.#read<{ name: RepositoryName }[]>`
            select name::text as name from repositories order by name limit ${PAGE}`
        : await this.#read<{ name: RepositoryName }[]>`
            select name::text as name from repositories
            where name > ${mark} collate "C" order by name limit ${PAGE}`;
      for (const row of rows) yield row.name;
      if (rows.length < PAGE) return;
      mark = rows[rows.length - 1]!.name;
    }
  }

  /**
   * One query of a read on the pool, its connection errors (the database down, restarting,
   * out of connections) thrown as `StorageUnavailable`: 503 with Retry-After, not 500.
   */
  async #read<T extends readonly object[]>(
    strings: TemplateStringsArray,
    ...values: unknown[]
  ): Promise<T> {
    try {
      return await this.#sql<T>(strings, ...(values as never[]));
    } catch (error) {
      throw databaseFailure(error);
    }
  }

  /** Runs a write in a transaction that first makes sure the repository's row exists. */
  #write(name: RepositoryName, fn: (tx: TransactionSql) => Promise<void>): Promise<void> {
    return this.#transaction(async (tx) => {
      await tx`insert into repositories (name) values (${name}) on conflict do nothing`;
      await fn(tx);
    });
  }

  /** Runs a removal in a transaction that then drops the repository's row if it is empty. */
  #remove(name: RepositoryName, fn: (tx: TransactionSql) => Promise<boolean>): Promise<boolean> {
    return this.#transaction(async (tx) => {
      const removed = await fn(tx);
      if (removed) {
        await tx`
          delete from repositories r where r.name = ${name}
            and not exists (select 1 from layer_links x where x.repository = r.name)
            and not exists (select 1 from revisions x where x.repository = r.name)
            and not exists (select 1 from tags x where x.repository = r.name)
            and not exists (select 1 from referrers x where x.repository = r.name)`;
      }
      return removed;
    });
  }

  /** Runs `fn` in a transaction, again when it meets a concurrent one (at most ATTEMPTS). */
  async #transaction<T>(fn: (tx: TransactionSql) => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await transaction(this.#sql, fn);
      } catch (error) {
        // A lost connection (StorageUnavailable) is not retried here: the client is told to
        // retry (503), and every write here is idempotent.
        const state = sqlState(error);
        if (attempt >= ATTEMPTS || state === null || !RETRIED.has(state)) throw error;
      }
    }
  }
}
