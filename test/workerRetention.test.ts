/**
 * Retention and listing against a real Azurite: a damaged backup (a chunk missing or of the wrong size,
 * an unreadable manifest) is reported, never counted toward keep-last or "newest" and never deleted;
 * every age is measured on the storage's clock, whatever this worker's clock says.
 *
 * Fixtures are written the way the worker writes backups (format.ts: chunk files built by buildChunk,
 * manifests typed as Manifest, chunkPath/manifestPath), with the manifest time set to the age wanted.
 */
import * as assert from "node:assert/strict";
import { AzureBlobStore, type BlobStore } from "../backup/blobStore";
import { listBackups, listCatalog } from "../backup/catalog";
import { WorkerError } from "../backup/errors";
import {
  buildChunk,
  chunkPath,
  FORMAT_VERSION,
  MANIFEST_KIND,
  manifestPath,
  sha256,
  type ChunkEntry,
  type CollectionDef,
  type Manifest,
} from "../backup/format";
import { Log } from "../backup/log";
import { LEFTOVER_AGE_MS, PROBE_PREFIX, prune, readStorageTime, type PruneResult } from "../backup/prune";
import { startAzurite, type AzuriteServer } from "../tools/local-servers";
import { runCli } from "./support/workerEnv";

const DAY = 24 * 3600 * 1000;
const HOUR = 3600 * 1000;
const KEPT_NEWEST = "newest complete backup of its collection";
const RUNNING = "incomplete and younger than a day (may still be running)";

/** The schema part of a manifest: an int64 key and a float vector, as describeCollection captures it. */
function schema(name: string): CollectionDef {
  const field = (over: Partial<CollectionDef["fields"][number]>): CollectionDef["fields"][number] => ({
    name: "",
    dataType: "",
    isPrimaryKey: false,
    autoID: false,
    description: "",
    typeParams: {},
    defaultValue: null,
    isPartitionKey: false,
    isClusteringKey: false,
    nullable: false,
    isFunctionOutput: false,
    ...over,
  });
  return {
    name,
    description: "",
    fields: [
      field({ name: "pk", fieldID: "100", dataType: "Int64", isPrimaryKey: true }),
      field({ name: "vec", fieldID: "101", dataType: "FloatVector", typeParams: { dim: "2" } }),
    ],
    functions: [],
    enableDynamicField: false,
    shardsNum: 1,
    consistencyLevel: "Bounded",
    properties: {},
    numPartitions: 0,
    partitions: ["_default"],
    aliases: [],
    indexes: [],
    loaded: true,
  };
}

/** A real chunk file: `rows` rows of pk (int64) and vec (2 floats). */
async function chunkFile(rows: number, seed: number): Promise<Buffer> {
  const pk = Buffer.alloc(rows * 8);
  const vec = Buffer.alloc(rows * 8);
  for (let i = 0; i < rows; i++) {
    pk.writeBigInt64LE(BigInt(seed * 1000 + i), i * 8);
    vec.writeFloatLE(i / 8, i * 8);
    vec.writeFloatLE(seed / 8, i * 8 + 4);
  }
  return buildChunk(rows, "", [
    { header: { name: "pk", kind: "int64", dataType: "Int64", count: rows, hasValid: false }, parts: [pk] },
    {
      header: { name: "vec", kind: "f32vec", dataType: "FloatVector", dim: 2, count: rows, hasValid: false },
      parts: [vec],
    },
  ]);
}

let serial = 0;

/** The id backup.ts would give a backup of `collection` taken at `at` (with a predictable suffix). */
function backupId(collection: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  serial++;
  return `${collection}-${stamp}-${serial.toString(16).padStart(6, "0")}`;
}

interface Fixture {
  id: string;
  manifest: Manifest;
  chunks: Buffer[];
}

/** Chunks first, manifest last, as the worker writes them. */
async function writeBackup(
  store: BlobStore,
  collection: string,
  time: Date,
  chunkCount: number,
  opts: { manifest?: boolean } = {},
): Promise<Fixture> {
  const id = backupId(collection, time);
  const chunks: Buffer[] = [];
  const entries: ChunkEntry[] = [];
  for (let seq = 1; seq <= chunkCount; seq++) {
    const data = await chunkFile(10 + seq, seq);
    chunks.push(data);
    entries.push({
      file: chunkPath(id, seq),
      partition: "",
      rows: 10 + seq,
      bytes: data.length,
      sha256: sha256(data),
    });
    await store.put(chunkPath(id, seq), data);
  }
  const manifest: Manifest = {
    kind: MANIFEST_KIND,
    formatVersion: FORMAT_VERSION,
    backupId: id,
    collection,
    time: time.toISOString(),
    completedAt: new Date(time.getTime() + 60_000).toISOString(),
    tool: { name: "milvus-azure-backup", version: "test" },
    snapshot: { flushTimestamp: null, method: "count-recheck" },
    rows: entries.reduce((n, c) => n + c.rows, 0),
    bytes: entries.reduce((n, c) => n + c.bytes, 0),
    rawBytes: entries.reduce((n, c) => n + c.rows * 16, 0),
    chunkTargetBytes: 16 * 1024 * 1024,
    schema: schema(collection),
    columns: ["pk", "vec"],
    chunks: entries,
  };
  if (opts.manifest !== false) await writeManifest(store, manifest);
  return { id, manifest, chunks };
}

async function writeManifest(store: BlobStore, m: Manifest): Promise<void> {
  await store.put(manifestPath(m.backupId), Buffer.from(JSON.stringify(m, null, 1), "utf8"));
}

async function blobNames(store: BlobStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const b of store.list(prefix)) out.push(b.name);
  return out.sort();
}

async function lastModified(store: BlobStore, name: string): Promise<Date> {
  for await (const b of store.list(name)) if (b.name === name) return b.lastModified;
  throw new Error(`${name} is not listed`);
}

/** The chunk blobs of a fixture (what a running backup has uploaded so far). */
const chunkBlobs = (f: Fixture) => f.manifest.chunks.map((c) => c.file).sort();

/** Every blob of a fixture, manifest included. */
const allBlobs = (f: Fixture, without: number[] = []) =>
  [
    manifestPath(f.id),
    ...f.manifest.chunks.map((c) => c.file).filter((_, i) => !without.includes(i + 1)),
  ].sort();

/** Runs `fn` with this process's clock `ms` ahead (every `new Date()` and `Date.now()`, the SDK's too). */
async function withClockAhead<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const RealDate = Date;
  class AheadDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(RealDate.now() + ms);
      else super(...(args as [number, number, number, number, number, number, number]));
    }
    static override now(): number {
      return RealDate.now() + ms;
    }
  }
  globalThis.Date = AheadDate as DateConstructor;
  try {
    return await fn();
  } finally {
    globalThis.Date = RealDate;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pairs = (entries: { backupId: string; reason: string }[]) => entries.map((e) => [e.backupId, e.reason]);

describe("worker retention against Azurite: damaged backups and the storage's clock", function () {
  this.timeout(120_000);
  let azurite: AzuriteServer;

  before(async function () {
    azurite = await startAzurite();
  });

  after(async function () {
    await azurite.stop();
  });

  async function container(name: string): Promise<AzureBlobStore> {
    const store = new AzureBlobStore({ container: name, connectionString: azurite.connectionString });
    await store.ensureContainer();
    return store;
  }

  const quiet = () => new Log({ write: () => true }, true);
  const env = (name: string) => ({
    PATH: process.env.PATH,
    BACKUP_CONTAINER: name,
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
  });

  it("keeps the older intact backup when the newest has a missing chunk, and reports the damaged one", async function () {
    const store = await container("ret-missing");
    const now = await readStorageTime(store);
    const a = await writeBackup(store, "docs", new Date(now.getTime() - 40 * DAY), 2);
    const b = await writeBackup(store, "docs", new Date(now.getTime() - 35 * DAY), 2);
    const c = await writeBackup(store, "docs", new Date(now.getTime() - 2 * DAY), 3);
    const d = await writeBackup(store, "other", new Date(now.getTime() - 50 * DAY), 1);
    assert.equal(await store.delete(chunkPath(c.id, 2)), "deleted");
    const damagedC = {
      backupId: c.id,
      collection: "docs",
      time: c.manifest.time,
      reason: `1 of 3 chunks missing or of the wrong size: ${chunkPath(c.id, 2)}: missing`,
    };

    assert.deepEqual(await listCatalog(store), {
      backups: [b, a, d].map((f) => ({
        backupId: f.id,
        collection: f.manifest.collection,
        time: f.manifest.time,
        rows: f.manifest.rows,
        bytes: f.manifest.bytes,
        chunks: f.manifest.chunks.length,
        formatVersion: 2,
      })),
      damaged: [damagedC],
    });

    const log = quiet();
    const r = await prune(store, { retentionDays: 30, keepLast: 1, dryRun: false }, log);
    assert.deepEqual(pairs(r.deleted), [[a.id, "older than 30 days"]]);
    assert.deepEqual(
      pairs(r.kept).sort(),
      [
        [b.id, KEPT_NEWEST],
        [d.id, KEPT_NEWEST],
      ].sort(),
    );
    assert.deepEqual(r.damaged, [damagedC]);
    assert.deepEqual(r.skipped, []);
    assert.equal(r.clock.source, "storage");
    assert.deepEqual(log.warnings, [
      `backup ${c.id} is damaged (${damagedC.reason}); it does not count toward retention and is not deleted: ` +
        "run verify on it, and delete it by hand once it is no longer needed as evidence",
    ]);

    assert.deepEqual(await blobNames(store, `backups/${a.id}/`), []);
    assert.deepEqual(await blobNames(store, `backups/${b.id}/`), allBlobs(b));
    assert.deepEqual(await blobNames(store, `backups/${c.id}/`), allBlobs(c, [2]));
    assert.deepEqual(await blobNames(store, `backups/${d.id}/`), allBlobs(d));
    assert.deepEqual(await blobNames(store, PROBE_PREFIX), [], "the clock probe is removed");

    // The next run changes nothing: the damaged backup still does not count, and is still there.
    const again = await prune(store, { retentionDays: 30, keepLast: 1, dryRun: false }, quiet());
    assert.deepEqual(again.deleted, []);
    assert.deepEqual(again.damaged, [damagedC]);
  });

  it("counts a chunk of the wrong size as damaged, and never deletes a damaged backup however old", async function () {
    const store = await container("ret-size");
    const now = await readStorageTime(store);
    const e = await writeBackup(store, "docs", new Date(now.getTime() - 40 * DAY), 1);
    const f = await writeBackup(store, "docs", new Date(now.getTime() - 1 * DAY), 2);
    const g = await writeBackup(store, "docs", new Date(now.getTime() - 90 * DAY), 5);
    // f's first chunk lost its last 3 bytes (a torn upload); g lost four of its five chunks.
    const torn = (f.chunks[0] ?? Buffer.alloc(0)).subarray(0, (f.chunks[0]?.length ?? 0) - 3);
    await store.put(chunkPath(f.id, 1), torn);
    for (const seq of [1, 2, 4, 5]) await store.delete(chunkPath(g.id, seq));
    const expectedDamaged = [
      {
        backupId: f.id,
        collection: "docs",
        time: f.manifest.time,
        reason:
          `1 of 2 chunks missing or of the wrong size: ${chunkPath(f.id, 1)}: size ${torn.length} bytes, ` +
          `manifest says ${f.manifest.chunks[0]?.bytes}`,
      },
      {
        backupId: g.id,
        collection: "docs",
        time: g.manifest.time,
        reason:
          `4 of 5 chunks missing or of the wrong size: ${chunkPath(g.id, 1)}: missing; ${chunkPath(g.id, 2)}: missing; ` +
          `${chunkPath(g.id, 4)}: missing; and 1 more`,
      },
    ].sort((x, y) => x.backupId.localeCompare(y.backupId));

    const dry = await prune(store, { retentionDays: 30, keepLast: 1, dryRun: true }, quiet());
    const r = await prune(store, { retentionDays: 30, keepLast: 1, dryRun: false }, quiet());
    for (const x of [dry, r]) {
      assert.deepEqual(x.deleted, []);
      assert.deepEqual(pairs(x.kept), [[e.id, KEPT_NEWEST]]);
      assert.deepEqual(x.damaged, expectedDamaged);
    }
    assert.deepEqual(await blobNames(store, `backups/${e.id}/`), allBlobs(e));
    assert.deepEqual(await blobNames(store, `backups/${f.id}/`), allBlobs(f));
    assert.deepEqual(await blobNames(store, `backups/${g.id}/`), allBlobs(g, [1, 2, 4, 5]));
    assert.deepEqual(
      (await listBackups(store)).map((x) => x.backupId),
      [e.id],
    );
  });

  it("with this worker's clock 25 h ahead, deletes nothing of a running backup and ages backups on the storage's clock", async function () {
    const store = await container("ret-clock");
    const now = await readStorageTime(store);
    const s1 = await writeBackup(store, "s", new Date(now.getTime() - 29.5 * DAY), 1);
    const s2 = await writeBackup(store, "s", new Date(now.getTime() - 1 * DAY), 1);
    // A backup that is running: its chunks are uploaded, its manifest is not written yet.
    const running = await writeBackup(store, "docs", now, 2, { manifest: false });

    const log = quiet();
    const r: PruneResult = await withClockAhead(25 * HOUR, () =>
      prune(store, { retentionDays: 30, keepLast: 1, dryRun: false }, log),
    );
    assert.deepEqual(r.deleted, []);
    assert.deepEqual(pairs(r.kept), [
      [s2.id, KEPT_NEWEST],
      [s1.id, "within 30 days"],
      [running.id, RUNNING],
    ]);
    assert.equal(r.clock.source, "storage");
    const ahead = r.clock.workerAheadSeconds ?? 0;
    assert.ok(Math.abs(ahead - 25 * 3600) <= 30, `worker ahead by ${ahead} s`);
    assert.ok(
      Math.abs(Date.parse(r.clock.storageTime ?? "") - Date.now()) < 30_000,
      r.clock.storageTime ?? "",
    );
    assert.equal(log.warnings.length, 1);
    assert.match(
      log.warnings[0] ?? "",
      /^this worker's clock is 25\.0\d h ahead of the storage's; prune measures ages/,
    );
    assert.deepEqual(await blobNames(store, `backups/${running.id}/`), chunkBlobs(running));
    assert.deepEqual(await blobNames(store, `backups/${s1.id}/`), allBlobs(s1));

    // The running backup finishes: with every chunk still there, it is an intact backup.
    await writeManifest(store, running.manifest);
    const cat = await listCatalog(store, "docs");
    assert.deepEqual(
      cat.backups.map((b) => b.backupId),
      [running.id],
    );
    assert.deepEqual(cat.damaged, []);
  });

  it("falls back to the newest blob's time, never this worker's clock, when the storage's time cannot be probed", async function () {
    const real = await container("ret-fallback");
    const running = await writeBackup(real, "docs", new Date(), 1, { manifest: false });
    const newest = await lastModified(real, chunkPath(running.id, 1));
    // A store that may not write under probes/ (as with a role that cannot create new blobs there).
    class NoProbes extends AzureBlobStore {
      override put(n: string, d: Buffer): Promise<void> {
        if (n.startsWith(PROBE_PREFIX))
          return Promise.reject(
            new WorkerError(`uploading ${n} failed (HTTP 403, AuthorizationPermissionMismatch)`),
          );
        return super.put(n, d);
      }
    }
    const noProbes = new NoProbes({ container: "ret-fallback", connectionString: azurite.connectionString });
    const log = quiet();
    const r = await withClockAhead(25 * HOUR, () =>
      prune(noProbes, { retentionDays: 30, keepLast: 1, dryRun: false }, log),
    );
    assert.deepEqual(r.deleted, []);
    assert.deepEqual(pairs(r.kept), [[running.id, RUNNING]]);
    assert.deepEqual(
      { ...r.clock, workerTime: "" },
      { source: "newest-blob", storageTime: newest.toISOString(), workerTime: "", workerAheadSeconds: null },
    );
    assert.equal(log.warnings.length, 1);
    assert.match(
      log.warnings[0] ?? "",
      /^cannot read the storage's time with a probe blob under probes\/ \(uploading probes\/clock-[0-9a-f]{12} failed \(HTTP 403, AuthorizationPermissionMismatch\)\); ages are measured against the newest backup blob instead/,
    );
    assert.deepEqual(await blobNames(real, `backups/${running.id}/`), chunkBlobs(running));
  });

  it("deletes a leftover only once its newest blob is a day old on the storage's clock", async function () {
    const store = await container("ret-leftover");
    const old = await writeBackup(store, "docs", new Date(), 1, { manifest: false });
    const mixed = await writeBackup(store, "docs", new Date(), 1, { manifest: false });
    // lastModified has whole-second precision: two seconds apart are two different values.
    await sleep(2100);
    await store.put(chunkPath(mixed.id, 2), await chunkFile(3, 2));
    const oldAt = await lastModified(store, chunkPath(old.id, 1));
    const mixedNewest = await lastModified(store, chunkPath(mixed.id, 2));
    assert.ok(mixedNewest.getTime() - oldAt.getTime() >= 2000);

    // By the storage's real clock both are seconds old.
    const today = await prune(store, { retentionDays: 30, keepLast: 1, dryRun: true }, quiet());
    assert.deepEqual(pairs(today.kept), [
      [old.id, RUNNING],
      [mixed.id, RUNNING],
    ]);
    assert.deepEqual(today.deleted, []);

    // The storage's clock exactly a day after the older leftover's newest blob.
    const r = await prune(
      store,
      { retentionDays: 30, keepLast: 1, dryRun: false, now: new Date(oldAt.getTime() + LEFTOVER_AGE_MS) },
      quiet(),
    );
    assert.deepEqual(r.deleted, [
      { backupId: old.id, time: oldAt.toISOString(), reason: "leftover of an interrupted backup" },
    ]);
    // Its first chunk is as old, but its newest blob is not: it may still be running.
    assert.deepEqual(pairs(r.kept), [[mixed.id, RUNNING]]);
    assert.equal(r.clock.source, "given");
    assert.deepEqual(await blobNames(store, `backups/${old.id}/`), []);
    assert.deepEqual(await blobNames(store, `backups/${mixed.id}/`), [
      chunkPath(mixed.id, 1),
      chunkPath(mixed.id, 2),
    ]);
  });

  it("trusts a manifest time only up to when the storage received the manifest", async function () {
    const store = await container("ret-future");
    // Written by a worker whose clock ran a year ahead, before the other backup.
    const ahead = await writeBackup(
      store,
      "f",
      new Date((await readStorageTime(store)).getTime() + 365 * DAY),
      1,
    );
    await sleep(2100);
    const later = await writeBackup(store, "f", await readStorageTime(store), 1);
    const r = await prune(store, { retentionDays: 0, keepLast: 1, dryRun: false }, quiet());
    assert.deepEqual(pairs(r.kept), [[later.id, KEPT_NEWEST]]);
    assert.deepEqual(pairs(r.deleted), [[ahead.id, "older than 0 days"]]);
    assert.deepEqual(await blobNames(store, `backups/${later.id}/`), allBlobs(later));
  });

  it("lists the other backups and reports each damaged manifest; prune goes on around them", async function () {
    const name = "ret-manifest";
    const store = await container(name);
    const now = await readStorageTime(store);
    const old = new Date(now.getTime() - 100 * DAY);
    const g1 = await writeBackup(store, "docs", new Date(now.getTime() - 40 * DAY), 1);
    const g2 = await writeBackup(store, "docs", new Date(now.getTime() - 1 * DAY), 1);
    const bad = async (label: string, manifest: (f: Fixture) => string) => {
      const f = await writeBackup(store, "docs", old, 1, { manifest: false });
      await store.put(manifestPath(f.id), Buffer.from(manifest(f), "utf8"));
      return { f, label };
    };
    const broken = [
      await bad("not JSON", (f) => JSON.stringify(f.manifest).slice(0, 200)),
      await bad("null", () => "null"),
      await bad("wrong kind", (f) => JSON.stringify({ ...f.manifest, kind: "milvus-collection-export" })),
      await bad("newer format", (f) => JSON.stringify({ ...f.manifest, formatVersion: 3 })),
      await bad("other backup", () => JSON.stringify(g1.manifest)),
      await bad("no chunk sizes", (f) =>
        JSON.stringify({
          ...f.manifest,
          chunks: f.manifest.chunks.map(({ file, rows }) => ({ file, rows })),
        }),
      ),
    ];
    const [notJson, nul, kind, version, other, sizes] = broken.map((x) => x.f.id);
    const damaged = [
      {
        backupId: notJson,
        reason: `backup ${notJson}: manifest.json is not valid JSON; the backup is damaged`,
      },
      { backupId: nul, reason: `backup ${nul}: manifest.json is not a backup manifest` },
      { backupId: kind, reason: `backup ${kind}: manifest.json is not a backup manifest` },
      {
        backupId: version,
        reason: `backup ${version} has format version 3; this worker reads up to 2: use a newer worker image`,
      },
      { backupId: other, reason: `backup ${other}: manifest names a different backup (${g1.id})` },
      { backupId: sizes, reason: `backup ${sizes}: manifest.json is incomplete; the backup is damaged` },
    ].sort((x, y) => x.backupId.localeCompare(y.backupId));

    const cat = await listCatalog(store);
    assert.deepEqual(
      cat.backups.map((b) => b.backupId),
      [g2.id, g1.id],
    );
    assert.deepEqual(cat.damaged, damaged);
    // A damaged manifest's collection is unknown: it is shown whatever the collection asked for.
    assert.deepEqual(await listCatalog(store, "elsewhere"), { backups: [], damaged });
    assert.deepEqual(
      (await listBackups(store)).map((b) => b.backupId),
      [g2.id, g1.id],
    );
    const cli = await runCli(["list", "--json"], env(name));
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(
      (cli.json as { backups: { backupId: string }[] }).backups.map((b) => b.backupId),
      [g2.id, g1.id],
    );

    const r = await prune(store, { retentionDays: 30, keepLast: 1, dryRun: false }, quiet());
    assert.deepEqual(pairs(r.deleted), [[g1.id, "older than 30 days"]]);
    assert.deepEqual(pairs(r.kept), [[g2.id, KEPT_NEWEST]]);
    assert.deepEqual(r.damaged, damaged);
    for (const { f } of broken) {
      assert.deepEqual(await blobNames(store, `backups/${f.id}/`), allBlobs(f), f.id);
    }
  });
});
