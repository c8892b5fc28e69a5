/**
 * Per-replica event queues (src/services/replica_events.ts): the driver view re-roots only the
 * `events` area; a replica's id lock keeps its queues from being adopted while it lives; once
 * it is released, two replicas adopting at once move each queued object exactly once, in
 * order, after what the adopter already holds.
 */

import assert from "node:assert/strict";
import {
  adoptQueues,
  holdReplicaId,
  ReplicaEventsDriver,
  REPLICAS_FOLDER,
} from "../../src/services/replica_events.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { eventSeqName } from "../../src/storage/keys.ts";
import { testDatabase } from "../helpers/postgres.ts";

const db = await testDatabase();

Deno.test("the view re-roots events/ and nothing else", async () => {
  const inner = new MemoryDriver();
  const view = new ReplicaEventsDriver(inner, "abc");
  await view.put(`events/hook/${eventSeqName(0)}`, "e0");
  await view.put("blobs/x", "b");
  assert.deepEqual(await inner.list(`${REPLICAS_FOLDER}/abc/hook`), [eventSeqName(0)]);
  assert.deepEqual(await view.list("events"), ["hook"]);
  assert.deepEqual(await inner.list("events"), ["_replicas"]);
  assert.equal(new TextDecoder().decode((await inner.get("blobs/x"))!), "b");
  await view.move(`events/hook/${eventSeqName(0)}`, `events/hook/${eventSeqName(5)}`);
  assert.deepEqual(await view.list("events/hook"), [eventSeqName(5)]);
});

db.test("a living replica's queues stay; a gone one's are adopted once, in order", async () => {
  const driver = new MemoryDriver();
  const sql = db.pool(8);
  try {
    const gone = await holdReplicaId(sql);
    const goneView = new ReplicaEventsDriver(driver, gone.id);
    for (let i = 0; i < 5; i++) await goneView.put(`events/hook/${eventSeqName(i + 3)}`, `g${i}`);
    const x = await holdReplicaId(sql);
    const y = await holdReplicaId(sql);
    const xView = new ReplicaEventsDriver(driver, x.id);
    await xView.put(`events/hook/${eventSeqName(0)}`, "x0");
    assert.equal(await adoptQueues(driver, sql, x.id), 0, "the replica lives");
    await gone.release();
    const moved = await Promise.all([
      adoptQueues(driver, sql, x.id),
      adoptQueues(driver, sql, y.id),
    ]);
    assert.equal(moved[0] + moved[1], 5, String(moved));
    const read = async (id: string) => {
      const view = new ReplicaEventsDriver(driver, id);
      const names = await view.list("events/hook");
      return Promise.all(
        names.map(async (n) => new TextDecoder().decode((await view.get(`events/hook/${n}`))!)),
      );
    };
    const all = [...await read(x.id), ...await read(y.id)];
    assert.deepEqual(all.filter((e) => e.startsWith("g")).sort(), ["g0", "g1", "g2", "g3", "g4"]);
    assert.equal((await read(x.id))[0], "x0", "adopted events come after the adopter's own");
    for (const id of [x.id, y.id]) {
      const adopted = (await read(id)).filter((e) => e.startsWith("g"));
      assert.deepEqual(adopted, [...adopted].sort(), "in order");
    }
    assert.deepEqual(await driver.list(`${REPLICAS_FOLDER}/${gone.id}`), []);
    await x.release();
    await y.release();
  } finally {
    await sql.end();
  }
});
