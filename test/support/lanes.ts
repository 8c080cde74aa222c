/**
 * Server lanes: every real Milvus server this machine can run, each with the features it lacks and why.
 * The reasons are what was measured on that server; `probeFeature` measures each feature again, and
 * test/lanes.test.ts checks that a lane lacks exactly what it claims, so a claim cannot go stale.
 */
import {
  ConsistencyLevelEnum,
  DataType,
  FunctionType,
  MilvusClient,
  promisify,
} from "@zilliz/milvus2-sdk-node";
import { AzureBlobStore } from "../../backup/blobStore";
import {
  startAzurite,
  startMilvusLite,
  startMilvusLitePy,
  type AzuriteServer,
  startMilvusStandalone,
  MILVUS_LITE_PY_VERSION,
  MILVUS_STANDALONE_VERSION,
} from "../../tools/local-servers";

export type Feature =
  | "rename"
  | "partitions"
  | "partitionKey"
  | "aliases"
  | "pinnedReads"
  | "databases"
  | "rbac"
  | "nullable"
  | "defaultValue"
  | "functions"
  | "dynamicField"
  | "mmapProperty"
  | "ttlProperty"
  | "consistencyLevel"
  | "shardsNum";

export const FEATURES: readonly Feature[] = [
  "rename",
  "partitions",
  "partitionKey",
  "aliases",
  "pinnedReads",
  "databases",
  "rbac",
  "nullable",
  "defaultValue",
  "functions",
  "dynamicField",
  "mmapProperty",
  "ttlProperty",
  "consistencyLevel",
  "shardsNum",
];

export interface LaneServer {
  address: string;
  token?: string;
  stop(): Promise<void>;
}

export interface Lane {
  name: string;
  start(): Promise<LaneServer>;
  /** Features this server lacks, with the measured reason. */
  lacks: ReadonlyMap<Feature, string>;
}

const LITE_25 = "Milvus Lite 2.5.102";
const STANDALONE = `Milvus ${MILVUS_STANDALONE_VERSION}`;
const LITE_PY = `milvus-lite ${MILVUS_LITE_PY_VERSION}`;

export const LANES: readonly Lane[] = [
  {
    name: "lite-2.5",
    start: async () => {
      const s = await startMilvusLite();
      return { address: s.address, stop: () => s.stop() };
    },
    lacks: new Map<Feature, string>([
      ["rename", `${LITE_25} acknowledges renameCollection without renaming (measured)`],
      [
        "partitions",
        `${LITE_25} acknowledges createPartition but listPartitions answers without names (measured)`,
      ],
      ["partitionKey", `${LITE_25} describes a partition-key collection with num_partitions 0 (measured)`],
      ["aliases", `${LITE_25} answers createAlias and listAliases with an empty message (measured)`],
      ["pinnedReads", `${LITE_25} answers flush with an empty coll_flush_ts (measured)`],
      ["databases", `${LITE_25} answers createDatabase and listDatabases with an empty message (measured)`],
      ["rbac", `${LITE_25} answers listUsers with an empty message (measured)`],
      ["nullable", `${LITE_25} refuses nullable fields: "MilvusLite doesn't support nullable" (measured)`],
      [
        "defaultValue",
        `${LITE_25} stores wrong values for rows that omit a default-valued field (Int32 default 7 read back 32615, measured)`,
      ],
      [
        "functions",
        `${LITE_25} answers describeCollection with functions: [] for a BM25 collection (measured)`,
      ],
      [
        "mmapProperty",
        `${LITE_25} answers alterCollectionProperties with an empty message and keeps no properties (measured)`,
      ],
      ["ttlProperty", `${LITE_25} drops collection properties: describe answers properties: [] (measured)`],
      [
        "consistencyLevel",
        `${LITE_25} describes every collection as Strong (measured: Bounded became Strong)`,
      ],
      ["shardsNum", `${LITE_25} describes every collection with shards_num 0 (measured)`],
    ]),
  },
  {
    // Milvus 2.3.9 (the last 2.3) has no Linux wheel on PyPI: `pip download milvus==2.3.9 --no-deps`
    // finds versions up to 2.3.5 only (measured), so 2.3.5 is the newest 2.3 this machine can run.
    name: `milvus-${MILVUS_STANDALONE_VERSION}`,
    start: async () => {
      const s = await startMilvusStandalone();
      return { address: s.address, token: s.rootToken, stop: () => s.stop() };
    },
    lacks: new Map<Feature, string>([
      [
        "pinnedReads",
        `${STANDALONE} does not read at a given timestamp: an iterator query at 1 ms after the epoch returns today's rows (measured; backup.ts readsPinTimestamp)`,
      ],
      [
        "nullable",
        `${STANDALONE} accepts nullable fields and ignores them: describe says nullable false (measured)`,
      ],
      [
        "defaultValue",
        `${STANDALONE} rejects rows that omit a default-valued field: "the num_rows (1) of field (d) is not equal to passed num_rows (2)" (measured)`,
      ],
      [
        "functions",
        `${STANDALONE} accepts a BM25 function and drops it: describe answers functions: [] (measured)`,
      ],
    ]),
  },
  {
    name: `milvus-lite-${MILVUS_LITE_PY_VERSION}`,
    start: async () => {
      const s = await startMilvusLitePy();
      return { address: s.address, stop: () => s.stop() };
    },
    lacks: new Map<Feature, string>([
      [
        "partitionKey",
        `${LITE_PY} always hashes into 16 partitions and describes num_partitions 17 (asked for 4; milvus_lite/constants.py DEFAULT_NUM_PARTITIONS, measured)`,
      ],
      [
        "partitions",
        `${LITE_PY} ignores partition_names in count(*) (measured: 2 rows in _default and 1 in p1 counted 3 for each)`,
      ],
      ["pinnedReads", `${LITE_PY} answers flush with an empty coll_flush_ts (measured)`],
      ["rbac", `${LITE_PY} answers listUsers with gRPC UNIMPLEMENTED (measured)`],
      [
        "consistencyLevel",
        `${LITE_PY} describes every collection as Strong (measured: Bounded became Strong)`,
      ],
      ["shardsNum", `${LITE_PY} describes every collection with shards_num 1 (measured: 2 became 1)`],
    ]),
  },
];

/** Connects with the lane's token; the SDK's connection errors surface on the first call. */
export function clientFor(s: LaneServer): MilvusClient {
  const c = new MilvusClient({ address: s.address, token: s.token, logLevel: "error", timeout: 30_000 });
  c.connectPromise.catch(() => undefined);
  return c;
}

const ok = (r: unknown) => (r as { code?: number } | undefined)?.code === 0;
const okStatus = (r: unknown) => ok((r as { status?: unknown } | undefined)?.status);

let probes = 0;
const probeName = (f: string) => `probe_${f}_${++probes}`;

const vec2 = { name: "v", data_type: DataType.FloatVector, dim: 2 };

/** Creates, indexes and loads a probe collection; false when the server refuses it. */
async function probeCollection(c: MilvusClient, name: string, req: object): Promise<boolean> {
  const r = await c.createCollection({ collection_name: name, ...req } as Parameters<
    typeof c.createCollection
  >[0]);
  return ok(r);
}

async function loaded(c: MilvusClient, name: string): Promise<void> {
  await c.createIndex({ collection_name: name, field_name: "v", index_type: "FLAT", metric_type: "L2" });
  await c.loadCollectionSync({ collection_name: name });
}

/** Whether the server really does `feature` (measured with a throwaway collection). */
export async function probeFeature(c: MilvusClient, feature: Feature): Promise<boolean> {
  const name = probeName(feature);
  const plain = { fields: [{ name: "id", data_type: DataType.Int64, is_primary_key: true }, vec2] };
  try {
    switch (feature) {
      case "rename": {
        if (!(await probeCollection(c, name, plain))) return false;
        await c.renameCollection({ collection_name: name, new_collection_name: `${name}_r` });
        const names = (await c.listCollections()).data.map((x) => x.name);
        return names.includes(`${name}_r`) && !names.includes(name);
      }
      case "partitions": {
        if (!(await probeCollection(c, name, plain))) return false;
        await c.createPartition({ collection_name: name, partition_name: "p1" });
        const parts = await c.listPartitions({ collection_name: name });
        if (!parts.data.map((p) => p.name).includes("p1")) return false;
        // The backup counts each partition's rows with count(*) to check what it read.
        await loaded(c, name);
        await c.insert({
          collection_name: name,
          data: [
            { id: 1, v: [1, 2] },
            { id: 2, v: [1, 2] },
          ],
        });
        await c.insert({ collection_name: name, partition_name: "p1", data: [{ id: 3, v: [1, 2] }] });
        const count = async (p: string) => {
          const q = await c.query({
            collection_name: name,
            filter: "",
            output_fields: ["count(*)"],
            partition_names: [p],
            consistency_level: ConsistencyLevelEnum.Strong,
          });
          return Number(q.data[0]?.["count(*)"]);
        };
        return (await count("_default")) === 2 && (await count("p1")) === 1;
      }
      case "partitionKey": {
        const made = await probeCollection(c, name, {
          num_partitions: 4,
          fields: [
            { name: "id", data_type: DataType.Int64, is_primary_key: true },
            { name: "k", data_type: DataType.VarChar, max_length: 8, is_partition_key: true },
            vec2,
          ],
        });
        const d = await c.describeCollection({ collection_name: name });
        return made && Number(d.num_partitions) === 4;
      }
      case "aliases": {
        if (!(await probeCollection(c, name, plain))) return false;
        await c.createAlias({ collection_name: name, alias: `${name}_a` });
        const a = await c.listAliases({ collection_name: name });
        return okStatus(a) && a.aliases.includes(`${name}_a`);
      }
      case "pinnedReads": {
        if (!(await probeCollection(c, name, plain))) return false;
        await c.insert({ collection_name: name, data: [{ id: 1, v: [1, 2] }] });
        const f = await c.flush({ collection_names: [name] });
        const ts = (f as unknown as { coll_flush_ts?: Record<string, string> }).coll_flush_ts?.[name];
        if (ts === undefined || ts === "0") return false;
        // Reads must also happen AT a given timestamp: a one-row iterator page at 1 ms after the epoch
        // (hybrid timestamp 1 << 18) is empty where they do (Milvus 2.5, internal/proxy/task_query.go
        // PreExecute) and holds today's row where the timestamp only makes the read wait (Milvus 2.3.5).
        await loaded(c, name);
        const ids = async (at: string | null) => {
          const res = (await promisify(
            c.channelPool,
            "Query",
            {
              collection_name: name,
              expr: "",
              output_fields: ["id"],
              query_params: [
                { key: "limit", value: "1" },
                { key: "iterator", value: "True" },
              ],
              ...(at === null
                ? { consistency_level: 0, use_default_consistency: false }
                : { guarantee_timestamp: at, consistency_level: 4, use_default_consistency: false }),
            },
            30_000,
          )) as { fields_data?: { scalars?: { long_data?: { data?: unknown[] } } }[] };
          return res.fields_data?.[0]?.scalars?.long_data?.data?.length ?? 0;
        };
        return (await ids(null)) === 1 && (await ids(String(1n << 18n))) === 0;
      }
      case "databases": {
        await c.createDatabase({ db_name: name });
        const l = await c.listDatabases();
        return okStatus(l) && l.db_names.includes(name);
      }
      case "rbac": {
        const u = await c.listUsers();
        return okStatus(u) && u.usernames.includes("root");
      }
      case "nullable": {
        const made = await probeCollection(c, name, {
          fields: [
            ...plain.fields,
            { name: "s", data_type: DataType.VarChar, max_length: 8, nullable: true },
          ],
        });
        if (!made) return false;
        await loaded(c, name);
        await c.insert({ collection_name: name, data: [{ id: 1, v: [1, 2], s: null }] });
        const q = await c.query({
          collection_name: name,
          filter: "id == 1",
          output_fields: ["s"],
          consistency_level: ConsistencyLevelEnum.Strong,
        });
        const d = await c.describeCollection({ collection_name: name });
        return q.data[0]?.s === null && d.schema.fields.some((f) => f.name === "s" && f.nullable);
      }
      case "defaultValue": {
        const made = await probeCollection(c, name, {
          fields: [...plain.fields, { name: "d", data_type: DataType.Int32, default_value: 7 }],
        });
        if (!made) return false;
        await loaded(c, name);
        const ins = await c.insert({
          collection_name: name,
          data: [
            { id: 1, v: [1, 2] },
            { id: 2, v: [1, 2], d: 3 },
          ],
        });
        if (!okStatus(ins)) return false;
        const q = await c.query({
          collection_name: name,
          filter: "id > 0",
          output_fields: ["id", "d"],
          consistency_level: ConsistencyLevelEnum.Strong,
        });
        const byId = new Map(q.data.map((r) => [String(r.id), r.d]));
        return byId.get("1") === 7 && byId.get("2") === 3;
      }
      case "functions": {
        const made = await probeCollection(c, name, bm25Schema());
        const d = await c.describeCollection({ collection_name: name });
        return made && (d.schema.functions as unknown[] | undefined)?.length === 1;
      }
      case "dynamicField": {
        if (!(await probeCollection(c, name, { ...plain, enable_dynamic_field: true }))) return false;
        await loaded(c, name);
        await c.insert({ collection_name: name, data: [{ id: 1, v: [1, 2], extra: "x" }] });
        const q = await c.query({
          collection_name: name,
          filter: "id == 1",
          output_fields: ["*"],
          consistency_level: ConsistencyLevelEnum.Strong,
        });
        const row = q.data[0] as Record<string, unknown> | undefined;
        return row?.extra === "x" || (row?.$meta as { extra?: string } | undefined)?.extra === "x";
      }
      case "mmapProperty":
      case "ttlProperty": {
        const [key, value] =
          feature === "mmapProperty" ? ["mmap.enabled", "true"] : ["collection.ttl.seconds", "3600"];
        if (!(await probeCollection(c, name, { ...plain, properties: { [key]: value } }))) return false;
        const d = await c.describeCollection({ collection_name: name });
        return ((d.properties as { key: string; value: string }[] | undefined) ?? []).some(
          (p) => p.key === key && p.value === value,
        );
      }
      case "consistencyLevel": {
        if (!(await probeCollection(c, name, { ...plain, consistency_level: "Bounded" }))) return false;
        const d = await c.describeCollection({ collection_name: name });
        return d.consistency_level === "Bounded";
      }
      case "shardsNum": {
        if (!(await probeCollection(c, name, { ...plain, shards_num: 2 }))) return false;
        const d = await c.describeCollection({ collection_name: name });
        return d.shards_num === 2;
      }
    }
  } catch {
    // The SDK throws on answers it cannot read (Milvus Lite 2.5's empty messages): not supported.
    return false;
  }
}

/** A BM25 full-text collection as the Milvus 2.5 docs describe it ("Full Text Search"). */
export function bm25Schema() {
  return {
    fields: [
      { name: "id", data_type: DataType.Int64, is_primary_key: true },
      { name: "text", data_type: DataType.VarChar, max_length: 200, enable_analyzer: true },
      { name: "sparse", data_type: DataType.SparseFloatVector },
    ],
    functions: [
      {
        name: "text_bm25",
        description: "bm25 of text",
        type: FunctionType.BM25,
        input_field_names: ["text"],
        output_field_names: ["sparse"],
        params: {},
      },
    ],
  };
}

/** Prints the one-line reason and skips when the lane lacks any of `features`. */
export function needs(ctx: Mocha.Context, lane: Lane, scenario: string, ...features: Feature[]): void {
  for (const f of features) {
    const reason = lane.lacks.get(f);
    if (reason !== undefined) {
      console.log(`[${lane.name}] skipped ${scenario}: ${reason}`);
      ctx.skip();
    }
  }
}

/** A lane's server and an Azurite beside it, with what the worker's command line needs to reach both. */
export interface LaneEnv {
  server: LaneServer;
  azurite: AzuriteServer;
  client: MilvusClient;
  /** Environment of a worker run against this lane (runCli). */
  env: NodeJS.ProcessEnv;
  store: AzureBlobStore;
  stop(): Promise<void>;
}

/** Starts a lane's server and Azurite (once per describe: the servers take seconds to start). */
export async function startLaneEnv(lane: Lane): Promise<LaneEnv> {
  const [server, azurite] = await Promise.all([lane.start(), startAzurite()]);
  const client = clientFor(server);
  return {
    server,
    azurite,
    client,
    env: {
      PATH: process.env.PATH,
      MILVUS_ADDRESS: server.address,
      ...(server.token ? { MILVUS_TOKEN: server.token } : {}),
      BACKUP_CONTAINER: "backups",
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    },
    store: new AzureBlobStore({ container: "backups", connectionString: azurite.connectionString }),
    stop: async () => {
      await client.closeConnection().catch(() => undefined);
      await Promise.all([server.stop(), azurite.stop()]);
    },
  };
}
