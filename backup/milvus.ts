/**
 * Everything the worker asks of Milvus: connecting, capturing a collection's definition, reading its
 * rows page by page in primary-key order, and recreating and filling a collection.
 *
 * Data moves through the SDK's raw gRPC `Query` and `Insert` calls (the SDK's exported `promisify` on
 * the client's own channel pool, so authentication and TLS are the client's): the column-oriented
 * `fields_data` is turned into chunk columns directly, without materialising one JS object per row.
 * int64 values stay strings/BigInt end to end; float16/bfloat16/binary vectors stay bytes.
 */
import { MilvusClient, promisify } from "@zilliz/milvus2-sdk-node";
import { checkStatus, describeError, MilvusStatus, WorkerError } from "./errors";
import type { CollectionDef, FieldDef, FunctionDef, IndexDef } from "./format";

export interface MilvusSettings {
  address: string;
  /** user:password or an API key; never logged. */
  token?: string;
  tls: boolean;
}

/** Per-call deadline: a hung server fails the step instead of hanging the job. */
const CALL_TIMEOUT_MS = 120_000;

export class Milvus {
  private constructor(
    readonly client: MilvusClient,
    readonly address: string,
  ) {}

  /** Connects and proves the server answers (fails fast with a clear message when it does not). */
  static async connect(s: MilvusSettings, connectTimeoutMs = 15_000): Promise<Milvus> {
    let client: MilvusClient;
    try {
      client = new MilvusClient({
        address: s.address,
        token: s.token,
        ssl: s.tls,
        timeout: CALL_TIMEOUT_MS,
        logLevel: "error",
        maxRetries: 2,
      });
    } catch (e) {
      throw new WorkerError(`cannot connect to Milvus at ${s.address}: ${describeError(e)}`, 1);
    }
    // The SDK starts connecting in its constructor; a refused connection must surface as our error
    // below, not as an unhandled rejection that kills the process with a stack trace.
    client.connectPromise.catch(() => undefined);
    const m = new Milvus(client, s.address);
    try {
      const res = await withDeadline(client.listCollections({ timeout: connectTimeoutMs }), connectTimeoutMs);
      checkStatus(res.status, "listing collections");
    } catch (e) {
      await m.close();
      throw new WorkerError(
        `cannot reach Milvus at ${s.address}: ${describeError(e)}. ` +
          "Check --milvus-address/MILVUS_ADDRESS, --milvus-token/MILVUS_TOKEN and that the server is running.",
      );
    }
    return m;
  }

  async close(): Promise<void> {
    try {
      await this.client.closeConnection();
    } catch {
      // closing a connection that never opened is not an error worth reporting
    }
  }

  private raw<T>(method: string, request: object): Promise<T> {
    return promisify(this.client.channelPool, method, request, CALL_TIMEOUT_MS) as Promise<T>;
  }

  /**
   * Collection names. Used instead of `hasCollection`, which Milvus Lite answers with true for any name.
   */
  async listCollections(): Promise<string[]> {
    const res = await this.client.listCollections();
    checkStatus(res.status, "listing collections");
    return res.data.map((c) => c.name);
  }

  async exists(name: string): Promise<boolean> {
    return (await this.listCollections()).includes(name);
  }

  /** Captures the whole definition of a collection. */
  async describe(name: string): Promise<CollectionDef> {
    if (!(await this.exists(name))) {
      throw new WorkerError(`collection ${name} does not exist on ${this.address}; check --collection`);
    }
    // Typed loosely on purpose: what servers fill in differs between Milvus versions and Milvus Lite.
    const d = (await this.client.describeCollection({ collection_name: name })) as unknown as DescribeAnswer;
    checkStatus(d.status, `describing collection ${name}`);
    const fields: FieldDef[] = [];
    let enableDynamicField = Boolean(d.schema.enable_dynamic_field);
    for (const f of d.schema.fields) {
      if (f.is_dynamic) {
        enableDynamicField = true;
        continue;
      }
      fields.push({
        name: f.name,
        fieldID: String(f.fieldID ?? ""),
        dataType: String(f.data_type),
        elementType:
          f.element_type !== undefined && String(f.element_type) !== "None"
            ? String(f.element_type)
            : undefined,
        isPrimaryKey: Boolean(f.is_primary_key),
        autoID: Boolean(f.autoID),
        description: f.description ?? "",
        typeParams: kv(f.type_params),
        defaultValue: f.default_value ?? null,
        isPartitionKey: Boolean(f.is_partition_key),
        isClusteringKey: Boolean(f.is_clustering_key),
        nullable: Boolean(f.nullable),
        isFunctionOutput: Boolean(f.is_function_output),
      });
    }
    const functions: FunctionDef[] = (d.schema.functions ?? []).map((fn) => ({
      name: fn.name,
      description: fn.description ?? "",
      type: fn.type ?? "Unknown",
      inputFieldNames: fn.input_field_names ?? [],
      outputFieldNames: fn.output_field_names ?? [],
      params: Array.isArray(fn.params)
        ? kv(fn.params as { key: string; value: unknown }[])
        : Object.fromEntries(
            Object.entries(fn.params as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
          ),
    }));
    for (const f of fields) {
      if (UNSUPPORTED_TYPES.has(f.dataType)) {
        throw new WorkerError(
          `collection ${name}: field ${f.name} has type ${f.dataType}, which this worker cannot back up yet`,
        );
      }
    }
    const partitions = await this.partitions(name);
    const aliases = await this.aliases(name, d.aliases);
    const indexes = await this.indexes(name);
    const load = await this.client.getLoadState({ collection_name: name });
    checkStatus(load.status, `reading the load state of ${name}`);
    return {
      name,
      description: d.schema.description ?? "",
      fields,
      functions,
      enableDynamicField,
      shardsNum: Number(d.shards_num),
      consistencyLevel: String(d.consistency_level),
      properties: kv(d.properties),
      numPartitions: Number(d.num_partitions ?? 0),
      partitions,
      aliases,
      indexes,
      loaded: (load.state as string) === "LoadStateLoaded",
    };
  }

  private async partitions(name: string): Promise<string[]> {
    try {
      const res = await this.client.listPartitions({ collection_name: name });
      checkStatus(res.status, `listing partitions of ${name}`);
      return res.data.map((p) => p.name);
    } catch (e) {
      // Milvus Lite has no partitions: its answer makes the SDK throw a TypeError.
      if (e instanceof TypeError) return ["_default"];
      throw e;
    }
  }

  private async aliases(name: string, described: string[] | undefined): Promise<string[]> {
    try {
      const res = await this.client.listAliases({ collection_name: name });
      // Milvus Lite answers without a status (it has no aliases); the describe answer is then all there is.
      if ((res as { status?: unknown }).status === undefined) return [...(described ?? [])].sort();
      checkStatus(res.status, `listing aliases of ${name}`);
      return [...new Set([...res.aliases, ...(described ?? [])])].sort();
    } catch (e) {
      if (e instanceof WorkerError) throw e;
      return [...(described ?? [])].sort();
    }
  }

  private async indexes(name: string): Promise<IndexDef[]> {
    const res = await this.client.describeIndex({ collection_name: name });
    // No index at all is reported as a failure status ("index not found").
    if (res.status.code !== 0 && /index not (found|exist)/i.test(res.status.reason)) return [];
    checkStatus(res.status, `describing the indexes of ${name}`);
    return res.index_descriptions.map((ix) => {
      const all = kv(ix.params);
      let params: Record<string, string> = {};
      if (all.params) {
        try {
          params = Object.fromEntries(
            Object.entries(JSON.parse(all.params) as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
          );
        } catch {
          params = {};
        }
      }
      // Milvus Lite reports index parameters as flat keys instead of a `params` JSON string; `dim` there
      // is the field's type parameter leaking into the index description, not an index parameter.
      for (const [k, v] of Object.entries(all)) {
        if (!["index_type", "metric_type", "params", "dim"].includes(k) && !(k in params)) params[k] = v;
      }
      return {
        indexName: ix.index_name,
        fieldName: ix.field_name,
        indexType: "index_type" in all ? all.index_type : "",
        metricType: "metric_type" in all ? all.metric_type : "",
        params,
      };
    });
  }

  /**
   * Flushes the collection and returns the flush timestamp (a Milvus hybrid timestamp) when the
   * server reports one: reads pinned to it see exactly the data that was flushed.
   */
  async flush(name: string): Promise<string | null> {
    const res = await this.client.flush({ collection_names: [name] });
    checkStatus(res.status, `flushing ${name}`);
    const ts = (res as unknown as { coll_flush_ts?: Record<string, string | number> }).coll_flush_ts?.[name];
    return ts !== undefined && String(ts) !== "0" ? String(ts) : null;
  }

  /** count(*) of a collection or partition, pinned to a snapshot timestamp when one is given. */
  async count(name: string, partition: string | undefined, snapshot: string | null): Promise<number> {
    const res = await this.raw<QueryResponse>("Query", {
      collection_name: name,
      expr: "",
      output_fields: ["count(*)"],
      partition_names: partition ? [partition] : [],
      query_params: [],
      ...consistency(snapshot),
    });
    checkStatus(res.status, `counting rows of ${name}`);
    const v = res.fields_data[0]?.scalars?.long_data?.data[0];
    if (v === undefined) throw new WorkerError(`counting rows of ${name}: the server returned no count`);
    return Number(v);
  }

  /**
   * One page of rows with primary keys greater than `after`, in primary-key order. No offsets: Milvus
   * caps offset+limit at 16,384 rows, so every page starts from the last key of the previous one.
   */
  async queryPage(
    def: CollectionDef,
    partition: string | undefined,
    after: string | null,
    limit: number,
    outputFields: string[],
    snapshot: string | null,
  ): Promise<QueryResponse> {
    const pk = primaryField(def);
    let expr = "";
    if (after !== null) {
      expr = pk.dataType === "VarChar" ? `${pk.name} > ${JSON.stringify(after)}` : `${pk.name} > ${after}`;
    }
    const res = await this.raw<QueryResponse>("Query", {
      collection_name: def.name,
      expr,
      output_fields: outputFields,
      partition_names: partition ? [partition] : [],
      query_params: [
        { key: "limit", value: String(limit) },
        // Iterator mode orders results by primary key and reads at the given guarantee timestamp.
        { key: "iterator", value: "True" },
        { key: "reduce_stop_for_best", value: "True" },
      ],
      ...consistency(snapshot),
    });
    checkStatus(res.status, `reading rows of ${def.name}`);
    return res;
  }

  /** Inserts rows; `upsert` makes a retry idempotent (same primary keys replace, never duplicate). */
  async insert(
    name: string,
    partition: string | undefined,
    fieldsData: object[],
    numRows: number,
    upsert = false,
  ) {
    const res = await this.raw<{
      status: MilvusStatus;
      insert_cnt: string | number;
      upsert_cnt?: string | number;
    }>(upsert ? "Upsert" : "Insert", {
      collection_name: name,
      partition_name: partition ?? "",
      fields_data: fieldsData,
      num_rows: numRows,
    });
    checkStatus(res.status, `${upsert ? "upserting" : "inserting"} into ${name}`);
    const acknowledged = upsert ? Number(res.upsert_cnt ?? res.insert_cnt) : Number(res.insert_cnt);
    if (acknowledged !== numRows) {
      throw new WorkerError(
        `inserting into ${name}: the server acknowledged ${res.insert_cnt} of ${numRows} rows`,
      );
    }
  }

  async drop(name: string): Promise<void> {
    const res = await this.client.dropCollection({ collection_name: name });
    checkStatus(res, `dropping collection ${name}`);
  }
}

function consistency(snapshot: string | null) {
  // Customized consistency makes the server honour our guarantee timestamp; without a flush timestamp
  // (Milvus Lite) Strong consistency reads everything acknowledged so far.
  return snapshot
    ? { guarantee_timestamp: snapshot, consistency_level: 4, use_default_consistency: false }
    : { consistency_level: 0, use_default_consistency: false };
}

interface KeyValue {
  key: string;
  value: unknown;
}

/** describeCollection's answer with everything a server may leave out marked optional. */
interface DescribeAnswer {
  status?: MilvusStatus;
  schema: {
    description?: string;
    enable_dynamic_field?: boolean;
    fields: {
      name: string;
      fieldID?: string | number;
      data_type?: string | number;
      element_type?: string | number;
      is_primary_key?: boolean;
      autoID?: boolean;
      description?: string;
      type_params?: KeyValue[];
      default_value?: unknown;
      is_dynamic?: boolean;
      is_partition_key?: boolean;
      is_clustering_key?: boolean;
      nullable?: boolean;
      is_function_output?: boolean;
    }[];
    functions?: {
      name: string;
      description?: string;
      type?: string | number;
      input_field_names?: string[];
      output_field_names?: string[];
      params?: KeyValue[] | Record<string, unknown>;
    }[];
  };
  shards_num?: number | string;
  consistency_level?: string | number;
  properties?: KeyValue[];
  num_partitions?: number | string;
  aliases?: string[];
}

export interface RawFieldData {
  type: string | number;
  field_name: string;
  field_id?: string;
  is_dynamic?: boolean;
  valid_data?: boolean[];
  scalars?: Record<string, unknown> & { data?: string; long_data?: { data: (string | number)[] } };
  vectors?: Record<string, unknown> & { data?: string; dim?: string | number };
}

export interface QueryResponse {
  status: MilvusStatus;
  fields_data: RawFieldData[];
}

const UNSUPPORTED_TYPES = new Set([
  "Geometry",
  "Text",
  "Timestamptz",
  "Mol",
  "Date",
  "Time",
  "Decimal",
  "ArrayOfVector",
  "ArrayOfStruct",
  "Struct",
]);

export function primaryField(def: CollectionDef): FieldDef {
  const pk = def.fields.find((f) => f.isPrimaryKey);
  if (!pk) throw new WorkerError(`collection ${def.name} has no primary key field`);
  return pk;
}

export function kv(pairs: { key: string; value: unknown }[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs ?? []) out[p.key] = String(p.value);
  return out;
}

async function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no answer within ${Math.round(ms / 1000)} s`));
    }, ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
