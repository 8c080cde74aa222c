/**
 * Progress records: what an interrupted backup or restore had finished, so the same run can continue
 * from its last completed chunk instead of starting over.
 *
 * They live under `progress/`, outside `backups/`, so nothing that reads the catalogue (list, verify,
 * restore, prune's retention) can take one for a manifest or count it as a blob of a backup. A record
 * is rewritten after every completed chunk (a small JSON document) and deleted when its run completes;
 * prune removes the record of an abandoned backup with its chunks once the grace period has passed.
 */
import type { BlobStore } from "./blobStore";
import { WorkerError } from "./errors";
import type { ChunkEntry } from "./format";

export const PROGRESS_PREFIX = "progress/";
export const BACKUP_PROGRESS_PREFIX = `${PROGRESS_PREFIX}backups/`;
export const RESTORE_PROGRESS_PREFIX = `${PROGRESS_PREFIX}restores/`;
export const BACKUP_PROGRESS_KIND = "milvus-backup-progress";
export const RESTORE_PROGRESS_KIND = "milvus-restore-progress";

export const backupProgressPath = (backupId: string) => `${BACKUP_PROGRESS_PREFIX}${backupId}.json`;
/** One record per restore target (a target takes one restore at a time: lock.ts). */
export const restoreProgressPath = (target: string) => `${RESTORE_PROGRESS_PREFIX}${target}.json`;

/** A chunk whose upload completed, with where it ends (the resume point). */
export interface DoneChunk extends ChunkEntry {
  /** Last primary key in the chunk (int64 as decimal). */
  lastKey: string;
  /** Distinct primary keys the chunk adds (a key continuing from the previous chunk is not counted again). */
  distinct: number;
  /** Rows of the chunk that repeat the key of an earlier row. */
  duplicateRows: number;
  /** Uncompressed bytes of the chunk's columns. */
  rawBytes: number;
}

export interface BackupProgress {
  kind: typeof BACKUP_PROGRESS_KIND;
  backupId: string;
  collection: string;
  database: string;
  /** The manifest's `time` (when the snapshot was taken). */
  time: string;
  /** The cut the reads are pinned to; null timestamp: the reads are not pinned (no resume), `reason` says why. */
  cut: { timestamp: string | null; backupIds: string[]; reason?: string };
  /** The collection's flush timestamp (kept for the manifest; absent in older records). */
  flushTimestamp?: string | null;
  /** Whether this server's count(*) honours the cut (backup.ts countPinsTimestamp). */
  countsPinned: boolean;
  schemaSha256: string;
  chunkBytes: number;
  pageRows: number;
  /** Partitions in reading order ("" for the whole collection) with count(*) at the cut. */
  partitions: { name: string; promised: number }[];
  /** Completed chunks, 1..n without gaps, in order. */
  chunks: DoneChunk[];
  updatedAt: string;
}

export interface RestoreProgress {
  kind: typeof RESTORE_PROGRESS_KIND;
  backupId: string;
  target: string;
  /** The collection being filled (the target itself where the server cannot rename). */
  work: string;
  method: "rename" | "direct";
  /** SHA-256 of the backup's manifest when the restore started: a changed manifest is not continued. */
  manifestSha256: string;
  /** Chunks whose rows were all acknowledged, 0..n. */
  chunksDone: number;
  rows: number;
  startedAt: string;
  updatedAt: string;
}

async function readRecord<T extends { kind: string }>(
  store: BlobStore,
  name: string,
  kind: T["kind"],
): Promise<T | undefined> {
  if (!(await store.exists(name))) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse((await store.get(name)).toString("utf8"));
  } catch {
    throw new WorkerError(
      `the progress record ${name} in ${store.location} is not valid JSON; delete it to start over`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || (parsed as { kind?: unknown }).kind !== kind) {
    throw new WorkerError(`${name} in ${store.location} is not a ${kind} record; delete it to start over`);
  }
  return parsed as T;
}

export const loadBackupProgress = (store: BlobStore, backupId: string) =>
  readRecord<BackupProgress>(store, backupProgressPath(backupId), BACKUP_PROGRESS_KIND);

export const loadRestoreProgress = (store: BlobStore, target: string) =>
  readRecord<RestoreProgress>(store, restoreProgressPath(target), RESTORE_PROGRESS_KIND);

export async function saveProgress(
  store: BlobStore,
  name: string,
  record: BackupProgress | RestoreProgress,
): Promise<void> {
  record.updatedAt = new Date().toISOString();
  await store.put(name, Buffer.from(JSON.stringify(record), "utf8"));
}

/** Progress records are written in order: a slow early write never lands after a later one. */
export class ProgressWriter {
  private chain: Promise<void> = Promise.resolve();
  private failed = false;

  constructor(
    private readonly store: BlobStore,
    private readonly name: string,
    /** Called once, on the first failed write: the run goes on, but could not be resumed. */
    private readonly onFailure: (e: unknown) => void,
  ) {}

  /** Queues a write of the record as it is now (serialised at once, so later changes are not included). */
  write(record: BackupProgress | RestoreProgress): Promise<void> {
    const snapshot = JSON.parse(JSON.stringify(record)) as BackupProgress | RestoreProgress;
    this.chain = this.chain.then(() =>
      saveProgress(this.store, this.name, snapshot).catch((e: unknown) => {
        if (!this.failed) this.onFailure(e);
        this.failed = true;
      }),
    );
    return this.chain;
  }

  /** Waits for queued writes, then deletes the record (a completed run leaves none behind). */
  async remove(): Promise<void> {
    await this.chain;
    await this.store.delete(this.name).catch(() => undefined);
  }
}
