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
import { DEFAULT_DATABASE } from "./databases";
import { checkStatus, describeError, MilvusStatus, WorkerError } from "./errors";
import type { CollectionDef, FieldDef, FunctionDef, IndexDef } from "./format";
import type { PageBound } from "./keyCursor";
import type { Log } from "./log";
import { parseMilvusAddress, PLAINTEXT_HINT, plaintextWarning, tlsPreflight } from "./tls";

export interface MilvusSettings {
  address: string;
  /** user:password or an API key; never logged. */
  token?: string;
  tls: boolean;
  /** PEM CA bundle the server certificate must chain to (read from MILVUS_CA_FILE); unset: the system's CAs. */
  ca?: Buffer;
  /** For messages: `MILVUS_CA_FILE="/path"` (never the file's contents). */
  caSetting?: string;
  /** The name the server certificate must carry (MILVUS_TLS_SERVER_NAME); unset: the host of `address`. */
  serverName?: string;
  /** Where the "not encrypted" warning goes when `tls` is off (the CLI's logger). */
  log?: Log;
}

/** Per-call deadline: a hung server fails the step instead of hanging the job. */
const CALL_TIMEOUT_MS = 120_000;

/** The TLS pre-flight answers in milliseconds; anything slower is a server that will not speak TLS. */
const TLS_PREFLIGHT_TIMEOUT_MS = 5_000;

export class Milvus {
  private dialect?: Promise<FilterDialect>;
  /** The database every call goes to (see {@link useDatabase}). */
  database = DEFAULT_DATABASE;

  private constructor(
    readonly client: MilvusClient,
    readonly address: string,
  ) {}

  /**
   * Connects and proves the server answers (fails fast with a clear message when it does not). With TLS,
   * a pre-flight handshake first checks certificate, CA and name and says which setting is wrong.
   */
  static async connect(s: MilvusSettings, connectTimeoutMs = 15_000): Promise<Milvus> {
    const endpoint = parseMilvusAddress(s.address);
    // The SDK turns TLS on for an https:// address even when `ssl` is false (BaseClient.js, tlsMode).
    const useTls = s.tls || endpoint.https;
    const serverName = s.serverName ?? endpoint.host;
    if (useTls) {
      // Dials Milvus directly, as gRPC does unless grpc_proxy/https_proxy is set (grpc-js
      // build/src/http_proxy.js); behind such a proxy this check would not see what gRPC sees.
      await tlsPreflight(
        {
          host: endpoint.host,
          port: endpoint.port,
          serverName,
          serverNameSet: s.serverName !== undefined,
          ca: s.ca,
          caSetting: s.caSetting,
        },
        Math.min(TLS_PREFLIGHT_TIMEOUT_MS, connectTimeoutMs),
      );
    }
    let client: MilvusClient;
    try {
      client = new MilvusClient({
        address: s.address,
        token: s.token,
        ssl: useTls,
        // SDK 3.0.6 ClientConfig.tls (node_modules/@zilliz/milvus2-sdk-node/dist/milvus/types/Client.d.ts):
        // with `rootCert` the SDK builds grpc.credentials.createSsl(rootCert) (dist/milvus/grpc/BaseClient.js,
        // TLS_MODE.ONE_WAY), i.e. tls.createSecureContext({ ca: rootCert }), which trusts only that CA
        // (node docs, tls.createSecureContext `ca`: "override the trusted CA certificates"); without it,
        // node's default CAs (@grpc/grpc-js build/src/channel-credentials.js, createSsl).
        // `serverName` becomes grpc.ssl_target_name_override, i.e. the SNI and the name the certificate is
        // checked against (@grpc/grpc-js build/src/channel-credentials.js, getConnectionOptions).
        tls: useTls ? { rootCert: s.ca, serverName } : undefined,
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
          "Check --milvus-address/MILVUS_ADDRESS, --milvus-token/MILVUS_TOKEN and that the server is running." +
          (useTls ? "" : ` ${PLAINTEXT_HINT}`),
      );
    }
    // Said once per connection, i.e. once per command run (and per scheduled run): plaintext is allowed
    // (Milvus Lite, a cluster without TLS) but never silent.
    if (!useTls) s.log?.warn("milvus.plaintext", { address: s.address }, plaintextWarning(s.address));
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
   * The databases of this server, or null when it has none: Milvus Lite 2.5 answers ListDatabases with
   * gRPC UNIMPLEMENTED, which the SDK turns into an answer without a status (dist/milvus/utils/Grpc.js,
   * getRetryInterceptor; measured here on Lite 2.5, test/databases.test.ts).
   */
  async listDatabases(): Promise<string[] | null> {
    const res = (await this.client.listDatabases()) as { status?: MilvusStatus; db_names?: string[] };
    if (res.status === undefined) return null;
    checkStatus(res.status, "listing databases");
    return res.db_names ?? [];
  }

  /**
   * Sends every later call, the raw Query/Insert ones included, to `name`. The SDK keeps the database in
   * its client metadata (`dbname`, dist/milvus/grpc/GrpcClient.js `use`), which the metadata interceptor
   * of every channel in the pool adds to each call (GrpcClient.js constructor, getMetaInterceptor); the
   * proxy fills each request's db_name from that header (milvus internal/proxy/database_interceptor.go).
   * One database at a time per connection: the worker's runs are sequential.
   */
  async useDatabase(name: string): Promise<void> {
    await this.client.use({ db_name: name });
    this.database = name;
  }

  /**
   * A database's properties, or null when the server cannot describe databases (Milvus 2.3.5 and Lite
   * 2.5 answer DescribeDatabase with UNIMPLEMENTED: measured here).
   */
  async describeDatabase(name: string): Promise<Record<string, string> | null> {
    const res = (await this.client.describeDatabase({ db_name: name })) as {
      status?: MilvusStatus;
      properties?: KeyValue[];
    };
    if (res.status === undefined) return null;
    checkStatus(res.status, `describing database ${name}`);
    return kv(res.properties);
  }

  async createDatabase(name: string, properties: Record<string, string>): Promise<void> {
    const res = await this.client.createDatabase({
      db_name: name,
      ...(Object.keys(properties).length > 0 ? { properties } : {}),
    });
    checkStatus(res, `creating database ${name}`);
  }

  async dropDatabase(name: string): Promise<void> {
    checkStatus(await this.client.dropDatabase({ db_name: name }), `dropping database ${name}`);
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
      throw new WorkerError(
        this.database === DEFAULT_DATABASE
          ? `collection ${name} does not exist on ${this.address}; check --collection`
          : `collection ${name} does not exist in database ${this.database} on ${this.address}; check --collection and --database`,
      );
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
      // Milvus Lite 2.5 keeps a BM25 function but answers describeCollection with `functions: []` and the
      // output field still marked (measured here on Lite 2.5.102): such a backup would restore a field no
      // function fills, so it is refused rather than written incomplete.
      if (f.isFunctionOutput && !functions.some((fn) => fn.outputFieldNames.includes(f.name))) {
        throw new WorkerError(
          `collection ${name}: field ${f.name} is the output of a function, but ${this.address} did not report ` +
            "that function in describeCollection (Milvus Lite 2.5 leaves functions out), so a backup could not " +
            "recreate it; back it up from a server that reports its functions (Milvus >= 2.5)",
        );
      }
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

  /**
   * Alias calls name their database in the request: Milvus 2.3.5 looked for the collection of a
   * ListAliases in "default" whatever the `dbname` header said ("collection not found": measured here,
   * test/databases.test.ts), while a request's own db_name wins over the header everywhere
   * (milvus internal/proxy/database_interceptor.go fills it only when empty).
   */
  aliasDatabase(): { db_name?: string } {
    return this.database === DEFAULT_DATABASE ? {} : { db_name: this.database };
  }

  private async aliases(name: string, described: string[] | undefined): Promise<string[]> {
    try {
      const res = await this.client.listAliases({ collection_name: name, ...this.aliasDatabase() });
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

  /**
   * Flushes several collections in one request and returns each one's flush timestamp (null where the
   * server reports none: Milvus Lite). One request, so the timestamps are adjacent (measured on Milvus
   * 2.3.5: two collections got 470764558199291906 and ...907).
   */
  async flushAll(names: string[]): Promise<Map<string, string | null>> {
    const res = await this.client.flush({ collection_names: names });
    checkStatus(res.status, `flushing ${names.join(", ")}`);
    const all = (res as unknown as { coll_flush_ts?: Record<string, string | number> }).coll_flush_ts ?? {};
    return new Map(
      names.map((n) => {
        const ts = all[n] as string | number | undefined;
        return [n, ts !== undefined && String(ts) !== "0" ? String(ts) : null];
      }),
    );
  }

  /**
   * count(*) of a collection or partition. With a snapshot the request is marked as an iterator read,
   * which is what makes Milvus read at the guarantee timestamp (MvccTimestamp = GuaranteeTimestamp for
   * iterator queries, milvus internal/proxy/task_query.go PreExecute, 2.5). Milvus 2.3.5 still counts
   * rows written after it (measured here: 150 at a flush timestamp that saw 100), so a pinned count is
   * only trusted where a probe says the server pins counts (backup.ts countPinsTimestamp).
   */
  async count(name: string, partition: string | undefined, snapshot: string | null): Promise<number> {
    const res = await this.raw<QueryResponse>("Query", {
      collection_name: name,
      expr: "",
      output_fields: ["count(*)"],
      partition_names: partition ? [partition] : [],
      query_params: snapshot ? [{ key: "iterator", value: "True" }] : [],
      ...consistency(snapshot),
    });
    checkStatus(res.status, `counting rows of ${name}`);
    const v = res.fields_data[0]?.scalars?.long_data?.data[0];
    if (v === undefined) throw new WorkerError(`counting rows of ${name}: the server returned no count`);
    return Number(v);
  }

  /**
   * One page of rows in primary-key order, starting after a key (or at it, for an inclusive bound; see
   * keyCursor.ts). No offsets on the normal path: Milvus caps offset+limit at 16,384 rows, so every page
   * starts from the last key of the previous one. A plain string `after` means "keys greater than it"
   * and pages of `limit` rows; a {@link PageBound} carries its own page size.
   *
   * The key goes into the filter as a template value on Milvus >= 2.5, so no key can be misread as
   * expression syntax. Milvus Lite 2.5 has no templates (its grammar, milvus-lite src/parser/Plan.g4,
   * has no `{name}` token; a template filter fails as gRPC UNKNOWN "Unexpected error in RPC handling"),
   * so there the key is quoted for Lite's own string rules ({@link liteQuote}).
   *
   * The old filter, `pk > ${JSON.stringify(after)}`, was wrong on Lite: Lite unquotes with C++
   * `std::quoted` (src/parser/utils.h convertEscapeSingle), which turns `\X` into `X`, so the JSON
   * escapes `\t \n \r \u0000 \u0001` reached the server as the letters `t n r u0000 u0001`. Measured on
   * Milvus Lite 2.5.102: `pk > "a\t"` over 22 keys returned 4 rows instead of 16; paging 20,000 keys
   * `note\nNNNNNN<c>` 100 at a time read 100 rows (the first page's last key became `noten000099t`,
   * past every key left), and a backup, in its pages of 13,107 rows, read 13,107 and blamed concurrent
   * writes (test/workerKeys.test.ts).
   */
  async queryPage(
    def: CollectionDef,
    partition: string | undefined,
    after: string | PageBound | null,
    limit: number,
    outputFields: string[],
    snapshot: string | null,
  ): Promise<QueryResponse> {
    const pk = primaryField(def);
    const bound: PageBound | null =
      typeof after === "string" ? { key: after, inclusive: false, anchor: after, skip: 0, limit } : after;
    let pageLimit = bound?.limit ?? limit;
    let filter: KeyFilter = { expr: "" };
    let offset = 0;
    if (bound && bound.key !== null) {
      const op = bound.inclusive ? ">=" : ">";
      const dialect = await this.filterDialect();
      const exact = keyFilter(pk, op, bound.key, dialect);
      if (exact) {
        filter = exact;
      } else {
        // Only Milvus Lite, and only for a key with a carriage return that is not followed by a line feed:
        // no Lite string literal holds one. Same position, written differently: the rows after the last
        // key Lite can write (`anchor`), less the `skip` rows of them already read.
        if (bound.skip + 1 > MAX_QUERY_WINDOW) {
          throw new WorkerError(
            `reading rows of ${def.name}: more than ${MAX_QUERY_WINDOW - 1} consecutive primary keys contain a ` +
              "carriage return not followed by a line feed, which Milvus Lite's filter expressions cannot write; " +
              "Milvus Lite cannot page past them (Milvus >= 2.5 can)",
          );
        }
        const anchored = bound.anchor === null ? { expr: "" } : keyFilter(pk, ">", bound.anchor, dialect);
        if (!anchored) {
          throw new WorkerError(
            `reading rows of ${def.name}: cannot write the primary key ${showKey(bound.anchor ?? "")}`,
          );
        }
        filter = anchored;
        offset = bound.skip;
        pageLimit = Math.max(1, Math.min(pageLimit, MAX_QUERY_WINDOW - offset));
      }
    }
    const res = await this.raw<QueryResponse>("Query", {
      collection_name: def.name,
      expr: filter.expr,
      ...(filter.values ? { expr_template_values: filter.values } : {}),
      output_fields: outputFields,
      partition_names: partition ? [partition] : [],
      query_params: [
        { key: "limit", value: String(pageLimit) },
        ...(offset > 0 ? [{ key: "offset", value: String(offset) }] : []),
        // Iterator mode orders results by primary key and reads at the given guarantee timestamp.
        { key: "iterator", value: "True" },
        // Not before Milvus 2.5: 2.3's merge with reduce_stop_for_best ignores the limit and stops as soon
        // as any segment's result runs out (milvus internal/querynodev2/segments/result.go, 2.3:
        // loopEnd = the sum of all results, break on drainOneResult; "the reduce didn't handle ...
        // reduceStopForBest correctly", milvus PR #32087). Measured here on Milvus 2.3.5, 90 rows in
        // 4 partition-key partitions: limit 7 returned 22 rows, and `pk >= 86` returned 86 alone though
        // 87, 88 and 89 exist, so a short page ended the read 3 rows early (test/lanes.test.ts "e.").
        ...((await this.filterDialect()) === "go" ? [] : [{ key: "reduce_stop_for_best", value: "True" }]),
      ],
      ...consistency(snapshot),
    });
    checkStatus(res.status, `reading rows of ${def.name}`);
    return res;
  }

  /**
   * count(*) of the rows whose primary key is one of `keys`: with duplicate primary keys, count(*)
   * counts every inserted row while queries return only the newest row of each key (Milvus Lite 2.5,
   * measured). Keys this server cannot write in a filter (Milvus Lite: a lone carriage return) are not
   * counted; `unwritten` says how many.
   */
  async countKeys(
    def: CollectionDef,
    partition: string | undefined,
    keys: string[],
    snapshot: string | null,
  ): Promise<{ rows: number; unwritten: number }> {
    const pk = primaryField(def);
    const distinct = [...new Set(keys)];
    const filter = keysFilter(pk, distinct, await this.filterDialect());
    if (filter.count === 0) return { rows: 0, unwritten: distinct.length };
    const res = await this.raw<QueryResponse>("Query", {
      collection_name: def.name,
      expr: filter.expr,
      ...(filter.values ? { expr_template_values: filter.values } : {}),
      output_fields: ["count(*)"],
      partition_names: partition ? [partition] : [],
      query_params: [],
      ...consistency(snapshot),
    });
    checkStatus(res.status, `counting rows of ${def.name} by primary key`);
    const v = res.fields_data[0]?.scalars?.long_data?.data[0];
    if (v === undefined) throw new WorkerError(`counting rows of ${def.name}: the server returned no count`);
    return { rows: Number(v), unwritten: distinct.length - filter.count };
  }

  /**
   * How this server takes a key in a filter, asked once: Milvus answers GetVersion with its version
   * (templates from 2.5; before that, Go string literals), Milvus Lite with nothing.
   */
  private filterDialect(): Promise<FilterDialect> {
    this.dialect ??= this.client.getVersion().then(
      (v) => dialectOf((v as { version?: string } | undefined)?.version),
      (e: unknown) => {
        this.dialect = undefined;
        throw e;
      },
    );
    return this.dialect;
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

/** Milvus rejects a query whose offset plus limit exceeds this. */
export const MAX_QUERY_WINDOW = 16_384;

/**
 * How a key is put into a filter: "template" (Milvus >= 2.5: `pk > {after}` plus a template value),
 * "go" (older Milvus: a Go string literal, which planparserv2 reads with strconv.Unquote), "lite"
 * (Milvus Lite 2.5: see {@link liteQuote}), "pylite" (the Python Milvus Lite 3.x: see {@link pyliteQuote}).
 */
export type FilterDialect = "template" | "go" | "lite" | "pylite";

export function dialectOf(version: string | undefined): FilterDialect {
  if (!version) return "lite";
  // The Python rewrite (PyPI milvus-lite 3.x) answers "milvus_lite-3.2.2" and has no templates: a
  // template filter fails with "unexpected character '{'" (measured here on milvus-lite 3.2.2).
  if (/^milvus_lite-/i.test(version)) return "pylite";
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  if (!m) return "template";
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major > 2 || (major === 2 && minor >= 5) ? "template" : "go";
}

/**
 * A varchar key as a Milvus Lite 2.5 string literal, or null when Lite cannot write it. Lite's lexer
 * (milvus-lite src/parser/Plan.g4, DoubleSChar) takes any character but `"`, `\`, CR and LF, plus
 * backslash escapes and a backslash before a line break (`\` LF, `\` CR LF); its unquoting
 * (src/parser/utils.h convertEscapeSingle, C++ `std::quoted`) then turns every `\X` into `X`. So `"` and
 * `\` take a backslash, LF and CR LF a backslash before them, every other character goes in as itself,
 * and a CR not followed by LF cannot be written at all (verified on Milvus Lite 2.5.102 for \t \n \r\n
 * \0 \x01 \v \f \b " ' \ and non-ASCII keys; a raw CR is "Invalid expr").
 */
export function liteQuote(key: string): string | null {
  let out = '"';
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c === '"' || c === "\\") out += `\\${c}`;
    else if (c === "\n") out += "\\\n";
    else if (c === "\r") {
      if (key[i + 1] !== "\n") return null;
      out += "\\\r\n";
      i++;
    } else out += c;
  }
  return `${out}"`;
}

/**
 * A varchar key as a string literal of the Python Milvus Lite 3.x filter lexer
 * (milvus_lite/search/filter/tokens.py, _read_string): its only escapes are \" \' \\ \n \r \t, a raw
 * CR or LF ends the literal with an error, and every other character stands for itself (so the JSON
 * escapes \u0000 or \b are "unknown escape sequence" errors). Every key can be written.
 */
export function pyliteQuote(key: string): string {
  let out = '"';
  for (const c of key) {
    if (c === '"' || c === "\\") out += `\\${c}`;
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else out += c;
  }
  return `${out}"`;
}

interface KeyFilter {
  expr: string;
  values?: Record<string, object>;
}

/** An int64 key goes into filters as digits or an int64 template value: refuse anything else. */
function integerKey(pk: FieldDef, key: string): string {
  if (!/^-?\d+$/.test(key))
    throw new WorkerError(`primary key ${pk.name}: ${showKey(key)} is not an integer`);
  return key;
}

/** A key as a literal of a non-template dialect, or null when the dialect cannot write it. */
function keyLiteral(pk: FieldDef, key: string, dialect: FilterDialect): string | null {
  if (pk.dataType !== "VarChar") return integerKey(pk, key);
  if (dialect === "pylite") return pyliteQuote(key);
  return dialect === "lite" ? liteQuote(key) : JSON.stringify(key);
}

/** `pk <op> key` in the server's dialect, or null when the dialect cannot write the key. */
function keyFilter(pk: FieldDef, op: string, key: string, dialect: FilterDialect): KeyFilter | null {
  if (dialect === "template") {
    const value = pk.dataType === "VarChar" ? { string_val: key } : { int64_val: integerKey(pk, key) };
    return { expr: `${pk.name} ${op} {after}`, values: { after: value } };
  }
  const literal = keyLiteral(pk, key, dialect);
  return literal === null ? null : { expr: `${pk.name} ${op} ${literal}` };
}

/** `pk in [keys]` in the server's dialect, leaving out keys it cannot write; `count` is how many are in. */
function keysFilter(pk: FieldDef, keys: string[], dialect: FilterDialect): KeyFilter & { count: number } {
  if (dialect === "template") {
    const data = { data: pk.dataType === "VarChar" ? keys : keys.map((k) => integerKey(pk, k)) };
    const array = pk.dataType === "VarChar" ? { string_data: data } : { long_data: data };
    return { expr: `${pk.name} in {keys}`, values: { keys: { array_val: array } }, count: keys.length };
  }
  const literals: string[] = [];
  for (const k of keys) {
    const l = keyLiteral(pk, k, dialect);
    if (l !== null) literals.push(l);
  }
  return { expr: `${pk.name} in [${literals.join(", ")}]`, count: literals.length };
}

/** A key for a message: quoted with JSON escapes so control characters show, and shortened. */
export function showKey(key: string): string {
  const q = JSON.stringify(key);
  return q.length > 80 ? `${q.slice(0, 77)}..."` : q;
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
