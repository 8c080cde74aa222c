/**
 * restore: checks that every chunk is present with its size, then recreates the collection (schema,
 * partitions, properties), inserts in batches under the server's message limit (each chunk downloaded
 * once and checked against its SHA-256 before use), recreates indexes, loads, verifies the row count
 * and only then puts the collection under its name.
 *
 * Where the server can rename collections, the data goes into a temporary collection. An existing
 * target is renamed aside, the restored collection renamed into place, its aliases moved over, and only
 * then is the old one dropped: until the replacement is complete and verified, the existing collection
 * keeps its name and data, whatever fails (the worker, Milvus, storage, SIGTERM). Milvus Lite
 * acknowledges renames without doing them (checked with a probe collection): there the data goes
 * straight into a new target, and replacing an existing collection is refused, because it would have to
 * be dropped before its replacement exists.
 */
import { operation as retryOperation } from "retry";
import { randomBytes } from "node:crypto";
import { DataType, type FieldType } from "@zilliz/milvus2-sdk-node";
import type { BlobStore } from "./blobStore";
import { ARRAY_PAGE_ROWS, backupPartitions, countDistinctKeys } from "./backup";
import { isReadOnlyRefusal, StorageUnavailableError } from "./blobStore";
import { checkChunk, identityProblems, listingProblems, loadManifest, manifestChanged } from "./catalog";
import {
  DATABASE_NAME,
  DEFAULT_DATABASE,
  ensureDatabase,
  manifestDatabase,
  qualifiedName,
} from "./databases";
import { ColumnReader, isVectorType } from "./columns";
import {
  AbortedError,
  checkStatus,
  describeError,
  isMilvusUnavailable,
  stopIfAborted,
  WorkerError,
} from "./errors";
import { lockCollection } from "./lock";
import {
  backupPrefix,
  manifestPath,
  readChunk,
  sha256,
  type ChunkEntry,
  type ChunkHeader,
  type CollectionDef,
  type IndexDef,
  type Manifest,
} from "./format";
import type { Log } from "./log";
import { primaryField, type Milvus } from "./milvus";
import {
  loadRestoreProgress,
  RESTORE_PROGRESS_KIND,
  restoreProgressPath,
  saveProgress,
  type RestoreProgress,
} from "./resume";

export interface RestoreOptions {
  backupId: string;
  target?: string;
  /** The database to restore into. @default the backup's database ("default" for older manifests) */
  targetDatabase?: string;
  dropExisting: boolean;
  indexFallback?: string;
  /** Bytes per insert request. @default 2 MiB */
  insertBytes?: number;
  /** Stops the restore between batches (SIGTERM); what was created is dropped, the target untouched. */
  signal?: AbortSignal;
  /** The manifest digest the backup logged: the restore is refused if the manifest differs. */
  manifestSha256?: string;
  /**
   * Continue the interrupted restore of this backup into this target (its progress record names the
   * collection being filled) instead of starting over; without it, such a record makes the restore refuse.
   */
  resume?: boolean;
}

export interface RestoreSummary {
  backupId: string;
  collection: string;
  sourceCollection: string;
  /** The database restored into, and whether the restore created it. */
  database: string;
  databaseCreated: boolean;
  rows: number;
  seconds: number;
  method: "rename" | "direct";
  indexes: { field: string; indexType: string; fallback: boolean }[];
  warnings: string[];
}

export const COLLECTION_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
/**
 * Insert requests: about 2 MiB and at most 10,000 rows each, two in flight. Milvus Lite's insert cost
 * grows faster than the request (128-d rows, measured: 2,000 rows 0.39 s, 10,000 rows 3.3 s) and it
 * rejects requests near 10 MB; Milvus's own limit is far higher, and two requests in flight keep it busy
 * while the next batch is encoded.
 */
const MAX_BATCH_ROWS = 10_000;
export const DEFAULT_INSERT_BYTES = 2 * 1024 * 1024;
const INSERTS_IN_FLIGHT = 2;

export async function restoreBackup(
  milvus: Milvus,
  store: BlobStore,
  opts: RestoreOptions,
  log: Log,
): Promise<RestoreSummary> {
  const manifest = await loadManifest(store, opts.backupId);
  if (opts.manifestSha256) {
    const changed = manifestChanged(
      sha256(await store.get(manifestPath(opts.backupId))),
      opts.manifestSha256,
    );
    if (changed)
      throw new WorkerError(`restore of ${opts.backupId} refused: ${changed}. Nothing was changed.`);
  }
  const target = opts.target ?? manifest.collection;
  if (!COLLECTION_NAME.test(target)) {
    throw new WorkerError(`--target ${JSON.stringify(target)} is not a valid Milvus collection name`, 2);
  }
  const database = opts.targetDatabase ?? manifestDatabase(manifest);
  if (!DATABASE_NAME.test(database)) {
    throw new WorkerError(
      `--target-database ${JSON.stringify(database)} is not a valid Milvus database name`,
      2,
    );
  }
  const where = qualifiedName(database, target);
  // Restores and backups of one collection never interleave (lock.ts).
  const lock = await lockCollection(
    store,
    target,
    `restore of ${opts.backupId} into ${where}`,
    log,
    database,
  );
  let createdDatabase = false;
  try {
    const signal = opts.signal ? AbortSignal.any([opts.signal, lock.lost]) : lock.lost;
    // The database first (created when missing, with the properties it had), then the collection in it.
    const db = await ensureDatabase(
      milvus,
      database,
      manifest.databaseProperties,
      log,
      `restore of ${opts.backupId}`,
    );
    createdDatabase = db.created;
    await milvus.useDatabase(database);
    const summary = await restoreLocked(milvus, store, manifest, target, { ...opts, signal }, log);
    return {
      ...summary,
      database,
      databaseCreated: db.created,
      warnings: [...db.warnings, ...summary.warnings],
    };
  } catch (e) {
    if (createdDatabase) await dropCreatedDatabase(milvus, database, log);
    if (e instanceof WorkerError) throw e;
    // Failed before anything was created (checking the target, probing rename support).
    throw new WorkerError(
      `restore of ${opts.backupId} into ${target} failed: ${describeError(e)}. State: nothing was created. ` +
        `Next: ${isMilvusUnavailable(e) ? "Milvus was unreachable: run the same restore again" : "see the cause"}.`,
    );
  } finally {
    await lock.release();
  }
}

async function restoreLocked(
  milvus: Milvus,
  store: BlobStore,
  manifest: Manifest,
  target: string,
  opts: RestoreOptions,
  log: Log,
): Promise<RestoreSummary> {
  const started = Date.now();
  // Before touching the server: every chunk present with its size (contents are checked as each chunk
  // is downloaded for its insert, so each is downloaded once).
  await checkAllChunks(store, manifest);

  // An interrupted restore into this target left a progress record (resume.ts): continue it with
  // --resume, never start a second one beside it by surprise.
  const progressName = restoreProgressPath(qualifiedName(milvus.database, target));
  const manifestDigest = sha256(await store.get(manifestPath(opts.backupId)));
  const resumed = await resumableRestore(milvus, store, manifest, target, manifestDigest, opts, log);
  // Where the server cannot rename, a resumed restore fills the target itself: that is not "existing".
  const exists = (await milvus.exists(target)) && resumed?.work !== target;
  if (exists && !opts.dropExisting) {
    throw new WorkerError(
      `restore of ${opts.backupId} refused: collection ${target} already exists. ` +
        "Pass --drop-existing to replace it, or --target <new name> to restore beside it.",
    );
  }
  const canRename = await probeRename(milvus);
  if (exists && !canRename) {
    throw new WorkerError(
      `restore of ${opts.backupId} refused: ${target} exists and this server cannot rename collections ` +
        "(Milvus Lite acknowledges a rename without doing it), so replacing it would mean dropping it before its " +
        `replacement is complete and verified. Nothing was changed. Restore beside it with --target ${target.slice(0, 200)}_restored, ` +
        `check it, then drop ${target} and point clients at the new name.`,
    );
  }
  const method = canRename ? "rename" : "direct";
  if (resumed && resumed.method !== method) {
    throw new WorkerError(
      `restore --resume of ${opts.backupId} into ${target} refused: the interrupted restore filled ${resumed.work} ` +
        `by ${resumed.method}, this server now calls for ${method}. Drop ${resumed.work} and run the restore without --resume.`,
    );
  }
  const work =
    resumed?.work ??
    (canRename ? `${target.slice(0, 200)}_restoring_${randomBytes(4).toString("hex")}` : target);
  const progress: RestoreProgress = resumed ?? {
    kind: RESTORE_PROGRESS_KIND,
    backupId: opts.backupId,
    target,
    work,
    method,
    manifestSha256: manifestDigest,
    chunksDone: 0,
    rows: 0,
    startedAt: new Date().toISOString(),
    updatedAt: "",
  };
  const warnings: string[] = [];
  // A failover restores from the primary's read-only geo-secondary: there no progress record can be
  // written, and the restore must go on without one (it then cannot be continued, only run again).
  const progressStore = { kept: true };
  const recordProgress = async () => {
    if (!progressStore.kept) return;
    try {
      await saveProgress(store, progressName, progress);
    } catch (e) {
      if (!isReadOnlyRefusal(e)) throw e;
      progressStore.kept = false;
      const w = `cannot write the restore's progress record to ${store.location} (${describeError(e)}): the restore goes on, but if it is interrupted it must be run again from the start`;
      warnings.push(w);
      log.warn("restore.progress-unwritable", { collection: target }, w);
    }
  };
  log.info("restore.start", {
    backupId: opts.backupId,
    collection: target,
    into: work,
    rows: manifest.rows,
    method,
    ...(resumed ? { resumeAtChunk: resumed.chunksDone + 1 } : {}),
  });
  let created = resumed !== undefined;
  /** The restored collection holds the target name: later failures must not report it as partial. */
  let inPlace = false;
  try {
    if (!resumed) {
      const autoIdFallback = await createCollection(milvus, manifest.schema, work, log, target);
      created = true;
      if (autoIdFallback) warnings.push(autoIdFallback);
      // Written before the first insert, so a run killed at any point after it can be continued.
      await recordProgress();
    }
    await insertAll(
      milvus,
      store,
      manifest,
      work,
      opts.insertBytes ?? DEFAULT_INSERT_BYTES,
      log,
      opts.signal,
      {
        from: progress.chunksDone,
        chunkDone: async (done, rows) => {
          progress.chunksDone = done;
          progress.rows = rows;
          await recordProgress();
        },
      },
    );
    stopIfAborted(opts.signal, "before flushing");
    const flush = await milvus.client.flush({ collection_names: [work] });
    checkStatus(flush.status, `flushing ${work}`);
    const indexes = await createIndexes(milvus, manifest.schema, work, opts.indexFallback, log, warnings);
    const indexedAll = manifest.schema.fields
      .filter((f) => isVectorType(f.dataType))
      .every((f) => indexes.some((i) => i.field === f.name));
    if (indexedAll) {
      const load = await milvus.client.loadCollectionSync({ collection_name: work });
      checkStatus(load, `loading ${work}`);
      const n = await milvus.count(work, undefined, null);
      if (n !== manifest.rows) {
        throw new WorkerError(
          `restore of ${opts.backupId}: ${work} holds ${n} rows after loading, the backup has ${manifest.rows}`,
        );
      }
      // count(*) counts every row of a repeated key: the distinct keys are counted too, by walking the
      // restored keys with the backup's key cursor (backup.ts countDistinctKeys).
      if (manifest.distinctKeys !== undefined) {
        const def = { ...manifest.schema, name: work };
        let distinct = 0;
        for (const p of backupPartitions(manifest.schema))
          distinct += await countDistinctKeys(milvus, def, p, null);
        if (distinct !== manifest.distinctKeys) {
          throw new WorkerError(
            `restore of ${opts.backupId}: ${work} holds ${distinct} distinct primary keys after loading (count(*) ` +
              `${n}), the backup has ${manifest.distinctKeys} distinct primary keys (${manifest.rows} rows)`,
          );
        }
      }
    } else {
      warnings.push(
        "some vector fields had no index in the source: the collection was not loaded; rows were counted at insert",
      );
    }
    stopIfAborted(opts.signal, "before putting the restored collection in place");
    if (canRename) await swapIntoPlace(milvus, work, target, log, warnings);
    inPlace = true;
    // The restore is complete: nothing is left to continue.
    await store.delete(progressName).catch(() => undefined);
    if (target === manifest.collection) await restoreAliases(milvus, manifest.schema, target, log, warnings);
    if (!manifest.schema.loaded && indexedAll) {
      const rel = await milvus.client.releaseCollection({ collection_name: target });
      checkStatus(rel, `releasing ${target} (it was not loaded when backed up)`);
    }
    if (manifest.schema.loaded && indexedAll && canRename) {
      // milvus-lite 3.2.2 releases a collection when it renames it (measured here; test/lanes.test.ts
      // "the restored collection is loaded like its source"), so the swap may have undone the load.
      const state = await milvus.client.getLoadState({ collection_name: target });
      checkStatus(state.status, `reading the load state of ${target}`);
      if ((state.state as string) !== "LoadStateLoaded") {
        const load = await milvus.client.loadCollectionSync({ collection_name: target });
        checkStatus(load, `loading ${target} again after renaming it into place`);
      }
    }
    const seconds = (Date.now() - started) / 1000;
    log.info("restore.done", { backupId: opts.backupId, collection: target, rows: manifest.rows, seconds });
    return {
      backupId: opts.backupId,
      collection: target,
      sourceCollection: manifest.collection,
      database: milvus.database,
      databaseCreated: false,
      rows: manifest.rows,
      seconds,
      method,
      indexes,
      warnings,
    };
  } catch (e) {
    if (inPlace) {
      // Aliases or the load state could not be restored: the data is complete and verified in place.
      throw new WorkerError(
        `restore of ${opts.backupId} into ${target}: the restored collection is in place and verified, but finishing ` +
          `failed: ${describeError(e)}. Next: point its aliases and load state by hand (see the backup's manifest).`,
      );
    }
    if (e instanceof SwapRollbackError) throw e;
    const stoppedOrTransient =
      e instanceof AbortedError || e instanceof StorageUnavailableError || isMilvusUnavailable(e);
    if (method === "rename" && created && stoppedOrTransient && progressStore.kept) {
      // The partial collection is not the target: keep it and its progress, to be continued.
      throw new WorkerError(
        `restore of ${opts.backupId} into ${target} failed: ${describeError(e)}. State: the partial collection ${work} ` +
          `is kept with its progress (${progress.chunksDone} of ${manifest.chunks.length} chunks inserted)` +
          `${exists ? `; the existing ${target} was not changed` : ""}. Next: run the same restore with --resume to continue it ` +
          `(or drop ${work} to start over).`,
        e instanceof WorkerError ? e.exitCode : 1,
      );
    }
    let left = `nothing was created`;
    let leftBehind = false;
    if (created || (await milvus.exists(work).catch(() => false))) {
      try {
        if (await milvus.exists(work)) await milvus.drop(work);
        await store.delete(progressName).catch(() => undefined);
        left = `the partial collection ${work} was dropped`;
        log.warn(
          "restore.cleanup",
          { dropped: work },
          `restore failed; dropped the partial collection ${work}`,
        );
      } catch (cleanup) {
        leftBehind = true;
        left = `the partial collection ${work} is left behind, unverified (dropping it failed: ${describeError(cleanup)})`;
        log.warn(
          "restore.cleanup-failed",
          { collection: work },
          `could not drop ${work}: ${describeError(cleanup)}`,
        );
      }
    }
    const untouched = exists ? `; the existing ${target} was not changed` : "";
    const next = leftBehind
      ? `once Milvus answers, drop ${work} (e.g. pymilvus MilvusClient.drop_collection("${work}")), then run the same restore again`
      : e instanceof StorageUnavailableError || isMilvusUnavailable(e)
        ? "this looks transient: run the same restore again"
        : e instanceof AbortedError
          ? "run the same restore again when ready"
          : "see the cause; the backup itself is unchanged";
    throw new WorkerError(
      `restore of ${opts.backupId} into ${target} failed: ${describeError(e)}. State: ${left}${untouched}. Next: ${next}.`,
      e instanceof WorkerError ? e.exitCode : 1,
    );
  }
}

/**
 * A failed restore leaves no database it created behind: dropped when it holds nothing (Milvus refuses to
 * drop a database with collections, "database:<name> not empty": measured on 2.3.5), else kept and said.
 */
async function dropCreatedDatabase(milvus: Milvus, database: string, log: Log): Promise<void> {
  try {
    await milvus.useDatabase(database);
    const left = await milvus.listCollections();
    await milvus.useDatabase(DEFAULT_DATABASE);
    if (left.length > 0) {
      log.warn(
        "restore.database-kept",
        { database },
        `restore failed; the database ${database} it created still holds ${left.join(", ")} and was kept`,
      );
      return;
    }
    await milvus.dropDatabase(database);
    log.warn(
      "restore.database-dropped",
      { database },
      `restore failed; dropped the database ${database} it had created`,
    );
  } catch (e) {
    log.warn(
      "restore.database-kept",
      { database },
      `restore failed; the database ${database} it created is left behind (dropping it failed: ${describeError(e)})`,
    );
  }
}

/** The swap failed halfway and could not be undone: says exactly where each collection is. */
export class SwapRollbackError extends WorkerError {
  constructor(target: string, aside: string, work: string, cause: unknown, rollback: unknown) {
    super(
      `putting the restored collection in place failed (${describeError(cause)}) and renaming the existing one back ` +
        `failed too (${describeError(rollback)}). State: the existing ${target} is now named ${aside}, the verified ` +
        `restore is ${work}, and nothing is named ${target}. Next: rename ${aside} back to ${target} (or ${work} to ` +
        `${target} to use the restore) once Milvus answers.`,
    );
    this.name = "SwapRollbackError";
  }
}

/**
 * Puts the verified `work` collection under `target`. An existing target is renamed aside first and
 * dropped only after the restored collection holds its name and its aliases; if the second rename
 * fails, the old collection is renamed back, so the target name always holds a complete collection.
 */
export async function swapIntoPlace(
  milvus: Pick<Milvus, "client" | "exists" | "drop" | "listCollections">,
  work: string,
  target: string,
  log: Log,
  warnings: string[],
): Promise<void> {
  const rename = async (from: string, to: string) => {
    const res = await milvus.client.renameCollection({ collection_name: from, new_collection_name: to });
    checkStatus(res, `renaming ${from} to ${to}`);
    const names = await milvus.listCollections();
    if (!names.includes(to) || names.includes(from)) {
      throw new WorkerError(`renaming ${from} to ${to} had no effect on the server`);
    }
  };
  if (!(await milvus.exists(target))) {
    await rename(work, target);
    return;
  }
  const aliases = await aliasesOf(milvus, target);
  const aside = `${target.slice(0, 200)}_replaced_${randomBytes(4).toString("hex")}`;
  await rename(target, aside);
  try {
    await rename(work, target);
  } catch (e) {
    try {
      await rename(aside, target);
    } catch (back) {
      throw new SwapRollbackError(target, aside, work, e, back);
    }
    throw e;
  }
  // Aliases follow the collection they name, not its name: point them at the restored collection.
  for (const alias of aliases) {
    const r = await milvus.client.alterAlias({ alias, collection_name: target, ...aliasDb(milvus) });
    if (r.code !== 0) {
      const w = `alias ${alias} still names the replaced collection ${aside}: ${r.reason}`;
      warnings.push(w);
      log.warn("restore.alias", { alias }, w);
    }
  }
  try {
    await dropAliasesOf(milvus, aside);
    await milvus.drop(aside);
  } catch (e) {
    const w = `the replaced collection was kept as ${aside} (dropping it failed: ${describeError(e)}); drop it when no longer needed`;
    warnings.push(w);
    log.warn("restore.replaced-kept", { collection: aside }, w);
  }
}

async function aliasesOf(milvus: Pick<Milvus, "client">, collection: string): Promise<string[]> {
  try {
    const res = await milvus.client.listAliases({ collection_name: collection, ...aliasDb(milvus) });
    return res.status.code === 0 ? res.aliases : [];
  } catch {
    return [];
  }
}

/**
 * The interrupted restore into `target` to continue, if any. A record whose collection is gone (dropped
 * by hand to start over) is discarded; one that exists makes a restore without --resume refuse, and
 * --resume without one (or of another backup, or of a changed manifest) refuse.
 */
async function resumableRestore(
  milvus: Milvus,
  store: BlobStore,
  m: Manifest,
  target: string,
  manifestDigest: string,
  opts: RestoreOptions,
  log: Log,
): Promise<RestoreProgress | undefined> {
  const name = qualifiedName(milvus.database, target);
  let record = await loadRestoreProgress(store, name);
  if (record && !(await milvus.exists(record.work))) {
    log.warn(
      "restore.progress-discarded",
      { collection: record.work },
      `the interrupted restore of ${record.backupId} into ${target} left no collection ${record.work}; starting over`,
    );
    await store.delete(restoreProgressPath(name));
    record = undefined;
  }
  const refused = `restore${opts.resume ? " --resume" : ""} of ${opts.backupId} into ${target} refused`;
  if (!record) {
    if (!opts.resume) return undefined;
    throw new WorkerError(
      `${refused}: no interrupted restore into ${target} is recorded in ${store.location} (${restoreProgressPath(name)}). ` +
        "Run the restore without --resume.",
    );
  }
  const partial = `an interrupted restore of ${record.backupId} left ${record.work} with ${record.chunksDone} of its chunks`;
  if (!opts.resume) {
    throw new WorkerError(
      `${refused}: ${partial}. Run the same restore with --resume to continue it, or drop ${record.work} to start over.`,
    );
  }
  if (record.backupId !== opts.backupId) {
    throw new WorkerError(
      `${refused}: ${partial}; continue that one (restore --backup ${record.backupId} --target ${target} --resume) ` +
        `or drop ${record.work} to start over.`,
    );
  }
  if (record.manifestSha256 !== manifestDigest) {
    throw new WorkerError(
      `${refused}: the backup's manifest changed since the interrupted restore began (SHA-256 ${manifestDigest}, ` +
        `was ${record.manifestSha256}). Drop ${record.work} and run the restore without --resume.`,
    );
  }
  if (m.schema.fields.some((f) => f.isPrimaryKey && f.autoID)) {
    // An upsert into an auto-ID collection may give rows new keys: the chunk in flight could not be
    // written again without risking duplicates.
    throw new WorkerError(
      `${refused}: its primary key is auto-ID, so the chunk that was in flight cannot be written again without ` +
        `risking duplicate rows. Drop ${record.work} and run the restore without --resume.`,
    );
  }
  return record;
}

/** Every chunk the manifest lists is present with its size (one listing, no downloads). */
async function checkAllChunks(store: BlobStore, m: Manifest): Promise<void> {
  const problems: string[] = [];
  const sizes = new Map<string, number>();
  for await (const b of store.list(backupPrefix(m.backupId))) sizes.set(b.name, b.size);
  let total = 0;
  for (const entry of m.chunks) {
    total += entry.rows;
    const size = sizes.get(entry.file);
    if (size === undefined) problems.push(`${entry.file} is missing from ${store.location}`);
    else if (size !== entry.bytes)
      problems.push(`${entry.file} has ${size} bytes, the manifest says ${entry.bytes}`);
  }
  if (total !== m.rows) problems.push(`chunks hold ${total} rows, manifest promises ${m.rows}`);
  problems.push(...listingProblems(m, sizes.keys()));
  if (problems.length > 0) {
    problems.sort();
    throw new WorkerError(
      `restore of ${m.backupId} refused, the backup is damaged: ${problems.slice(0, 3).join("; ")}` +
        `${problems.length > 3 ? ` (+${problems.length - 3} more)` : ""}. Nothing was changed in Milvus; restore another backup.`,
    );
  }
}

/** Whether renameCollection really renames (Milvus Lite answers success and does nothing). */
async function probeRename(milvus: Milvus): Promise<boolean> {
  const a = `_backup_probe_${randomBytes(4).toString("hex")}`;
  const b = `${a}_renamed`;
  const res = await milvus.client.createCollection({
    collection_name: a,
    fields: [
      { name: "id", data_type: "Int64", is_primary_key: true },
      { name: "v", data_type: "FloatVector", dim: 2 },
    ],
  });
  checkStatus(res, "creating a probe collection (to check rename support)");
  try {
    const r = await milvus.client.renameCollection({ collection_name: a, new_collection_name: b });
    if (r.code !== 0) return false;
    const names = await milvus.listCollections();
    return names.includes(b) && !names.includes(a);
  } finally {
    for (const n of [a, b]) if (await milvus.exists(n)) await milvus.drop(n);
  }
}

/** Creates the collection; returns a warning when auto-ID had to be turned off to keep primary keys. */
async function createCollection(
  milvus: Milvus,
  def: CollectionDef,
  name: string,
  log: Log,
  /** The name the warning gives (the target, not the temporary collection that becomes it). */
  shownAs = name,
): Promise<string | undefined> {
  const fields = (autoId: boolean): FieldType[] =>
    def.fields.map((f) => {
      const field: FieldType = {
        name: f.name,
        description: f.description,
        data_type: f.dataType as FieldType["data_type"],
        is_primary_key: f.isPrimaryKey,
        autoID: f.isPrimaryKey ? autoId && f.autoID : false,
        is_partition_key: f.isPartitionKey,
        is_clustering_key: f.isClusteringKey,
        is_function_output: f.isFunctionOutput,
        nullable: f.nullable,
        // Passed whole: the SDK forwards type_params as given (analyzer settings, mmap, ...).
        type_params: { ...f.typeParams },
      };
      if (f.elementType) field.element_type = f.elementType as FieldType["data_type"];
      if (f.defaultValue !== null && f.defaultValue !== undefined && f.defaultValue !== "") {
        field.default_value = f.defaultValue as number | string;
      }
      return field;
    });
  const autoIdPk = def.fields.some((f) => f.isPrimaryKey && f.autoID);
  const properties = { ...def.properties };
  // Servers that support it accept the original keys in an auto-ID collection (Milvus 2.5.14+/2.6).
  if (autoIdPk) properties.allow_insert_auto_id = "true";
  const request = (autoId: boolean, props: Record<string, string>) => ({
    collection_name: name,
    description: def.description,
    fields: fields(autoId),
    functions: def.functions.map((fn) => ({
      name: fn.name,
      description: fn.description,
      type: fn.type as "BM25",
      input_field_names: fn.inputFieldNames,
      output_field_names: fn.outputFieldNames,
      params: fn.params,
    })),
    enable_dynamic_field: def.enableDynamicField,
    shards_num: def.shardsNum > 0 ? def.shardsNum : undefined,
    consistency_level: def.consistencyLevel,
    num_partitions:
      def.numPartitions > 0 && def.fields.some((f) => f.isPartitionKey) ? def.numPartitions : undefined,
    properties: props,
  });
  let res = await milvus.client.createCollection(request(true, properties));
  let warning: string | undefined;
  if (res.code !== 0 && autoIdPk) {
    // Older servers reject the property; the collection is recreated without it and probed below.
    delete properties.allow_insert_auto_id;
    res = await milvus.client.createCollection(request(true, properties));
  }
  checkStatus(res, `creating collection ${name}`);
  if (autoIdPk && !(await acceptsExplicitKeys(milvus, def, name))) {
    await milvus.drop(name);
    // The property means nothing with auto-ID off: keep only the source's own value.
    if (!("allow_insert_auto_id" in def.properties)) delete properties.allow_insert_auto_id;
    res = await milvus.client.createCollection(request(false, properties));
    checkStatus(res, `creating collection ${name}`);
    warning =
      `this server refuses explicit primary keys in auto-ID collections: ${shownAs} was created with auto-ID off ` +
      "so that every primary key is preserved; new inserts must now supply the primary key";
    log.warn("restore.auto-id-off", { collection: name }, warning);
  }
  for (const p of def.partitions) {
    if (p === "_default" || def.fields.some((f) => f.isPartitionKey)) continue;
    const r = await milvus.client.createPartition({ collection_name: name, partition_name: p });
    checkStatus(r, `creating partition ${p} of ${name}`);
  }
  return warning;
}

/** Whether an auto-ID collection accepts a row that carries its own primary key. */
async function acceptsExplicitKeys(milvus: Milvus, def: CollectionDef, name: string): Promise<boolean> {
  const d = await milvus.client.describeCollection({ collection_name: name });
  checkStatus(d.status, `describing ${name}`);
  const pk = d.schema.fields.find((f) => f.is_primary_key);
  if (!pk?.autoID) return true;
  const props = Object.fromEntries(
    ((d.properties as { key: string; value: unknown }[] | undefined) ?? []).map((p) => [
      p.key,
      String(p.value),
    ]),
  );
  if (props.allow_insert_auto_id !== "true" || def.properties.allow_insert_auto_id === "false") return false;
  // Keeping the property proves nothing: Milvus 2.3.5 stores allow_insert_auto_id (describe answers it)
  // yet refuses an insert that carries the key, "the number of fields is less than needed" (measured
  // here; servers that know it check it in the proxy's insert, milvus internal/proxy/util.go "can not
  // assign primary field data when auto id enabled and allow_insert_auto_id is false"). So one row with
  // a key is inserted into a throwaway collection of the same key type, and the key must come back.
  // A fresh random name: a probe must never share a name with a collection it would then drop.
  let probe: string;
  do probe = `${name.slice(0, 220)}_autoid_probe_${randomBytes(4).toString("hex")}`;
  while (await milvus.exists(probe));
  return insertKeepsKey(milvus, def, probe);
}

/** Whether `probe`, an auto-ID collection with allow_insert_auto_id, keeps a key given on insert. */
async function insertKeepsKey(milvus: Milvus, def: CollectionDef, probe: string): Promise<boolean> {
  const pk = primaryField(def);
  const varchar = pk.dataType === "VarChar";
  const vector = pk.name === "v" ? "vec" : "v";
  const made = await milvus.client.createCollection({
    collection_name: probe,
    fields: [
      {
        name: pk.name,
        data_type: pk.dataType as FieldType["data_type"],
        is_primary_key: true,
        autoID: true,
        ...(varchar
          ? { max_length: "max_length" in pk.typeParams ? Number(pk.typeParams.max_length) : 64 }
          : {}),
      },
      // Milvus refuses a collection without one (internal/proxy/task.go, "schema does not contain vector field").
      { name: vector, data_type: DataType.FloatVector, dim: 2 },
    ],
    properties: { allow_insert_auto_id: "true" },
  });
  checkStatus(made, `creating the probe collection ${probe}`);
  try {
    const key = varchar ? "k" : "7";
    const ins = await milvus.client.insert({
      collection_name: probe,
      data: [{ [pk.name]: key, [vector]: [0, 0] }],
    });
    const ids = ins.IDs as { int_id?: { data: unknown[] }; str_id?: { data: unknown[] } } | undefined;
    const got = (varchar ? ids?.str_id : ids?.int_id)?.data ?? [];
    return ins.status.code === 0 && got.length === 1 && String(got[0]) === key;
  } catch {
    // The SDK throws on answers it cannot read: not accepted.
    return false;
  } finally {
    await milvus.drop(probe).catch(() => undefined);
  }
}

async function insertAll(
  milvus: Milvus,
  store: BlobStore,
  m: Manifest,
  name: string,
  insertBytes: number,
  log: Log,
  signal: AbortSignal | undefined,
  resume: {
    /** Chunks before this one are in the collection (a resumed restore); this one may be in part. */
    from: number;
    /** Called when chunks 1..done are all acknowledged, before any row of the next is sent. */
    chunkDone: (done: number, rows: number) => Promise<void>;
  },
) {
  const firstChunk = resume.from;
  let inserted = m.chunks.slice(0, firstChunk).reduce((s, c) => s + c.rows, 0);
  const pending = new Set<Promise<void>>();
  let failure: Error | undefined;
  // Upsert replaces by primary key, so a retried request cannot duplicate rows; auto-ID collections
  // would get new keys from an upsert, so there an ambiguous failure is not retried.
  const canUpsert = !m.schema.fields.some((f) => f.isPrimaryKey && f.autoID);
  const first = m.chunks.at(firstChunk);
  let nextDownload: Promise<Buffer> | undefined = first ? store.get(first.file) : undefined;
  let previousHeader: ChunkHeader | undefined;
  for (let i = firstChunk; i < m.chunks.length; i++) {
    const entry = m.chunks[i] as ChunkEntry | undefined;
    if (!entry || !nextDownload) break;
    if (i > firstChunk) {
      // A chunk is recorded as done only once all its rows are acknowledged and before the next one's
      // are sent, so only the chunk right after the recorded ones can be in the collection in part.
      await Promise.allSettled(pending);
      if (failure) throw failure;
      await resume.chunkDone(i, inserted);
    }
    // The chunk a killed run was inserting may be in part: upserted, so its rows land once.
    const upsertChunk = i === firstChunk && firstChunk > 0;
    const data = await nextDownload;
    const following = m.chunks[i + 1] as ChunkEntry | undefined;
    // Download the next chunk while this one is being inserted.
    nextDownload = following ? store.get(following.file) : undefined;
    // Handled where it is awaited; until then a failure must not become an unhandled rejection when
    // this chunk's insert fails first.
    nextDownload?.catch(() => undefined);
    const problems = checkChunk(data, entry);
    if (problems.length > 0)
      throw new WorkerError(`the backup is damaged: ${problems.join("; ")}; restore another backup`);
    const { header, columns } = await readChunk(data, entry.file);
    const identity = identityProblems(header, m, i, previousHeader);
    if (identity.length > 0)
      throw new WorkerError(`the backup is damaged: ${identity.join("; ")}; restore another backup`);
    previousHeader = header;
    const readers = header.columns.map((c) => {
      const raw = columns.get(c.name);
      if (!raw) throw new WorkerError(`${entry.file}: column ${c.name} is missing`);
      return new ColumnReader(c, raw, header.rows, entry.file);
    });
    // Array fields cost more than linearly per request (see ARRAY_PAGE_ROWS), so batches stay small.
    const maxRows = header.columns.some((c) => c.kind === "array") ? ARRAY_PAGE_ROWS : MAX_BATCH_ROWS;
    let from = 0;
    while (from < header.rows) {
      // Grow the batch until it reaches the byte budget (rows can differ a lot in size).
      let to = Math.min(header.rows, from + maxRows);
      let bytes = readers.reduce((s, r) => s + r.byteSize(from, to), 0);
      while (bytes > insertBytes && to - from > 1) {
        to = from + Math.max(1, Math.floor(((to - from) * insertBytes) / bytes));
        bytes = readers.reduce((s, r) => s + r.byteSize(from, to), 0);
      }
      const fieldsData = readers.map((r) => r.fieldData(from, to));
      const rows = to - from;
      while (pending.size >= INSERTS_IN_FLIGHT) await Promise.race(pending);
      if (failure) throw failure;
      if (signal?.aborted) {
        await Promise.allSettled(pending);
        stopIfAborted(signal, `after ${inserted} of ${m.rows} rows`);
      }
      const task = insertWithRetries(
        milvus,
        name,
        header.partition || undefined,
        fieldsData,
        rows,
        canUpsert,
        log,
        { upsert: upsertChunk },
      )
        .then(() => {
          inserted += rows;
          log.progress(`restore ${name}`, inserted, m.rows);
        })
        .catch((e: unknown) => {
          failure ??= e instanceof Error ? e : new Error(String(e));
        })
        .finally(() => {
          pending.delete(task);
        });
      pending.add(task);
      from = to;
    }
  }
  await Promise.all(pending);
  if (failure) throw failure;
  await resume.chunkDone(m.chunks.length, inserted);
  if (inserted !== m.rows)
    throw new WorkerError(`restore of ${m.backupId}: inserted ${inserted} rows, the backup has ${m.rows}`);
}

/**
 * Retries transient failures with backoff (the `retry` library: 1, 2, 4, 8 s, at most 30 s). A refusal
 * by the server (rate limit, memory quota, write denied) is retried as it was; a failure that leaves
 * unknown whether the rows landed (timeout, connection lost) is retried as an upsert, which cannot
 * duplicate them. Anything else fails at once.
 */
export async function insertWithRetries(
  milvus: Pick<Milvus, "insert">,
  name: string,
  partition: string | undefined,
  fieldsData: object[],
  rows: number,
  canUpsert: boolean,
  log: Pick<Log, "warn">,
  {
    attempts = 5,
    baseMs = 500,
    upsert: upsertFirst = false,
  }: { attempts?: number; baseMs?: number; upsert?: boolean } = {},
): Promise<void> {
  const waits = Array.from({ length: attempts - 1 }, (_, i) => Math.min(30_000, baseMs * 2 ** (i + 1)));
  const op = retryOperation(waits);
  // Upsert from the first try for rows that may already be in the collection (a resumed restore).
  let upsert = upsertFirst;
  await new Promise<void>((resolve, reject) => {
    op.attempt((attempt) => {
      milvus.insert(name, partition, fieldsData, rows, upsert).then(resolve, (e: unknown) => {
        const error = e instanceof Error ? e : new Error(String(e));
        const msg = describeError(e);
        const refused = /rate limit|too many requests|deny to write|memory quota|quota exceeded/i.test(msg);
        const ambiguous = /UNAVAILABLE|DEADLINE_EXCEEDED|ECONNRESET|socket hang up/i.test(msg);
        if (!refused && !(ambiguous && canUpsert)) {
          reject(error);
          return;
        }
        upsert ||= ambiguous;
        if (!op.retry(error)) {
          reject(error);
          return;
        }
        log.warn(
          "retry",
          { collection: name, attempt, delayMs: waits[attempt - 1], upsert },
          `inserting into ${name} failed (${msg}); retrying`,
        );
      });
    });
  });
}

async function createIndexes(
  milvus: Milvus,
  def: CollectionDef,
  name: string,
  fallback: string | undefined,
  log: Log,
  warnings: string[],
): Promise<RestoreSummary["indexes"]> {
  const done: RestoreSummary["indexes"] = [];
  for (const ix of def.indexes) {
    const res = await milvus.client.createIndex(indexRequest(name, ix, ix.indexType, ix.params));
    if (res.code === 0) {
      done.push({ field: ix.fieldName, indexType: ix.indexType, fallback: false });
      continue;
    }
    if (!fallback) {
      throw new WorkerError(
        `restore: the server rejected index ${ix.indexName} (${ix.indexType}, metric ${ix.metricType || "none"}) on field ` +
          `${ix.fieldName}: ${res.reason}. Pass --index-fallback <indexType> (e.g. AUTOINDEX, or FLAT on Milvus Lite) to build a supported index instead.`,
      );
    }
    const field = def.fields.find((f) => f.name === ix.fieldName);
    let type = fallback;
    if (field?.dataType === "BinaryVector" && !type.startsWith("BIN_") && /^(FLAT|IVF_FLAT)$/.test(type))
      type = `BIN_${type}`;
    const retry = await milvus.client.createIndex(indexRequest(name, ix, type, {}));
    checkStatus(
      retry,
      `creating fallback index ${type} on ${name}.${ix.fieldName} (original ${ix.indexType} was rejected: ${res.reason})`,
    );
    const w = `index on ${ix.fieldName}: ${ix.indexType} rejected by the server (${res.reason}); built ${type} instead`;
    warnings.push(w);
    log.warn("restore.index-fallback", { field: ix.fieldName, from: ix.indexType, to: type }, w);
    done.push({ field: ix.fieldName, indexType: type, fallback: true });
  }
  return done;
}

function indexRequest(collection: string, ix: IndexDef, indexType: string, params: Record<string, string>) {
  return {
    collection_name: collection,
    field_name: ix.fieldName,
    index_name: ix.indexName,
    index_type: indexType,
    ...(ix.metricType ? { metric_type: ix.metricType } : {}),
    // Numbers go back as numbers: Milvus Lite silently drops {"nlist":"32"} but keeps {"nlist":32}.
    params: Object.fromEntries(
      Object.entries(params).map(([k, v]) => [k, /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v]),
    ),
  };
}

/** The database of alias requests ({@link Milvus.aliasDatabase}); test doubles without one: the header's. */
function aliasDb(milvus: object): { db_name?: string } {
  return milvus instanceof Object && "aliasDatabase" in milvus && typeof milvus.aliasDatabase === "function"
    ? (milvus as Pick<Milvus, "aliasDatabase">).aliasDatabase()
    : {};
}

async function dropAliasesOf(milvus: Pick<Milvus, "client">, collection: string) {
  for (const alias of await aliasesOf(milvus, collection)) {
    let r;
    try {
      r = await milvus.client.dropAlias({ alias, ...aliasDb(milvus) });
    } catch {
      return;
    }
    checkStatus(r, `dropping alias ${alias} of ${collection}`);
  }
}

async function restoreAliases(
  milvus: Milvus,
  def: CollectionDef,
  target: string,
  log: Log,
  warnings: string[],
) {
  for (const alias of def.aliases) {
    let res = await milvus.client.createAlias({ alias, collection_name: target, ...aliasDb(milvus) });
    if (res.code !== 0)
      res = await milvus.client.alterAlias({ alias, collection_name: target, ...aliasDb(milvus) });
    if (res.code !== 0) {
      const w = `alias ${alias} could not be pointed at ${target}: ${res.reason}`;
      warnings.push(w);
      log.warn("restore.alias", { alias }, w);
    }
  }
}
