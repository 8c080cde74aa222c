/**
 * Backup worker against real servers: Milvus Lite and Azurite, started here on free loopback ports
 * with fresh data directories and stopped even when a test fails.
 */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { DataType } from "@zilliz/milvus2-sdk-node";
import { AzureBlobStore, type BlobStore, type DeleteOutcome } from "../backup/blobStore";
import {
  chunkPath,
  manifestPath,
  readChunkHeader,
  schemaDigest,
  sha256,
  type Manifest,
} from "../backup/format";
import { readAll, runCli, seedRichCollection, startServers, type Servers } from "./support/workerEnv";

interface BackupJson {
  backups: {
    backupId: string;
    collection: string;
    rows: number;
    bytes: number;
    time: string;
    chunks: number;
  }[];
}

describe("backup worker against Milvus Lite and Azurite", function () {
  this.timeout(120_000);
  let s: Servers;
  let store: AzureBlobStore;
  const ids: Partial<Record<string, string>> = {};

  before(async function () {
    s = await startServers();
    store = new AzureBlobStore({
      container: "backups",
      connectionString: s.env.AZURE_STORAGE_CONNECTION_STRING,
    });
    // Both just above Milvus's 16,384-row offset+limit cap, so offset paging would fail on them.
    await Promise.all([
      seedRichCollection(s.client, { name: "docs_int", rows: 16_500, pk: "int64", array: "nums" }),
      seedRichCollection(s.client, { name: "docs_str", rows: 16_500, pk: "varchar", array: "tags" }),
    ]);
  });

  after(async function () {
    await s.stop();
  });

  async function backup(collection: string, extra: string[] = []) {
    const r = await runCli(["backup", "--collection", collection, "--json", ...extra], s.env);
    assert.equal(r.code, 0, r.stderr);
    const doc = r.json as BackupJson;
    assert.equal(doc.backups.length, 1);
    const id = doc.backups[0]?.backupId ?? "";
    return { id, doc, stderr: r.stderr };
  }

  async function assertSameRows(a: string, b: string) {
    const [src, dst] = await Promise.all([readAll(s.client, a), readAll(s.client, b)]);
    assert.equal(dst.size, src.size);
    for (const [pk, row] of src) assert.deepStrictEqual(dst.get(pk), row, `row ${pk} differs`);
  }

  async function assertSameSchema(a: string, b: string) {
    const shape = async (name: string) => {
      const d = await s.client.describeCollection({ collection_name: name });
      const ix = await s.client.describeIndex({ collection_name: name });
      return {
        dynamic: d.schema.enable_dynamic_field,
        description: d.schema.description,
        consistency: d.consistency_level,
        fields: d.schema.fields.map((f) => ({
          name: f.name,
          type: f.data_type,
          element: f.element_type,
          pk: f.is_primary_key,
          autoID: f.autoID,
          params: f.type_params,
          default: f.default_value,
          dynamic: f.is_dynamic,
        })),
        indexes: ix.index_descriptions
          .map((i) => ({ field: i.field_name, name: i.index_name, params: i.params }))
          .sort((x, y) => x.field.localeCompare(y.field)),
      };
    };
    assert.deepStrictEqual(await shape(b), await shape(a));
  }

  it("round-trips an int64-keyed collection above 16,384 rows, every row and field", async function () {
    const { id, doc, stderr } = await backup("docs_int", ["--chunk-size-mib", "1"]);
    ids.int = id;
    const b = doc.backups[0];
    assert.ok(b);
    assert.equal(b.collection, "docs_int");
    assert.equal(b.rows, 16_500);
    assert.ok(b.bytes > 0);
    assert.ok(b.chunks >= 3, `expected several 1 MiB chunks, got ${b.chunks}`);
    assert.match(id, /^docs_int-\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    // Off a terminal every step is one JSON line on stderr.
    for (const line of stderr.trim().split("\n")) assert.doesNotThrow(() => JSON.parse(line), line);

    const m = JSON.parse((await store.get(manifestPath(id))).toString()) as Manifest;
    assert.equal(m.formatVersion, 2);
    assert.equal(m.rows, 16_500);
    assert.equal(
      m.chunks.reduce((n, c) => n + c.rows, 0),
      16_500,
    );
    for (const c of m.chunks) assert.match(c.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(m.schema.indexes.map((i) => [i.fieldName, i.indexType, i.metricType, i.params]).sort(), [
      ["bin", "BIN_FLAT", "HAMMING", {}],
      ["half", "FLAT", "IP", {}],
      ["sparse", "SPARSE_INVERTED_INDEX", "IP", { drop_ratio_build: "0.1" }],
      ["vec", "IVF_FLAT", "L2", { nlist: "32" }],
    ]);
    assert.equal(m.schema.enableDynamicField, true);
    assert.equal(m.schema.loaded, true);

    const r = await runCli(["restore", "--backup", id, "--target", "docs_int_copy", "--json"], s.env);
    assert.equal(r.code, 0, r.stderr);
    const out = r.json as { collection: string; rows: number; method: string };
    assert.equal(out.collection, "docs_int_copy");
    assert.equal(out.rows, 16_500);
    // Milvus Lite acknowledges renames without doing them; the worker must have noticed.
    assert.equal(out.method, "direct");
    await assertSameSchema("docs_int", "docs_int_copy");
    await assertSameRows("docs_int", "docs_int_copy");
  });

  it("round-trips a varchar-keyed collection above 16,384 rows, every row and field", async function () {
    const { id } = await backup("docs_str");
    ids.str = id;
    const r = await runCli(["restore", "--backup", id, "--target", "docs_str_copy", "--json"], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((r.json as { rows: number }).rows, 16_500);
    await assertSameSchema("docs_str", "docs_str_copy");
    await assertSameRows("docs_str", "docs_str_copy");
  });

  it("lists complete backups newest first, filtered by collection, and verifies them", async function () {
    const all = await runCli(["list", "--json"], s.env);
    assert.equal(all.code, 0, all.stderr);
    const list = (all.json as BackupJson).backups;
    assert.deepEqual(
      list.map((b) => b.backupId),
      [ids.str, ids.int],
    );
    for (const b of list) {
      assert.deepEqual(Object.keys(b).sort(), [
        "backupId",
        "bytes",
        "chunks",
        "collection",
        "formatVersion",
        "rows",
        "time",
      ]);
      assert.equal(b.rows, 16_500);
    }
    const one = await runCli(["list", "--collection", "docs_int", "--json"], s.env);
    assert.deepEqual(
      (one.json as BackupJson).backups.map((b) => b.backupId),
      [ids.int],
    );
    const v = await runCli(["verify", "--backup", ids.int ?? "", "--json"], s.env);
    assert.equal(v.code, 0, v.stderr);
    assert.deepEqual(v.json, {
      ok: true,
      backupId: ids.int,
      collection: "docs_int",
      rows: 16_500,
      chunks: (v.json as { chunks: number }).chunks,
      // The digest of the manifest as stored, to compare with the backup's own log line.
      manifestSha256: sha256(await store.get(manifestPath(ids.int ?? ""))),
      problems: [],
    });
  });

  it("preserves auto-ID primary keys exactly (auto-ID is turned off where the server refuses explicit keys)", async function () {
    const res = await s.client.createCollection({
      collection_name: "auto_ids",
      fields: [
        { name: "id", data_type: DataType.Int64, is_primary_key: true, autoID: true },
        { name: "v", data_type: DataType.FloatVector, dim: 2 },
      ],
    });
    assert.equal(res.code, 0);
    const ins = await s.client.insert({
      collection_name: "auto_ids",
      data: Array.from({ length: 50 }, (_, i) => ({ v: [i, 1] })),
    });
    assert.equal(ins.status.code, 0);
    await s.client.createIndex({
      collection_name: "auto_ids",
      field_name: "v",
      index_type: "FLAT",
      metric_type: "L2",
    });
    await s.client.loadCollectionSync({ collection_name: "auto_ids" });
    const { id } = await backup("auto_ids");
    const r = await runCli(["restore", "--backup", id, "--target", "auto_ids_copy", "--json"], s.env);
    assert.equal(r.code, 0, r.stderr);
    const out = r.json as { warnings: string[] };
    assert.equal(out.warnings.length, 1);
    assert.match(out.warnings[0] ?? "", /auto-ID off so that every primary key is preserved/);
    const src = await readAll(s.client, "auto_ids", "id");
    const dst = await readAll(s.client, "auto_ids_copy", "id");
    // Auto-generated keys are beyond 2^53: equality of the string keys proves no Number round trip.
    assert.ok([...src.keys()].every((k) => BigInt(k) > 2n ** 53n));
    assert.deepEqual([...dst.keys()].sort(), [...src.keys()].sort());
  });

  describe("damaged and interrupted backups", function () {
    let smallId = "";

    before(async function () {
      const res = await s.client.createCollection({
        collection_name: "small",
        enable_dynamic_field: true,
        fields: [
          { name: "id", data_type: DataType.Int64, is_primary_key: true },
          { name: "v", data_type: DataType.FloatVector, dim: 16 },
        ],
      });
      assert.equal(res.code, 0);
      const rows = Array.from({ length: 3000 }, (_, i) => ({
        id: i,
        v: Array.from({ length: 16 }, (_, j) => i + j),
        note: `n${i}`,
      }));
      assert.equal((await s.client.insert({ collection_name: "small", data: rows })).status.code, 0);
      await s.client.createIndex({
        collection_name: "small",
        field_name: "v",
        index_type: "FLAT",
        metric_type: "L2",
      });
      await s.client.loadCollectionSync({ collection_name: "small" });
      smallId = (await backup("small", ["--chunk-size-mib", "0.05"])).id;
    });

    /** A chunk re-stamped for another backup id and schema, as the worker would have written it. */
    function restamp(
      data: Buffer,
      what: string,
      identity: { backupId: string; schemaSha256: string },
    ): Buffer {
      const { header, bodyStart } = readChunkHeader(data, what);
      const json = Buffer.from(JSON.stringify({ ...header, ...identity }), "utf8");
      const pre = Buffer.from(data.subarray(0, 16));
      pre.writeUInt32LE(json.length, 12);
      return Buffer.concat([pre, json, data.subarray(bodyStart)]);
    }

    /**
     * A genuine copy of a backup under a new id (format 2 chunks name their backup and schema, so each
     * chunk is re-stamped), its schema edited by `schema` first, then anything else by `mutate`.
     */
    async function copyOf(
      id: string,
      mutate: (m: Manifest) => Promise<void> | void,
      schema?: (m: Manifest) => void,
    ): Promise<string> {
      const copy = `${id}-copy${Math.floor(Math.random() * 1e6)}`;
      const m = JSON.parse((await store.get(manifestPath(id))).toString()) as Manifest;
      m.backupId = copy;
      schema?.(m);
      const identity = { backupId: copy, schemaSha256: schemaDigest(m.schema) };
      m.chunks = await Promise.all(
        m.chunks.map(async (c, i) => {
          const file = chunkPath(copy, i + 1);
          const data = restamp(await store.get(c.file), c.file, identity);
          await store.put(file, data);
          return { ...c, file, bytes: data.length, sha256: sha256(data) };
        }),
      );
      await mutate(m);
      await store.put(manifestPath(copy), Buffer.from(JSON.stringify(m)));
      return copy;
    }

    async function collections() {
      return (await s.client.listCollections()).data.map((c) => c.name).sort();
    }

    it("refuses to restore onto an existing collection; restores beside it with --target", async function () {
      const r = await runCli(["restore", "--backup", smallId], s.env);
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr.trim().split("\n").at(-1),
        `error: restore of ${smallId} refused: collection small already exists. ` +
          "Pass --drop-existing to replace it, or --target <new name> to restore beside it.",
      );
      // Milvus Lite cannot rename, so --drop-existing is refused too (test/workerSafety.test.ts).
      const ok = await runCli(
        ["restore", "--backup", smallId, "--target", "small_restored", "--json"],
        s.env,
      );
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal((ok.json as { rows: number }).rows, 3000);
      const count = await s.client.count({ collection_name: "small_restored" });
      assert.equal(count.data, 3000);
    });

    it("fails verify and restore on a corrupt chunk and leaves no target collection", async function () {
      const bad = await copyOf(smallId, async (m) => {
        const c = m.chunks[1];
        assert.ok(c);
        const data = await store.get(c.file);
        data[data.length - 5] = (data[data.length - 5] ?? 0) ^ 0xff;
        await store.put(c.file, data);
      });
      const v = await runCli(["verify", "--backup", bad, "--json"], s.env);
      assert.equal(v.code, 1);
      assert.deepEqual((v.json as { problems: string[] }).problems, [
        `${chunkPath(bad, 2)}: SHA-256 mismatch (stored data is corrupt)`,
      ]);
      assert.match(v.stderr, /error: backup .* failed verification: .*SHA-256 mismatch/);
      const before = await collections();
      const r = await runCli(["restore", "--backup", bad, "--target", "from_corrupt"], s.env);
      assert.equal(r.code, 1);
      // Each chunk is downloaded once and checked before its insert: the partial target is dropped.
      assert.match(
        r.stderr,
        /error: restore of \S+ into from_corrupt failed: the backup is damaged: .*000002\.chunk: SHA-256 mismatch.*; restore another backup\. State: the partial collection from_corrupt was dropped\. Next: see the cause; the backup itself is unchanged\./,
      );
      assert.deepEqual(await collections(), before);
    });

    it("fails verify and restore on a missing chunk and leaves no target collection", async function () {
      const bad = await copyOf(smallId, async (m) => {
        const c = m.chunks[0];
        assert.ok(c);
        assert.equal(await store.delete(c.file), "deleted");
      });
      const v = await runCli(["verify", "--backup", bad, "--json"], s.env);
      assert.equal(v.code, 1);
      assert.deepEqual((v.json as { problems: string[] }).problems, [`${chunkPath(bad, 1)}: missing`]);
      const before = await collections();
      const r = await runCli(["restore", "--backup", bad, "--target", "from_missing"], s.env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /000001\.chunk is missing/);
      assert.deepEqual(await collections(), before);
    });

    it("fails clearly on an index type the server rejects, and builds the --index-fallback instead", async function () {
      const hnsw = await copyOf(
        smallId,
        () => undefined,
        (m) => {
          const ix = m.schema.indexes[0];
          assert.ok(ix);
          ix.indexType = "HNSW";
          ix.params = { M: "16", efConstruction: "64" };
        },
      );
      const before = await collections();
      const r = await runCli(["restore", "--backup", hnsw, "--target", "small_hnsw"], s.env);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /the server rejected index v \(HNSW, metric L2\) on field v: .*Pass --index-fallback <indexType>/,
      );
      assert.deepEqual(await collections(), before, "the partial collection must be dropped");
      const ok = await runCli(
        ["restore", "--backup", hnsw, "--target", "small_hnsw", "--index-fallback", "FLAT", "--json"],
        s.env,
      );
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual((ok.json as { indexes: unknown }).indexes, [
        { field: "v", indexType: "FLAT", fallback: true },
      ]);
      assert.equal((await s.client.count({ collection_name: "small_hnsw" })).data, 3000);
    });

    it("backs up the other collections when one fails, and exits 1 naming it", async function () {
      const r = await runCli(["backup", "--collection", "small", "--collection", "nope", "--json"], s.env);
      assert.equal(r.code, 1);
      const doc = r.json as BackupJson & { failed: { collection: string; error: string }[] };
      assert.deepEqual(
        doc.backups.map((b) => [b.collection, b.rows]),
        [["small", 3000]],
      );
      assert.deepEqual(doc.failed, [
        {
          collection: "nope",
          error: `collection nope does not exist on ${s.milvus.address}; check --collection`,
        },
      ]);
      assert.equal(
        r.stderr.trim().split("\n").at(-1),
        `error: collection nope does not exist on ${s.milvus.address}; check --collection`,
      );
    });

    it("never lists a backup killed halfway, and the next backup succeeds", async function () {
      const cli = path.join(__dirname, "..", "backup", "cli.ts");
      const child = spawn(
        process.execPath,
        [
          "-r",
          "ts-node/register/transpile-only",
          cli,
          "backup",
          "--collection",
          "docs_int",
          "--chunk-size-mib",
          "0.2",
        ],
        {
          env: { ...process.env, ...s.env, TS_NODE_TRANSPILE_ONLY: "true" },
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<void>((resolve) => {
        child.once("exit", () => {
          resolve();
        });
      });
      // Kill it once a few chunks are uploaded, i.e. in the middle of reading.
      let killedId = "";
      const deadline = Date.now() + 60_000;
      while (!killedId && Date.now() < deadline) {
        const chunks = new Map<string, number>();
        for await (const b of store.list("backups/docs_int-")) {
          const id = b.name.split("/")[1] ?? "";
          if (id !== ids.int) chunks.set(id, (chunks.get(id) ?? 0) + 1);
        }
        for (const [id, n] of chunks) if (n >= 3) killedId = id;
        if (!killedId) await new Promise((r) => setTimeout(r, 50));
      }
      child.kill("SIGKILL");
      await exited;
      assert.ok(killedId, `no chunks appeared; worker stderr: ${stderr}`);
      assert.equal(await store.exists(manifestPath(killedId)), false, "killed before the manifest");

      const list = await runCli(["list", "--collection", "docs_int", "--json"], s.env);
      assert.deepEqual(
        (list.json as BackupJson).backups.map((b) => b.backupId),
        [ids.int],
      );
      const v = await runCli(["verify", "--backup", killedId, "--json"], s.env);
      assert.equal(v.code, 1);
      assert.match(
        (v.json as { problems: string[] }).problems[0] ?? "",
        /is incomplete \(interrupted before its manifest was written\)/,
      );
      const r = await runCli(["restore", "--backup", killedId, "--target", "from_killed"], s.env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /is incomplete/);

      // The killed run's lock outlives it by at most one lease (backup/lock.ts): until then the next
      // backup is refused with the holder's name, then it runs.
      const refused = await runCli(["backup", "--collection", "docs_int"], s.env);
      if (refused.code !== 0) {
        assert.match(
          refused.stderr,
          /backup of docs_int refused: another backup or restore of docs_int is running \(backup of docs_int by .* since .*\)\. Wait for it to finish; if it died, its lock expires within 15 s\./,
        );
        await new Promise((r) => setTimeout(r, 16_000));
      }
      const next = await backup("docs_int");
      assert.equal(next.doc.backups[0]?.rows, 16_500);
      const after = await runCli(["list", "--collection", "docs_int", "--json"], s.env);
      assert.deepEqual(
        (after.json as BackupJson).backups.map((b) => b.backupId),
        [next.id, ids.int],
      );
    });
  });

  describe("errors", function () {
    const lastLine = (t: string) => t.trim().split("\n").at(-1) ?? "";

    it("reports bad flags with one line naming the flag and exit code 2", async function () {
      const cases: [string[], string][] = [
        [
          ["frobnicate"],
          'error: unknown command "frobnicate"; expected one of backup, restore, test-restore, list, verify, prune, schedule, apply-access, backup-rbac, restore-rbac, list-rbac (see --help)',
        ],
        [["backup"], "error: backup: --collection <name> is required (repeat it for several collections)"],
        [["backup", "--collection"], "error: backup: --collection needs a value (see `backup --help`)"],
        [
          ["backup", "--collection", "bad-name"],
          'error: backup: --collection "bad-name" is not a valid Milvus collection name',
        ],
        [["restore"], "error: restore: --backup <backupId> is required (ids are printed by `list`)"],
        [["restore", "--backup", "x y"], 'error: restore: --backup "x y" is not a backup id'],
        [
          ["prune", "--retention-days", "-3"],
          'error: prune: --retention-days "-3" must be a whole number >= 0',
        ],
        [
          ["prune", "--retention-days", "abc"],
          'error: prune: --retention-days "abc" must be a whole number >= 0',
        ],
        [
          ["prune", "--retention-days", "7", "--keep-last", "0"],
          'error: prune: --keep-last "0" must be a whole number >= 1',
        ],
        [
          ["list", "--bogus"],
          'error: list: unknown flag "--bogus"; list accepts --collection, --database plus the connection flags (see --help)',
        ],
        [
          ["schedule", "--cron", "61 * * * *", "--collection", "a"],
          // Worded by backup/schedule.ts (cron-parser since the schedule rework).
          'error: --cron "61 * * * *" is not a valid cron expression: minute 61 is out of range 0-59. Expected 5 fields, e.g. "0 2 * * *" (02:00 UTC daily)',
        ],
      ];
      for (const [args, message] of cases) {
        const r = await runCli(args, s.env);
        assert.equal(r.code, 2, args.join(" "));
        assert.equal(lastLine(r.stderr), message);
        assert.equal(r.stderr.trim().split("\n").length, 1, "one line, no stack trace");
      }
    });

    it("names the missing storage settings and never prints secrets", async function () {
      const noStorage = await runCli(["list"], { MILVUS_ADDRESS: s.env.MILVUS_ADDRESS });
      assert.equal(noStorage.code, 2);
      assert.equal(
        lastLine(noStorage.stderr),
        "error: list: missing or invalid storage settings: set --container or BACKUP_CONTAINER (the blob container holding backups); " +
          "set --storage-account-url or AZURE_STORAGE_ACCOUNT_URL (https://<account>.blob.core.windows.net/, uses workload identity), " +
          "or --storage-connection-string or AZURE_STORAGE_CONNECTION_STRING (Azurite/development)",
      );
      const noMilvus = await runCli(["backup", "--collection", "docs_int"], { ...s.env, MILVUS_ADDRESS: "" });
      assert.equal(noMilvus.code, 2);
      assert.match(
        lastLine(noMilvus.stderr),
        /^error: backup needs Milvus: set --milvus-address or MILVUS_ADDRESS/,
      );
      // Storage that does not answer: the message names the location and says it is transient, but
      // not the account key. (Two quick tries here; production rides out 86 s: workerBlobFaults.test.ts.)
      const dead = await runCli(
        ["list"],
        {
          BACKUP_CONTAINER: "backups",
          AZURE_STORAGE_CONNECTION_STRING: (s.env.AZURE_STORAGE_CONNECTION_STRING ?? "").replace(
            /:\d+\//,
            ":1/",
          ),
        },
        (settings) => new AzureBlobStore({ ...settings, retry: { maxTries: 2, retryDelayInMs: 10 } }),
      );
      assert.equal(dead.code, 1);
      assert.match(
        lastLine(dead.stderr),
        /^error: listing backups in http:\/\/127\.0\.0\.1:1\/devstoreaccount1\/backups failed after 2 tries over [\d.]+ s: .*ECONNREFUSED.*; the storage account was unreachable or throttling: this is transient, retry the command/,
      );
      assert.doesNotMatch(dead.stderr, /Eby8vdM02x|AccountKey=[^*]/);
    });

    it("reports an unreachable Milvus in one line without the token", async function () {
      const r = await runCli(["backup", "--collection", "docs_int", "--milvus-token", "root:s3cret-pass"], {
        ...s.env,
        MILVUS_ADDRESS: "127.0.0.1:1",
      });
      assert.equal(r.code, 1);
      assert.match(
        lastLine(r.stderr),
        /^error: cannot reach Milvus at 127\.0\.0\.1:1: .*Check --milvus-address\/MILVUS_ADDRESS/,
      );
      assert.equal(r.stderr.trim().split("\n").length, 1);
      assert.doesNotMatch(r.stderr, /s3cret/);
    });

    it("reports a missing collection and an unknown backup clearly", async function () {
      const r = await runCli(["backup", "--collection", "nope", "--json"], s.env);
      assert.equal(r.code, 1);
      assert.match(
        lastLine(r.stderr),
        /^error: collection nope does not exist on 127\.0\.0\.1:\d+; check --collection$/,
      );
      assert.deepEqual(Object.keys(r.json as object), ["error"]);
      const v = await runCli(["restore", "--backup", "nope-20260101T000000Z-000000"], s.env);
      assert.equal(v.code, 1);
      assert.match(
        lastLine(v.stderr),
        /backup nope-20260101T000000Z-000000 not found in .*; run `list` to see the available backups/,
      );
      // verify of a backup that does not exist says so, not that it "failed verification".
      const missing = await runCli(["verify", "--backup", "nope-20260101T000000Z-000000"], s.env);
      assert.equal(missing.code, 1);
      assert.match(
        lastLine(missing.stderr),
        /^error: backup nope-20260101T000000Z-000000 not found in .*; run `list` to see the available backups$/,
      );
      assert.doesNotMatch(missing.stderr, /failed verification/);
    });

    it("prints help for every command", async function () {
      for (const c of ["backup", "restore", "list", "verify", "prune", "schedule"]) {
        const r = await runCli([c, "--help"], {});
        assert.equal(r.code, 0);
        assert.ok(r.stdout.includes(`\n${c} `), r.stdout);
        assert.ok(r.stdout.includes("--storage-account-url <url>           [AZURE_STORAGE_ACCOUNT_URL]"));
      }
    });
  });

  describe("prune", function () {
    const day = 24 * 3600 * 1000;
    let pstore: AzureBlobStore;
    let olderImmutable = "";
    const env = () => ({ ...s.env, BACKUP_CONTAINER: "prune-test" });

    /** A complete backup with one chunk, taken `ageDays` ago. */
    async function fake(collection: string, ageDays: number, n: number): Promise<string> {
      const time = new Date(Date.now() - ageDays * day);
      const id = `${collection}-${time
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d+Z$/, "Z")}-00000${n}`;
      await pstore.put(chunkPath(id, 1), Buffer.from("chunk"));
      const m = {
        kind: "milvus-collection-backup",
        formatVersion: 1,
        backupId: id,
        collection,
        time: time.toISOString(),
        rows: 1,
        bytes: 5,
        chunks: [{ file: chunkPath(id, 1), rows: 1, bytes: 5, sha256: "" }],
      };
      await pstore.put(manifestPath(id), Buffer.from(JSON.stringify(m)));
      return id;
    }

    it("keeps the newest backup and --keep-last per collection, deletes the rest past retention, skips immutable blobs", async function () {
      pstore = new AzureBlobStore({
        container: "prune-test",
        connectionString: s.env.AZURE_STORAGE_CONNECTION_STRING,
      });
      await pstore.ensureContainer();
      const a = [
        await fake("a", 40, 1),
        await fake("a", 35, 2),
        await fake("a", 31, 3),
        await fake("a", 2, 4),
      ];
      const b = [await fake("b", 90, 1), await fake("b", 60, 2)];
      const c = [await fake("c", 50, 1)];
      const leftover = "a-20260101T000000Z-abcdef";
      await pstore.put(chunkPath(leftover, 1), Buffer.from("partial"));

      const dry = await runCli(
        ["prune", "--retention-days", "30", "--keep-last", "2", "--dry-run", "--json"],
        env(),
      );
      assert.equal(dry.code, 0, dry.stderr);
      const planned = dry.json as {
        dryRun: boolean;
        deleted: { backupId: string }[];
        kept: { backupId: string; reason: string }[];
      };
      assert.equal(planned.dryRun, true);
      assert.deepEqual(planned.deleted.map((d) => d.backupId).sort(), [a[0], a[1]].sort());
      assert.deepEqual(
        planned.kept.map((k) => [k.backupId, k.reason]).sort(),
        [
          [a[3], "newest complete backup of its collection"],
          [a[2], "among the newest 2"],
          [b[1], "newest complete backup of its collection"],
          [b[0], "among the newest 2"],
          [c[0], "newest complete backup of its collection"],
          // The leftover was written seconds ago: it may belong to a running backup.
          [leftover, "incomplete and younger than a day (may still be running)"],
        ].sort(),
      );
      assert.equal(await pstore.exists(manifestPath(a[0] ?? "")), true, "dry run deletes nothing");

      // One backup is under a (simulated) immutability policy; Azurite has no WORM support.
      const immutable = a[1] ?? "";
      olderImmutable = immutable;
      const guarded = (): BlobStore => ({
        location: pstore.location,
        ensureContainer: () => pstore.ensureContainer(),
        put: (n, d) => pstore.put(n, d),
        get: (n) => pstore.get(n),
        exists: (n) => pstore.exists(n),
        list: (p) => pstore.list(p),
        delete: (n): Promise<DeleteOutcome> =>
          n.includes(immutable) ? Promise.resolve("immutable") : pstore.delete(n),
        tryLease: (n, sec, holder) => pstore.tryLease(n, sec, holder),
        leaseHolder: (n) => pstore.leaseHolder(n),
      });
      const real = await runCli(
        ["prune", "--retention-days", "30", "--keep-last", "2", "--json"],
        env(),
        guarded,
      );
      assert.equal(real.code, 0, real.stderr);
      const done = real.json as {
        deleted: { backupId: string }[];
        skipped: { backupId: string; reason: string; time: string }[];
      };
      assert.deepEqual(
        done.deleted.map((d) => d.backupId),
        [a[0]],
      );
      assert.deepEqual(done.skipped, [
        {
          backupId: immutable,
          collection: "a",
          time: done.skipped[0]?.time,
          reason: "under an immutability policy or legal hold",
        },
      ]);
      assert.match(real.stderr, /"level":"warn","event":"prune.immutable"/);
      assert.equal(await pstore.exists(manifestPath(a[0] ?? "")), false);
      assert.equal(await pstore.exists(chunkPath(a[0] ?? "", 1)), false);

      const listed = await runCli(["list", "--json"], env());
      assert.deepEqual(
        (listed.json as BackupJson).backups.map((x) => x.backupId),
        [a[3], a[2], a[1], c[0], b[1], b[0]],
      );
    });

    it("removes leftovers of interrupted backups once they are a day old", async function () {
      const { prune } = await import("../backup/prune");
      const { Log } = await import("../backup/log");
      const quiet = new Log({ write: () => true }, true);
      const r = await prune(
        pstore,
        { retentionDays: 30, keepLast: 2, dryRun: false, now: new Date(Date.now() + 2 * day) },
        quiet,
      );
      // Two days later, without the immutability policy, the older backup goes too.
      assert.deepEqual(
        r.deleted.map((d) => [d.backupId, d.reason]),
        [
          [olderImmutable, "older than 30 days"],
          ["a-20260101T000000Z-abcdef", "leftover of an interrupted backup"],
        ],
      );
      assert.equal(await pstore.exists(chunkPath("a-20260101T000000Z-abcdef", 1)), false);
    });
  });
});
