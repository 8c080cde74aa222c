/**
 * Schema features of Milvus 2.5/2.6 through a backup and a restore, on every server lane that has them
 * (test/support/lanes.ts): nullable fields, default values, collection properties, consistency level
 * and shard count, auto-ID keys and BM25 function output fields.
 */
import * as assert from "node:assert/strict";
import { ConsistencyLevelEnum, DataType, MilvusClient } from "@zilliz/milvus2-sdk-node";
import { columnSpecs } from "../backup/columns";
import { manifestPath, type Manifest } from "../backup/format";
import type { AzureBlobStore } from "../backup/blobStore";
import { bm25Schema, LANES, needs, startLaneEnv, type LaneEnv } from "./support/lanes";
import { runCli } from "./support/workerEnv";

async function rowsOf(client: MilvusClient, name: string, fields: string[]) {
  const state = await client.getLoadState({ collection_name: name });
  if ((state.state as string) !== "LoadStateLoaded")
    await client.loadCollectionSync({ collection_name: name });
  const q = await client.query({
    collection_name: name,
    filter: "id >= 0",
    output_fields: fields,
    consistency_level: ConsistencyLevelEnum.Strong,
  });
  assert.equal(q.status.code, 0, q.status.reason);
  return q.data
    .map((r) => Object.fromEntries(fields.map((f) => [f, r[f]])))
    .sort((a, b) => Number(a.id) - Number(b.id));
}

for (const lane of LANES) {
  describe(`schema features on server lane ${lane.name}`, function () {
    this.timeout(180_000);
    let lanes: LaneEnv;
    let client: MilvusClient;
    let env: NodeJS.ProcessEnv;
    let store: AzureBlobStore;

    before(async function () {
      lanes = await startLaneEnv(lane);
      ({ client, env, store } = lanes);
    });

    after(async function () {
      await lanes.stop();
    });

    async function roundTrip(name: string) {
      const b = await runCli(["backup", "--collection", name, "--json"], env);
      assert.equal(b.code, 0, b.stderr);
      const id = (b.json as { backups: { backupId: string }[] }).backups[0]?.backupId ?? "";
      const r = await runCli(["restore", "--backup", id, "--target", `${name}_copy`, "--json"], env);
      assert.equal(r.code, 0, r.stderr);
      const manifest = JSON.parse((await store.get(manifestPath(id))).toString()) as Manifest;
      return { manifest, summary: r.json as { rows: number; warnings: string[] }, stderr: r.stderr };
    }

    async function make(name: string, req: object, rows: object[]) {
      const c = await client.createCollection({ collection_name: name, ...req } as Parameters<
        typeof client.createCollection
      >[0]);
      assert.equal(c.code, 0, c.reason);
      if (rows.length > 0) {
        const ins = await client.insert({ collection_name: name, data: rows as never });
        assert.equal(ins.status.code, 0, ins.status.reason);
      }
      const vector = (req as { fields: { name: string; data_type: DataType }[] }).fields.find(
        (f) => f.data_type === DataType.FloatVector,
      );
      if (vector) {
        await client.createIndex({
          collection_name: name,
          field_name: vector.name,
          index_type: "FLAT",
          metric_type: "L2",
        });
        await client.loadCollectionSync({ collection_name: name });
      }
    }

    it("keeps nulls null and default values in the restored schema", async function () {
      needs(this, lane, "nullable and default values", "nullable", "defaultValue");
      await make(
        "s_nulls",
        {
          fields: [
            { name: "id", data_type: DataType.Int64, is_primary_key: true },
            { name: "note", data_type: DataType.VarChar, max_length: 32, nullable: true },
            { name: "level", data_type: DataType.Int32, default_value: 7 },
            { name: "v", data_type: DataType.FloatVector, dim: 2 },
          ],
        },
        [
          { id: 1, note: null, level: 3, v: [1, 0] },
          { id: 2, note: "two", v: [0, 1] },
          { id: 3, note: null, v: [1, 1] },
        ],
      );
      const { summary } = await roundTrip("s_nulls");
      assert.equal(summary.rows, 3);
      const want = [
        { id: "1", note: null, level: 3 },
        { id: "2", note: "two", level: 7 },
        { id: "3", note: null, level: 7 },
      ];
      assert.deepStrictEqual(await rowsOf(client, "s_nulls", ["id", "note", "level"]), want);
      assert.deepStrictEqual(await rowsOf(client, "s_nulls_copy", ["id", "note", "level"]), want);
      const d = await client.describeCollection({ collection_name: "s_nulls_copy" });
      const field = (n: string) => d.schema.fields.find((f) => f.name === n);
      assert.equal(field("note")?.nullable, true);
      assert.equal(field("level")?.default_value, 7);
      // A row inserted into the restored collection without `level` gets the default.
      const ins = await client.insert({
        collection_name: "s_nulls_copy",
        data: [{ id: 4, note: "x", v: [0, 0] }],
      });
      assert.equal(ins.status.code, 0, ins.status.reason);
      assert.deepStrictEqual((await rowsOf(client, "s_nulls_copy", ["id", "level"]))[3], {
        id: "4",
        level: 7,
      });
    });

    it("keeps the TTL and mmap collection properties", async function () {
      needs(this, lane, "collection properties", "ttlProperty", "mmapProperty");
      await make(
        "s_props",
        {
          properties: { "collection.ttl.seconds": "86400", "mmap.enabled": "true" },
          fields: [
            { name: "id", data_type: DataType.Int64, is_primary_key: true },
            { name: "v", data_type: DataType.FloatVector, dim: 2 },
          ],
        },
        [{ id: 1, v: [1, 2] }],
      );
      const { manifest } = await roundTrip("s_props");
      assert.deepEqual(manifest.schema.properties, {
        "collection.ttl.seconds": "86400",
        "mmap.enabled": "true",
      });
      const d = await client.describeCollection({ collection_name: "s_props_copy" });
      const props = Object.fromEntries(
        (d.properties as { key: string; value: string }[]).map((p) => [p.key, p.value]),
      );
      assert.equal(props["collection.ttl.seconds"], "86400");
      assert.equal(props["mmap.enabled"], "true");
    });

    it("keeps the consistency level and the shard count", async function () {
      needs(this, lane, "consistency level and shards", "consistencyLevel", "shardsNum");
      await make(
        "s_shards",
        {
          consistency_level: "Session",
          shards_num: 2,
          fields: [
            { name: "id", data_type: DataType.Int64, is_primary_key: true },
            { name: "v", data_type: DataType.FloatVector, dim: 2 },
          ],
        },
        [{ id: 1, v: [1, 2] }],
      );
      const { manifest } = await roundTrip("s_shards");
      assert.equal(manifest.schema.consistencyLevel, "Session");
      assert.equal(manifest.schema.shardsNum, 2);
      const d = await client.describeCollection({ collection_name: "s_shards_copy" });
      assert.equal(d.consistency_level, "Session");
      assert.equal(d.shards_num, 2);
    });

    // Milvus 2.3.5 keeps the property allow_insert_auto_id=true yet refuses explicit keys ("the number of
    // fields is less than needed", measured): restore.ts probes with an insert instead of trusting it.
    it("keeps every auto-ID key (turning auto-ID off, with a warning, where explicit keys are refused)", async function () {
      await make(
        "s_auto",
        {
          fields: [
            { name: "id", data_type: DataType.Int64, is_primary_key: true, autoID: true },
            { name: "v", data_type: DataType.FloatVector, dim: 2 },
          ],
        },
        Array.from({ length: 25 }, (_, i) => ({ v: [i, 1] })),
      );
      const before = await rowsOf(client, "s_auto", ["id", "v"]);
      assert.equal(before.length, 25);
      const { summary } = await roundTrip("s_auto");
      assert.deepStrictEqual(await rowsOf(client, "s_auto_copy", ["id", "v"]), before);
      const d = await client.describeCollection({ collection_name: "s_auto_copy" });
      const autoId = d.schema.fields.find((f) => f.name === "id")?.autoID;
      if (autoId) {
        assert.deepEqual(summary.warnings, []);
      } else {
        // Measured on Milvus 2.3.5 and both Lites: allow_insert_auto_id is not honoured, so auto-ID goes.
        assert.deepEqual(summary.warnings, [
          "this server refuses explicit primary keys in auto-ID collections: s_auto_copy was created with auto-ID off " +
            "so that every primary key is preserved; new inserts must now supply the primary key",
        ]);
      }
    });

    (lane.name === "lite-2.5" ? it : it.skip)(
      "refuses to back up a BM25 collection whose function the server leaves out of describeCollection",
      async function () {
        await make("s_bm25_lost", bm25Schema(), [{ id: 1, text: "fox" }]);
        const b = await runCli(["backup", "--collection", "s_bm25_lost", "--json"], env);
        assert.equal(b.code, 1);
        assert.match(
          b.stderr,
          /field sparse is the output of a function, but [\d.:]+ did not report that function in describeCollection/,
        );
        const list = await runCli(["list", "--json"], env);
        assert.deepEqual(
          (list.json as { backups: { collection: string }[] }).backups.filter(
            (x) => x.collection === "s_bm25_lost",
          ),
          [],
        );
      },
    );

    it("restores a BM25 function without storing its output, and full-text search works after restore", async function () {
      needs(this, lane, "BM25 function", "functions");
      const texts = ["the quick brown fox", "a lazy dog sleeps", "foxes and dogs", "nothing here"];
      await make(
        "s_bm25",
        bm25Schema(),
        texts.map((text, id) => ({ id, text })),
      );
      const ix = await client.createIndex({
        collection_name: "s_bm25",
        field_name: "sparse",
        index_type: "SPARSE_INVERTED_INDEX",
        metric_type: "BM25",
      });
      assert.equal(ix.code, 0, ix.reason);
      await client.loadCollectionSync({ collection_name: "s_bm25" });
      const { manifest, summary } = await roundTrip("s_bm25");
      // The output column was never read, so it cannot have been inserted: the server computed it again.
      assert.equal(summary.rows, 4);
      assert.deepEqual(manifest.columns, ["id", "text"]);
      assert.deepEqual(
        manifest.schema.functions.map((f) => [f.name, f.type, f.inputFieldNames, f.outputFieldNames]),
        [["text_bm25", "BM25", ["text"], ["sparse"]]],
      );
      const d = await client.describeCollection({ collection_name: "s_bm25_copy" });
      const fns = d.schema.functions as { name: string; type: string; output_field_names: string[] }[];
      assert.deepEqual(
        fns.map((f) => [f.name, f.type, f.output_field_names]),
        [["text_bm25", "BM25", ["sparse"]]],
      );
      // milvus-lite 3.2.2 releases a collection on rename (see test/lanes.test.ts): load it to search.
      await client.loadCollectionSync({ collection_name: "s_bm25_copy" });
      const search = await client.search({
        collection_name: "s_bm25_copy",
        data: ["fox"],
        anns_field: "sparse",
        limit: 2,
        metric_type: "BM25",
        output_fields: ["id"],
      } as Parameters<typeof client.search>[0]);
      assert.equal(search.status.code, 0, search.status.reason);
      assert.deepEqual(
        search.results.map((r) => r.id),
        ["0"],
      );
    });
  });
}

describe("BM25 function output fields in a backup (no server)", function () {
  it("captures the function and leaves its output field out of the stored columns", function () {
    // Shaped like a Milvus 2.5 describeCollection answer as the backup captures it: the output field
    // carries is_function_output (milvus-io/milvus pkg proto schema.proto FieldSchema.is_function_output)
    // and the function lists it in output_field_names (schema.proto FunctionSchema).
    const fields = [
      { name: "id", dataType: "Int64", isPrimaryKey: true },
      { name: "text", dataType: "VarChar", typeParams: { max_length: "200", enable_analyzer: "true" } },
      { name: "sparse", dataType: "SparseFloatVector", isFunctionOutput: true },
    ].map((f) => ({
      fieldID: "",
      autoID: false,
      description: "",
      typeParams: {},
      defaultValue: null,
      isPartitionKey: false,
      isClusteringKey: false,
      nullable: false,
      isPrimaryKey: false,
      isFunctionOutput: false,
      ...f,
    }));
    assert.deepEqual(
      columnSpecs(fields, true).map((s) => s.name),
      ["id", "text", "$meta"],
    );
  });
});
