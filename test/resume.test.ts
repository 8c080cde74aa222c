/**
 * Resumable runs: a backup or restore killed with SIGKILL (a real worker process, spawned through the
 * CLI) leaves a progress record; a restore continues from its last completed chunk with --resume and ends
 * with every row exactly once. A backup continues only where its reads were pinned to a timestamp: no
 * server this machine runs pins reads (Milvus 2.3.5 ignores the timestamp, Milvus Lite has no flush
 * timestamp), so there `backup --resume` is refused, saying why, and the continuation mechanics are run
 * on Milvus 2.3.5 with no writes through the test-only option `unpinnedResumeForTestsOnly`, which is
 * not a claim that such a backup is one point in time. Prune keeps a young partial backup and removes an
 * old one with its progress record. Real Milvus 2.3.5, Milvus Lite 2.5 and Azurite.
 */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { DataType, MilvusClient } from "@zilliz/milvus2-sdk-node";
import { backupCollection, resumeBackup, TIMESTAMP_IGNORED_REASON, UNPINNED_REASON } from "../backup/backup";
import { AzureBlobStore } from "../backup/blobStore";
import { listBackups, loadManifest } from "../backup/catalog";
import { backupPrefix } from "../backup/format";
import { lockPath } from "../backup/lock";
import { Log } from "../backup/log";
import { Milvus } from "../backup/milvus";
import { prune } from "../backup/prune";
import {
  backupProgressPath,
  loadBackupProgress,
  loadRestoreProgress,
  restoreProgressPath,
} from "../backup/resume";
import { startMilvusStandalone, type MilvusStandaloneServer } from "../tools/local-servers";
import { runCli, startServers, type Servers } from "./support/workerEnv";

const ROOT = path.resolve(__dirname, "..");
const DIM = 64;
const ROWS = 60_000;
const silentLog = () => new Log({ write: () => true });
const lastLine = (t: string) => t.trim().split("\n").at(-1) ?? "";

async function seed(client: MilvusClient, name: string, rows: number): Promise<void> {
  const res = await client.createCollection({
    collection_name: name,
    fields: [
      { name: "id", data_type: DataType.Int64, is_primary_key: true },
      { name: "v", data_type: DataType.FloatVector, dim: DIM },
    ],
  });
  assert.equal(res.code, 0, res.reason);
  for (let from = 0; from < rows; from += 10_000) {
    const data = Array.from({ length: Math.min(10_000, rows - from) }, (_, i) => ({
      id: (from + i) * 7,
      v: Array.from({ length: DIM }, (_, j) => ((from + i + j) % 13) / 13),
    }));
    const r = await client.insert({ collection_name: name, data });
    assert.equal(r.status.code, 0, r.status.reason);
  }
  await client.createIndex({ collection_name: name, field_name: "v", index_type: "FLAT", metric_type: "L2" });
  await client.loadCollectionSync({ collection_name: name });
}

/** Starts the worker CLI as its own process (as the image runs it). */
function spawnWorker(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(
    process.execPath,
    [require.resolve("ts-node/dist/bin.js"), "--transpile-only", "backup/cli.ts", ...args],
    { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.on("exit", (code, signal) => {
      resolve(signal ?? code);
    }),
  );
  return { child, exited, stderr: () => stderr };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("resumable backups and restores", function () {
  this.timeout(240_000);
  let s: Servers;
  let standalone: MilvusStandaloneServer;
  let store: AzureBlobStore;
  let standaloneEnv: NodeJS.ProcessEnv;
  let backupId = "";

  /** A killed run's lease lapses within 15 s (lock.ts); wait for it rather than fail. */
  const waitForLock = (collection: string) =>
    until(
      `the lock on ${collection}`,
      async () => {
        const lease = await store.tryLease(lockPath(collection), 15, "resume test");
        if (!lease) return undefined;
        await lease.release();
        return true;
      },
      30_000,
    );

  before(async function () {
    [s, standalone] = await Promise.all([startServers(), startMilvusStandalone()]);
    store = new AzureBlobStore({
      container: "backups",
      connectionString: s.env.AZURE_STORAGE_CONNECTION_STRING,
    });
    await store.ensureContainer();
    standaloneEnv = { ...s.env, MILVUS_ADDRESS: standalone.address, MILVUS_TOKEN: standalone.rootToken };
    const client = new MilvusClient({
      address: standalone.address,
      token: standalone.rootToken,
      logLevel: "error",
    });
    try {
      await seed(client, "big", ROWS);
    } finally {
      await client.closeConnection();
    }
  });

  after(async function () {
    await Promise.all([s.stop(), standalone.stop()]);
  });

  it("Milvus 2.3.5: refuses to resume a backup killed with SIGKILL (reads not pinned); the test-only option continues it", async function () {
    const w = spawnWorker(["backup", "--collection", "big", "--chunk-size-mib", "0.1"], standaloneEnv);
    // Killed once a few chunks are recorded, as an evicted pod would be.
    const record = await until("a progress record with 3 chunks", async () => {
      for await (const b of store.list("progress/backups/big-")) {
        const id = /^progress\/backups\/(.+)\.json$/.exec(b.name)?.[1] ?? "";
        const p = await loadBackupProgress(store, id).catch(() => undefined);
        if (p && p.chunks.length >= 3) return p;
      }
      return undefined;
    });
    w.child.kill("SIGKILL");
    assert.equal(await w.exited, "SIGKILL", w.stderr());
    backupId = record.backupId;
    // Milvus 2.3.5 does not read at a given timestamp: the record has no cut, says why, keeps the flush.
    assert.deepEqual(record.cut, {
      timestamp: null,
      backupIds: [backupId],
      reason: TIMESTAMP_IGNORED_REASON,
    });
    assert.match(record.flushTimestamp ?? "", /^\d{18}$/);
    // Not listed, not restorable.
    assert.ok(!(await listBackups(store, "big")).some((b) => b.backupId === backupId));
    const early = await runCli(["restore", "--backup", backupId, "--target", "nope"], standaloneEnv);
    assert.equal(early.code, 1);
    assert.match(lastLine(early.stderr), /is incomplete \(interrupted before its manifest was written\)/);

    await waitForLock("big");
    const refused = await runCli(["backup", "--resume", backupId], standaloneEnv);
    assert.equal(refused.code, 1);
    assert.equal(
      lastLine(refused.stderr),
      `error: backup --resume ${backupId} refused: ${TIMESTAMP_IGNORED_REASON}; rows read before and after the ` +
        "interruption would come from different points in time. Start a new backup instead (backup --collection big).",
    );
    // The refusal changed nothing: the record is as the killed run left it, or later.
    assert.ok(((await loadBackupProgress(store, backupId))?.chunks.length ?? 0) >= record.chunks.length);

    // The continuation mechanics, with nothing writing to "big" (test-only: not one point in time).
    const lines: string[] = [];
    const log = new Log({ write: (t: string) => (lines.push(t), true) });
    const milvus = await Milvus.connect({
      address: standalone.address,
      token: standalone.rootToken,
      tls: false,
    });
    try {
      await resumeBackup(milvus, store, backupId, log, { unpinnedResumeForTestsOnly: true });
    } finally {
      await milvus.close();
    }
    // It continued (did not start over): the resume names the chunks it kept.
    const resumed =
      lines
        .join("")
        .split("\n")
        .find((l) => l.includes('"backup.resume"')) ?? "";
    const kept = Number(/"chunksDone":(\d+)/.exec(resumed)?.[1] ?? -1);
    assert.ok(kept >= record.chunks.length, resumed);
    // The part read after the interruption was read again and matched.
    assert.equal(
      lines
        .join("")
        .split("\n")
        .filter((l) => l.includes('"backup.rechecked"')).length,
      1,
    );
    const m = await loadManifest(store, backupId);
    assert.equal(m.rows, ROWS);
    assert.equal(m.distinctKeys, ROWS);
    assert.deepEqual(m.cut, { timestamp: null, backupIds: [backupId], reason: TIMESTAMP_IGNORED_REASON });
    assert.deepEqual(m.snapshot, { flushTimestamp: record.flushTimestamp, method: "count-recheck" });
    // The chunks written before the kill are the manifest's first chunks, unchanged.
    assert.deepEqual(
      m.chunks.slice(0, record.chunks.length).map((c) => c.sha256),
      record.chunks.map((c) => c.sha256),
    );
    assert.equal(await store.exists(backupProgressPath(backupId)), false);
    const verify = await runCli(["verify", "--backup", backupId], standaloneEnv);
    assert.equal(verify.code, 0, verify.stderr);
    const restored = await runCli(
      ["restore", "--backup", backupId, "--target", "big_back", "--json"],
      standaloneEnv,
    );
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal((restored.json as { rows: number }).rows, ROWS);
  });

  it("continues a restore killed with SIGKILL, without duplicating the chunk in flight (Milvus Lite)", async function () {
    assert.ok(backupId);
    const w = spawnWorker(["restore", "--backup", backupId, "--target", "big_lite"], s.env);
    const record = await until("a restore progress record with 2 chunks done", async () => {
      const p = await loadRestoreProgress(store, "big_lite").catch(() => undefined);
      return p && p.chunksDone >= 2 ? p : undefined;
    });
    w.child.kill("SIGKILL");
    assert.equal(await w.exited, "SIGKILL", w.stderr());
    // Milvus Lite cannot rename: the target itself was being filled, and is left in part.
    assert.equal(record.work, "big_lite");
    assert.equal(record.method, "direct");
    await waitForLock("big_lite");
    const again = await runCli(["restore", "--backup", backupId, "--target", "big_lite"], s.env);
    assert.equal(again.code, 1);
    assert.match(
      lastLine(again.stderr),
      new RegExp(
        `^error: restore of ${backupId} into big_lite refused: an interrupted restore of ${backupId} left big_lite with \\d+ of its chunks\\. ` +
          "Run the same restore with --resume to continue it, or drop big_lite to start over\\.$",
      ),
    );
    const r = await runCli(
      ["restore", "--backup", backupId, "--target", "big_lite", "--resume", "--json"],
      s.env,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /"resumeAtChunk":\d+/);
    // Every row once: count(*) counts repeated keys on Lite, and the restore checked distinct keys too.
    assert.equal((await s.client.count({ collection_name: "big_lite" })).data, ROWS);
    assert.equal(await store.exists(restoreProgressPath("big_lite")), false);
  });

  it("refuses to resume a backup taken where reads cannot be pinned, and says why", async function () {
    await seed(s.client, "lite_small", 2_000);
    const stop = new AbortController();
    stop.abort("SIGTERM");
    const milvus = await Milvus.connect({ address: s.env.MILVUS_ADDRESS ?? "", tls: false });
    let id = "";
    try {
      await assert.rejects(
        backupCollection(milvus, store, "lite_small", silentLog(), { signal: stop.signal }),
        (e: Error) => {
          id = /so backup (\S+) is not listed/.exec(e.message)?.[1] ?? "";
          assert.match(e.message, / Run the backup again\.$/);
          return true;
        },
      );
    } finally {
      await milvus.close();
    }
    assert.ok(id);
    const r = await runCli(["backup", "--resume", id], s.env);
    assert.equal(r.code, 1);
    assert.equal(
      lastLine(r.stderr),
      `error: backup --resume ${id} refused: ${UNPINNED_REASON}; rows read before and after the interruption would ` +
        "come from different points in time. Start a new backup instead (backup --collection lite_small).",
    );
  });

  it("prunes an abandoned partial backup after the grace period and keeps a young one", async function () {
    await seed(s.client, "lite_young", 1_000);
    const partial = async (collection: string) => {
      const stop = new AbortController();
      stop.abort("SIGTERM");
      const milvus = await Milvus.connect({ address: s.env.MILVUS_ADDRESS ?? "", tls: false });
      try {
        let id = "";
        await backupCollection(milvus, store, collection, silentLog(), { signal: stop.signal }).catch(
          (e: unknown) => {
            id = /so backup (\S+) is not listed/.exec(String(e))?.[1] ?? "";
          },
        );
        return id;
      } finally {
        await milvus.close();
      }
    };
    const newest = async (id: string) => {
      let at = 0;
      for await (const b of store.list(backupPrefix(id))) at = Math.max(at, b.lastModified.getTime());
      for await (const b of store.list(backupProgressPath(id))) at = Math.max(at, b.lastModified.getTime());
      return at;
    };
    const old = await partial("lite_small");
    // lastModified has whole seconds: the young one is written at least two seconds later.
    await new Promise((r) => setTimeout(r, 2_100));
    const young = await partial("lite_young");
    assert.ok(old && young);
    const [oldAt, youngAt] = [await newest(old), await newest(young)];
    assert.ok(youngAt - oldAt >= 1000, `${oldAt} ${youngAt}`);
    // One hour of grace, measured from a moment between the two: the first is older, the second younger.
    const now = new Date((oldAt + youngAt) / 2 + 3_600_000);
    const result = await prune(
      store,
      { retentionDays: 30, keepLast: 1, dryRun: false, partialGraceHours: 1, now },
      silentLog(),
    );
    assert.deepEqual(
      result.deleted
        .filter((d) => d.backupId === old || d.backupId === young)
        .map((d) => [d.backupId, d.reason]),
      [[old, "leftover of an interrupted backup"]],
    );
    assert.deepEqual(
      result.kept.filter((k) => k.backupId === young).map((k) => k.reason),
      [
        `partial backup younger than 1 h (may still be running, or be continued with backup --resume ${young})`,
      ],
    );
    assert.equal(await store.exists(backupProgressPath(old)), false);
    for await (const b of store.list(backupPrefix(old))) assert.fail(`${b.name} was not pruned`);
    assert.equal(await store.exists(backupProgressPath(young)), true);
    // Never listed as complete.
    assert.ok(!(await listBackups(store)).some((b) => b.backupId === young || b.backupId === old));
  });
});
