/**
 * Reading the catalogue of backups: list (intact backups, and damaged ones reported apart), manifest
 * loading and verify (every chunk present, of the recorded size and SHA-256, with the recorded row
 * counts; no Milvus).
 *
 * The catalogue comes from one walk of `backups/` (names, sizes and the storage's lastModified of every
 * blob) plus a download of each manifest; no chunk is downloaded. A backup is *intact* when its
 * manifest parses and every chunk it lists exists with the listed byte size; a backup with a manifest
 * that fails either check is *damaged* and is reported with the reason instead of failing the whole
 * listing. Blobs of a backup without a manifest are *incomplete* (an interrupted or running backup).
 */
import type { BlobStore } from "./blobStore";
import { DATABASE_NAME, DEFAULT_DATABASE, manifestDatabase } from "./databases";
import { WorkerError } from "./errors";
import {
  backupPrefix,
  FORMAT_VERSION,
  MANIFEST_KIND,
  manifestPath,
  chunkPath,
  readChunk,
  readChunkHeader,
  schemaDigest,
  sha256,
  type ChunkHeader,
  type Manifest,
} from "./format";
import { compareKeys } from "./keyCursor";
import type { Log } from "./log";

export const BACKUP_ID_PATTERN = /^[A-Za-z0-9_.:-]+$/;

export interface BackupListing {
  backupId: string;
  collection: string;
  /** The collection's database; absent for "default" (so listings of default-database backups are unchanged). */
  database?: string;
  time: string;
  rows: number;
  bytes: number;
  chunks: number;
  formatVersion: number;
}

/** A backup with a manifest that cannot be used; never counted or deleted by prune. */
export interface DamagedBackup {
  backupId: string;
  /** Known when the manifest could be read. */
  collection?: string;
  /** Known when the manifest could be read; absent for "default". */
  database?: string;
  time?: string;
  reason: string;
}

export interface Catalog {
  /** Intact backups, newest first (by manifest time). */
  backups: BackupListing[];
  /** Damaged backups, by backup id. */
  damaged: DamagedBackup[];
}

/** Parses and checks a manifest; throws a clear error for anything that is not a usable backup. */
export function parseManifest(data: Buffer, backupId: string): Manifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString("utf8"));
  } catch {
    throw new WorkerError(`backup ${backupId}: manifest.json is not valid JSON; the backup is damaged`);
  }
  if (!isRecord(parsed) || parsed.kind !== MANIFEST_KIND)
    throw new WorkerError(`backup ${backupId}: manifest.json is not a backup manifest`);
  const m = parsed as unknown as Manifest;
  if (m.formatVersion > FORMAT_VERSION) {
    throw new WorkerError(
      `backup ${backupId} has format version ${m.formatVersion}; this worker reads up to ${FORMAT_VERSION}: use a newer worker image`,
    );
  }
  if (m.backupId !== backupId)
    throw new WorkerError(`backup ${backupId}: manifest names a different backup (${m.backupId})`);
  if (
    parsed.database !== undefined &&
    (typeof parsed.database !== "string" || !DATABASE_NAME.test(parsed.database))
  )
    throw new WorkerError(
      `backup ${backupId}: manifest.json names database ${JSON.stringify(parsed.database)}, which is not a Milvus database name; the backup is damaged`,
    );
  const chunks: unknown = parsed.chunks;
  if (
    !Array.isArray(chunks) ||
    typeof m.rows !== "number" ||
    typeof parsed.collection !== "string" ||
    typeof parsed.time !== "string" ||
    !chunks.every(
      (c) =>
        isRecord(c) &&
        typeof c.file === "string" &&
        typeof c.bytes === "number" &&
        typeof c.rows === "number",
    )
  ) {
    throw new WorkerError(`backup ${backupId}: manifest.json is incomplete; the backup is damaged`);
  }
  return m;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
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

/** What one walk of the container found under one backup id. */
interface Stored {
  /** Every blob under the backup's prefix with its size. */
  sizes: Map<string, number>;
  /** The newest lastModified among them (the storage's clock). */
  newest: Date;
  /** The manifest blob's lastModified, when there is a manifest. */
  manifestModified?: Date;
}

/** A backup with a manifest, as found by {@link scanBackups}. */
export interface ScannedBackup {
  backupId: string;
  /** Every blob under the backup's prefix, manifest included. */
  blobs: string[];
  /** The manifest blob's lastModified: when the storage received it, on the storage's clock. */
  manifestModified: Date;
}

export interface IntactBackup extends ScannedBackup {
  listing: BackupListing;
}

export interface DamagedScan extends ScannedBackup {
  damaged: DamagedBackup;
}

/** Blobs of a backup id without a manifest: an interrupted backup, or one still running. */
export interface IncompleteBackup {
  backupId: string;
  blobs: string[];
  /** The newest blob's lastModified (the storage's clock). */
  newest: Date;
}

export interface CatalogScan {
  intact: IntactBackup[];
  damaged: DamagedScan[];
  incomplete: IncompleteBackup[];
  /** The newest lastModified of any blob under `backups/`: a lower bound of the storage's current time. */
  newestBlob?: Date;
}

/** At most this many problems are named in a damaged backup's reason. */
const NAMED_PROBLEMS = 3;

/** Presence and size of every chunk a manifest lists, against the walk's sizes (no downloads). */
function chunkProblems(m: Manifest, sizes: Map<string, number>): string | undefined {
  const problems: string[] = [];
  for (const c of m.chunks) {
    const size = sizes.get(c.file);
    if (!c.file.startsWith(backupPrefix(m.backupId))) problems.push(`${c.file}: outside the backup's folder`);
    else if (size === undefined) problems.push(`${c.file}: missing`);
    else if (size !== c.bytes) problems.push(`${c.file}: size ${size} bytes, manifest says ${c.bytes}`);
  }
  if (problems.length === 0) return undefined;
  const more = problems.length - NAMED_PROBLEMS;
  return (
    `${problems.length} of ${m.chunks.length} chunks missing or of the wrong size: ` +
    problems.slice(0, NAMED_PROBLEMS).join("; ") +
    (more > 0 ? `; and ${more} more` : "")
  );
}

/**
 * One walk of `backups/` and a download of each manifest: intact, damaged and incomplete backups with
 * the storage's timestamps. A manifest that fails to parse or check makes its backup damaged; a storage
 * failure (other than the manifest vanishing meanwhile, e.g. under a concurrent prune) fails the scan.
 */
export async function scanBackups(store: BlobStore): Promise<CatalogScan> {
  const byId = new Map<string, Stored>();
  let newestBlob: Date | undefined;
  for await (const b of store.list("backups/")) {
    const m = /^backups\/([^/]+)\/(.+)$/.exec(b.name);
    if (!m?.[1]) continue;
    const e: Stored = byId.get(m[1]) ?? { sizes: new Map(), newest: b.lastModified };
    e.sizes.set(b.name, b.size);
    if (b.lastModified > e.newest) e.newest = b.lastModified;
    if (m[2] === "manifest.json") e.manifestModified = b.lastModified;
    byId.set(m[1], e);
    if (!newestBlob || b.lastModified > newestBlob) newestBlob = b.lastModified;
  }

  const scan: CatalogScan = { intact: [], damaged: [], incomplete: [], newestBlob };
  const withManifest: [string, Stored & { manifestModified: Date }][] = [];
  for (const [backupId, e] of byId) {
    if (e.manifestModified) withManifest.push([backupId, { ...e, manifestModified: e.manifestModified }]);
    else scan.incomplete.push({ backupId, blobs: [...e.sizes.keys()], newest: e.newest });
  }
  // Manifests are small; a few parallel downloads keep long catalogues quick.
  for (let i = 0; i < withManifest.length; i += 8) {
    await Promise.all(
      withManifest.slice(i, i + 8).map(async ([backupId, e]) => {
        const base = { backupId, blobs: [...e.sizes.keys()], manifestModified: e.manifestModified };
        let data: Buffer;
        try {
          data = await store.get(manifestPath(backupId));
        } catch (err) {
          if (await store.exists(manifestPath(backupId))) throw err;
          // Deleted since the walk (a concurrent prune): what is left is incomplete.
          const blobs = base.blobs.filter((n) => n !== manifestPath(backupId));
          if (blobs.length > 0) scan.incomplete.push({ backupId, blobs, newest: e.newest });
          return;
        }
        let m: Manifest;
        try {
          m = parseManifest(data, backupId);
        } catch (err) {
          if (!(err instanceof WorkerError)) throw err;
          scan.damaged.push({ ...base, damaged: { backupId, reason: err.message } });
          return;
        }
        const problem = chunkProblems(m, e.sizes);
        if (problem) {
          scan.damaged.push({
            ...base,
            damaged: {
              backupId,
              collection: m.collection,
              ...databaseField(m),
              time: m.time,
              reason: problem,
            },
          });
          return;
        }
        scan.intact.push({
          ...base,
          listing: {
            backupId: m.backupId,
            collection: m.collection,
            ...databaseField(m),
            time: m.time,
            rows: m.rows,
            bytes: m.bytes,
            chunks: m.chunks.length,
            formatVersion: m.formatVersion,
          },
        });
      }),
    );
  }
  scan.intact.sort((a, b) => newestFirst(a.listing, b.listing));
  scan.damaged.sort((a, b) => a.backupId.localeCompare(b.backupId));
  scan.incomplete.sort((a, b) => a.backupId.localeCompare(b.backupId));
  return scan;
}

/** `database` for a listing: only when it is not "default". */
function databaseField(m: Manifest): { database?: string } {
  const database = manifestDatabase(m);
  return database === DEFAULT_DATABASE ? {} : { database };
}

function newestFirst(a: BackupListing, b: BackupListing): number {
  return a.time < b.time ? 1 : a.time > b.time ? -1 : b.backupId.localeCompare(a.backupId);
}

/**
 * The catalogue: intact backups newest first, and damaged ones apart with the reason. With
 * `collection` (and/or `database`), damaged backups of other collections (databases) are left out; those
 * whose collection is unknown (the manifest is unreadable) are always included.
 */
export async function listCatalog(
  store: BlobStore,
  collection?: string,
  database?: string,
): Promise<Catalog> {
  const scan = await scanBackups(store);
  const inDatabase = (d: { database?: string }) =>
    database === undefined || (d.database ?? DEFAULT_DATABASE) === database;
  return {
    backups: scan.intact
      .map((b) => b.listing)
      .filter((b) => (collection === undefined || b.collection === collection) && inDatabase(b)),
    damaged: scan.damaged
      .map((d) => d.damaged)
      .filter(
        (d) =>
          d.collection === undefined ||
          ((collection === undefined || d.collection === collection) && inDatabase(d)),
      ),
  };
}

/**
 * Intact backups only, newest first. Damaged backups are left out silently: anything shown to a person
 * or another program should use {@link listCatalog}, which reports them.
 */
export async function listBackups(
  store: BlobStore,
  collection?: string,
  database?: string,
): Promise<BackupListing[]> {
  return (await listCatalog(store, collection, database)).backups;
}

export interface VerifyResult {
  ok: boolean;
  backupId: string;
  collection?: string;
  rows?: number;
  chunks?: number;
  /** SHA-256 of the manifest as stored: compare with the backup's `backup.done` log line. */
  manifestSha256?: string;
  problems: string[];
}

/** A problem when a manifest's digest differs from the one its backup logged. */
export function manifestChanged(found: string, expected: string | undefined): string | undefined {
  if (expected === undefined || found === expected) return undefined;
  return `manifest SHA-256 ${found} differs from ${expected}, the one its backup logged: the manifest was changed after the backup`;
}

/**
 * Where a manifest's chunk list and the blobs under its backup disagree, beyond missing chunks: entries
 * that are not the backup's own chunk at their position (a duplicated entry, one pointing at another
 * backup's blob, a gap left by a dropped entry), and blobs under the backup that the manifest does not
 * list (a dropped entry whose chunk is still there).
 */
export function listingProblems(m: Manifest, names: Iterable<string>): string[] {
  const problems: string[] = [];
  m.chunks.forEach((c, i) => {
    const expected = chunkPath(m.backupId, i + 1);
    if (c.file !== expected) problems.push(`chunk entry ${i + 1} names ${c.file}, expected ${expected}`);
  });
  const listed = new Set([manifestPath(m.backupId), ...m.chunks.map((c) => c.file)]);
  for (const name of names)
    if (!listed.has(name)) problems.push(`${name}: under the backup but not in its manifest`);
  return problems;
}

/**
 * A format-2 chunk's description of itself against the manifest: its backup, its position, its row
 * count and partition, the schema it was written for (digest and every column's name, type and
 * dimension), and its keys following the previous chunk's in the same partition. Together these make
 * an edited manifest (a changed `dim`, a removed field, a changed key type, a dropped, duplicated or
 * foreign chunk entry) fail here instead of restoring wrong data.
 */
export function identityProblems(
  header: ChunkHeader,
  m: Manifest,
  position: number,
  previous: ChunkHeader | undefined,
): string[] {
  const entry = m.chunks.at(position);
  const what = entry?.file ?? `chunk ${position + 1}`;
  if (m.formatVersion < 2) {
    // A format-1 manifest over chunks that describe themselves: someone lowered the version to switch
    // these checks off. Format-1 chunks carry no identity at all.
    return header.schemaSha256 === undefined
      ? []
      : [
          `${what}: is a format-2 chunk, but the manifest claims format ${m.formatVersion} (the manifest was edited)`,
        ];
  }
  const problems: string[] = [];
  // The schema is digest-protected by every chunk; the manifest's collection (restore's default
  // target) must be the one that schema describes.
  if (position === 0 && m.collection !== m.schema.name)
    problems.push(
      `manifest names collection ${m.collection}, but its schema is ${m.schema.name}'s (the manifest was edited)`,
    );
  if (header.backupId !== m.backupId)
    problems.push(`${what}: belongs to backup ${String(header.backupId)}, not ${m.backupId}`);
  if (header.index !== position + 1)
    problems.push(`${what}: is chunk ${String(header.index)} of its backup, listed as chunk ${position + 1}`);
  if (entry && header.partition !== entry.partition)
    problems.push(`${what}: holds partition "${header.partition}", manifest says "${entry.partition}"`);
  if (header.schemaSha256 !== schemaDigest(m.schema))
    problems.push(
      `${what}: was written for a different schema than the manifest now describes (the manifest was edited)`,
    );
  const fields = new Map(m.schema.fields.map((f) => [f.name, f]));
  const names = header.columns.map((c) => c.name);
  if (names.join("\u0000") !== m.columns.join("\u0000"))
    problems.push(`${what}: holds columns ${names.join(",")}, manifest lists ${m.columns.join(",")}`);
  for (const c of header.columns) {
    if (c.isDynamic) continue;
    const f = fields.get(c.name);
    if (!f) {
      problems.push(`${what}: column ${c.name} is not a field of the manifest's schema`);
      continue;
    }
    if (f.dataType !== c.dataType)
      problems.push(`${what}: column ${c.name} is ${c.dataType}, the manifest's schema says ${f.dataType}`);
    const dim = f.typeParams.dim as string | undefined;
    if (c.dim !== undefined && dim !== undefined && Number(dim) !== c.dim)
      problems.push(`${what}: column ${c.name} has dim ${c.dim}, the manifest's schema says ${dim}`);
  }
  const pk = m.schema.fields.find((f) => f.isPrimaryKey);
  const varchar = pk?.dataType === "VarChar";
  const first = header.firstKey ?? "";
  const last = header.lastKey ?? "";
  try {
    if (compareKeys(first, last, varchar) > 0)
      problems.push(`${what}: first key ${first} is after its last key ${last}`);
    if (previous && previous.partition === header.partition) {
      const order = compareKeys(previous.lastKey ?? "", first, varchar);
      if (order >= 0)
        problems.push(
          `${what}: starts at key ${first}, not after the previous chunk's last key ${String(previous.lastKey)} (keys must strictly increase)`,
        );
    }
  } catch {
    problems.push(`${what}: keys ${first}..${last} are not ${varchar ? "strings" : "integers"}`);
  }
  return problems;
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
export async function verifyBackup(
  store: BlobStore,
  backupId: string,
  log: Log,
  expectedManifestSha256?: string,
): Promise<VerifyResult> {
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
  problems.push(...listingProblems(m, present.keys()));
  const headers: (ChunkHeader | undefined)[] = new Array<ChunkHeader | undefined>(m.chunks.length);
  const queue = m.chunks.map((entry, position) => ({ entry, position }));
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const { entry, position } = next;
      total += entry.rows;
      if (!present.has(entry.file)) {
        problems.push(`${entry.file}: missing`);
      } else {
        const data = await store.get(entry.file);
        const found = checkChunk(data, entry);
        problems.push(...found);
        if (found.length === 0) {
          // The stored bytes match; the content must too: decompress every column (a corrupt gzip
          // stream whose checksum was recomputed would otherwise pass here and fail mid-restore).
          try {
            headers[position] = (await readChunk(data, entry.file)).header;
          } catch (e) {
            problems.push(e instanceof Error ? e.message : String(e));
          }
        }
      }
      done++;
      log.progress(`verify ${backupId}`, done, m.chunks.length);
    }
  };
  // Two downloads at a time keep the network busy while memory stays at two chunks.
  await Promise.all([worker(), worker()]);
  headers.forEach((h, i) => {
    if (h) problems.push(...identityProblems(h, m, i, headers[i - 1]));
  });
  if (total !== m.rows) problems.push(`chunks hold ${total} rows in total, manifest promises ${m.rows}`);
  problems.sort();
  const manifestSha256 = sha256(await store.get(manifestPath(backupId)));
  const changed = manifestChanged(manifestSha256, expectedManifestSha256);
  if (changed) problems.push(changed);
  log.info("verify.done", { backupId, ok: problems.length === 0, problems: problems.length, manifestSha256 });
  return {
    ok: problems.length === 0,
    backupId,
    collection: m.collection,
    rows: m.rows,
    chunks: m.chunks.length,
    manifestSha256,
    problems,
  };
}
