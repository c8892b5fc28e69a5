/**
 * The states of the S3 driver's appendable objects (upload data: its multipart upload, parts
 * and tail object) as rows of `append_states` (migration 6) instead of state objects in the
 * bucket. Every acknowledged PATCH stores its state: a query here instead of a PutObject,
 * which on a busy store waits behind the writes of every other upload's bytes. The bytes stay
 * in the bucket; the driver keeps its rules (bytes durable before the state naming them,
 * removed before it), so any replica resumes an upload from its row.
 */

import type { StateStore } from "../drivers/s3.ts";
import { AREAS } from "../keys.ts";
import { guarded, type Sql } from "./client.ts";

interface StateRow {
  readonly state: string;
  readonly saved_at: Date;
}

/** Driver states as rows of `sql`'s database (migrated: `PostgresMetadataStore.open`). */
export class PostgresStates implements StateStore {
  readonly area: string;
  readonly #sql: Sql;

  /** The states of the keys under `area` (default: upload data; "" every key, for tests). */
  constructor(sql: Sql, area: string = AREAS.uploads) {
    this.#sql = sql;
    this.area = area;
  }

  /** @inheritdoc */
  async get(name: string): Promise<{ text: string; savedAt: number } | null> {
    const rows = await guarded(() =>
      this.#sql<StateRow[]>`select state, saved_at from append_states where name = ${name}`
    );
    const row = rows[0];
    return row === undefined ? null : { text: row.state, savedAt: row.saved_at.getTime() };
  }

  /** @inheritdoc */
  async insert(name: string, text: string): Promise<boolean> {
    const rows = await guarded(() =>
      this.#sql`
        insert into append_states (name, state) values (${name}, ${text})
        on conflict (name) do nothing returning name`
    );
    return rows.length > 0;
  }

  /** @inheritdoc */
  async put(name: string, text: string): Promise<void> {
    await guarded(() =>
      this.#sql`
        insert into append_states (name, state) values (${name}, ${text})
        on conflict (name) do update set state = excluded.state, saved_at = now()`
    );
  }

  /** @inheritdoc */
  async delete(name: string): Promise<boolean> {
    const rows = await guarded(() =>
      this.#sql`delete from append_states where name = ${name} returning name`
    );
    return rows.length > 0;
  }

  /** @inheritdoc */
  async namesFrom(start: string): Promise<string[]> {
    const rows = await guarded(() =>
      this.#sql<{ name: string }[]>`
        select name from append_states where starts_with(name, ${start}) order by name`
    );
    return rows.map((row) => row.name);
  }
}
