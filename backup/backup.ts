/**
 * backup: a consistent, complete copy of one collection in the backup container.
 *
 * Flush, then read every row pinned to the flush timestamp, in primary-key order (a cursor on the
 * key, never offsets), into chunk files of bounded size that are uploaded while the next pages are
 * read. The manifest (schema, indexes, chunk list with row counts and SHA-256) is written last, so an
 * interrupted backup is never listed or restorable.
 */
import { createHash, randomBytes } from "node:crypto";
import type { BlobStore } from "./blobStore";
import { ColumnAccumulator, columnSpecs, DYNAMIC_FIELD, sliceRows, type ColumnSpec } from "./columns";
import { describeError, isMilvusUnavailable, stopIfAborted, WorkerError } from "./errors";
import { lockCollection } from "./lock";
import {
  backupPrefix,
  buildChunk,
  chunkPath,
  FORMAT_VERSION,
  MANIFEST_KIND,
  manifestPath,
  schemaDigest,
  sha256,
  type ChunkEntry,
  type CollectionDef,
  type Manifest,
} from "./format";
import { keyCensus, KeyCursor, pageKeys } from "./keyCursor";
import type { Log } from "./log";
import { Milvus, primaryField, showKey, type QueryResponse, type RawFieldData } from "./milvus";
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
}

export interface BackupSummary {
  backupId: string;
  collection: string;
  time: string;
  rows: number;
  bytes: number;
  rawBytes: number;
  chunks: number;
  seconds: number;
  /** SHA-256 of the manifest as written (compare with `verify`'s). */
  manifestSha256: string;
}

export const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024;
export const DEFAULT_PAGE_BYTES = 1024 * 1024;
/** Milvus rejects query pages with limit (plus offset) above 16,384. */
const MAX_PAGE_ROWS = 16_384;
export const ARRAY_PAGE_ROWS = 1_000;

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

export async function backupCollection(
  milvus: Milvus,
  store: BlobStore,
  collection: string,
  log: Log,
  opts: BackupOptions = {},
): Promise<BackupSummary> {
  // Backups and restores of one collection never interleave (lock.ts).
  const lock = await lockCollection(store, collection, `backup of ${collection}`, log);
  try {
    const signal = opts.signal ? AbortSignal.any([opts.signal, lock.lost]) : lock.lost;
    return await backupLocked(milvus, store, collection, log, { ...opts, signal });
  } catch (e) {
    if (e instanceof WorkerError) throw e;
    // A raw gRPC or storage failure: name the collection, what is left and what to do.
    throw new WorkerError(
      `backup of ${collection} failed: ${describeError(e)}. No backup was written (nothing new is listed; ` +
        `uploaded chunks are removed by prune after a day). Next: ${isMilvusUnavailable(e) ? "Milvus was unreachable: run the backup again" : "see the cause, then run the backup again"}.`,
    );
  } finally {
    await lock.release();
  }
}

async function backupLocked(
  milvus: Milvus,
  store: BlobStore,
  collection: string,
  log: Log,
  opts: BackupOptions,
): Promise<BackupSummary> {
  const started = Date.now();
  const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const inFlight = Math.max(1, opts.uploadsInFlight ?? 2);
  const def = await milvus.describe(collection);
  const pk = primaryField(def);
  const varcharPk = pk.dataType === "VarChar";
  const specs = columnSpecs(def.fields, def.enableDynamicField);
  const outputFields = specs.map((s) => s.name);
  // A page never exceeds a chunk: chunks are cut between pages, so this bounds memory by the chunk size.
  const pageRows = pageRowsFor(specs, def, Math.min(opts.pageBytes ?? DEFAULT_PAGE_BYTES, chunkBytes));

  const snapshot = await milvus.flush(collection);
  const time = new Date();
  const backupId = newBackupId(collection, time);
  // Partition-key collections spread rows over partitions by hash; restore recomputes that, so only
  // user-created partitions are read one by one to keep each row in its partition.
  const partitioned = !def.fields.some((f) => f.isPartitionKey) && def.partitions.length > 1;
  const partitions: (string | undefined)[] = partitioned ? def.partitions : [undefined];
  let promised = 0;
  const promisedPer = new Map<string | undefined, number>();
  for (const p of partitions) {
    const n = await milvus.count(collection, p, snapshot);
    promisedPer.set(p, n);
    promised += n;
  }
  log.info("backup.start", {
    collection,
    backupId,
    rows: promised,
    snapshot: snapshot ?? "strong",
    pageRows,
  });

  const chunks: ChunkEntry[] = [];
  // What was read, page by page: on a server that cannot pin reads it is read again and compared.
  const readDigest = createHash("sha256");
  const stopped = async (where: string) => {
    if (!opts.signal?.aborted) return;
    await Promise.allSettled(pending);
    try {
      stopIfAborted(opts.signal, where);
    } catch (e) {
      throw new WorkerError(
        `backup of ${collection} ${describeError(e)}: no manifest was written, so backup ${backupId} is not listed; ` +
          `its ${seq} uploaded chunk(s) under ${backupPrefix(backupId)} are removed by prune after a day. Run the backup again.`,
      );
    }
  };
  const pending = new Set<Promise<void>>();
  let failure: Error | undefined;
  let seq = 0;
  let rowsRead = 0;
  /** Rows count(*) counts that repeat an earlier row's primary key (see keyCursor.ts). */
  let duplicateKeyRows = 0;
  let storedBytes = 0;
  let rawBytes = 0;

  const accumulators = specs.map((s) => new ColumnAccumulator(s));
  let chunkRows = 0;
  let chunkFirstKey = "";
  let chunkLastKey = "";
  // Every chunk carries the digest of the definition the manifest will hold (as JSON stores it).
  const schemaSha256 = schemaDigest(JSON.parse(JSON.stringify(def)) as CollectionDef);

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
    chunks.push(entry);
    for (const c of columns) for (const p of c.parts) rawBytes += p.length;
    while (pending.size >= inFlight) await Promise.race(pending);
    if (failure) throw failure;
    const task = (async () => {
      const data = await buildChunk(rows, partition ?? "", columns, identity);
      entry.bytes = data.length;
      entry.sha256 = sha256(data);
      await store.put(file, data);
      storedBytes += data.length;
    })()
      .catch((e: unknown) => {
        failure ??= e instanceof Error ? e : new Error(String(e));
      })
      .finally(() => {
        pending.delete(task);
      });
    pending.add(task);
  };

  for (const partition of partitions) {
    // Keys never go backwards; rows already read at a page boundary are dropped (keyCursor.ts).
    const cursor = new KeyCursor(pk.name, varcharPk, pageRows, `backup of ${collection} aborted`);
    let partRows = 0;
    let next: Promise<QueryResponse> | undefined = milvus.queryPage(
      def,
      partition,
      cursor.bound(),
      pageRows,
      outputFields,
      snapshot,
    );
    while (next) {
      const res: QueryResponse = await next;
      next = undefined;
      await stopped(`after ${rowsRead} of ${promised} rows`);
      const { keep, more } = cursor.accept(res);
      // Ask for the next page before encoding this one, so the server works while we do.
      if (more) next = milvus.queryPage(def, partition, cursor.bound(), pageRows, outputFields, snapshot);
      const n = keep.length;
      if (n === 0) continue;
      const keys = pageKeys(res, pk.name);
      const fields = n === keys.length ? res.fields_data : sliceRows(res.fields_data, keys.length, keep);
      // Only unpinned reads are re-read and compared; a pinned (flush-timestamp) backup skips the cost.
      if (!snapshot) readDigest.update(pageDigest(fields));
      const byName = new Map<string, RawFieldData>(
        fields.map((f) => [f.is_dynamic ? DYNAMIC_FIELD : f.field_name, f]),
      );
      for (const a of accumulators) a.add(byName.get(a.spec.name), n);
      if (chunkRows === 0) chunkFirstKey = keys[keep[0] ?? 0] ?? "";
      chunkLastKey = keys[keep[n - 1] ?? 0] ?? "";
      chunkRows += n;
      rowsRead += n;
      partRows += n;
      log.progress(`backup ${collection}`, rowsRead, promised, { backupId });
      const size = accumulators.reduce((s, a) => s + a.rawBytes, 0);
      if (size >= chunkBytes) await cut(partition);
    }
    await cut(partition);
    duplicateKeyRows += cursor.duplicateRows;
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
  if (!snapshot) {
    // Without a flush timestamp the reads were not pinned. A write during the backup that changed a row
    // already read and one read later would give a state that never existed (a torn backup); the row
    // count cannot see it. Reading everything again and comparing can: any row that changed after it
    // was read reads differently now.
    const again = await rereadDigest(milvus, def, partitions, pageRows, outputFields);
    if (again !== readDigest.digest("hex")) {
      throw new WorkerError(
        `backup of ${collection}: rows changed while they were being read, and this server cannot pin reads to a ` +
          "timestamp (Milvus Lite), so the backup would mix old and new rows. No backup was written (its chunks are " +
          "removed by prune); stop writes to the collection during the backup, or run it again.",
      );
    }
    // Without a flush timestamp the reads were not pinned: a changed count means writes happened meanwhile.
    const after = await milvus.count(collection, undefined, null);
    if (after !== promised) {
      throw new WorkerError(
        `backup of ${collection}: the collection changed during the backup (${promised} rows before, ${after} after) ` +
          "and this server cannot pin reads to a timestamp; stop writes or run the backup again",
      );
    }
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
    time: time.toISOString(),
    completedAt: new Date().toISOString(),
    tool: TOOL,
    snapshot: { flushTimestamp: snapshot, method: snapshot ? "flush-timestamp" : "count-recheck" },
    rows: rowsRead,
    duplicateKeyRows,
    bytes: storedBytes,
    rawBytes,
    chunkTargetBytes: chunkBytes,
    schema: def,
    columns: outputFields,
    chunks,
  };
  const manifestData = Buffer.from(JSON.stringify(manifest, null, 1), "utf8");
  // The manifest's digest goes to the log (and so to the cluster's log store) and the JSON output, where
  // an edit of the manifest cannot reach it: `verify` prints the digest it finds, to compare.
  const manifestSha256 = sha256(manifestData);
  await store.put(manifestPath(backupId), manifestData);
  const seconds = (Date.now() - started) / 1000;
  log.info("backup.done", {
    collection,
    backupId,
    rows: rowsRead,
    duplicateKeyRows,
    bytes: storedBytes,
    chunks: chunks.length,
    seconds,
    manifestSha256,
  });
  return {
    backupId,
    collection,
    time: manifest.time,
    rows: rowsRead,
    bytes: storedBytes,
    rawBytes,
    chunks: chunks.length,
    seconds,
    manifestSha256,
  };
}

/** A digest of one page of query results (field names, types and values, in the order returned). */
function pageDigest(fields: RawFieldData[]): Buffer {
  return createHash("sha256").update(JSON.stringify(fields)).digest();
}

/** Reads the collection again page by page, as the backup did, and digests what it reads. */
async function rereadDigest(
  milvus: Milvus,
  def: CollectionDef,
  partitions: (string | undefined)[],
  pageRows: number,
  outputFields: string[],
): Promise<string> {
  const pk = primaryField(def);
  const digest = createHash("sha256");
  for (const partition of partitions) {
    // The same cursor as the backup's, so pages (and their digests) line up when nothing changed.
    const cursor = new KeyCursor(pk.name, pk.dataType === "VarChar", pageRows, `re-reading ${def.name}`);
    for (;;) {
      const res = await milvus.queryPage(def, partition, cursor.bound(), pageRows, outputFields, null);
      const { keep, more } = cursor.accept(res);
      if (keep.length > 0) {
        const n = pageKeys(res, pk.name).length;
        digest.update(pageDigest(keep.length === n ? res.fields_data : sliceRows(res.fields_data, n, keep)));
      }
      if (!more) break;
    }
  }
  return digest.digest("hex");
}
