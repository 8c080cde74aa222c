/**
 * backup: consistent, complete copies of collections in the backup container.
 *
 * All collections of one run are flushed in one request and, where the server proves it reads at a given
 * timestamp (readsPinTimestamp), read pinned to ONE timestamp (the cut, the earliest of their flush
 * timestamps); elsewhere each is read unpinned and checked by reading it again. Reads go
 * in primary-key order (a cursor on the key, never offsets), into chunk files of bounded size that are
 * uploaded while the next pages are read. The manifests (schema, indexes, chunk list with row counts
 * and SHA-256, the cut and the backups taken at it) are written last, once every collection has been
 * read, so an interrupted backup is never listed or restorable.
 *
 * After every uploaded chunk a progress record (resume.ts) says how far the backup got; `backup
 * --resume <id>` continues from there at the same cut, if the reads were pinned and the server can still
 * read at it.
 */
import { createHash, randomBytes } from "node:crypto";
import type { BlobStore } from "./blobStore";
import { ColumnAccumulator, columnSpecs, DYNAMIC_FIELD, sliceRows, type ColumnSpec } from "./columns";
import { describeError, isMilvusUnavailable, stopIfAborted, WorkerError } from "./errors";
import { qualifiedName } from "./databases";
import { lockCollection, type CollectionLock } from "./lock";
import {
  backupPrefix,
  buildChunk,
  chunkPath,
  FORMAT_VERSION,
  MANIFEST_KIND,
  manifestPath,
  schemaDigest,
  sha256,
  type BackupCut,
  type ChunkEntry,
  type CollectionDef,
  type Manifest,
} from "./format";
import { compareKeys, keyCensus, KeyCursor, pageKeys, type PageBound } from "./keyCursor";
import type { Log } from "./log";
import { Milvus, primaryField, showKey, type QueryResponse, type RawFieldData } from "./milvus";
import {
  BACKUP_PROGRESS_KIND,
  backupProgressPath,
  loadBackupProgress,
  ProgressWriter,
  type BackupProgress,
  type DoneChunk,
} from "./resume";
import { TOOL } from "./version";

export interface BackupOptions {
  /**
   * Target raw size of one chunk file. @default 16 MiB: the last chunk is uploaded after reading ends,
   * so smaller chunks shorten that tail (measured: 32 MiB gave 0.75x the raw read rate at 100,000
   * 128-d rows, 16 MiB 1.01x); memory is bounded by about three chunks.
   */
  chunkBytes?: number;
  /** Chunks being compressed/uploaded while reading continues. @default 2 */
  uploadsInFlight?: number;
  /**
   * Target size of one query page. @default 1 MiB: Milvus Lite's cost per page grows faster than the
   * page (128-d rows, measured: 2,000 rows 0.43 s, 8,000 rows 3.4 s) and it refuses pages near 8 MB;
   * on Milvus a 1 MiB page already amortises the per-request overhead.
   */
  pageBytes?: number;
  /** Stops the backup between pages (SIGTERM): no manifest is written, so nothing half-done is listed. */
  signal?: AbortSignal;
  /**
   * TESTS ONLY, never set by the CLI: lets `resumeBackup` continue a backup whose reads were not pinned.
   * The rows read before the interruption are then only checked by counting their distinct keys again,
   * not by reading them again, so a row changed meanwhile goes unnoticed: such a backup is not one point
   * in time. It exists to exercise the resume mechanics on servers that cannot pin reads.
   */
  unpinnedResumeForTestsOnly?: boolean;
}

export interface BackupSummary {
  backupId: string;
  collection: string;
  time: string;
  rows: number;
  /** Distinct primary keys in the backup. */
  distinctKeys: number;
  bytes: number;
  rawBytes: number;
  chunks: number;
  seconds: number;
  /** The cut (timestamp, or null with the reason) and the backups taken at it. */
  cut: BackupCut;
  /** SHA-256 of the manifest as written (compare with `verify`'s). */
  manifestSha256: string;
}

export interface BackupRunResult {
  backups: BackupSummary[];
  failed: { collection: string; error: string }[];
}

export const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024;
export const DEFAULT_PAGE_BYTES = 1024 * 1024;
/** Milvus rejects query pages with limit (plus offset) above 16,384. */
const MAX_PAGE_ROWS = 16_384;
export const ARRAY_PAGE_ROWS = 1_000;
/**
 * Rows per page when only primary keys are read: 4,096 keeps Milvus Lite's per-page cost low (it grows
 * faster than the page, see pageBytes) while a million keys still take only 250 requests.
 */
export const KEY_PAGE_ROWS = 4_096;

const READ_ALONE = "each collection was read as it was during its own backup and checked by reading it again";
/** Why a backup has no cut timestamp: the server reports no flush timestamp. */
export const UNPINNED_REASON =
  "this server reports no flush timestamp (Milvus Lite), so reads cannot be pinned to one point in time: " +
  READ_ALONE;
/** Why a backup has no cut timestamp: the server does not read at a given timestamp (readsPinTimestamp). */
export const TIMESTAMP_IGNORED_REASON =
  "this server does not read at a given timestamp (a read of primary keys at 1 ms after the epoch returned " +
  `rows written since), so reads cannot be pinned to one point in time: ${READ_ALONE}`;
/** Why a backup has no cut timestamp: no collection of the run had a row to probe the server with. */
export const NOTHING_TO_PROBE_REASON =
  "no collection of this backup held a row to probe whether this server reads at a given timestamp, so " +
  `reads were not pinned to one point in time: ${READ_ALONE}`;

export function newBackupId(collection: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${collection}-${stamp}-${randomBytes(3).toString("hex")}`;
}

/** Rows per page so that one page stays near `pageBytes`. */
export function pageRowsFor(specs: ColumnSpec[], def: CollectionDef, pageBytes: number): number {
  let perRow = 0;
  for (const s of specs) {
    const f = def.fields.find((x) => x.name === s.name);
    const dim = s.dim ?? 0;
    if (s.kind === "f32vec") perRow += dim * 4;
    else if (s.kind === "bytesvec") perRow += s.dataType === "BinaryVector" ? dim / 8 : dim * 2;
    else if (s.kind === "sparse") perRow += 1024;
    else if (s.kind === "string") perRow += Math.min(Number(f?.typeParams.max_length ?? 256), 1024);
    else if (s.kind === "json" || s.kind === "array") perRow += 512;
    else perRow += 8;
  }
  // Array fields make a page's cost grow faster than its size (measured on Milvus Lite 2.5: 1,000 rows
  // with one array field 0.15 s, 5,000 rows 3.5 s), so such collections are read in small pages.
  const cap = specs.some((s) => s.kind === "array") ? ARRAY_PAGE_ROWS : MAX_PAGE_ROWS;
  return Math.max(1, Math.min(cap, Math.floor(pageBytes / Math.max(perRow, 1))));
}

/**
 * The partitions a backup reads one by one (undefined: the whole collection). Partition-key
 * collections spread rows over partitions by hash; restore recomputes that, so only user-created
 * partitions are read one by one to keep each row in its partition.
 */
export function backupPartitions(def: CollectionDef): (string | undefined)[] {
  const partitioned = !def.fields.some((f) => f.isPartitionKey) && def.partitions.length > 1;
  return partitioned ? def.partitions : [undefined];
}

/**
 * Distinct primary keys of a partition (or the collection), read as pages of keys with the backup's key
 * cursor, pinned to `snapshot` when given; with `upTo`, only keys up to it. count(*) cannot stand in for
 * this: it counts every row stored under a repeated key (Milvus Lite keeps them all, measured), and
 * query iterators have returned fewer rows than count(*) (milvus-io/milvus #37514, #45485).
 */
export async function countDistinctKeys(
  milvus: Pick<Milvus, "queryPage">,
  def: CollectionDef,
  partition: string | undefined,
  snapshot: string | null,
  upTo?: string,
): Promise<number> {
  const pk = primaryField(def);
  const varchar = pk.dataType === "VarChar";
  const cursor = new KeyCursor(pk.name, varchar, KEY_PAGE_ROWS, `counting the primary keys of ${def.name}`);
  let distinct = 0;
  let prev: string | undefined;
  for (;;) {
    const res = await milvus.queryPage(def, partition, cursor.bound(), KEY_PAGE_ROWS, [pk.name], snapshot);
    const page = cursor.accept(res);
    const keys = pageKeys(res, pk.name);
    for (const i of page.keep) {
      const k = keys[i] ?? "";
      if (upTo !== undefined && compareKeys(k, upTo, varchar) > 0) return distinct;
      if (k !== prev) distinct++;
      prev = k;
    }
    if (!page.more) return distinct;
  }
}

/**
 * Whether this server's count(*) honours a guarantee timestamp: a count pinned to 1 ms after the epoch
 * (a hybrid timestamp is the physical milliseconds shifted left by 18 bits) sees no rows where it does.
 * Milvus 2.3.5 returns the current count for any timestamp (measured here: 155 rows "one day ago" of a
 * collection created a minute before), so its count(*) cannot check a read pinned to a cut taken while
 * writes go on. An empty collection proves nothing: false.
 */
export async function countPinsTimestamp(
  milvus: Pick<Milvus, "count">,
  collection: string,
): Promise<boolean> {
  const now = await milvus.count(collection, undefined, null);
  if (now === 0) return false;
  const past = await milvus.count(collection, undefined, String(1n << 18n)).catch(() => undefined);
  return past === 0;
}

/** A hybrid timestamp 1 ms after the Unix epoch: physical milliseconds << 18 (Milvus pkg/util/tsoutil). */
const EPOCH_PLUS_1MS = String(1n << 18n);

export type ReadPinning = { pinned: true } | { pinned: false; reason: string };

/**
 * Whether this server reads query-iterator pages AT their guarantee timestamp, asked BEFORE reading: a
 * page of primary keys read at 1 ms after the epoch is empty where it does, and holds today's rows where
 * the timestamp only makes the read wait until the server has caught up with it. Milvus 2.5 reads
 * iterator queries at the guarantee timestamp (internal/proxy/task_query.go PreExecute: `if
 * t.queryParams.isIterator && t.request.GetGuaranteeTimestamp() > 0 { t.MvccTimestamp = ... }`, milvus
 * issue #36599). Milvus 2.3.x does not: PR #29802 brought back only an internal MvccTimestamp set to the
 * delegator's tsafe. Measured here on Milvus 2.3.5: this read returned 5 of 50 rows, and reads at a flush
 * timestamp returned rows written after it (test/oneCut.test.ts). The first collection holding a row
 * decides (pinning is the server's, not a collection's); no row anywhere, or a refused read, proves
 * nothing: not pinned, and the reads are checked by reading again.
 */
export async function readsPinTimestamp(
  milvus: Pick<Milvus, "describe" | "queryPage">,
  collections: string[],
): Promise<ReadPinning> {
  for (const name of collections) {
    const def = await milvus.describe(name);
    const pk = primaryField(def);
    const now = await milvus.queryPage(def, undefined, null, 1, [pk.name], null);
    if (pageKeys(now, pk.name).length === 0) continue;
    let past: QueryResponse;
    try {
      past = await milvus.queryPage(def, undefined, null, 1, [pk.name], EPOCH_PLUS_1MS);
    } catch (e) {
      return {
        pinned: false,
        reason:
          `this server refused a read at a given timestamp (${describeError(e)}), so reads cannot be pinned to ` +
          `one point in time: ${READ_ALONE}`,
      };
    }
    return pageKeys(past, pk.name).length === 0
      ? { pinned: true }
      : { pinned: false, reason: TIMESTAMP_IGNORED_REASON };
  }
  return { pinned: false, reason: NOTHING_TO_PROBE_REASON };
}

/** One collection of a run: everything fixed before its rows are read. */
interface Plan {
  collection: string;
  backupId: string;
  /** When the snapshot was taken (after the flush). */
  time: Date;
  /** The cut every read is pinned to, null where the reads are not pinned. */
  cut: string | null;
  /** Why the reads are not pinned (recorded with a null cut). */
  unpinnedReason: string;
  /** The collection's own flush timestamp (the cut is the earliest of the run's). */
  flushTimestamp: string | null;
  countsPinned: boolean;
  /** The backups of the run (one per collection), recorded in the progress record. */
  runIds: string[];
  /** The interrupted run's progress, when resuming. */
  resume?: BackupProgress;
}

/** A collection read completely: its manifest, written once every collection of the run is read. */
interface Prepared {
  plan: Plan;
  manifest: Manifest;
  progress: ProgressWriter;
  started: number;
}

/** Backs up one collection (a run of one). */
export async function backupCollection(
  milvus: Milvus,
  store: BlobStore,
  collection: string,
  log: Log,
  opts: BackupOptions = {},
): Promise<BackupSummary> {
  const run = await backupCollections(milvus, store, [collection], log, opts, true);
  const done = run.backups.at(0);
  if (!done) throw new WorkerError(run.failed.at(0)?.error ?? `backup of ${collection} failed`);
  return done;
}

/**
 * Backs up several collections at one cut: one flush of all of them, every read pinned to the earliest
 * flush timestamp where the server pins reads (otherwise each is read and checked on its own). One collection failing does not cost the others their backup (the caller reports
 * it); with `rethrow` (a run of one) its error is thrown as it is.
 */
export async function backupCollections(
  milvus: Milvus,
  store: BlobStore,
  names: string[],
  log: Log,
  opts: BackupOptions = {},
  rethrow = false,
): Promise<BackupRunResult> {
  const result: BackupRunResult = { backups: [], failed: [] };
  const fail = (collection: string, e: unknown) => {
    const error = wrapFailure(collection, e);
    if (rethrow) throw error;
    result.failed.push({ collection, error: describeError(error) });
  };
  // Backups and restores of one collection never interleave (lock.ts); taken in name order.
  const locks = new Map<string, CollectionLock>();
  try {
    for (const c of [...new Set(names)].sort()) {
      try {
        locks.set(c, await lockCollection(store, c, `backup of ${c}`, log, milvus.database));
      } catch (e) {
        fail(c, e);
      }
    }
    const locked = names.filter((n, i) => locks.has(n) && names.indexOf(n) === i);
    if (locked.length === 0) return result;
    let flushed: Map<string, string | null>;
    try {
      // One flush request for all: the data of every collection is sealed at (nearly) the same moment.
      flushed = await milvus.flushAll(locked);
    } catch (e) {
      for (const c of locked) fail(c, e);
      return result;
    }
    const time = new Date();
    const stamps = [...flushed.values()];
    // The earliest flush timestamp: every collection's data up to it is sealed by the flush, so a read
    // pinned to it sees every row written before it and none after, in each collection, where the
    // server pins iterator reads (readsPinTimestamp). Not the latest: on Milvus 2.3.5 a read at a later
    // timestamp missed rows written to a collection between its own flush and it (measured here: a batch
    // at ...575 was not returned by a read at ...577 of a collection flushed at ...574).
    const earliest = stamps.every((t) => t !== null)
      ? stamps.reduce((a, b) => (BigInt(b) < BigInt(a) ? b : a))
      : null;
    // Milvus 2.3.5 reports flush timestamps but does not read at them (measured: reads at the cut
    // returned rows written after it): only a server that proves it pins gets pinned reads and a cut.
    let pinning: ReadPinning = { pinned: false, reason: UNPINNED_REASON };
    if (earliest !== null) {
      try {
        pinning = await readsPinTimestamp(milvus, locked);
      } catch (e) {
        for (const c of locked) fail(c, e);
        return result;
      }
    }
    const cut = pinning.pinned ? earliest : null;
    const unpinnedReason = pinning.pinned ? "" : pinning.reason;
    const countsPinned = cut !== null && (await countPinsTimestamp(milvus, locked[0] ?? ""));
    const prepared: Prepared[] = [];
    const runIds = locked.map((c) => newBackupId(qualifiedName(milvus.database, c), time));
    for (const [i, collection] of locked.entries()) {
      const lock = locks.get(collection);
      const plan: Plan = {
        collection,
        backupId: runIds[i] ?? "",
        time,
        cut,
        unpinnedReason,
        flushTimestamp: flushed.get(collection) ?? null,
        countsPinned,
        runIds,
      };
      try {
        const signal = lockedSignal(opts.signal, lock);
        prepared.push(await readCollection(milvus, store, plan, log, { ...opts, signal }));
      } catch (e) {
        fail(collection, e);
      }
    }
    const ids = prepared.map((p) => p.plan.backupId);
    for (const p of prepared) {
      try {
        result.backups.push(await writeManifest(store, p, ids, log));
      } catch (e) {
        fail(p.plan.collection, e);
      }
    }
    return result;
  } finally {
    for (const lock of locks.values()) await lock.release();
  }
}

/**
 * Continues an interrupted backup from its last completed chunk, at the cut it started at. Refused
 * (with the reason) where the server cannot pin reads, or can no longer read at the cut as it did.
 */
export async function resumeBackup(
  milvus: Milvus,
  store: BlobStore,
  backupId: string,
  log: Log,
  opts: BackupOptions = {},
): Promise<BackupSummary> {
  const refuse = (why: string, next = "Start a new backup instead (backup --collection <name>).") =>
    new WorkerError(`backup --resume ${backupId} refused: ${why}. ${next}`);
  if (await store.exists(manifestPath(backupId))) {
    throw refuse("that backup is complete (it has a manifest)", "Nothing to do; see `list`.");
  }
  const progress = await loadBackupProgress(store, backupId);
  if (!progress) {
    throw refuse(
      `there is no progress record ${backupProgressPath(backupId)} in ${store.location} (the backup never ` +
        "uploaded a chunk, or its leftovers were pruned)",
    );
  }
  const start = `Start a new backup instead (backup --collection ${progress.collection}).`;
  if (progress.cut.timestamp === null && !opts.unpinnedResumeForTestsOnly) {
    throw refuse(
      `${progress.cut.reason ?? UNPINNED_REASON}; rows read before and after the interruption would come from ` +
        "different points in time",
      start,
    );
  }
  if (progress.database !== milvus.database) await milvus.useDatabase(progress.database);
  const { collection } = progress;
  const lock = await lockCollection(store, collection, `backup of ${collection}`, log, milvus.database);
  try {
    const plan: Plan = {
      collection,
      backupId,
      time: new Date(progress.time),
      cut: progress.cut.timestamp,
      unpinnedReason: progress.cut.reason ?? UNPINNED_REASON,
      flushTimestamp:
        progress.flushTimestamp === undefined ? progress.cut.timestamp : progress.flushTimestamp,
      countsPinned: progress.countsPinned,
      runIds: progress.cut.backupIds,
      resume: progress,
    };
    const prepared = await readCollection(milvus, store, plan, log, {
      ...opts,
      signal: lockedSignal(opts.signal, lock),
    });
    // The other backups of the cut completed (or failed) in the interrupted run; those with a manifest
    // are named with this one.
    const ids: string[] = [];
    for (const id of progress.cut.backupIds) {
      if (id === backupId || (await store.exists(manifestPath(id)))) ids.push(id);
    }
    return await writeManifest(store, prepared, ids, log);
  } catch (e) {
    throw wrapFailure(collection, e);
  } finally {
    await lock.release();
  }
}

function lockedSignal(
  signal: AbortSignal | undefined,
  lock: CollectionLock | undefined,
): AbortSignal | undefined {
  if (!lock) return signal;
  return signal ? AbortSignal.any([signal, lock.lost]) : lock.lost;
}

function wrapFailure(collection: string, e: unknown): WorkerError {
  if (e instanceof WorkerError) return e;
  // A raw gRPC or storage failure: name the collection, what is left and what to do.
  return new WorkerError(
    `backup of ${collection} failed: ${describeError(e)}. No backup was written (nothing new is listed; ` +
      `uploaded chunks are removed by prune after a day). Next: ${isMilvusUnavailable(e) ? "Milvus was unreachable: run the backup again" : "see the cause, then run the backup again"}.`,
  );
}

async function writeManifest(
  store: BlobStore,
  p: Prepared,
  backupIds: string[],
  log: Log,
): Promise<BackupSummary> {
  const { manifest, plan } = p;
  manifest.cut =
    plan.cut === null
      ? { timestamp: null, backupIds, reason: plan.unpinnedReason }
      : { timestamp: plan.cut, backupIds };
  manifest.completedAt = new Date().toISOString();
  const manifestData = Buffer.from(JSON.stringify(manifest, null, 1), "utf8");
  // The manifest's digest goes to the log (and so to the cluster's log store) and the JSON output, where
  // an edit of the manifest cannot reach it: `verify` prints the digest it finds, to compare.
  const manifestSha256 = sha256(manifestData);
  await store.put(manifestPath(manifest.backupId), manifestData);
  // The backup is complete: its progress record has nothing left to say (prune removes one left behind).
  await p.progress.remove();
  const seconds = (Date.now() - p.started) / 1000;
  log.info("backup.done", {
    collection: manifest.collection,
    backupId: manifest.backupId,
    rows: manifest.rows,
    distinctKeys: manifest.distinctKeys,
    duplicateKeyRows: manifest.duplicateKeyRows,
    bytes: manifest.bytes,
    chunks: manifest.chunks.length,
    cut: manifest.cut.timestamp,
    seconds,
    manifestSha256,
  });
  return {
    backupId: manifest.backupId,
    collection: manifest.collection,
    time: manifest.time,
    rows: manifest.rows,
    distinctKeys: manifest.distinctKeys ?? manifest.rows,
    bytes: manifest.bytes,
    rawBytes: manifest.rawBytes,
    chunks: manifest.chunks.length,
    seconds,
    cut: manifest.cut,
    manifestSha256,
  };
}

/** Reads one collection at the plan's cut into chunks; returns its manifest, not yet written. */
async function readCollection(
  milvus: Milvus,
  store: BlobStore,
  plan: Plan,
  log: Log,
  opts: BackupOptions,
): Promise<Prepared> {
  const started = Date.now();
  const { collection, backupId, resume } = plan;
  const snapshot = plan.cut;
  const chunkBytes = resume?.chunkBytes ?? opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const inFlight = Math.max(1, opts.uploadsInFlight ?? 2);
  const def = await milvus.describe(collection);
  const pk = primaryField(def);
  const varcharPk = pk.dataType === "VarChar";
  const specs = columnSpecs(def.fields, def.enableDynamicField);
  const outputFields = specs.map((s) => s.name);
  // A page never exceeds a chunk: chunks are cut between pages, so this bounds memory by the chunk size.
  const pageRows =
    resume?.pageRows ?? pageRowsFor(specs, def, Math.min(opts.pageBytes ?? DEFAULT_PAGE_BYTES, chunkBytes));
  // Every chunk carries the digest of the definition the manifest will hold (as JSON stores it).
  const schemaSha256 = schemaDigest(JSON.parse(JSON.stringify(def)) as CollectionDef);
  const partitions = backupPartitions(def);
  const refuse = (why: string) =>
    new WorkerError(
      `backup --resume ${backupId} refused: ${why}. Start a new backup instead (backup --collection ${collection}).`,
    );
  if (resume && resume.schemaSha256 !== schemaSha256) {
    throw refuse(
      `the definition of ${collection} changed since the interrupted run (schema, indexes, partitions or load state)`,
    );
  }
  if (
    resume &&
    resume.partitions.map((p) => p.name).join("\u0000") !== partitions.map((p) => p ?? "").join("\u0000")
  ) {
    throw refuse(`the partitions of ${collection} changed since the interrupted run`);
  }
  const promisedPer = new Map<string | undefined, number>();
  for (const p of partitions) {
    const recorded = resume?.partitions.find((x) => x.name === (p ?? ""))?.promised;
    promisedPer.set(p, recorded ?? (await milvus.count(collection, p, snapshot)));
  }
  const promised = [...promisedPer.values()].reduce((a, b) => a + b, 0);

  // Where the interrupted run stopped: the last completed chunk's partition and key.
  const doneBefore: DoneChunk[] = resume?.chunks ?? [];
  const lastDone = doneBefore.at(-1);
  const resumeAt = lastDone ? partitions.findIndex((p) => (p ?? "") === lastDone.partition) : 0;
  if (resume) {
    await checkCutReadable(milvus, def, partitions, resumeAt, doneBefore, resume, refuse);
    // Chunks uploaded after the last recorded one are written again (their numbers are reused).
    const keep = new Set(doneBefore.map((c) => c.file));
    for await (const b of store.list(backupPrefix(backupId))) {
      if (!keep.has(b.name)) await store.delete(b.name);
    }
  }

  log.info(resume ? "backup.resume" : "backup.start", {
    collection,
    backupId,
    rows: promised,
    snapshot: snapshot ?? "strong",
    pageRows,
    ...(resume ? { chunksDone: doneBefore.length } : {}),
  });

  const progressRecord: BackupProgress = {
    kind: BACKUP_PROGRESS_KIND,
    backupId,
    collection,
    database: milvus.database,
    time: plan.time.toISOString(),
    cut: snapshot
      ? { timestamp: snapshot, backupIds: plan.runIds }
      : { timestamp: null, backupIds: plan.runIds, reason: plan.unpinnedReason },
    flushTimestamp: plan.flushTimestamp,
    countsPinned: plan.countsPinned,
    schemaSha256,
    chunkBytes,
    pageRows,
    partitions: partitions.map((p) => ({ name: p ?? "", promised: promisedPer.get(p) ?? 0 })),
    chunks: [...doneBefore],
    updatedAt: "",
  };
  const progress = new ProgressWriter(store, backupProgressPath(backupId), (e) => {
    log.warn(
      "backup.progress-unwritable",
      { backupId, error: describeError(e) },
      `cannot write the progress record of ${backupId} (${describeError(e)}); the backup goes on, but could not be resumed if interrupted`,
    );
  });
  await progress.write(progressRecord);

  const chunks: ChunkEntry[] = doneBefore.map(({ file, partition, rows, bytes, sha256: digest }) => ({
    file,
    partition,
    rows,
    bytes,
    sha256: digest,
  }));
  /** Uploaded chunks by position; the prefix without gaps goes to the progress record. */
  const done: (DoneChunk | undefined)[] = [...doneBefore];
  let prefix = done.length;
  // What was read, page by page: on a server that cannot pin reads it is read again and compared.
  const readDigest = createHash("sha256");
  const pending = new Set<Promise<void>>();
  let failure: Error | undefined;
  let seq = chunks.length;
  const sum = (f: (c: DoneChunk) => number) => doneBefore.reduce((s, c) => s + f(c), 0);
  let rowsRead = sum((c) => c.rows);
  let distinctKeys = sum((c) => c.distinct);
  /** Rows read that repeat the primary key of the row before them (kept in the backup). */
  let duplicateKeyRows = sum((c) => c.duplicateRows);
  let storedBytes = sum((c) => c.bytes);
  let rawBytes = sum((c) => c.rawBytes);
  /** Rows the server returned twice (same key and content), kept once. */
  let repeatedRows = 0;
  const stopped = async (where: string) => {
    if (!opts.signal?.aborted) return;
    await Promise.allSettled(pending);
    await progress.write(progressRecord);
    try {
      stopIfAborted(opts.signal, where);
    } catch (e) {
      const next = snapshot
        ? `Continue it with \`backup --resume ${backupId}\`, or run the backup again.`
        : "Run the backup again.";
      throw new WorkerError(
        `backup of ${collection} ${describeError(e)}: no manifest was written, so backup ${backupId} is not listed; ` +
          `its ${prefix} uploaded chunk(s) under ${backupPrefix(backupId)} are removed by prune after a day. ${next}`,
      );
    }
  };

  const accumulators = specs.map((s) => new ColumnAccumulator(s));
  let chunkRows = 0;
  let chunkFirstKey = "";
  let chunkLastKey = "";
  let chunkDistinct = 0;
  let chunkDuplicates = 0;

  const cut = async (partition: string | undefined) => {
    if (chunkRows === 0) return;
    const rows = chunkRows;
    const columns = accumulators.map((a) => a.take());
    chunkRows = 0;
    const index = seq++;
    const file = chunkPath(backupId, index + 1);
    const identity = {
      backupId,
      index: index + 1,
      firstKey: chunkFirstKey,
      lastKey: chunkLastKey,
      schemaSha256,
    };
    const entry: ChunkEntry = { file, partition: partition ?? "", rows, bytes: 0, sha256: "" };
    let raw = 0;
    for (const c of columns) for (const p of c.parts) raw += p.length;
    rawBytes += raw;
    const counted = {
      lastKey: chunkLastKey,
      distinct: chunkDistinct,
      duplicateRows: chunkDuplicates,
      rawBytes: raw,
    };
    chunkDistinct = 0;
    chunkDuplicates = 0;
    chunks.push(entry);
    while (pending.size >= inFlight) await Promise.race(pending);
    if (failure) throw failure;
    const task = (async () => {
      const data = await buildChunk(rows, partition ?? "", columns, identity);
      entry.bytes = data.length;
      entry.sha256 = sha256(data);
      await store.put(file, data);
      storedBytes += data.length;
      done[index] = { ...entry, ...counted };
      // Uploads finish out of order: the record only ever names chunks 1..n, all present.
      let advanced = false;
      for (let next = done[prefix]; next; next = done[prefix]) {
        progressRecord.chunks.push(next);
        prefix++;
        advanced = true;
      }
      if (advanced) await progress.write(progressRecord);
    })()
      .catch((e: unknown) => {
        failure ??= e instanceof Error ? e : new Error(String(e));
      })
      .finally(() => {
        pending.delete(task);
      });
    pending.add(task);
  };

  for (let pi = 0; pi < partitions.length; pi++) {
    const partition = partitions[pi];
    if (pi < resumeAt) continue;
    // A resumed partition continues after its last completed chunk's last key.
    const startAfter = pi === resumeAt ? lastDone?.lastKey : undefined;
    const prior = doneBefore.filter((c) => c.partition === (partition ?? ""));
    let partRows = prior.reduce((s, c) => s + c.rows, 0);
    let prevKey = startAfter;
    /** The last row kept, to tell a row returned twice from another row with its key. */
    let lastRow: { res: QueryResponse; i: number } | undefined;
    // Keys never go backwards; rows already read at a page boundary are dropped (keyCursor.ts).
    const cursor = new KeyCursor(pk.name, varcharPk, pageRows, `backup of ${collection} aborted`);
    let first: PageBound | null =
      startAfter === undefined
        ? null
        : { key: startAfter, inclusive: false, anchor: startAfter, skip: 0, limit: pageRows };
    const ask = () => {
      const bound = first ?? cursor.bound();
      first = null;
      return milvus.queryPage(def, partition, bound, pageRows, outputFields, snapshot);
    };
    let next: Promise<QueryResponse> | undefined = ask();
    while (next) {
      const res: QueryResponse = await next;
      next = undefined;
      await stopped(`after ${rowsRead} of ${promised} rows`);
      const accepted = cursor.accept(res);
      // Ask for the next page before encoding this one, so the server works while we do.
      if (accepted.more) next = ask();
      const keys = pageKeys(res, pk.name);
      // Only unpinned reads are re-read and compared; a pinned (cut) backup skips the cost. Digested as
      // the cursor kept them, before rows returned twice are dropped, as rereadDigest reads them again.
      if (!snapshot && accepted.keep.length > 0) {
        readDigest.update(
          pageDigest(
            accepted.keep.length === keys.length
              ? res.fields_data
              : sliceRows(res.fields_data, keys.length, accepted.keep),
          ),
        );
      }
      // A row the server returns twice (same key, same content) is the same row: kept once. Milvus
      // 2.3.5, read while writes go on, returns a page's fields in varying order (id, v on one page; v,
      // id on the next: measured here, test/oneCut.test.ts), so the cursor's digest (field order
      // included) missed rows read again at a page boundary: 6 to 9 of ~12,900 rows came twice. Rows
      // of a repeated key with other contents are kept (they were stored).
      const keep = accepted.keep.filter((i) => {
        const k = keys[i] ?? "";
        if (k !== prevKey || !lastRow) {
          lastRow = { res, i };
          return true;
        }
        const same =
          rowDigest(res, keys.length, i) ===
          rowDigest(lastRow.res, pageKeys(lastRow.res, pk.name).length, lastRow.i);
        if (same) {
          repeatedRows++;
          return false;
        }
        lastRow = { res, i };
        return true;
      });
      const n = keep.length;
      if (n === 0) continue;
      const fields = n === keys.length ? res.fields_data : sliceRows(res.fields_data, keys.length, keep);
      const byName = new Map<string, RawFieldData>(
        fields.map((f) => [f.is_dynamic ? DYNAMIC_FIELD : f.field_name, f]),
      );
      for (const a of accumulators) a.add(byName.get(a.spec.name), n);
      if (chunkRows === 0) chunkFirstKey = keys[keep[0] ?? 0] ?? "";
      chunkLastKey = keys[keep[n - 1] ?? 0] ?? "";
      for (const i of keep) {
        const k = keys[i] ?? "";
        if (k === prevKey) {
          chunkDuplicates++;
          duplicateKeyRows++;
        } else {
          chunkDistinct++;
          distinctKeys++;
        }
        prevKey = k;
      }
      chunkRows += n;
      rowsRead += n;
      partRows += n;
      // More rows than the snapshot counted can never add up (queries return at most one row per stored
      // row), so stop now: unpinned reads would otherwise chase a writer appending keys past the cursor
      // (measured here on Milvus 2.3.5: 20-row inserts every few ms kept a backup reading for 3 minutes).
      const counted = promisedPer.get(partition) ?? 0;
      if (partRows > counted) {
        await Promise.allSettled(pending);
        throw new WorkerError(
          `backup of ${collection}${partition ? ` partition ${partition}` : ""} read ${partRows} rows so far, more ` +
            `than the ${counted} the snapshot counted: rows were added during the backup` +
            (snapshot ? "" : " (this server's reads are not pinned to a timestamp)") +
            ". No backup was written (its chunks are removed by prune); stop writes to the collection during the " +
            "backup, or run it again.",
        );
      }
      log.progress(`backup ${collection}`, rowsRead, promised, { backupId });
      const size = accumulators.reduce((s, a) => s + a.rawBytes, 0);
      if (size >= chunkBytes) await cut(partition);
    }
    await cut(partition);
    const expected = promisedPer.get(partition) ?? 0;
    const where = `backup of ${collection}${partition ? ` partition ${partition}` : ""}`;
    const noBackup = "No backup was written (its chunks are removed by prune)";
    if (cursor.crowdedKey !== undefined) {
      await Promise.allSettled(pending);
      throw new WorkerError(
        `${where}: more rows share the primary key ${varcharPk ? showKey(cursor.crowdedKey) : cursor.crowdedKey} ` +
          `than one query can return (16,384), so some of them cannot be read. ${noBackup}.`,
      );
    }
    if (partRows !== expected) {
      await Promise.allSettled(pending);
      // count(*) counts every row stored; queries return one row per primary key, the newest (Milvus
      // Lite keeps every row of a repeated key). Count the rows stored under the keys read: equal to
      // the snapshot's count means the rows not read are older rows of keys that were read.
      const census = await keyCensus(milvus, def, partition, pageRows, snapshot);
      const hidden = census.counted - census.rows;
      if (census.rows === partRows && census.counted === expected && hidden > 0) {
        duplicateKeyRows += hidden;
        log.warn("backup.duplicateKeys", { collection, partition: partition ?? "", rows: hidden });
      } else {
        const missed = expected - census.counted;
        const unchecked =
          census.unchecked > 0
            ? ` (${census.unchecked} of them have keys Milvus Lite cannot put in a filter, a carriage return not ` +
              "followed by a line feed, so older rows of those keys could not be counted)"
            : "";
        throw new WorkerError(
          `${where} read ${partRows} rows but the snapshot counted ${expected}` +
            (hidden > 0
              ? `: ${hidden} are older rows of primary keys that were read (Milvus returns only the newest row of a ` +
                `key), and ${missed} more have keys the read never returned${unchecked}`
              : `, and no key it read has rows it did not${unchecked}`) +
            `. The collection changed during the backup, or the server skipped rows. ${noBackup}; run the backup again.`,
        );
      }
    }
  }
  await Promise.all(pending);
  if (failure) throw failure;
  await progress.write(progressRecord);
  if (repeatedRows > 0) {
    log.warn(
      "backup.repeatedRows",
      { collection, backupId, rows: repeatedRows },
      `backup of ${collection}: the server returned ${repeatedRows} row(s) twice (same key and contents); each is backed up once`,
    );
  }
  if (!snapshot) {
    // Without a flush timestamp the reads were not pinned. A write during the backup that changed a row
    // already read and one read later would give a state that never existed (a torn backup); the row
    // count cannot see it. Reading everything again and comparing can: any row that changed after it
    // was read reads differently now.
    // A resumed run (tests only) re-reads from where it continued: the pages before were not digested.
    const from = { partition: resumeAt, after: lastDone?.lastKey };
    const again = await rereadDigest(milvus, def, partitions, pageRows, outputFields, from);
    if (again.digest !== readDigest.digest("hex")) {
      throw new WorkerError(
        `backup of ${collection}: rows changed while they were being read, and this server cannot pin reads to a ` +
          `timestamp (${plan.flushTimestamp === null ? "Milvus Lite" : "it does not read at a given timestamp"}), ` +
          "so the backup would mix old and new rows. No backup was written (its chunks are " +
          "removed by prune); stop writes to the collection during the backup, or run it again.",
      );
    }
    // The reads were not pinned: a changed count means writes happened meanwhile.
    const after = await milvus.count(collection, undefined, null);
    if (after !== promised) {
      throw new WorkerError(
        `backup of ${collection}: the collection changed during the backup (${promised} rows before, ${after} after) ` +
          "and this server cannot pin reads to a timestamp; stop writes or run the backup again",
      );
    }
    log.info("backup.rechecked", { collection, backupId, pages: again.pages, rows: after });
  }

  // A chunk deleted after its upload (a prune with a wrong clock, a person) would make a listed backup
  // that cannot be restored: confirm every chunk is there, with its size, before the manifest exists.
  const stored = new Map<string, number>();
  for await (const b of store.list(backupPrefix(backupId))) stored.set(b.name, b.size);
  const gone = chunks.filter((c) => stored.get(c.file) !== c.bytes).map((c) => c.file);
  if (gone.length > 0) {
    throw new WorkerError(
      `backup of ${collection}: ${gone.length} uploaded chunk(s) are missing or changed in ${store.location} ` +
        `(${gone.slice(0, 3).join(", ")}); something deleted them during the backup. No backup was written; run it again.`,
    );
  }

  const manifest: Manifest = {
    kind: MANIFEST_KIND,
    formatVersion: FORMAT_VERSION,
    backupId,
    collection,
    database: milvus.database,
    databaseProperties: await milvus.describeDatabase(milvus.database),
    time: plan.time.toISOString(),
    completedAt: "",
    tool: TOOL,
    snapshot: {
      flushTimestamp: plan.flushTimestamp,
      method: snapshot ? "flush-timestamp" : "count-recheck",
    },
    rows: rowsRead,
    distinctKeys,
    duplicateKeyRows,
    bytes: storedBytes,
    rawBytes,
    chunkTargetBytes: chunkBytes,
    schema: def,
    columns: outputFields,
    chunks,
  };
  return { plan, manifest, progress, started };
}

/**
 * Before a resumed backup reads on: the server must still read at the cut what the interrupted run
 * read. The distinct keys up to where it stopped are counted again at the cut (and count(*) compared,
 * where the server pins counts); a difference means the server no longer keeps that point in time
 * (compaction) or the collection was replaced, and the backup could not be one cut any more. Without a
 * cut (unpinnedResumeForTestsOnly) they are counted as they are now.
 */
async function checkCutReadable(
  milvus: Milvus,
  def: CollectionDef,
  partitions: (string | undefined)[],
  resumeAt: number,
  done: DoneChunk[],
  resume: BackupProgress,
  refuse: (why: string) => WorkerError,
): Promise<void> {
  const cut = resume.cut.timestamp;
  const at = cut === null ? "now" : `at its cut (timestamp ${cut})`;
  try {
    for (let pi = 0; pi <= resumeAt && pi < partitions.length; pi++) {
      const partition = partitions[pi];
      const mine = done.filter((c) => c.partition === (partition ?? ""));
      const upTo = pi === resumeAt ? mine.at(-1)?.lastKey : undefined;
      const recorded = mine.reduce((s, c) => s + c.distinct, 0);
      const now = await countDistinctKeys(milvus, def, partition, cut, upTo);
      const part = partition ? ` partition ${partition}` : "";
      if (now !== recorded) {
        throw refuse(
          `${at} the server returns ${now} distinct primary keys of ${def.name}${part}` +
            `${upTo === undefined ? "" : ` up to the last key read`}, the interrupted run read ${recorded}: the server ` +
            "no longer reads that point in time as it did",
        );
      }
      if (resume.countsPinned && cut !== null) {
        const counted = await milvus.count(def.name, partition, cut);
        const promised = resume.partitions.find((p) => p.name === (partition ?? ""))?.promised;
        if (counted !== promised) {
          throw refuse(
            `count(*) of ${def.name}${part} at its cut (timestamp ${cut}) is now ${counted}, it was ${String(promised)}`,
          );
        }
      }
    }
  } catch (e) {
    if (e instanceof WorkerError) throw e;
    const what =
      cut === null ? "count the keys read before the interruption" : `read at the cut (timestamp ${cut})`;
    throw refuse(`the server cannot ${what}: ${describeError(e)}`);
  }
}

/** A digest of one row of a page (all its fields, in name order: servers vary the order). */
function rowDigest(res: QueryResponse, rows: number, i: number): string {
  const fields = sliceRows(res.fields_data, rows, [i]).sort((a, b) =>
    a.field_name.localeCompare(b.field_name),
  );
  return createHash("sha256").update(JSON.stringify(fields)).digest("base64");
}

/**
 * A digest of one page of query results (field names, types and values), fields in name order: Milvus
 * 2.3.5 returns a page's fields in varying order (id, v on one page; v, id on the next: measured here),
 * which would make an unchanged page digest differently when read again.
 */
export function pageDigest(fields: RawFieldData[]): Buffer {
  const byName = [...fields].sort((a, b) => a.field_name.localeCompare(b.field_name));
  return createHash("sha256").update(JSON.stringify(byName)).digest();
}

/**
 * Reads the collection again page by page, as the backup did (from the partition and after the key it
 * started at), and digests what it reads.
 */
async function rereadDigest(
  milvus: Milvus,
  def: CollectionDef,
  partitions: (string | undefined)[],
  pageRows: number,
  outputFields: string[],
  from: { partition: number; after: string | undefined },
): Promise<{ digest: string; pages: number }> {
  const pk = primaryField(def);
  const digest = createHash("sha256");
  let pages = 0;
  for (let pi = from.partition; pi < partitions.length; pi++) {
    const partition = partitions[pi];
    // The same cursor as the backup's, so pages (and their digests) line up when nothing changed.
    const cursor = new KeyCursor(pk.name, pk.dataType === "VarChar", pageRows, `re-reading ${def.name}`);
    const after = pi === from.partition ? from.after : undefined;
    let first: PageBound | null =
      after === undefined ? null : { key: after, inclusive: false, anchor: after, skip: 0, limit: pageRows };
    for (;;) {
      const bound = first ?? cursor.bound();
      first = null;
      const res = await milvus.queryPage(def, partition, bound, pageRows, outputFields, null);
      pages++;
      const { keep, more } = cursor.accept(res);
      if (keep.length > 0) {
        const n = pageKeys(res, pk.name).length;
        digest.update(pageDigest(keep.length === n ? res.fields_data : sliceRows(res.fields_data, n, keep)));
      }
      if (!more) break;
    }
  }
  return { digest: digest.digest("hex"), pages };
}
