/**
 * Reading the catalogue of backups: list (complete backups only), manifest loading and verify
 * (every chunk present, of the recorded size and SHA-256, with the recorded row counts; no Milvus).
 */
import type { BlobStore } from "./blobStore";
import { WorkerError } from "./errors";
import {
  backupPrefix,
  FORMAT_VERSION,
  MANIFEST_KIND,
  manifestPath,
  readChunkHeader,
  sha256,
  type Manifest,
} from "./format";
import type { Log } from "./log";

export const BACKUP_ID_PATTERN = /^[A-Za-z0-9_.:-]+$/;

export interface BackupListing {
  backupId: string;
  collection: string;
  time: string;
  rows: number;
  bytes: number;
  chunks: number;
  formatVersion: number;
}

/** Parses and checks a manifest; throws a clear error for anything that is not a usable backup. */
export function parseManifest(data: Buffer, backupId: string): Manifest {
  let m: Manifest;
  try {
    m = JSON.parse(data.toString("utf8")) as Manifest;
  } catch {
    throw new WorkerError(`backup ${backupId}: manifest.json is not valid JSON; the backup is damaged`);
  }
  if ((m.kind as string) !== MANIFEST_KIND)
    throw new WorkerError(`backup ${backupId}: manifest.json is not a backup manifest`);
  if (m.formatVersion > FORMAT_VERSION) {
    throw new WorkerError(
      `backup ${backupId} has format version ${m.formatVersion}; this worker reads up to ${FORMAT_VERSION}: use a newer worker image`,
    );
  }
  if (m.backupId !== backupId)
    throw new WorkerError(`backup ${backupId}: manifest names a different backup (${m.backupId})`);
  if (!Array.isArray(m.chunks) || typeof m.rows !== "number") {
    throw new WorkerError(`backup ${backupId}: manifest.json is incomplete; the backup is damaged`);
  }
  return m;
}

export async function loadManifest(store: BlobStore, backupId: string): Promise<Manifest> {
  if (!BACKUP_ID_PATTERN.test(backupId)) {
    throw new WorkerError(
      `--backup ${JSON.stringify(backupId)} is not a backup id; see \`list\` for valid ids`,
      2,
    );
  }
  if (!(await store.exists(manifestPath(backupId)))) {
    const any = await firstBlob(store, backupPrefix(backupId));
    throw new WorkerError(
      any
        ? `backup ${backupId} is incomplete (interrupted before its manifest was written) and cannot be used; choose another from \`list\``
        : `backup ${backupId} not found in ${store.location}; run \`list\` to see the available backups`,
    );
  }
  return parseManifest(await store.get(manifestPath(backupId)), backupId);
}

async function firstBlob(store: BlobStore, prefix: string): Promise<boolean> {
  for await (const _ of store.list(prefix)) return true;
  return false;
}

/** Complete backups (those with a manifest), newest first. */
export async function listBackups(store: BlobStore, collection?: string): Promise<BackupListing[]> {
  const ids: string[] = [];
  for await (const b of store.list("backups/")) {
    const m = /^backups\/([^/]+)\/manifest\.json$/.exec(b.name);
    if (m?.[1]) ids.push(m[1]);
  }
  const out: BackupListing[] = [];
  // Manifests are small; a few parallel downloads keep long catalogues quick.
  for (let i = 0; i < ids.length; i += 8) {
    const batch = await Promise.all(
      ids.slice(i, i + 8).map(async (id) => parseManifest(await store.get(manifestPath(id)), id)),
    );
    for (const m of batch) {
      if (collection !== undefined && m.collection !== collection) continue;
      out.push({
        backupId: m.backupId,
        collection: m.collection,
        time: m.time,
        rows: m.rows,
        bytes: m.bytes,
        chunks: m.chunks.length,
        formatVersion: m.formatVersion,
      });
    }
  }
  return out.sort((a, b) =>
    a.time < b.time ? 1 : a.time > b.time ? -1 : b.backupId.localeCompare(a.backupId),
  );
}

export interface VerifyResult {
  ok: boolean;
  backupId: string;
  collection?: string;
  rows?: number;
  chunks?: number;
  problems: string[];
}

/** Checks one chunk against its manifest entry; returns problems (empty when it is intact). */
export function checkChunk(data: Buffer, entry: Manifest["chunks"][number]): string[] {
  const problems: string[] = [];
  if (data.length !== entry.bytes)
    problems.push(`${entry.file}: size ${data.length} bytes, manifest says ${entry.bytes}`);
  const digest = sha256(data);
  if (digest !== entry.sha256) {
    problems.push(`${entry.file}: SHA-256 mismatch (stored data is corrupt)`);
    return problems;
  }
  try {
    const { header } = readChunkHeader(data, entry.file);
    if (header.rows !== entry.rows)
      problems.push(`${entry.file}: holds ${header.rows} rows, manifest says ${entry.rows}`);
  } catch (e) {
    problems.push(e instanceof Error ? e.message : String(e));
  }
  return problems;
}

/** verify: everything short of inserting, without a Milvus server. */
export async function verifyBackup(store: BlobStore, backupId: string, log: Log): Promise<VerifyResult> {
  let m: Manifest;
  try {
    m = await loadManifest(store, backupId);
  } catch (e) {
    if (e instanceof WorkerError && e.exitCode === 1) {
      return { ok: false, backupId, problems: [e.message] };
    }
    throw e;
  }
  const problems: string[] = [];
  const present = new Map<string, number>();
  for await (const b of store.list(backupPrefix(backupId))) present.set(b.name, b.size);
  let total = 0;
  let done = 0;
  const queue = [...m.chunks];
  const worker = async () => {
    for (let entry = queue.shift(); entry; entry = queue.shift()) {
      total += entry.rows;
      if (!present.has(entry.file)) {
        problems.push(`${entry.file}: missing`);
      } else {
        problems.push(...checkChunk(await store.get(entry.file), entry));
      }
      done++;
      log.progress(`verify ${backupId}`, done, m.chunks.length);
    }
  };
  // Two downloads at a time keep the network busy while memory stays at two chunks.
  await Promise.all([worker(), worker()]);
  if (total !== m.rows) problems.push(`chunks hold ${total} rows in total, manifest promises ${m.rows}`);
  problems.sort();
  log.info("verify.done", { backupId, ok: problems.length === 0, problems: problems.length });
  return {
    ok: problems.length === 0,
    backupId,
    collection: m.collection,
    rows: m.rows,
    chunks: m.chunks.length,
    problems,
  };
}
