/**
 * Shared fixtures of the worker tests: real Azurite and Milvus Lite servers, seeded collections, and a
 * way to run the worker's command line in-process with captured output.
 */
import { ConsistencyLevelEnum, DataType, MilvusClient, type RowData } from "@zilliz/milvus2-sdk-node";
import { main, type CliIo } from "../../backup/cli";
import type { BlobStore, StorageSettings } from "../../backup/blobStore";
import {
  startAzurite,
  startMilvusLite,
  type AzuriteServer,
  type MilvusLiteServer,
} from "../../tools/local-servers";

export interface Servers {
  milvus: MilvusLiteServer;
  azurite: AzuriteServer;
  client: MilvusClient;
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export async function startServers(container = "backups"): Promise<Servers> {
  const [milvus, azurite] = await Promise.all([startMilvusLite(), startAzurite()]);
  const client = new MilvusClient({ address: milvus.address, logLevel: "error" });
  const env = {
    PATH: process.env.PATH,
    MILVUS_ADDRESS: milvus.address,
    BACKUP_CONTAINER: container,
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
  };
  return {
    milvus,
    azurite,
    client,
    env,
    stop: async () => {
      await client.closeConnection().catch(() => undefined);
      await Promise.all([milvus.stop(), azurite.stop()]);
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: unknown;
}

/** Runs the worker CLI in-process (same code path as `npm run worker`). */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
  store?: (s: StorageSettings) => BlobStore,
): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const stderrStream = {
    write(s: string) {
      stderr += s;
      return true;
    },
  } as unknown as CliIo["stderr"];
  const code = await main(args, {
    stdout: {
      write(s: string) {
        stdout += s;
        return true;
      },
    },
    stderr: stderrStream,
    env,
    store,
  });
  let json: unknown;
  if (args.includes("--json") && stdout.trim()) json = JSON.parse(stdout);
  return { code, stdout, stderr, json };
}

/** Deterministic pseudo-random numbers (tests must be reproducible). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Float16-exact values (multiples of 1/256 in [-1, 1)) so a float16 round trip is bit-exact. */
const f16 = (r: () => number) => Math.round((r() * 2 - 1) * 256) / 256;

export interface SeedSpec {
  name: string;
  rows: number;
  pk: "int64" | "varchar";
  autoId?: boolean;
  batch?: number;
  /**
   * Which array field to add: Milvus Lite reads and writes array fields slowly (about 1 ms per row per
   * field under load), so each test collection carries one.
   */
  array: "nums" | "tags";
}

/** A collection using every type Milvus Lite supports: JSON, arrays, dynamic fields, four vector kinds. */
export async function seedRichCollection(client: MilvusClient, spec: SeedSpec): Promise<void> {
  const pkField =
    spec.pk === "int64"
      ? { name: "pk", data_type: DataType.Int64, is_primary_key: true, autoID: spec.autoId ?? false }
      : { name: "pk", data_type: DataType.VarChar, is_primary_key: true, max_length: 64 };
  const res = await client.createCollection({
    collection_name: spec.name,
    enable_dynamic_field: true,
    description: `seeded ${spec.name}`,
    fields: [
      pkField,
      { name: "title", data_type: DataType.VarChar, max_length: 200, default_value: "untitled" },
      { name: "n32", data_type: DataType.Int32 },
      { name: "n64", data_type: DataType.Int64 },
      { name: "score", data_type: DataType.Double },
      { name: "ok", data_type: DataType.Bool },
      { name: "meta", data_type: DataType.JSON },
      spec.array === "tags"
        ? {
            name: "tags",
            data_type: DataType.Array,
            element_type: DataType.VarChar,
            max_capacity: 4,
            max_length: 16,
          }
        : { name: "nums", data_type: DataType.Array, element_type: DataType.Int64, max_capacity: 3 },
      { name: "vec", data_type: DataType.FloatVector, dim: 8 },
      { name: "bin", data_type: DataType.BinaryVector, dim: 16 },
      { name: "half", data_type: DataType.Float16Vector, dim: 4 },
      { name: "sparse", data_type: DataType.SparseFloatVector },
    ],
  });
  if (res.code !== 0) throw new Error(`create ${spec.name}: ${res.reason}`);
  const r = rng(spec.rows + spec.name.length);
  const batch = spec.batch ?? 1000;
  for (let start = 0; start < spec.rows; start += batch) {
    const rows: RowData[] = [];
    for (let i = start; i < Math.min(spec.rows, start + batch); i++) {
      const row: RowData = {
        title: `title ${i} ${"é".repeat(i % 3)}`,
        n32: ((i * 7919) % 100000) - 50000,
        n64: String(9007199254740993n + BigInt(i) * 1000003n),
        score: r() * 1000,
        ok: i % 2 === 0,
        meta: { i, name: `row-${i}`, nested: { even: i % 2 === 0, list: [i, i + 1] } },
        [spec.array]:
          spec.array === "tags"
            ? [`t${i % 5}`, `ü${i % 7}`].slice(0, i % 3)
            : [String(2n ** 60n + BigInt(i)), "-5"],
        vec: Array.from({ length: 8 }, () => r()),
        bin: [i % 256, (i * 31) % 256],
        half: Array.from({ length: 4 }, () => f16(r)),
        sparse: { [i % 100]: r() + 0.5, [100 + (i % 50)]: r() },
      };
      if (i % 4 === 0) row.extra = `dyn-${i}`;
      if (i % 6 === 0) row.weight = i / 2;
      if (!spec.autoId) {
        // Insert in an order unlike key order so reading back by key cursor is exercised.
        const k = (i * 7907) % spec.rows;
        row.pk =
          spec.pk === "int64"
            ? String(2n ** 62n + BigInt(k) * 3n)
            : `doc-${String(k).padStart(7, "0")}-${k % 10}`;
      }
      rows.push(row);
    }
    const ins = await client.insert({ collection_name: spec.name, data: rows });
    if (ins.status.code !== 0) throw new Error(`insert ${spec.name}: ${ins.status.reason}`);
  }
  const fl = await client.flush({ collection_names: [spec.name] });
  if (fl.status.code !== 0) throw new Error(`flush: ${fl.status.reason}`);
  for (const [field, index_type, metric_type, params] of [
    ["vec", "IVF_FLAT", "L2", { nlist: 32 }],
    ["bin", "BIN_FLAT", "HAMMING", {}],
    ["half", "FLAT", "IP", {}],
    ["sparse", "SPARSE_INVERTED_INDEX", "IP", { drop_ratio_build: 0.1 }],
  ] as const) {
    const ix = await client.createIndex({
      collection_name: spec.name,
      field_name: field,
      index_type,
      metric_type,
      params,
    });
    if (ix.code !== 0) throw new Error(`index ${field}: ${ix.reason}`);
  }
  const load = await client.loadCollectionSync({ collection_name: spec.name });
  if (load.code !== 0) throw new Error(`load: ${load.reason}`);
}

/**
 * Every row of a collection keyed by primary key, read with the SDK's query iterator (independent of the
 * worker). The iterator writes its next bound as `pk > '<key>'` without escaping (SDK
 * dist/milvus/utils/Function.js getPKFieldExpr), so keys with quotes or backslashes misplace it: the
 * rows read are checked against count(*), so such a loss fails here instead of passing unnoticed on
 * both sides of a comparison.
 */
export async function readAll(
  client: MilvusClient,
  name: string,
  pk = "pk",
): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  const it = (await client.queryIterator({
    collection_name: name,
    output_fields: ["*"],
    batchSize: 1000,
  })) as AsyncIterable<Record<string, unknown>[]>;
  for await (const page of it) {
    for (const row of page) out.set(String(row[pk]), row);
  }
  const count = await client.query({
    collection_name: name,
    filter: "",
    output_fields: ["count(*)"],
    consistency_level: ConsistencyLevelEnum.Strong,
  });
  const stored = Number(count.data[0]?.["count(*)"]);
  if (stored !== out.size) {
    throw new Error(
      `readAll(${name}): the query iterator returned ${out.size} keys, count(*) says ${stored}`,
    );
  }
  return out;
}
