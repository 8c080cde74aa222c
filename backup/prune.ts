/**
 * prune: retention. Deletes intact backups older than the retention period, except the newest
 * `keepLast` intact backups of each collection (at least one: a collection's newest intact backup is
 * never deleted, however old), and partial backups (chunks and a progress record, no manifest: an
 * interrupted run that `backup --resume` could continue) untouched for the grace period (default 24 h:
 * `--partial-grace-hours`), with their progress records. A partial backup is never listed or counted
 * as complete. Blobs under an immutability policy or legal hold are skipped with a warning.
 *
 * Only intact backups (manifest readable, every chunk present with its recorded size; see catalog.ts)
 * count toward keep-last and "newest". Damaged backups are reported (`damaged`) and never deleted:
 * they are evidence of what went wrong, and a person decides when they go.
 *
 * RBAC backups (`rbac/<rbacId>.json`, rbac.ts) get the same retention, counted on their own: documents
 * older than the retention period go, except the newest `keepLast` readable ones (at least one). A blob
 * under `rbac/` that is not a readable RBAC backup is reported (`rbac.unreadable`) and never deleted or
 * counted.
 *
 * Every age is measured on the storage's clock, never this worker's: "now" is the lastModified of a
 * probe blob written under `probes/` (or, when that fails, the newest blob's lastModified, which can
 * only make things look younger), leftovers are aged by their newest blob's lastModified, and a
 * backup's time is its manifest time but never later than the manifest blob's lastModified (a later
 * one means the writing worker's clock ran ahead).
 */
import { randomBytes } from "node:crypto";
import type { BlobStore } from "./blobStore";
import { scanBackups, type BackupListing, type IntactBackup } from "./catalog";
import { describeError, WorkerError } from "./errors";
import { manifestPath } from "./format";
import { BACKUP_PROGRESS_PREFIX, backupProgressPath } from "./resume";
import { scanRbac, type RbacStored } from "./rbac";
import type { Log } from "./log";

export interface PruneOptions {
  retentionDays: number;
  keepLast: number;
  dryRun: boolean;
  /**
   * Partial backups whose newest blob (chunk or progress record) is younger than this are kept: the run
   * may still be going, or be resumed. @default 24
   */
  partialGraceHours?: number;
  /**
   * Tests only: the storage's current time, used instead of reading it from the storage. Production
   * never sets it; this worker's own clock is never used for ages.
   */
  now?: Date;
}

export interface PruneEntry {
  backupId: string;
  collection?: string;
  time?: string;
  reason: string;
}

export interface RbacPruneEntry {
  rbacId: string;
  time: string;
  reason: string;
}

/** Retention of RBAC backups, apart from the collection backups'. */
export interface RbacPruneResult {
  /** Deleted (with dryRun: would be deleted). */
  deleted: RbacPruneEntry[];
  kept: RbacPruneEntry[];
  /** Due for deletion but under an immutability policy or legal hold. */
  skipped: RbacPruneEntry[];
  /** Blobs under rbac/ that are not a readable RBAC backup: reported, never deleted, never counted. */
  unreadable: { name: string; reason: string }[];
}

/** The clock ages were measured against. */
export interface PruneClock {
  /**
   * "storage": a probe blob's lastModified; "newest-blob": the probe failed, so the newest backup
   * blob's lastModified (a lower bound: ages can only come out shorter); "given": PruneOptions.now
   * (tests); "none": nothing is stored and no time was needed.
   */
  source: "storage" | "newest-blob" | "given" | "none";
  /** "now" for every age, ISO 8601 (null with source "none"). */
  storageTime: string | null;
  /** This worker's clock at the start, for the record only. */
  workerTime: string;
  /** How far this worker's clock is ahead of the storage's (negative: behind), when known. */
  workerAheadSeconds: number | null;
}

export interface PruneResult {
  dryRun: boolean;
  deleted: PruneEntry[];
  kept: PruneEntry[];
  skipped: PruneEntry[];
  /** Backups whose manifest is unusable or whose chunks are missing or of the wrong size: reported, never deleted. */
  damaged: PruneEntry[];
  rbac: RbacPruneResult;
  clock: PruneClock;
}

/** Interrupted backups whose newest blob is younger than this (on the storage's clock) may still be running. */
export const LEFTOVER_AGE_MS = 24 * 3600 * 1000;

/** Where the clock probe blobs go (outside `backups/`, so never mistaken for a backup). */
export const PROBE_PREFIX = "probes/";

/** A skew beyond this is worth a warning (ages are right either way: they use the storage's clock). */
const SKEW_WARN_MS = 5 * 60 * 1000;

/**
 * The storage's current time: writes a small probe blob under `probes/`, reads its lastModified from a
 * listing and deletes it. lastModified has whole-second precision, truncated, so this is at most a
 * second behind. Throws when the probe cannot be written or read.
 */
export async function readStorageTime(store: BlobStore): Promise<Date> {
  const name = `${PROBE_PREFIX}clock-${randomBytes(6).toString("hex")}`;
  await store.put(name, Buffer.from("prune clock probe; safe to delete\n", "utf8"));
  try {
    for await (const b of store.list(name)) {
      if (b.name === name) return b.lastModified;
    }
    throw new WorkerError(`the clock probe ${name} was written but is not listed`);
  } finally {
    // Under a container immutability policy the probe stays until the policy allows deleting it.
    await store.delete(name).catch(() => undefined);
  }
}

/**
 * A backup's time on the storage's clock: its manifest time, but never later than the manifest blob's
 * lastModified. A snapshot is always taken before its manifest is stored, so a later manifest time can
 * only come from a worker whose clock ran ahead; the storage's timestamp replaces it.
 */
export function backupTime(b: Pick<IntactBackup, "listing" | "manifestModified">): number {
  const t = Date.parse(b.listing.time);
  // lastModified is truncated to whole seconds: the manifest arrived before the next second.
  const stored = b.manifestModified.getTime() + 999;
  return Number.isFinite(t) ? Math.min(t, stored) : b.manifestModified.getTime();
}

/**
 * Which intact backups retention removes (pure, unit-tested). `timeOf` gives a backup's time in ms
 * (default: its manifest time); one without a usable time is newest and within the retention.
 */
export function planRetention<T extends BackupListing>(
  backups: T[],
  opts: { retentionDays: number; keepLast: number; now: Date; timeOf?: (b: T) => number },
): { remove: T[]; keep: { b: T; reason: string }[] } {
  const cutoff = opts.now.getTime() - opts.retentionDays * 24 * 3600 * 1000;
  const keepLast = Math.max(1, opts.keepLast);
  const timeOf = (b: T) => {
    const t = opts.timeOf ? opts.timeOf(b) : Date.parse(b.time);
    return Number.isFinite(t) ? t : Number.POSITIVE_INFINITY;
  };
  const byCollection = new Map<string, T[]>();
  for (const b of backups) {
    // Same-named collections of two databases are two collections (databases.ts qualifiedName).
    const key = b.database === undefined ? b.collection : `${b.database}.${b.collection}`;
    const list = byCollection.get(key) ?? [];
    list.push(b);
    byCollection.set(key, list);
  }
  const remove: T[] = [];
  const keep: { b: T; reason: string }[] = [];
  for (const list of byCollection.values()) {
    list.sort((a, b) => {
      const [ta, tb] = [timeOf(a), timeOf(b)];
      if (ta !== tb) return ta < tb ? 1 : -1;
      return a.time < b.time ? 1 : a.time > b.time ? -1 : b.backupId.localeCompare(a.backupId);
    });
    list.forEach((b, i) => {
      if (i === 0) keep.push({ b, reason: "newest complete backup of its collection" });
      else if (i < keepLast) keep.push({ b, reason: `among the newest ${keepLast}` });
      else if (timeOf(b) >= cutoff) keep.push({ b, reason: `within ${opts.retentionDays} days` });
      else remove.push(b);
    });
  }
  return { remove, keep };
}

/**
 * An RBAC backup's time on the storage's clock: its document time (taken before the server was read),
 * but never later than the blob's lastModified, as for backupTime.
 */
export function rbacTime(d: Pick<RbacStored, "time" | "lastModified">): number {
  const t = Date.parse(d.time);
  const stored = d.lastModified.getTime() + 999;
  return Number.isFinite(t) ? Math.min(t, stored) : d.lastModified.getTime();
}

/** Which RBAC backups retention removes (pure): the newest `keepLast` (at least one) always stay. */
export function planRbacRetention<T extends Pick<RbacStored, "rbacId" | "time" | "lastModified">>(
  docs: T[],
  opts: { retentionDays: number; keepLast: number; now: Date },
): { remove: T[]; keep: { d: T; reason: string }[] } {
  const cutoff = opts.now.getTime() - opts.retentionDays * 24 * 3600 * 1000;
  const keepLast = Math.max(1, opts.keepLast);
  const sorted = [...docs].sort((a, b) => {
    const [ta, tb] = [rbacTime(a), rbacTime(b)];
    if (ta !== tb) return ta < tb ? 1 : -1;
    return b.rbacId.localeCompare(a.rbacId);
  });
  const remove: T[] = [];
  const keep: { d: T; reason: string }[] = [];
  sorted.forEach((d, i) => {
    if (i === 0) keep.push({ d, reason: "newest RBAC backup" });
    else if (i < keepLast) keep.push({ d, reason: `among the newest ${keepLast}` });
    else if (rbacTime(d) >= cutoff) keep.push({ d, reason: `within ${opts.retentionDays} days` });
    else remove.push(d);
  });
  return { remove, keep };
}

/** The storage's current time, or the fallback, and how this worker's clock compares. */
async function storageClock(
  store: BlobStore,
  opts: PruneOptions,
  log: Log,
): Promise<{ now?: Date; clock: Omit<PruneClock, "storageTime" | "workerAheadSeconds"> }> {
  const workerTime = new Date().toISOString();
  if (opts.now) return { now: opts.now, clock: { source: "given", workerTime } };
  try {
    return { now: await readStorageTime(store), clock: { source: "storage", workerTime } };
  } catch (e) {
    log.warn(
      "prune.clock",
      { error: describeError(e) },
      `cannot read the storage's time with a probe blob under ${PROBE_PREFIX} (${describeError(e)}); ` +
        "ages are measured against the newest backup blob instead, so leftovers and old backups may be kept longer",
    );
    return { clock: { source: "newest-blob", workerTime } };
  }
}

export async function prune(store: BlobStore, opts: PruneOptions, log: Log): Promise<PruneResult> {
  const probed = await storageClock(store, opts, log);
  const scan = await scanBackups(store);
  const rbacScan = await scanRbac(store);
  let now = probed.now;
  let source = probed.clock.source;
  // Blobs written since the probe are newer still; with no probe at all, the newest blob is the bound.
  for (const newest of [scan.newestBlob, ...rbacScan.documents.map((d) => d.lastModified)]) {
    if (source !== "given" && newest && (!now || newest > now)) now = newest;
  }
  if (!now) source = "none";
  const ahead =
    now && (source === "storage" || source === "given")
      ? Date.parse(probed.clock.workerTime) - now.getTime()
      : undefined;
  const clock: PruneClock = {
    source,
    storageTime: now ? now.toISOString() : null,
    workerTime: probed.clock.workerTime,
    workerAheadSeconds: ahead === undefined ? null : Math.round(ahead / 1000),
  };
  if (ahead !== undefined && Math.abs(ahead) > SKEW_WARN_MS) {
    log.warn(
      "prune.clock-skew",
      { workerAheadSeconds: clock.workerAheadSeconds },
      `this worker's clock is ${(Math.abs(ahead) / 3_600_000).toFixed(2)} h ${ahead > 0 ? "ahead of" : "behind"} ` +
        "the storage's; prune measures ages on the storage's clock. Check the node's time synchronization",
    );
  }
  // With nothing stored there is nothing to age; an epoch "now" keeps everything.
  const at = now ?? new Date(0);

  const byId = new Map(scan.intact.map((b) => [b.listing.backupId, b]));
  const { remove, keep } = planRetention(
    scan.intact.map((b) => b.listing),
    {
      retentionDays: opts.retentionDays,
      keepLast: opts.keepLast,
      now: at,
      timeOf: (l) => {
        const b = byId.get(l.backupId);
        return b ? backupTime(b) : Date.parse(l.time);
      },
    },
  );
  const result: PruneResult = {
    dryRun: opts.dryRun,
    deleted: [],
    kept: keep.map(({ b, reason }) => ({
      backupId: b.backupId,
      collection: b.collection,
      time: b.time,
      reason,
    })),
    skipped: [],
    damaged: scan.damaged.map(({ damaged: d }) => ({ ...d })),
    rbac: { deleted: [], kept: [], skipped: [], unreadable: [] },
    clock,
  };
  for (const d of result.damaged) {
    log.warn(
      "prune.damaged",
      { backupId: d.backupId, reason: d.reason },
      `backup ${d.backupId} is damaged (${d.reason}); it does not count toward retention and is not deleted: ` +
        "run verify on it, and delete it by hand once it is no longer needed as evidence",
    );
  }

  const reasonOld = `older than ${opts.retentionDays} days`;
  for (const b of remove) {
    const names = byId.get(b.backupId)?.blobs ?? [];
    const entry = { backupId: b.backupId, collection: b.collection, time: b.time, reason: reasonOld };
    if (opts.dryRun) {
      result.deleted.push(entry);
      continue;
    }
    // The manifest goes first: from then on the backup is no longer listed, even if a chunk stays.
    const outcome = await store.delete(manifestPath(b.backupId));
    if (outcome === "immutable") {
      result.skipped.push({ ...entry, reason: "under an immutability policy or legal hold" });
      log.warn("prune.immutable", { backupId: b.backupId }, `backup ${b.backupId} is immutable; skipped`);
      continue;
    }
    const stuck = await deleteAll(
      store,
      names.filter((n) => n !== manifestPath(b.backupId)),
    );
    if (stuck > 0) {
      log.warn(
        "prune.immutable",
        { backupId: b.backupId, blobs: stuck },
        `${stuck} blobs of ${b.backupId} are immutable; left in place`,
      );
    }
    result.deleted.push(entry);
    log.info("prune.deleted", { backupId: b.backupId, collection: b.collection });
  }

  await pruneRbac(store, rbacScan, opts, at, result.rbac, log);

  // Progress records (resume.ts) live outside backups/: each belongs to the backup it names.
  const records = new Map<string, Date>();
  for await (const b of store.list(BACKUP_PROGRESS_PREFIX)) {
    const id = /^progress\/backups\/(.+)\.json$/.exec(b.name)?.[1];
    if (id) records.set(id, b.lastModified);
  }
  const withManifest = new Set([...scan.intact, ...scan.damaged].map((b) => b.backupId));
  for (const id of records.keys()) {
    // A completed backup whose run ended before it could delete its record: the record is stale.
    if (withManifest.has(id) && !opts.dryRun) await store.delete(backupProgressPath(id));
  }
  const partials = scan.incomplete.map((e) => {
    const record = records.get(e.backupId);
    const blobs = record ? [...e.blobs, backupProgressPath(e.backupId)] : e.blobs;
    return { ...e, blobs, newest: record && record > e.newest ? record : e.newest, record: Boolean(record) };
  });
  // A run that died before its first chunk leaves only its record.
  for (const [backupId, newest] of records) {
    if (withManifest.has(backupId) || scan.incomplete.some((e) => e.backupId === backupId)) continue;
    partials.push({ backupId, blobs: [backupProgressPath(backupId)], newest, record: true });
  }
  partials.sort((a, b) => a.backupId.localeCompare(b.backupId));
  const graceHours = opts.partialGraceHours ?? LEFTOVER_AGE_MS / 3_600_000;
  const grace = graceHours === 24 ? "a day" : `${graceHours} h`;
  for (const e of partials) {
    const age = at.getTime() - e.newest.getTime();
    if (age < graceHours * 3_600_000) {
      result.kept.push({
        backupId: e.backupId,
        reason: e.record
          ? `partial backup younger than ${grace} (may still be running, or be continued with backup --resume ${e.backupId})`
          : `incomplete and younger than ${grace} (may still be running)`,
      });
      continue;
    }
    const entry = {
      backupId: e.backupId,
      time: e.newest.toISOString(),
      reason: "leftover of an interrupted backup",
    };
    if (opts.dryRun) {
      result.deleted.push(entry);
      continue;
    }
    const stuck = await deleteAll(store, e.blobs);
    if (stuck === e.blobs.length) {
      result.skipped.push({ ...entry, reason: "under an immutability policy or legal hold" });
      log.warn("prune.immutable", { backupId: e.backupId }, `leftover ${e.backupId} is immutable; skipped`);
      continue;
    }
    result.deleted.push(entry);
    log.info("prune.deleted", { backupId: e.backupId, leftover: true });
  }
  log.info("prune.done", {
    deleted: result.deleted.length,
    kept: result.kept.length,
    skipped: result.skipped.length,
    damaged: result.damaged.length,
    rbacDeleted: result.rbac.deleted.length,
    rbacKept: result.rbac.kept.length,
    rbacSkipped: result.rbac.skipped.length,
    rbacUnreadable: result.rbac.unreadable.length,
    dryRun: opts.dryRun,
    clock: clock.source,
    storageTime: clock.storageTime,
  });
  return result;
}

/** Retention of RBAC backups; fills `out`. */
async function pruneRbac(
  store: BlobStore,
  rbacScan: Awaited<ReturnType<typeof scanRbac>>,
  opts: PruneOptions,
  now: Date,
  out: RbacPruneResult,
  log: Log,
): Promise<void> {
  for (const u of rbacScan.unreadable) {
    out.unreadable.push({ name: u.name, reason: u.reason });
    log.warn(
      "prune.rbac.unreadable",
      { name: u.name, reason: u.reason },
      `${u.name} is not a readable RBAC backup (${u.reason}); it does not count toward retention and is not deleted: ` +
        "check it, and delete it by hand once it is no longer needed",
    );
  }
  const { remove, keep } = planRbacRetention(rbacScan.documents, { ...opts, now });
  for (const { d, reason } of keep) out.kept.push({ rbacId: d.rbacId, time: d.time, reason });
  for (const d of remove) {
    const entry = { rbacId: d.rbacId, time: d.time, reason: `older than ${opts.retentionDays} days` };
    if (opts.dryRun) {
      out.deleted.push(entry);
      continue;
    }
    // "missing": gone already (another prune); it is deleted either way.
    if ((await store.delete(d.name)) === "immutable") {
      out.skipped.push({ ...entry, reason: "under an immutability policy or legal hold" });
      log.warn("prune.immutable", { rbacId: d.rbacId }, `RBAC backup ${d.rbacId} is immutable; skipped`);
      continue;
    }
    out.deleted.push(entry);
    log.info("prune.rbac.deleted", { rbacId: d.rbacId });
  }
}

/** Deletes blobs, returning how many were immutable. */
async function deleteAll(store: BlobStore, names: string[]): Promise<number> {
  let stuck = 0;
  for (let i = 0; i < names.length; i += 16) {
    const outcomes = await Promise.all(names.slice(i, i + 16).map((n) => store.delete(n)));
    stuck += outcomes.filter((o) => o === "immutable").length;
  }
  return stuck;
}
