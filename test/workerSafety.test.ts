/**
 * The worker under the faults that used to lose, tear or misreport data: a replace on a server that
 * cannot rename, SIGTERM mid-restore and mid-backup (a real signal to a real worker process),
 * concurrent runs on one collection, writes during a backup on a server that cannot pin reads, chunks
 * deleted under a running backup, and secrets typed into the wrong flag. Real Milvus Lite and Azurite.
 */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { DataType, MilvusClient } from "@zilliz/milvus2-sdk-node";
import { backupCollection } from "../backup/backup";
import { AzureBlobStore, type BlobStore } from "../backup/blobStore";
import { listBackups } from "../backup/catalog";
import { chunkPath } from "../backup/format";
import { lockPath } from "../backup/lock";
import { Log } from "../backup/log";
import { Milvus } from "../backup/milvus";
import { startMilvusLite } from "../tools/local-servers";
import { startFaultProxy } from "./support/faultProxy";
import { runCli, startServers, type Servers } from "./support/workerEnv";

const ROOT = path.resolve(__dirname, "..");
const DIM = 32;

async function seed(client: MilvusClient, name: string, rows: number): Promise<void> {
  const res = await client.createCollection({
    collection_name: name,
    fields: [
      { name: "id", data_type: DataType.Int64, is_primary_key: true },
      { name: "tag", data_type: DataType.VarChar, max_length: 32 },
      { name: "v", data_type: DataType.FloatVector, dim: DIM },
    ],
  });
  assert.equal(res.code, 0, res.reason);
  for (let from = 0; from < rows; from += 5000) {
    const data = Array.from({ length: Math.min(5000, rows - from) }, (_, i) => ({
      id: from + i,
      tag: "old",
      v: Array.from({ length: DIM }, (_, j) => (from + i + j) % 7),
    }));
    const ins = await client.insert({ collection_name: name, data });
    assert.equal(ins.status.code, 0, ins.status.reason);
  }
  await client.createIndex({ collection_name: name, field_name: "v", index_type: "FLAT", metric_type: "L2" });
  await client.loadCollectionSync({ collection_name: name });
}

const silentLog = () => new Log({ write: () => true });
const count = async (client: MilvusClient, name: string) =>
  (await client.count({ collection_name: name })).data;
const names = async (client: MilvusClient) => (await client.listCollections()).data.map((c) => c.name).sort();
const lastLine = (t: string) => t.trim().split("\n").at(-1) ?? "";

describe("the worker under faults that used to lose, tear or misreport data", function () {
  this.timeout(240_000);
  let s: Servers;
  let store: AzureBlobStore;
  let bigId = "";

  before(async function () {
    s = await startServers();
    store = new AzureBlobStore({
      container: "backups",
      connectionString: s.env.AZURE_STORAGE_CONNECTION_STRING,
    });
    await seed(s.client, "big", 60_000);
    await seed(s.client, "small", 3_000);
    const r = await runCli(["backup", "--collection", "big", "--json"], s.env);
    assert.equal(r.code, 0, r.stderr);
    bigId = (r.json as { backups: { backupId: string }[] }).backups[0]?.backupId ?? "";
  });

  after(async function () {
    await s.stop();
  });

  it("refuses --drop-existing where the server cannot rename, and leaves the collection whole", async function () {
    const r = await runCli(["restore", "--backup", bigId, "--drop-existing"], s.env);
    assert.equal(r.code, 1);
    assert.equal(
      lastLine(r.stderr),
      `error: restore of ${bigId} refused: big exists and this server cannot rename collections ` +
        "(Milvus Lite acknowledges a rename without doing it), so replacing it would mean dropping it before its " +
        "replacement is complete and verified. Nothing was changed. Restore beside it with --target big_restored, " +
        "check it, then drop big and point clients at the new name.",
    );
    assert.equal(await count(s.client, "big"), 60_000);
  });

  it("stops a restore on SIGTERM, drops what it created and says so", async function () {
    const child = spawn(
      process.execPath,
      [
        require.resolve("ts-node/dist/bin.js"),
        "--transpile-only",
        "backup/cli.ts",
        "restore",
        "--backup",
        bigId,
        "--target",
        "big_sigterm",
      ],
      { cwd: ROOT, env: { ...process.env, ...s.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    // Wait until the restore is inserting into its target, then stop it as Kubernetes would.
    for (let i = 0; i < 600 && !(await names(s.client)).includes("big_sigterm"); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    // Stop it once rows are landing: on a loaded machine a fixed delay let the inserts finish first.
    for (let i = 0; i < 300 && (await count(s.client, "big_sigterm").catch(() => 0)) === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGTERM");
    const code = await exited;
    assert.equal(code, 1, stderr);
    assert.match(stderr, /SIGTERM received: stopping after the current batch/);
    assert.match(
      lastLine(stderr),
      new RegExp(
        // Mid-insert as a rule; "before flushing" when the last batch was already in when SIGTERM came.
        `^error: restore of ${bigId} into big_sigterm failed: stopped \\(SIGTERM\\) (after \\d+ of 60000 rows|before flushing)\\. ` +
          "State: the partial collection big_sigterm was dropped\\. Next: run the same restore again when ready\\.$",
      ),
    );
    assert.equal((await names(s.client)).includes("big_sigterm"), false);
    // The lock was released: the next run starts at once.
    const again = await runCli(["restore", "--backup", bigId, "--target", "big_after", "--json"], s.env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(await count(s.client, "big_after"), 60_000);
  });

  it("stops a backup on SIGTERM without a manifest, so nothing half-done is listed", async function () {
    const before = (await listBackups(store, "big")).length;
    const stop = new AbortController();
    const milvus = await Milvus.connect({ address: s.env.MILVUS_ADDRESS ?? "", tls: false });
    try {
      const running = backupCollection(milvus, store, "big", silentLog(), {
        pageBytes: 64 * 1024,
        chunkBytes: 256 * 1024,
        signal: stop.signal,
      });
      setTimeout(() => {
        stop.abort("SIGTERM");
      }, 800);
      await assert.rejects(running, (e: Error) => {
        assert.match(
          e.message,
          /^backup of big stopped \(SIGTERM\) after \d+ of 60000 rows: no manifest was written, so backup big-\S+ is not listed; its \d+ uploaded chunk\(s\) under backups\/big-\S+\/ are removed by prune after a day\. Run the backup again\.$/,
        );
        return true;
      });
    } finally {
      await milvus.close();
    }
    assert.equal((await listBackups(store, "big")).length, before);
  });

  it("refuses a second run on the same collection while the first holds its lock", async function () {
    const lease = await store.tryLease(lockPath("small"), 15, "a restore of small by test");
    assert.ok(lease);
    try {
      const r = await runCli(["backup", "--collection", "small"], s.env);
      assert.equal(r.code, 1);
      assert.equal(
        lastLine(r.stderr),
        "error: backup of small refused: another backup or restore of small is running (a restore of small by test). " +
          "Wait for it to finish; if it died, its lock expires within 15 s.",
      );
    } finally {
      await lease.release();
    }
    // Two restores into one target at the same time: exactly one runs, the other is refused.
    const both = await Promise.all([
      runCli(["restore", "--backup", bigId, "--target", "big_twice"], s.env),
      runCli(["restore", "--backup", bigId, "--target", "big_twice"], s.env),
    ]);
    assert.deepEqual(both.map((r) => r.code).sort(), [0, 1]);
    assert.match(
      lastLine(both.find((r) => r.code === 1)?.stderr ?? ""),
      /another backup or restore of big_twice is running/,
    );
    assert.equal(await count(s.client, "big_twice"), 60_000);
  });

  it("never writes a torn backup when rows change mid-read on a server that cannot pin reads", async function () {
    const milvus = await Milvus.connect({ address: s.env.MILVUS_ADDRESS ?? "", tls: false });
    const original = milvus.queryPage.bind(milvus);
    let pages = 0;
    // After the first page: one upsert changes key 0 (already read) and key 2999 (not read yet).
    milvus.queryPage = async (...args: Parameters<Milvus["queryPage"]>) => {
      const res = await original(...args);
      if (++pages === 1) {
        const data = [0, 2999].map((id) => ({ id, tag: "new", v: Array.from({ length: DIM }, () => 1) }));
        const up = await s.client.upsert({ collection_name: "small", data });
        assert.equal(up.status.code, 0, up.status.reason);
      }
      return res;
    };
    const before = (await listBackups(store, "small")).length;
    try {
      await assert.rejects(
        backupCollection(milvus, store, "small", silentLog(), { pageBytes: 8 * 1024 }),
        /^WorkerError: backup of small: rows changed while they were being read, and this server cannot pin reads to a timestamp \(Milvus Lite\)/,
      );
    } finally {
      await milvus.close();
    }
    assert.ok(pages > 2, `${pages} pages`);
    assert.equal((await listBackups(store, "small")).length, before);
    // Unchanged data backs up fine.
    const ok = await runCli(["backup", "--collection", "small", "--json"], s.env);
    assert.equal(ok.code, 0, ok.stderr);
  });

  it("writes no manifest when a chunk disappears during the backup", async function () {
    const milvus = await Milvus.connect({ address: s.env.MILVUS_ADDRESS ?? "", tls: false });
    let deleted = "";
    // What a prune with a clock far ahead did: delete a running backup's first chunk. Chunks upload
    // concurrently, so chunk 1 may finish after chunk 2: the deletion waits until both are stored
    // (deleting before chunk 1 exists would let its upload re-create it, and the backup would pass).
    const stored = new Set<string>();
    const sabotaged: BlobStore = Object.assign(Object.create(store) as BlobStore, {
      put: async (name: string, data: Buffer) => {
        await store.put(name, data);
        stored.add(name);
        const first = [...stored].find((n) => n.endsWith("000001.chunk"));
        const second = [...stored].some((n) => n.endsWith("000002.chunk"));
        if (first !== undefined && second && !deleted) {
          deleted = first;
          await store.delete(deleted);
        }
      },
    });
    try {
      await assert.rejects(
        backupCollection(milvus, sabotaged, "small", silentLog(), {
          chunkBytes: 40 * 1024,
          pageBytes: 8 * 1024,
        }),
        (e: Error) => {
          assert.match(
            e.message,
            /^backup of small: 1 uploaded chunk\(s\) are missing or changed in .*\(backups\/small-\S+\/chunks\/000001\.chunk\); something deleted them during the backup\. No backup was written; run it again\.$/,
          );
          return true;
        },
      );
    } finally {
      await milvus.close();
    }
    assert.match(deleted, /^backups\/small-\S+\/chunks\/000001\.chunk$/);
    assert.equal(deleted, chunkPath(deleted.split("/")[1] ?? "", 1));
  });

  it("names the backup, the target, what is left and the next step when Milvus dies mid-restore", async function () {
    // A second Milvus Lite as the restore target, killed (SIGKILL) while the restore inserts.
    const target = await startMilvusLite();
    const client = new MilvusClient({ address: target.address, logLevel: "error" });
    try {
      const running = runCli(["restore", "--backup", bigId, "--target", "big_dies"], {
        ...s.env,
        MILVUS_ADDRESS: target.address,
      });
      for (let i = 0; i < 600; i++) {
        const listed = await client.listCollections().catch(() => undefined);
        if (listed?.data.some((c) => c.name === "big_dies")) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 1000));
      process.kill(target.pid, "SIGKILL");
      const r = await running;
      assert.equal(r.code, 1);
      assert.match(
        lastLine(r.stderr),
        new RegExp(
          `^error: restore of ${bigId} into big_dies failed: .*(UNAVAILABLE|ECONNREFUSED).*\\. ` +
            "State: the partial collection big_dies is left behind, unverified \\(dropping it failed: .*\\)\\. " +
            'Next: once Milvus answers, drop big_dies \\(e\\.g\\. pymilvus MilvusClient\\.drop_collection\\("big_dies"\\)\\), then run the same restore again\\.$',
        ),
      );
      assert.doesNotMatch(r.stderr, /unexpected failure/);
    } finally {
      await client.closeConnection().catch(() => undefined);
      await target.stop();
    }
  });

  it("tells an unreachable storage account from a damaged backup, and leaves nothing behind", async function () {
    // Storage answers 503 to every download of the backup's first chunk, past all retries.
    const proxy = await startFaultProxy(s.azurite.port);
    try {
      proxy.plan({
        method: "GET",
        path: "/chunks/000001.chunk",
        fault: { kind: "status", status: 503 },
        times: Infinity,
      });
      const before = await names(s.client);
      const r = await runCli(
        ["restore", "--backup", bigId, "--target", "big_blip"],
        { ...s.env, AZURE_STORAGE_CONNECTION_STRING: proxy.connectionString },
        (settings) =>
          new AzureBlobStore({
            ...settings,
            retry: { maxTries: 3, retryDelayInMs: 10, maxRetryDelayInMs: 20 },
          }),
      );
      assert.equal(r.code, 1);
      const line = lastLine(r.stderr);
      assert.match(
        line,
        new RegExp(
          `^error: restore of ${bigId} into big_blip failed: downloading backups/${bigId}/chunks/000001\\.chunk in .* failed after 3 tries over [\\d.]+ s: .*503.*; the storage account was unreachable or throttling: this is transient, retry the command\\. ` +
            "State: the partial collection big_blip was dropped\\. Next: this looks transient: run the same restore again\\.$",
        ),
      );
      assert.doesNotMatch(line, /damaged/);
      assert.deepEqual(await names(s.client), before);
    } finally {
      await proxy.close();
    }
  });

  it("never echoes the value of a mistyped flag or a stray argument", async function () {
    const typo = await runCli(["restore", "--backup", bigId, "--milvus-tokn=root:Sup3rSecret"], s.env);
    assert.equal(typo.code, 2);
    assert.doesNotMatch(typo.stderr, /Sup3rSecret/);
    assert.match(
      lastLine(typo.stderr),
      /^error: restore: unknown flag "--milvus-tokn" \(its value is not shown\);/,
    );
    const stray = await runCli(["list", "root:Sup3rSecret"], s.env);
    assert.equal(stray.code, 2);
    assert.doesNotMatch(stray.stderr, /Sup3rSecret/);
    assert.match(
      lastLine(stray.stderr),
      /^error: list: unknown argument #2 \(not shown: it may be a secret\);/,
    );
  });
});
