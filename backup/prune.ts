/**
 * prune: retention. Deletes complete backups older than the retention period, except the newest
 * `keepLast` of each collection (at least one: a collection's newest complete backup is never
 * deleted, however old), and leftovers of interrupted backups (no manifest) untouched for a day.
 * Blobs under an immutability policy or legal hold are skipped with a warning.
 */
import type { BlobStore } from "./blobStore";
import { listBackups, type BackupListing } from "./catalog";
import { manifestPath } from "./format";
import type { Log } from "./log";

export interface PruneOptions {
  retentionDays: number;
  keepLast: number;
  dryRun: boolean;
  now?: Date;
}

export interface PruneEntry {
  backupId: string;
  collection?: string;
  time?: string;
  reason: string;
}

export interface PruneResult {
  dryRun: boolean;
  deleted: PruneEntry[];
  kept: PruneEntry[];
  skipped: PruneEntry[];
}

/** Interrupted backups younger than this may still be running. */
export const LEFTOVER_AGE_MS = 24 * 3600 * 1000;

/** Which complete backups retention removes (pure, unit-tested). */
export function planRetention(
  backups: BackupListing[],
  opts: { retentionDays: number; keepLast: number; now: Date },
): { remove: BackupListing[]; keep: { b: BackupListing; reason: string }[] } {
  const cutoff = opts.now.getTime() - opts.retentionDays * 24 * 3600 * 1000;
  const keepLast = Math.max(1, opts.keepLast);
  const byCollection = new Map<string, BackupListing[]>();
  for (const b of backups) {
    const list = byCollection.get(b.collection) ?? [];
    list.push(b);
    byCollection.set(b.collection, list);
  }
  const remove: BackupListing[] = [];
  const keep: { b: BackupListing; reason: string }[] = [];
  for (const list of byCollection.values()) {
    list.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    list.forEach((b, i) => {
      if (i === 0) keep.push({ b, reason: "newest complete backup of its collection" });
      else if (i < keepLast) keep.push({ b, reason: `among the newest ${keepLast}` });
      else if (Date.parse(b.time) >= cutoff) keep.push({ b, reason: `within ${opts.retentionDays} days` });
      else remove.push(b);
    });
  }
  return { remove, keep };
}

export async function prune(store: BlobStore, opts: PruneOptions, log: Log): Promise<PruneResult> {
  const now = opts.now ?? new Date();
  const backups = await listBackups(store);
  const complete = new Set(backups.map((b) => b.backupId));
  const { remove, keep } = planRetention(backups, { ...opts, now });
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
  };

  // Every blob by backup id, for chunk lists and for leftovers of interrupted backups.
  const blobs = new Map<string, { names: string[]; newest: number }>();
  for await (const b of store.list("backups/")) {
    const m = /^backups\/([^/]+)\//.exec(b.name);
    if (!m?.[1]) continue;
    const e = blobs.get(m[1]) ?? { names: [], newest: 0 };
    e.names.push(b.name);
    e.newest = Math.max(e.newest, b.lastModified.getTime());
    blobs.set(m[1], e);
  }

  const reasonOld = `older than ${opts.retentionDays} days`;
  for (const b of remove) {
    const names = blobs.get(b.backupId)?.names ?? [];
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

  for (const [id, e] of blobs) {
    if (complete.has(id)) continue;
    const age = now.getTime() - e.newest;
    if (age < LEFTOVER_AGE_MS) {
      result.kept.push({ backupId: id, reason: "incomplete and younger than a day (may still be running)" });
      continue;
    }
    const entry = {
      backupId: id,
      time: new Date(e.newest).toISOString(),
      reason: "leftover of an interrupted backup",
    };
    if (opts.dryRun) {
      result.deleted.push(entry);
      continue;
    }
    const stuck = await deleteAll(store, e.names);
    if (stuck === e.names.length) {
      result.skipped.push({ ...entry, reason: "under an immutability policy or legal hold" });
      log.warn("prune.immutable", { backupId: id }, `leftover ${id} is immutable; skipped`);
      continue;
    }
    result.deleted.push(entry);
    log.info("prune.deleted", { backupId: id, leftover: true });
  }
  log.info("prune.done", {
    deleted: result.deleted.length,
    kept: result.kept.length,
    skipped: result.skipped.length,
    dryRun: opts.dryRun,
  });
  return result;
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
