/**
 * test-restore: proves that the newest complete backup of each collection restores, and measures how
 * long the restore takes (what the restore time objective, RTO, is checked against).
 *
 * Each backup is restored with the ordinary restore (restore.ts) into a scratch collection under a new
 * name, `<collection>_testrestore_<hex>`, so no existing collection is ever touched. The scratch
 * collection is then checked: its row count against the manifest; a sample of rows read back from the
 * backup's own chunks against the same rows queried by primary key; and searches with sampled rows' own
 * vectors. The scratch collection is dropped whatever happens (a failed check, a failed restore,
 * SIGTERM).
 *
 * Storage is only read: the restore's collection lock is on the scratch name, which no other run can
 * use, so it is not taken (see {@link ScratchRestoreStore}). That is what lets the test run against the
 * primary's read-only geo-secondary on a dr stack, with the same code path as anywhere else.
 */
import { randomBytes } from "node:crypto";
import { ConsistencyLevelEnum, promisify } from "@zilliz/milvus2-sdk-node";
import type { BlobInfo, BlobStore, DeleteOutcome, Lease } from "./blobStore";
import { checkChunk, listCatalog, loadManifest, type BackupListing } from "./catalog";
import { ColumnAccumulator, ColumnReader, DYNAMIC_FIELD, isVectorType, sliceRows } from "./columns";
import { describeError, stopIfAborted, WorkerError } from "./errors";
import { readChunk, type ChunkHeader, type ColumnHeader, type Manifest } from "./format";
import { lockPath } from "./lock";
import type { Log } from "./log";
import {
  dialectOf,
  liteQuote,
  primaryField,
  showKey,
  type FilterDialect,
  type Milvus,
  type QueryResponse,
  type RawFieldData,
} from "./milvus";
import { COLLECTION_NAME, restoreBackup } from "./restore";

/** Rows compared between the backup and the restored collection, per collection. */
export const DEFAULT_SAMPLE_ROWS = 100;
/** Searches with sampled rows' vectors, per collection. */
export const DEFAULT_SEARCHES = 5;
/** Hits asked of each search. */
export const SEARCH_TOP_K = 10;
/** The sample is taken from at most this many chunks (each is downloaded once more, whole). */
const SAMPLE_CHUNKS = 4;
/** Primary keys per query of the sample check (keeps the filter expression short). */
const KEYS_PER_QUERY = 100;
/** Per-call deadline of the raw queries, as milvus.ts uses for its own. */
const CALL_TIMEOUT_MS = 120_000;
export const SCRATCH_INFIX = "_testrestore_";

export interface TestRestoreOptions {
  /** Collections to test; undefined: every collection with a complete backup in the container. */
  collections?: string[];
  /** Rows compared by primary key. @default {@link DEFAULT_SAMPLE_ROWS} */
  sampleRows?: number;
  /** Searches with sampled rows' own vectors. @default {@link DEFAULT_SEARCHES} */
  searches?: number;
  /** SIGTERM: the running step stops, the scratch collection is dropped, the run fails. */
  signal?: AbortSignal;
  /** Runs between the restore and the checks; tests alter the restored data through it. */
  beforeChecks?: (milvus: Milvus, scratch: string) => Promise<void>;
}

export interface CheckResult {
  name: "backup" | "restore" | "rows" | "sample" | "search" | "cleanup";
  ok: boolean;
  detail: string;
}

export interface TestRestoreResult {
  collection: string;
  backupId?: string;
  /** When the backup's snapshot was taken. */
  backupTime?: string;
  scratch?: string;
  rows?: number;
  /** Wall-clock seconds of the restore alone (what the RTO covers), checks excluded. */
  restoreSeconds?: number;
  checks: CheckResult[];
  passed: number;
  failed: number;
  /** Whether no scratch collection is left behind. */
  scratchDropped: boolean;
}

export interface TestRestoreReport {
  ok: boolean;
  results: TestRestoreResult[];
}

/**
 * The store as restore sees it during a test restore: reads go to the backup container and nothing is
 * ever written there (a test restore must not change the backups, and on a dr stack the container is
 * the primary's read-only geo-secondary).
 *
 * - The collection lock on the scratch name is granted without a lease. The lock exists so that two
 *   runs never fill or replace the same collection at once (lock.ts); a scratch name is new and random
 *   (checked absent on the server before use), so no other run targets it. Normal restores are not
 *   affected: they lock through the real store.
 * - Records restore keeps about its own target (its resume record, named after the target) are kept in
 *   memory: a scratch restore is never resumed, its collection is dropped at the end.
 * - Any other write is refused with an error naming it.
 */
export class ScratchRestoreStore implements BlobStore {
  private readonly own = new Map<string, { data: Buffer; lastModified: Date }>();

  constructor(
    private readonly inner: BlobStore,
    private readonly scratch: string,
  ) {}

  /** A blob about the scratch collection itself: its name carries the (random, unique) scratch name. */
  private isOwn(name: string): boolean {
    return name.split("/").some((part) => part === this.scratch || part === `${this.scratch}.json`);
  }

  get location(): string {
    return this.inner.location;
  }
  get(name: string): Promise<Buffer> {
    const own = this.own.get(name);
    return own ? Promise.resolve(Buffer.from(own.data)) : this.inner.get(name);
  }
  async exists(name: string): Promise<boolean> {
    if (this.isOwn(name)) return this.own.has(name);
    return this.inner.exists(name);
  }
  async *list(prefix: string): AsyncIterable<BlobInfo> {
    yield* this.inner.list(prefix);
    for (const [name, b] of this.own)
      if (name.startsWith(prefix)) yield { name, size: b.data.length, lastModified: b.lastModified };
  }
  leaseHolder(name: string): Promise<string | undefined> {
    return this.inner.leaseHolder(name);
  }
  tryLease(name: string): Promise<Lease | undefined> {
    if (name !== lockPath(this.scratch)) return Promise.reject(this.refuse(`lease ${name}`));
    return Promise.resolve({ name, renew: () => Promise.resolve(), release: () => Promise.resolve() });
  }
  ensureContainer(): Promise<void> {
    return Promise.reject(this.refuse("create the container"));
  }
  put(name: string, data: Buffer): Promise<void> {
    if (!this.isOwn(name)) return Promise.reject(this.refuse(`write ${name}`));
    this.own.set(name, { data: Buffer.from(data), lastModified: new Date() });
    return Promise.resolve();
  }
  delete(name: string): Promise<DeleteOutcome> {
    if (!this.isOwn(name)) return Promise.reject(this.refuse(`delete ${name}`));
    return Promise.resolve(this.own.delete(name) ? "deleted" : "missing");
  }
  private refuse(what: string): WorkerError {
    return new WorkerError(`test-restore only reads ${this.inner.location}; it tried to ${what}`);
  }
}

/** A collection name for the scratch copy that no collection on the server has. */
export async function scratchName(milvus: Pick<Milvus, "listCollections">, collection: string) {
  const existing = new Set(await milvus.listCollections());
  for (let i = 0; i < 5; i++) {
    // Milvus names are at most 255 characters (COLLECTION_NAME); restore adds its own suffix to 200.
    const name = `${collection.slice(0, 180)}${SCRATCH_INFIX}${randomBytes(4).toString("hex")}`;
    if (!existing.has(name) && COLLECTION_NAME.test(name)) return name;
  }
  throw new WorkerError(`test-restore: found no free scratch collection name for ${collection}`);
}

export async function testRestore(
  milvus: Milvus,
  store: BlobStore,
  opts: TestRestoreOptions,
  log: Log,
): Promise<TestRestoreReport> {
  const catalog = await listCatalog(store);
  for (const d of catalog.damaged)
    log.warn(
      "test-restore.damaged",
      { backupId: d.backupId, reason: d.reason },
      `backup ${d.backupId} is damaged and is not tested: ${d.reason}`,
    );
  // Newest first (catalog.ts): the first backup of each collection is its newest complete one.
  const newest = new Map<string, BackupListing>();
  for (const b of catalog.backups) if (!newest.has(b.collection)) newest.set(b.collection, b);
  const names = opts.collections ?? [...newest.keys()].sort();
  if (names.length === 0) {
    throw new WorkerError(
      `test-restore: ${store.location} holds no complete backup, so there is nothing to test. ` +
        "Check --container/BACKUP_CONTAINER, or run a backup first.",
    );
  }
  const results: TestRestoreResult[] = [];
  for (const collection of names) {
    const b = newest.get(collection);
    if (!b) {
      results.push(
        summarize({
          collection,
          checks: [
            {
              name: "backup",
              ok: false,
              detail: `no complete backup of ${collection} in ${store.location} (see \`list --collection ${collection}\`)`,
            },
          ],
          scratchDropped: true,
        }),
      );
      continue;
    }
    results.push(await testOne(milvus, store, b, opts, log));
  }
  return { ok: results.every((r) => r.failed === 0), results };
}

function summarize(r: Omit<TestRestoreResult, "passed" | "failed">): TestRestoreResult {
  const failed = r.checks.filter((c) => !c.ok).length;
  return { ...r, passed: r.checks.length - failed, failed };
}

async function testOne(
  milvus: Milvus,
  store: BlobStore,
  b: BackupListing,
  opts: TestRestoreOptions,
  log: Log,
): Promise<TestRestoreResult> {
  const checks: CheckResult[] = [];
  const base = { collection: b.collection, backupId: b.backupId, backupTime: b.time };
  let scratch: string | undefined;
  let restoreSeconds: number | undefined;
  let scratchDropped = true;
  try {
    scratch = await scratchName(milvus, b.collection);
    log.info("test-restore.start", { ...base, scratch, rows: b.rows });
    const started = Date.now();
    try {
      await restoreBackup(
        milvus,
        new ScratchRestoreStore(store, scratch),
        { backupId: b.backupId, target: scratch, dropExisting: false, signal: opts.signal },
        log,
      );
    } catch (e) {
      // restore drops what it created when it fails; the finally below makes sure of it.
      checks.push({ name: "restore", ok: false, detail: describeError(e) });
      return summarize({ ...base, scratch, checks, scratchDropped });
    }
    restoreSeconds = (Date.now() - started) / 1000;
    log.info(
      "test-restore.restored",
      { ...base, scratch, rows: b.rows, restoreSeconds },
      `restored ${b.backupId} (${b.rows} rows) into ${scratch} in ${restoreSeconds.toFixed(1)} s`,
    );
    checks.push({
      name: "restore",
      ok: true,
      detail: `restored ${b.rows} rows in ${restoreSeconds.toFixed(1)} s`,
    });
    await opts.beforeChecks?.(milvus, scratch);
    const manifest = await loadManifest(store, b.backupId);
    checks.push(...(await runChecks(milvus, store, manifest, scratch, opts, log)));
  } catch (e) {
    checks.push({ name: "restore", ok: false, detail: `checks stopped: ${describeError(e)}` });
  } finally {
    if (scratch !== undefined) {
      try {
        if (await milvus.exists(scratch)) await milvus.drop(scratch);
      } catch (e) {
        scratchDropped = false;
        checks.push({
          name: "cleanup",
          ok: false,
          detail: `could not drop the scratch collection ${scratch} (${describeError(e)}); drop it by hand`,
        });
      }
    }
  }
  const result = summarize({ ...base, scratch, rows: b.rows, restoreSeconds, checks, scratchDropped });
  log.info("test-restore.done", { ...base, scratch, passed: result.passed, failed: result.failed });
  return result;
}

async function runChecks(
  milvus: Milvus,
  store: BlobStore,
  m: Manifest,
  scratch: string,
  opts: TestRestoreOptions,
  log: Log,
): Promise<CheckResult[]> {
  const vectorFields = m.schema.fields.filter((f) => isVectorType(f.dataType));
  const indexed = vectorFields.every((f) => m.schema.indexes.some((i) => i.fieldName === f.name));
  if (!indexed) {
    // Milvus loads (and so queries) only collections whose every vector field has an index; restore
    // then counted the rows as it inserted them.
    const detail = "skipped: a vector field has no index in the backup, so the collection cannot be loaded";
    return [
      { name: "rows", ok: true, detail },
      { name: "sample", ok: true, detail },
      { name: "search", ok: true, detail },
    ];
  }
  // restore releases a collection that was not loaded when backed up; the checks need it loaded.
  const load = await milvus.client.loadCollectionSync({ collection_name: scratch });
  if (load.code !== 0) throw new WorkerError(`loading ${scratch}: ${load.reason}`);
  const checks: CheckResult[] = [];
  stopIfAborted(opts.signal, "before counting rows");
  const n = await milvus.count(scratch, undefined, null);
  checks.push({
    name: "rows",
    ok: n === m.rows,
    detail:
      n === m.rows
        ? `${n} rows, as the manifest says`
        : `${scratch} holds ${n} rows, the manifest of ${m.backupId} says ${m.rows}`,
  });
  stopIfAborted(opts.signal, "before the sample check");
  const sample = await sampleRows(store, m, opts.sampleRows ?? DEFAULT_SAMPLE_ROWS);
  const dialect = await filterDialect(milvus);
  checks.push(await compareSample(milvus, m, scratch, sample, dialect));
  stopIfAborted(opts.signal, "before the search check");
  checks.push(await searchCheck(milvus, m, scratch, sample, opts.searches ?? DEFAULT_SEARCHES, dialect));
  log.info("test-restore.checks", {
    backupId: m.backupId,
    scratch,
    checks: checks.map((c) => `${c.name}:${c.ok ? "ok" : "failed"}`),
  });
  return checks;
}

/** One row read from a backup chunk: its key and each column's value in chunk encoding. */
interface SampledRow {
  key: string;
  /** Column name -> the row's value as one-row insert-ready FieldData (columns.ts ColumnReader). */
  fields: Map<string, RawFieldData>;
  headers: Map<string, ColumnHeader>;
}

/**
 * Up to `count` rows spread over up to {@link SAMPLE_CHUNKS} chunks picked at random (every chunk of
 * a small backup), each chunk checked against its manifest entry before use.
 */
async function sampleRows(store: BlobStore, m: Manifest, count: number): Promise<SampledRow[]> {
  if (count === 0 || m.rows === 0) return [];
  const pk = primaryField(m.schema);
  const picked = shuffle(m.chunks.map((c, i) => ({ c, i })).filter(({ c }) => c.rows > 0)).slice(
    0,
    SAMPLE_CHUNKS,
  );
  const perChunk = Math.ceil(count / Math.max(1, picked.length));
  const rows: SampledRow[] = [];
  for (const { c } of picked) {
    const data = await store.get(c.file);
    const problems = checkChunk(data, c);
    if (problems.length > 0) throw new WorkerError(`the backup is damaged: ${problems.join("; ")}`);
    const { header, columns } = await readChunk(data, c.file);
    const readers = readersOf(header, columns, c.file);
    const keyReader = readers.get(pk.name);
    if (!keyReader) throw new WorkerError(`${c.file}: the primary key column ${pk.name} is missing`);
    const keys = scalarData(keyReader.fieldData(0, header.rows) as RawFieldData).map(String);
    const headers = new Map(header.columns.map((h) => [h.name, h]));
    for (const i of shuffle([...keys.keys()]).slice(0, Math.min(perChunk, count - rows.length))) {
      const fields = new Map<string, RawFieldData>();
      for (const [name, r] of readers) fields.set(name, r.fieldData(i, i + 1) as RawFieldData);
      rows.push({ key: keys[i] ?? "", fields, headers });
    }
  }
  return rows;
}

function readersOf(header: ChunkHeader, columns: Map<string, Buffer>, file: string) {
  const readers = new Map<string, ColumnReader>();
  for (const c of header.columns) {
    const raw = columns.get(c.name);
    if (!raw) throw new WorkerError(`${file}: column ${c.name} is missing`);
    readers.set(c.name, new ColumnReader(c, raw, header.rows, file));
  }
  return readers;
}

function shuffle<T>(items: T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function scalarData(fd: RawFieldData): unknown[] {
  const holder = Object.values(fd.scalars ?? {}).find(
    (v): v is { data: unknown[] } =>
      typeof v === "object" && v !== null && Array.isArray((v as { data?: unknown }).data),
  );
  return holder?.data ?? [];
}

/**
 * One row's value of one column in the chunk encoding, so the backup's row and the restored row are
 * compared byte for byte through the one encoder the backup itself used (columns.ts).
 */
function encodeOne(header: ColumnHeader, fd: RawFieldData | undefined): Buffer {
  const acc = new ColumnAccumulator({
    name: header.name,
    kind: header.kind,
    dataType: header.dataType,
    dim: header.dim,
    elementType: header.elementType,
    isDynamic: header.isDynamic,
    nullable: header.hasValid,
  });
  acc.add(fd, 1);
  return Buffer.concat(acc.take().parts);
}

/** JSON is compared by value: a server may store the document it was sent with another layout. */
function sameJson(a: Buffer, b: Buffer): boolean {
  try {
    return canonical(JSON.parse(a.toString("utf8"))) === canonical(JSON.parse(b.toString("utf8")));
  } catch {
    return false;
  }
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object")
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

/** A short readable rendering of a one-row value for messages. */
function preview(fd: RawFieldData | undefined): string {
  if (!fd) return "nothing";
  const body = fd.scalars ?? fd.vectors ?? {};
  const text = JSON.stringify(body, (_k, v: unknown) => {
    if (v && typeof v === "object" && (v as { type?: string }).type === "Buffer") {
      return Buffer.from((v as { data: number[] }).data).toString("hex");
    }
    return v;
  });
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

async function filterDialect(milvus: Milvus): Promise<FilterDialect> {
  // Milvus answers GetVersion with its version, Milvus Lite with nothing (milvus.ts, filterDialect).
  const v = await milvus.client.getVersion().catch(() => undefined);
  return dialectOf((v as { version?: string } | undefined)?.version);
}

/**
 * `pk in [...]` as literals; keys Lite cannot write are left out (`keys` lists those that are in).
 * No template values: an int64 key is digits, and a varchar key as a JSON string is a valid literal for
 * Milvus's parser (planparserv2 unquotes with Go's strconv rules, a superset of JSON's escapes; milvus.ts
 * uses the same literal for servers before 2.5); Lite has its own quoting (milvus.ts liteQuote).
 */
function keysFilter(pkName: string, varchar: boolean, keys: string[], dialect: FilterDialect) {
  const usable: string[] = [];
  const literals: string[] = [];
  for (const k of keys) {
    const l = !varchar ? k : dialect === "lite" ? liteQuote(k) : JSON.stringify(k);
    if (l === null) continue;
    usable.push(k);
    literals.push(l);
  }
  return { expr: `${pkName} in [${literals.join(", ")}]`, keys: usable };
}

async function compareSample(
  milvus: Milvus,
  m: Manifest,
  scratch: string,
  sample: SampledRow[],
  dialect: FilterDialect,
): Promise<CheckResult> {
  if (sample.length === 0) return { name: "sample", ok: true, detail: "skipped: the backup has no rows" };
  const pk = primaryField(m.schema);
  const varchar = pk.dataType === "VarChar";
  const problems: string[] = [];
  let compared = 0;
  for (let i = 0; i < sample.length; i += KEYS_PER_QUERY) {
    const batch = sample.slice(i, i + KEYS_PER_QUERY);
    const filter = keysFilter(
      pk.name,
      varchar,
      batch.map((r) => r.key),
      dialect,
    );
    const res = (await promisify(
      milvus.client.channelPool,
      "Query",
      {
        collection_name: scratch,
        expr: filter.expr,
        output_fields: m.columns,
        query_params: [{ key: "limit", value: String(batch.length) }],
        // Strong: every row the restore inserted and flushed (milvus.ts, consistency()).
        consistency_level: 0,
        use_default_consistency: false,
      },
      CALL_TIMEOUT_MS,
    )) as QueryResponse;
    if (res.status.code !== undefined && res.status.code !== 0)
      throw new WorkerError(`querying sampled rows of ${scratch}: ${res.status.reason ?? ""}`);
    const got = res.fields_data;
    const keyField = got.find((f) => f.field_name === pk.name);
    const gotKeys = keyField ? scalarData(keyField).map(String) : [];
    const at = new Map(gotKeys.map((k, j) => [k, j]));
    for (const row of batch) {
      if (!filter.keys.includes(row.key)) continue;
      const j = at.get(row.key);
      if (j === undefined) {
        problems.push(`row ${pk.name}=${showKey(row.key)} is missing from the restored collection`);
        continue;
      }
      const one = sliceRows(got, gotKeys.length, [j]);
      const byName = new Map(one.map((f) => [f.is_dynamic ? DYNAMIC_FIELD : f.field_name, f]));
      for (const [name, backupFd] of row.fields) {
        const header = row.headers.get(name);
        if (!header) continue;
        const restoredFd = byName.get(name);
        let same: boolean;
        try {
          const a = encodeOne(header, backupFd);
          const b = encodeOne(header, restoredFd);
          same = a.equals(b) || (header.kind === "json" && sameJson(a, b));
        } catch {
          same = false;
        }
        if (!same)
          problems.push(
            `row ${pk.name}=${showKey(row.key)}: field ${name} differs (backup ${preview(backupFd)}, restored ${preview(restoredFd)})`,
          );
      }
      compared++;
    }
  }
  const ok = problems.length === 0;
  return {
    name: "sample",
    ok,
    detail: ok
      ? `${compared} sampled rows equal the backup's, every field`
      : `${problems.length} difference(s) between the backup and the restored rows: ${problems.slice(0, 3).join("; ")}` +
        (problems.length > 3 ? `; and ${problems.length - 3} more` : ""),
  };
}

/**
 * Searches each indexed float-vector field with sampled rows' own vectors. A row passes when it is
 * among the top {@link SEARCH_TOP_K} hits, or, failing that, when a search restricted to its primary
 * key returns it. Being the very first hit is not required, because that does not hold in general: with
 * IP another vector can score higher than a vector against itself, rows may share a vector (ties), and
 * graph indexes (HNSW) are approximate. For IVF indexes the row is always in a probed cluster (its own
 * vector is nearest to its own centroid), and a search filtered to one key leaves the index a single
 * candidate. The filtered hit must then score what a vector scores against itself (L2 0, COSINE 1, IP
 * its squared norm), so a row whose restored vector differs fails; only for indexes that store vectors
 * exactly ({@link EXACT_INDEXES}): quantizing ones (SQ8, PQ, ...) return approximate distances.
 */
/** Index types that keep vectors as they are, so a vector's distance to itself is exact. */
export const EXACT_INDEXES: ReadonlySet<string> = new Set(["FLAT", "IVF_FLAT", "HNSW"]);

/** What a vector scores against itself under `metric`, or undefined when that is not fixed. */
export function selfScore(metric: string, v: number[]): number | undefined {
  switch (metric.toUpperCase()) {
    case "L2":
      return 0;
    case "COSINE":
      return 1;
    case "IP":
      return v.reduce((s, x) => s + x * x, 0);
    default:
      return undefined;
  }
}

async function searchCheck(
  milvus: Milvus,
  m: Manifest,
  scratch: string,
  sample: SampledRow[],
  searches: number,
  dialect: FilterDialect,
): Promise<CheckResult> {
  const fields = m.schema.fields.filter(
    (f) => f.dataType === "FloatVector" && m.schema.indexes.some((i) => i.fieldName === f.name),
  );
  if (fields.length === 0 || searches === 0 || sample.length === 0)
    return { name: "search", ok: true, detail: "skipped: no indexed float vector field, or no rows" };
  const pk = primaryField(m.schema);
  const varchar = pk.dataType === "VarChar";
  const problems: string[] = [];
  let done = 0;
  let outranked = 0;
  for (const row of sample.slice(0, searches)) {
    for (const f of fields) {
      const fd = row.fields.get(f.name);
      const vector = (fd?.vectors?.float_vector as { data?: number[] } | undefined)?.data;
      if (!vector || vector.length === 0) continue; // a null vector (nullable field) has nothing to search
      const search = async (filter?: { expr: string }) => {
        const res = await milvus.client.search({
          collection_name: scratch,
          anns_field: f.name,
          data: vector,
          limit: SEARCH_TOP_K,
          output_fields: [pk.name],
          consistency_level: ConsistencyLevelEnum.Strong,
          ...(filter ? { filter: filter.expr } : {}),
        });
        if (res.status.code !== 0)
          throw new WorkerError(`searching ${scratch}.${f.name}: ${res.status.reason}`);
        // The SDK names each hit's key after the primary field (`pk` here), as measured on Milvus Lite 2.5.
        return (res.results as Record<string, unknown>[]).map((h) => ({
          key: String(h[pk.name] ?? h.id),
          score: Number(h.score),
        }));
      };
      done++;
      if ((await search()).some((h) => h.key === row.key)) continue;
      const filter = keysFilter(pk.name, varchar, [row.key], dialect);
      if (filter.keys.length === 0) continue; // Lite cannot write this key in a filter (milvus.ts liteQuote)
      const hit = (await search(filter)).find((h) => h.key === row.key);
      const index = m.schema.indexes.find((i) => i.fieldName === f.name);
      const expected =
        index && EXACT_INDEXES.has(index.indexType) ? selfScore(index.metricType, vector) : undefined;
      const scoreOk =
        hit !== undefined &&
        (expected === undefined || Math.abs(hit.score - expected) <= 1e-3 * Math.max(1, Math.abs(expected)));
      if (hit && scoreOk) {
        outranked++;
        continue;
      }
      problems.push(
        hit
          ? `a search of ${f.name} with the vector of row ${pk.name}=${showKey(row.key)} ranks it outside the top ` +
              `${SEARCH_TOP_K}, and restricted to its key it scores ${hit.score}, not ${String(expected)} ` +
              `(${index?.metricType ?? ""} of a vector with itself): its restored vector differs from the backup's`
          : `a search of ${f.name} with the vector of row ${pk.name}=${showKey(row.key)} does not find it, ` +
              `neither in the top ${SEARCH_TOP_K} nor restricted to its key`,
      );
    }
  }
  const ok = problems.length === 0;
  return {
    name: "search",
    ok,
    detail: ok
      ? `${done} searches found their row` +
        (outranked > 0 ? ` (${outranked} only when restricted to its key: outranked or tied)` : "")
      : `${problems.length} of ${done} searches failed: ${problems.slice(0, 3).join("; ")}`,
  };
}
