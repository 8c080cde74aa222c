/**
 * One cut across collections: `backup --collection a --collection b` flushes both in one request and
 * reads both pinned to one timestamp where the server proves it reads at a given timestamp, recording the
 * cut with the ids of both backups in each manifest. Milvus 2.3.5 does not (measured: reads at a flush
 * timestamp returned rows written after it), so there each collection is read unpinned and checked by
 * reading it again: with a writer going on the backup fails and nothing is listed; without writes it
 * completes, holds exactly the rows acknowledged before it, and the manifests say there is no cut and why.
 * Real Milvus 2.3.5 and Azurite.
 */
import * as assert from "node:assert/strict";
import { DataType, MilvusClient } from "@zilliz/milvus2-sdk-node";
import {
  backupCollections,
  countPinsTimestamp,
  type BackupRunResult,
  pageDigest,
  readsPinTimestamp,
  TIMESTAMP_IGNORED_REASON,
} from "../backup/backup";
import { AzureBlobStore } from "../backup/blobStore";
import { listBackups, loadManifest } from "../backup/catalog";
import { manifestPath, readChunk } from "../backup/format";
import { Log } from "../backup/log";
import { Milvus, type RawFieldData } from "../backup/milvus";
import {
  startAzurite,
  startMilvusStandalone,
  type AzuriteServer,
  type MilvusStandaloneServer,
} from "../tools/local-servers";
import { runCli } from "./support/workerEnv";

const DIM = 8;
const SEEDED = 12_000;

/** A log whose JSON lines are kept, to find the events of a run. */
function capturingLog(): { log: Log; events: (name: string) => Record<string, unknown>[] } {
  const lines: string[] = [];
  const log = new Log({
    write: (s: string) => {
      lines.push(...s.split("\n").filter((l) => l.trim() !== ""));
      return true;
    },
  });
  const events = (name: string) =>
    lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((o) => o.event === name);
  return { log, events };
}

async function seed(client: MilvusClient, name: string): Promise<void> {
  const res = await client.createCollection({
    collection_name: name,
    fields: [
      { name: "id", data_type: DataType.Int64, is_primary_key: true },
      { name: "v", data_type: DataType.FloatVector, dim: DIM },
    ],
  });
  assert.equal(res.code, 0, res.reason);
  for (let from = 0; from < SEEDED; from += 4000) {
    const data = Array.from({ length: 4000 }, (_, i) => ({
      id: from + i,
      v: Array.from({ length: DIM }, (_, j) => (i + j) % 5),
    }));
    const r = await client.insert({ collection_name: name, data });
    assert.equal(r.status.code, 0, r.status.reason);
  }
  await client.createIndex({ collection_name: name, field_name: "v", index_type: "FLAT", metric_type: "L2" });
  await client.loadCollectionSync({ collection_name: name });
}

/** Primary keys stored in a backup's chunks (int64 keys: 8 bytes little-endian each), in order. */
async function backupKeys(store: AzureBlobStore, backupId: string): Promise<bigint[]> {
  const m = await loadManifest(store, backupId);
  const keys: bigint[] = [];
  for (const c of m.chunks) {
    const { columns } = await readChunk(await store.get(c.file), c.file);
    const raw = columns.get("id");
    assert.ok(raw);
    for (let o = 0; o < raw.length; o += 8) keys.push(raw.readBigInt64LE(o));
  }
  return keys;
}

const sortedKeys = (keys: Iterable<bigint>) => [...keys].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));

describe("one cut across the collections of a backup", function () {
  this.timeout(180_000);
  let server: MilvusStandaloneServer;
  let azurite: AzuriteServer;
  let client: MilvusClient;
  let store: AzureBlobStore;
  /** Rows acknowledged by the writer of the first test (kept: later backups must hold them). */
  const acked: { collection: string; id: bigint; ackMs: number }[] = [];
  /** Every key each collection holds once the writer has stopped. */
  const expectedKeys = (collection: string) =>
    sortedKeys([
      ...Array.from({ length: SEEDED }, (_, i) => BigInt(i)),
      ...acked.filter((r) => r.collection === collection).map((r) => r.id),
    ]);

  before(async function () {
    [server, azurite] = await Promise.all([startMilvusStandalone(), startAzurite()]);
    client = new MilvusClient({ address: server.address, token: server.rootToken, logLevel: "error" });
    store = new AzureBlobStore({ container: "backups", connectionString: azurite.connectionString });
    await store.ensureContainer();
    await Promise.all([seed(client, "a"), seed(client, "b")]);
  });

  after(async function () {
    await client.closeConnection().catch(() => undefined);
    await Promise.all([server.stop(), azurite.stop()]);
  });

  it("page digests do not depend on the order of a page's fields", function () {
    const id: RawFieldData = { field_name: "id", type: "Int64", scalars: { long_data: { data: ["1"] } } };
    const v: RawFieldData = {
      field_name: "v",
      type: "FloatVector",
      vectors: { dim: 1, float_vector: { data: [0.5] } },
    };
    assert.deepEqual(pageDigest([v, id]), pageDigest([id, v]));
    assert.notDeepEqual(pageDigest([id]), pageDigest([id, v]));
  });

  it("Milvus 2.3.5 does not read at a given timestamp: the probe says so before any read", async function () {
    const milvus = await Milvus.connect({ address: server.address, token: server.rootToken, tls: false });
    try {
      assert.deepEqual(await readsPinTimestamp(milvus, ["a", "b"]), {
        pinned: false,
        reason: TIMESTAMP_IGNORED_REASON,
      });
      // Its count(*) ignores the timestamp too (measured here).
      assert.equal(await countPinsTimestamp(milvus, "a"), false);
    } finally {
      await milvus.close();
    }
  });

  it("fails, and lists nothing, when writes go on during a backup whose reads are not pinned", async function () {
    const state = { writing: true };
    let next = 1_000_000;
    const writer = (async () => {
      while (state.writing) {
        for (const collection of ["a", "b"]) {
          const ids = Array.from({ length: 20 }, () => next++);
          const r = await client.insert({
            collection_name: collection,
            data: ids.map((id) => ({ id, v: Array.from({ length: DIM }, () => 0.5) })),
          });
          assert.equal(r.status.code, 0, r.status.reason);
          const ackMs = Date.now();
          for (const id of ids) acked.push({ collection, id: BigInt(id), ackMs });
        }
        // About 100 rows a second into each: enough to land during every backup, few enough to read back.
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    let run: BackupRunResult | undefined;
    let startedMs = 0;
    let endedMs = 0;
    try {
      while (acked.length < 200) await new Promise((r) => setTimeout(r, 20));
      const milvus = await Milvus.connect({ address: server.address, token: server.rootToken, tls: false });
      const { log, events } = capturingLog();
      try {
        startedMs = Date.now();
        run = await backupCollections(milvus, store, ["a", "b"], log, {
          pageBytes: 32 * 1024,
          chunkBytes: 64 * 1024,
        });
        endedMs = Date.now();
      } finally {
        await milvus.close();
      }
      // The writer was acknowledged while both collections were being read.
      assert.ok(acked.some((r) => r.ackMs > startedMs && r.ackMs < endedMs));
      assert.deepEqual(
        events("backup.start").map((e) => [e.collection, e.snapshot]),
        [
          ["a", "strong"],
          ["b", "strong"],
        ],
      );
      assert.deepEqual(events("backup.rechecked"), []);
    } finally {
      state.writing = false;
      await writer;
    }
    assert.ok(run);
    assert.deepEqual(run.backups, []);
    assert.deepEqual(
      run.failed.map((f) => f.collection),
      ["a", "b"],
    );
    for (const f of run.failed) {
      const c = f.collection;
      const readCount = new RegExp(
        `^backup of ${c} read \\d+ rows but the snapshot counted \\d+, and no key it read has rows it did not\\. ` +
          "The collection changed during the backup, or the server skipped rows\\. No backup was written \\(its " +
          "chunks are removed by prune\\); run the backup again\\.$",
      );
      const reread =
        `backup of ${c}: rows changed while they were being read, and this server cannot pin reads to a ` +
        "timestamp (it does not read at a given timestamp), so the backup would mix old and new rows. No backup " +
        "was written (its chunks are removed by prune); stop writes to the collection during the backup, or run " +
        "it again.";
      const recount = new RegExp(
        `^backup of ${c}: the collection changed during the backup \\(\\d+ rows before, \\d+ after\\) and this ` +
          "server cannot pin reads to a timestamp; stop writes or run the backup again$",
      );
      const overrun = new RegExp(
        `^backup of ${c} read \\d+ rows so far, more than the \\d+ the snapshot counted: rows were added during ` +
          "the backup \\(this server's reads are not pinned to a timestamp\\)\\. No backup was written \\(its chunks " +
          "are removed by prune\\); stop writes to the collection during the backup, or run it again\\.$",
      );
      assert.ok(
        overrun.test(f.error) || readCount.test(f.error) || f.error === reread || recount.test(f.error),
        f.error,
      );
      assert.deepEqual(await listBackups(store, c), []);
    }
  });

  it("without writes: both manifests carry the same cut object, no timestamp and the reason", async function () {
    const env = {
      PATH: process.env.PATH,
      MILVUS_ADDRESS: server.address,
      MILVUS_TOKEN: server.rootToken,
      BACKUP_CONTAINER: "backups",
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    };
    const startMs = Date.now();
    const r = await runCli(["backup", "--collection", "b", "--collection", "a", "--json"], env);
    const endMs = Date.now();
    assert.equal(r.code, 0, r.stderr);
    const out = r.json as {
      backups: {
        backupId: string;
        collection: string;
        cut: { timestamp: string | null; backupIds: string[] };
      }[];
    };
    assert.deepEqual(
      out.backups.map((b) => b.collection),
      ["b", "a"],
    );
    const ids = out.backups.map((b) => b.backupId);
    const cut = { timestamp: null, backupIds: ids, reason: TIMESTAMP_IGNORED_REASON };
    const manifests = await Promise.all(ids.map((id) => loadManifest(store, id)));
    assert.deepEqual(
      manifests.map((m) => m.cut),
      [cut, cut],
    );
    assert.deepEqual(
      out.backups.map((b) => b.cut),
      [cut, cut],
    );
    assert.deepEqual(
      manifests.map((m) => m.snapshot.method),
      ["count-recheck", "count-recheck"],
    );
    // The flush timestamps are still recorded: hybrid timestamps (milliseconds << 18) of this run.
    for (const m of manifests) {
      const t = m.snapshot.flushTimestamp ?? "";
      assert.match(t, /^\d{18}$/);
      const ms = Number(BigInt(t) >> 18n);
      assert.ok(ms >= startMs && ms <= endMs, `${t}: ${ms} not in ${startMs}..${endMs}`);
    }
    // No writes now: each backup holds exactly the rows of its collection, those of the writer included.
    for (const m of manifests) {
      const expected = expectedKeys(m.collection);
      assert.equal((await client.count({ collection_name: m.collection })).data, expected.length);
      assert.equal(m.rows, expected.length, m.collection);
      assert.equal(m.distinctKeys, expected.length, m.collection);
      assert.deepEqual(await backupKeys(store, m.backupId), expected, m.collection);
    }
  });

  it("without writes, small pages: the re-read of every page matches and the backup completes", async function () {
    const milvus = await Milvus.connect({ address: server.address, token: server.rootToken, tls: false });
    const { log, events } = capturingLog();
    let run: BackupRunResult | undefined;
    try {
      run = await backupCollections(milvus, store, ["a", "b"], log, {
        pageBytes: 32 * 1024,
        chunkBytes: 64 * 1024,
      });
    } finally {
      await milvus.close();
    }
    assert.ok(run);
    const { backups, failed } = run;
    assert.deepEqual(failed, []);
    const starts = events("backup.start");
    const rechecked = events("backup.rechecked");
    for (const [i, c] of ["a", "b"].entries()) {
      const expected = expectedKeys(c);
      const pageRows = Number(starts[i]?.pageRows);
      // 32 KiB pages of 40-byte rows: 819 rows a page; the read ends on the first page that is not full.
      assert.equal(pageRows, 819);
      assert.deepEqual(rechecked[i], {
        level: "info",
        event: "backup.rechecked",
        collection: c,
        backupId: backups[i]?.backupId,
        pages: Math.floor(expected.length / pageRows) + 1,
        rows: expected.length,
        time: rechecked[i]?.time,
      });
      const b = backups[i];
      assert.ok(b);
      assert.equal(b.rows, expected.length);
      assert.deepEqual(b.cut, {
        timestamp: null,
        backupIds: backups.map((x) => x.backupId),
        reason: TIMESTAMP_IGNORED_REASON,
      });
      assert.deepEqual(await backupKeys(store, b.backupId), expected);
      assert.equal(await store.exists(manifestPath(b.backupId)), true);
    }
  });
});
