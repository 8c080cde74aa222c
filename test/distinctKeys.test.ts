/**
 * Counts you can trust: a backup records the distinct primary keys it holds, and a restore counts the
 * distinct keys of what it restored (walking pages of keys) besides count(*), which counts every row
 * of a repeated key. Real Milvus Lite 2.5 (keeps every row of a repeated key), Milvus 2.3.5 and Azurite.
 */
import * as assert from "node:assert/strict";
import { DataType, MilvusClient } from "@zilliz/milvus2-sdk-node";
import {
  backupCollection,
  countDistinctKeys,
  TIMESTAMP_IGNORED_REASON,
  UNPINNED_REASON,
} from "../backup/backup";
import { AzureBlobStore } from "../backup/blobStore";
import { loadManifest } from "../backup/catalog";
import { Log } from "../backup/log";
import { Milvus } from "../backup/milvus";
import { restoreBackup } from "../backup/restore";
import { startMilvusStandalone, type MilvusStandaloneServer } from "../tools/local-servers";
import { startServers, type Servers } from "./support/workerEnv";

const silentLog = () => new Log({ write: () => true });

async function seed(client: MilvusClient, name: string, rows: number, repeat: number): Promise<void> {
  const res = await client.createCollection({
    collection_name: name,
    fields: [
      { name: "id", data_type: DataType.Int64, is_primary_key: true },
      { name: "v", data_type: DataType.FloatVector, dim: 4 },
    ],
  });
  assert.equal(res.code, 0, res.reason);
  const insert = async (from: number, n: number, base: number) => {
    const data = Array.from({ length: n }, (_, i) => ({ id: from + i, v: [base, i % 7, 1, 2] }));
    const r = await client.insert({ collection_name: name, data });
    assert.equal(r.status.code, 0, r.status.reason);
  };
  await insert(0, rows, 0);
  // The first `repeat` keys inserted a second time (newer values).
  if (repeat > 0) await insert(0, repeat, 1);
  await client.flush({ collection_names: [name] });
  const ix = await client.createIndex({
    collection_name: name,
    field_name: "v",
    index_type: "FLAT",
    metric_type: "L2",
  });
  assert.equal(ix.code, 0, ix.reason);
  await client.loadCollectionSync({ collection_name: name });
}

/** A Milvus whose first insert request gives its last row the first row's primary key. */
function collidingInserts(milvus: Milvus): void {
  const original = milvus.insert.bind(milvus);
  let done = false;
  milvus.insert = (name, partition, fieldsData, numRows, upsert) => {
    if (!done) {
      done = true;
      const pk = fieldsData.find((f) => (f as { field_name?: string }).field_name === "id") as
        | { scalars: { long_data: { data: string[] } } }
        | undefined;
      const keys = pk?.scalars.long_data.data;
      assert.ok(keys && keys.length > 1);
      keys[keys.length - 1] = keys[0] ?? "";
    }
    return original(name, partition, fieldsData, numRows, upsert);
  };
}

describe("distinct primary keys: recorded by backup, reconciled by restore", function () {
  this.timeout(180_000);
  let s: Servers;
  let standalone: MilvusStandaloneServer;
  let store: AzureBlobStore;

  before(async function () {
    [s, standalone] = await Promise.all([startServers(), startMilvusStandalone()]);
    store = new AzureBlobStore({
      container: "backups",
      connectionString: s.env.AZURE_STORAGE_CONNECTION_STRING,
    });
    await store.ensureContainer();
  });

  after(async function () {
    await Promise.all([s.stop(), standalone.stop()]);
  });

  it("Milvus Lite 2.5: repeated keys are counted apart, the restore reconciles on distinct keys", async function () {
    await seed(s.client, "dups", 2000, 100);
    // Measured: Lite keeps both rows of a repeated key, count(*) counts both.
    assert.equal((await s.client.count({ collection_name: "dups" })).data, 2100);
    const milvus = await Milvus.connect({ address: s.env.MILVUS_ADDRESS ?? "", tls: false });
    try {
      const b = await backupCollection(milvus, store, "dups", silentLog());
      const m = await loadManifest(store, b.backupId);
      assert.equal(m.rows, 2000);
      assert.equal(m.distinctKeys, 2000);
      assert.equal(m.duplicateKeyRows, 100);
      // Lite has no flush timestamp: the manifest says there is no cut, and why.
      assert.deepEqual(m.cut, { timestamp: null, backupIds: [b.backupId], reason: UNPINNED_REASON });
      assert.deepEqual(m.snapshot, { flushTimestamp: null, method: "count-recheck" });

      const ok = await restoreBackup(
        milvus,
        store,
        { backupId: b.backupId, target: "dups_ok", dropExisting: false },
        silentLog(),
      );
      assert.equal(ok.rows, 2000);
      assert.equal((await s.client.count({ collection_name: "dups_ok" })).data, 2000);
      const def = { ...m.schema, name: "dups_ok" };
      assert.equal(await countDistinctKeys(milvus, def, undefined, null), 2000);

      // The server stores 2000 rows but one key twice: count(*) agrees with the backup, distinct keys do not.
      collidingInserts(milvus);
      await assert.rejects(
        restoreBackup(
          milvus,
          store,
          { backupId: b.backupId, target: "dups_bad", dropExisting: false },
          silentLog(),
        ),
        (e: Error) => {
          assert.match(
            e.message,
            new RegExp(
              `^restore of ${b.backupId} into dups_bad failed: restore of ${b.backupId}: dups_bad holds 1999 distinct ` +
                "primary keys after loading \\(count\\(\\*\\) 2000\\), the backup has 2000 distinct primary keys \\(2000 rows\\)\\. " +
                "State: the partial collection dups_bad was dropped\\.",
            ),
          );
          return true;
        },
      );
    } finally {
      await milvus.close();
    }
  });

  it("Milvus 2.3.5: the same reconciliation where the restore fills a work collection", async function () {
    const client = new MilvusClient({
      address: standalone.address,
      token: standalone.rootToken,
      logLevel: "error",
    });
    const milvus = await Milvus.connect({
      address: standalone.address,
      token: standalone.rootToken,
      tls: false,
    });
    try {
      await seed(client, "keys", 3000, 0);
      const b = await backupCollection(milvus, store, "keys", silentLog());
      const m = await loadManifest(store, b.backupId);
      assert.equal(m.rows, 3000);
      assert.equal(m.distinctKeys, 3000);
      // Milvus 2.3.5 reports a flush timestamp but does not read at it: no cut, the reason, the flush kept.
      assert.deepEqual(m.cut, { timestamp: null, backupIds: [b.backupId], reason: TIMESTAMP_IGNORED_REASON });
      assert.equal(m.snapshot.method, "count-recheck");
      assert.match(m.snapshot.flushTimestamp ?? "", /^\d{18}$/);
      const ok = await restoreBackup(
        milvus,
        store,
        { backupId: b.backupId, target: "keys_ok", dropExisting: false },
        silentLog(),
      );
      assert.equal(ok.rows, 3000);
      collidingInserts(milvus);
      await assert.rejects(
        restoreBackup(
          milvus,
          store,
          { backupId: b.backupId, target: "keys_bad", dropExisting: false },
          silentLog(),
        ),
        (e: Error) => {
          assert.match(
            e.message,
            new RegExp(
              `^restore of ${b.backupId} into keys_bad failed: restore of ${b.backupId}: keys_bad_restoring_[0-9a-f]{8} holds ` +
                "2999 distinct primary keys after loading \\(count\\(\\*\\) 3000\\), the backup has 3000 distinct primary keys \\(3000 rows\\)\\.",
            ),
          );
          return true;
        },
      );
      const names = (await client.listCollections()).data.map((c) => c.name);
      assert.ok(!names.some((n) => n.startsWith("keys_bad")), names.join(","));
    } finally {
      await milvus.close();
      await client.closeConnection();
    }
  });
});
