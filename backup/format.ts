/**
 * Backup format, version 2 (version 1 backups are still read).
 *
 * Blob layout in the container:
 *   backups/<backupId>/chunks/<seq>.chunk   data, written first
 *   backups/<backupId>/manifest.json        written last: a backup without it is incomplete
 *
 * A chunk file holds a bounded number of rows of one partition, column by column:
 *   "MVBKCHNK" | u32 LE format version | u32 LE header length | header JSON | column bodies
 * Each column body is the column's values in a binary encoding (vectors as their raw little-endian
 * bytes, int64 as 8-byte integers, strings/JSON/sparse rows length-prefixed), optionally
 * gzip-compressed; the header names each column's offset, stored and raw length, and compression.
 * In version 2 the header also names the chunk's backup, position, first and last primary key and
 * schema digest (ChunkIdentity); version 1 headers lack these.
 * The manifest records every chunk's row count, size and SHA-256 (over the stored bytes).
 */
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import { WorkerError } from "./errors";

/**
 * 2: chunks describe themselves (backup id, position, first and last primary key, the digest of the
 * schema they were written for), so an edited manifest no longer matches its chunks. 1 is still read.
 */
export const FORMAT_VERSION = 2;
export const READABLE_FORMATS: readonly number[] = [1, 2];
export const MANIFEST_KIND = "milvus-collection-backup";
const MAGIC = Buffer.from("MVBKCHNK", "ascii");
const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

export const backupPrefix = (backupId: string) => `backups/${backupId}/`;
export const manifestPath = (backupId: string) => `${backupPrefix(backupId)}manifest.json`;
export const chunkPath = (backupId: string, seq: number) =>
  `${backupPrefix(backupId)}chunks/${String(seq).padStart(6, "0")}.chunk`;

/** Field definition as captured from the server (names follow Milvus's schema proto). */
export interface FieldDef {
  name: string;
  fieldID?: string;
  dataType: string;
  elementType?: string;
  isPrimaryKey: boolean;
  autoID: boolean;
  description: string;
  typeParams: Record<string, string>;
  /** The default value as the server describes it ({ <type>_data: value }), or null. */
  defaultValue: unknown;
  isPartitionKey: boolean;
  isClusteringKey: boolean;
  nullable: boolean;
  isFunctionOutput: boolean;
}

export interface IndexDef {
  indexName: string;
  fieldName: string;
  indexType: string;
  metricType: string;
  params: Record<string, string>;
}

export interface FunctionDef {
  name: string;
  description: string;
  type: string | number;
  inputFieldNames: string[];
  outputFieldNames: string[];
  params: Record<string, string>;
}

export interface CollectionDef {
  name: string;
  description: string;
  fields: FieldDef[];
  functions: FunctionDef[];
  enableDynamicField: boolean;
  shardsNum: number;
  consistencyLevel: string;
  properties: Record<string, string>;
  /** Number of partitions of a partition-key collection (0 otherwise). */
  numPartitions: number;
  /** Partition names (always includes `_default` when the server has partitions). */
  partitions: string[];
  aliases: string[];
  indexes: IndexDef[];
  loaded: boolean;
}

export interface ChunkEntry {
  file: string;
  partition: string;
  rows: number;
  bytes: number;
  sha256: string;
}

export interface Manifest {
  kind: typeof MANIFEST_KIND;
  formatVersion: number;
  backupId: string;
  collection: string;
  /** The collection's Milvus database; absent in manifests written before databases were recorded: "default". */
  database?: string;
  /**
   * The database's properties when backed up (restore creates a missing database with them); null where the
   * server cannot describe databases (Milvus 2.3.5, Milvus Lite).
   */
  databaseProperties?: Record<string, string> | null;
  /** When the snapshot was taken (after the flush), ISO 8601 UTC. */
  time: string;
  completedAt: string;
  tool: { name: string; version: string };
  snapshot: {
    /** Milvus hybrid timestamp of the flush that the reads were pinned to, when the server reports one. */
    flushTimestamp: string | null;
    method: "flush-timestamp" | "count-recheck";
  };
  /**
   * The one timestamp every collection of a multi-collection backup was read at, and the backups taken
   * at it (this one included). `timestamp` is null where the server cannot pin reads (Milvus Lite), with
   * `reason` saying so: such backups are not one cut. Absent in older manifests.
   */
  cut?: BackupCut;
  rows: number;
  /**
   * Distinct primary keys the backup holds (restore compares the restored collection's distinct keys
   * with it, besides count(*), which counts every row of a repeated key). Absent in older manifests.
   */
  distinctKeys?: number;
  /**
   * Rows the snapshot's count(*) counted that repeat an earlier row's primary key. Milvus (Lite) keeps
   * every row inserted with a repeated key but returns only the newest: the backup holds `rows` rows,
   * one per key, so the collection restores to `rows` rows. Absent in older manifests.
   */
  duplicateKeyRows?: number;
  /** Stored bytes of all chunks. */
  bytes: number;
  /** Uncompressed bytes of all columns. */
  rawBytes: number;
  chunkTargetBytes: number;
  schema: CollectionDef;
  columns: string[];
  chunks: ChunkEntry[];
}

export interface BackupCut {
  /** Milvus hybrid timestamp every read was pinned to, or null when the server cannot pin reads. */
  timestamp: string | null;
  /** Backups completed at this cut, one per collection, this one included. */
  backupIds: string[];
  /** Why there is no timestamp (only when `timestamp` is null). */
  reason?: string;
}

/** Column data in the binary layout used both in chunk files and for inserts. */
export type ColumnKind =
  | "f32vec"
  | "bytesvec"
  | "sparse"
  | "bool"
  | "int32"
  | "int64"
  | "float"
  | "double"
  | "string"
  | "json"
  | "array";

export interface ColumnHeader {
  name: string;
  kind: ColumnKind;
  dataType: string;
  /** Vector dimension (vectors only). */
  dim?: number;
  elementType?: string;
  isDynamic?: boolean;
  /** Number of stored values (rows minus nulls). */
  count: number;
  /** Per-row validity bytes precede the values when the field is nullable. */
  hasValid: boolean;
  offset: number;
  length: number;
  rawLength: number;
  compression: "none" | "gzip";
}

export interface ChunkIdentity {
  backupId: string;
  /** 1-based position in the backup (chunkPath's sequence number). */
  index: number;
  /** First and last primary key in the chunk, as strings (int64 as decimal). */
  firstKey: string;
  lastKey: string;
  /** {@link schemaDigest} of the collection definition the chunk was written for. */
  schemaSha256: string;
}

export interface ChunkHeader extends Partial<ChunkIdentity> {
  rows: number;
  partition: string;
  columns: ColumnHeader[];
}

export interface EncodedColumn {
  header: Omit<ColumnHeader, "offset" | "length" | "rawLength" | "compression">;
  /** The column's bytes in pieces (one per page): joined only once, into the chunk file. */
  parts: Buffer[];
}

export const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** JSON with object keys sorted, so equal values always give equal text. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  // JSON.stringify gives undefined for functions and symbols, which a definition never holds.
  return (JSON.stringify(v) as string | undefined) ?? "null";
}

/** Digest of a collection definition, carried by every chunk written for it. */
export const schemaDigest = (def: CollectionDef) => sha256(Buffer.from(canonicalJson(def), "utf8"));

/**
 * Vector bytes are close to incompressible (float mantissas are noise), and gzip at its default level
 * runs at about 30 MiB/s per core: only scalar columns are compressed, at level 1, and only when it
 * saves at least a tenth.
 */
function compressible(kind: ColumnKind): boolean {
  return kind !== "f32vec" && kind !== "bytesvec" && kind !== "sparse";
}

/** Assembles one chunk file from encoded columns (compression runs on the libuv thread pool). */
export async function buildChunk(
  rows: number,
  partition: string,
  columns: EncodedColumn[],
  identity?: ChunkIdentity,
): Promise<Buffer> {
  const stored: { header: ColumnHeader; body: Buffer[] }[] = [];
  for (const c of columns) {
    const rawLength = c.parts.reduce((n, b) => n + b.length, 0);
    let body = c.parts;
    let compression: "none" | "gzip" = "none";
    if (compressible(c.header.kind) && rawLength >= 1024) {
      const z = await gzip(Buffer.concat(c.parts), { level: 1 });
      if (z.length < rawLength * 0.9) {
        body = [z];
        compression = "gzip";
      }
    }
    const length = body.reduce((n, b) => n + b.length, 0);
    stored.push({ header: { ...c.header, offset: 0, length, rawLength, compression }, body });
  }
  let offset = 0;
  for (const s of stored) {
    s.header.offset = offset;
    offset += s.header.length;
  }
  const header: ChunkHeader = { ...identity, rows, partition, columns: stored.map((s) => s.header) };
  const headerBuf = Buffer.from(JSON.stringify(header), "utf8");
  const pre = Buffer.alloc(16);
  MAGIC.copy(pre, 0);
  pre.writeUInt32LE(FORMAT_VERSION, 8);
  pre.writeUInt32LE(headerBuf.length, 12);
  return Buffer.concat([pre, headerBuf, ...stored.flatMap((s) => s.body)]);
}

/** Reads a chunk's header without decompressing anything. */
export function readChunkHeader(file: Buffer, what: string): { header: ChunkHeader; bodyStart: number } {
  if (file.length < 16 || !file.subarray(0, 8).equals(MAGIC)) {
    throw new WorkerError(`${what} is not a backup chunk file`);
  }
  const version = file.readUInt32LE(8);
  if (!READABLE_FORMATS.includes(version)) {
    throw new WorkerError(
      `${what} has chunk format version ${version}; this worker reads versions ${READABLE_FORMATS.join(", ")}`,
    );
  }
  const len = file.readUInt32LE(12);
  if (16 + len > file.length) throw new WorkerError(`${what} is truncated`);
  const header = JSON.parse(file.subarray(16, 16 + len).toString("utf8")) as ChunkHeader;
  return { header, bodyStart: 16 + len };
}

/** Decompresses one chunk into its raw columns. */
export async function readChunk(
  file: Buffer,
  what: string,
): Promise<{ header: ChunkHeader; columns: Map<string, Buffer> }> {
  const { header, bodyStart } = readChunkHeader(file, what);
  const columns = new Map<string, Buffer>();
  for (const c of header.columns) {
    const body = file.subarray(bodyStart + c.offset, bodyStart + c.offset + c.length);
    if (body.length !== c.length) throw new WorkerError(`${what}: column ${c.name} is truncated`);
    const raw = c.compression === "gzip" ? await gunzip(body) : body;
    if (raw.length !== c.rawLength) throw new WorkerError(`${what}: column ${c.name} has the wrong length`);
    columns.set(c.name, raw);
  }
  return { header, columns };
}

/** Appends length-prefixed items (u32 LE length + bytes). */
export function packItems(items: Buffer[]): Buffer {
  let total = 0;
  for (const b of items) total += 4 + b.length;
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (const b of items) {
    out.writeUInt32LE(b.length, o);
    o += 4;
    b.copy(out, o);
    o += b.length;
  }
  return out;
}

export function unpackItems(buf: Buffer, count: number, what: string): Buffer[] {
  const items: Buffer[] = new Array<Buffer>(count);
  let o = 0;
  for (let i = 0; i < count; i++) {
    if (o + 4 > buf.length) throw new WorkerError(`${what}: column data ends early`);
    const len = buf.readUInt32LE(o);
    o += 4;
    items[i] = buf.subarray(o, o + len);
    o += len;
  }
  if (o !== buf.length) throw new WorkerError(`${what}: column data has trailing bytes`);
  return items;
}
