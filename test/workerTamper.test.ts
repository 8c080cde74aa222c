/**
 * Edited manifests and chunks (backup format 2): every manifest edit that used to go unnoticed
 * (a dropped, duplicated or foreign chunk entry, `dim` lowered, a field removed, the key type changed)
 * and a corrupt gzip stream with a recomputed checksum must fail `verify` and `restore`, leaving no
 * collection behind. Real Milvus Lite and Azurite.
 */
import * as assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { DataType } from "@zilliz/milvus2-sdk-node";
import { AzureBlobStore } from "../backup/blobStore";
import { manifestPath, readChunkHeader, sha256, type Manifest } from "../backup/format";
import { runCli, startServers, type Servers } from "./support/workerEnv";

const lastLine = (t: string) => t.trim().split("\n").at(-1) ?? "";

describe("edited backups fail verify and restore (format 2: self-describing chunks)", function () {
  this.timeout(180_000);
  let s: Servers;
  let store: AzureBlobStore;

  before(async function () {
    s = await startServers();
    store = new AzureBlobStore({
      container: "backups",
      connectionString: s.env.AZURE_STORAGE_CONNECTION_STRING,
    });
    const res = await s.client.createCollection({
      collection_name: "docs",
      fields: [
        { name: "id", data_type: DataType.Int64, is_primary_key: true },
        { name: "text", data_type: DataType.VarChar, max_length: 128 },
        { name: "v", data_type: DataType.FloatVector, dim: 16 },
      ],
    });
    assert.equal(res.code, 0, res.reason);
    const data = Array.from({ length: 3000 }, (_, i) => ({
      id: i,
      text: `document ${i % 50} of the collection, repeated text compresses well`,
      v: Array.from({ length: 16 }, (_, j) => (i * j) % 11),
    }));
    assert.equal((await s.client.insert({ collection_name: "docs", data })).status.code, 0);
    await s.client.createIndex({
      collection_name: "docs",
      field_name: "v",
      index_type: "FLAT",
      metric_type: "L2",
    });
    await s.client.loadCollectionSync({ collection_name: "docs" });
  });

  after(async function () {
    await s.stop();
  });

  /** A fresh backup of `docs` in several chunks. */
  async function freshBackup(): Promise<Manifest> {
    const r = await runCli(["backup", "--collection", "docs", "--chunk-size-mib", "0.05", "--json"], s.env);
    assert.equal(r.code, 0, r.stderr);
    const id = (r.json as { backups: { backupId: string }[] }).backups[0]?.backupId ?? "";
    const m = JSON.parse((await store.get(manifestPath(id))).toString()) as Manifest;
    assert.equal(m.formatVersion, 2);
    assert.ok(m.chunks.length >= 4, `${m.chunks.length} chunks`);
    return m;
  }
  const save = (m: Manifest) => store.put(manifestPath(m.backupId), Buffer.from(JSON.stringify(m)));
  const names = async () => (await s.client.listCollections()).data.map((c) => c.name).sort();

  /** verify's problems and restore's last line for an edited backup; the restore must leave nothing. */
  async function verdicts(m: Manifest, target: string) {
    const v = await runCli(["verify", "--backup", m.backupId, "--json"], s.env);
    assert.equal(v.code, 1, "verify must fail");
    const before = await names();
    const r = await runCli(["restore", "--backup", m.backupId, "--target", target], s.env);
    assert.equal(r.code, 1, "restore must fail");
    assert.deepEqual(await names(), before, "restore left a collection behind");
    return { problems: (v.json as { problems: string[] }).problems, restore: lastLine(r.stderr) };
  }

  it("writes chunks that carry their backup, position, keys and schema digest", async function () {
    const m = await freshBackup();
    const first = m.chunks[0];
    assert.ok(first);
    const { header } = readChunkHeader(await store.get(first.file), first.file);
    assert.equal(header.backupId, m.backupId);
    assert.equal(header.index, 1);
    assert.equal(header.firstKey, "0");
    assert.match(header.schemaSha256 ?? "", /^[0-9a-f]{64}$/);
    const v = await runCli(["verify", "--backup", m.backupId, "--json"], s.env);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(
      (v.json as { manifestSha256: string }).manifestSha256,
      sha256(await store.get(manifestPath(m.backupId))),
    );
  });

  it("a dropped last chunk entry with the total lowered: the chunk is still there, unlisted", async function () {
    const m = await freshBackup();
    const dropped = m.chunks.pop();
    assert.ok(dropped);
    m.rows -= dropped.rows;
    await save(m);
    const { problems, restore } = await verdicts(m, "t_dropped");
    assert.deepEqual(problems, [`${dropped.file}: under the backup but not in its manifest`]);
    assert.match(restore, /refused, the backup is damaged: .*under the backup but not in its manifest/);
  });

  it("a duplicated chunk entry", async function () {
    const m = await freshBackup();
    const dup = m.chunks[0];
    assert.ok(dup);
    m.chunks.push({ ...dup });
    m.rows += dup.rows;
    await save(m);
    const { problems, restore } = await verdicts(m, "t_dup");
    const n = m.chunks.length;
    assert.ok(
      problems.includes(
        `chunk entry ${n} names ${dup.file}, expected ${dup.file.replace(/\d{6}\.chunk$/, `${String(n).padStart(6, "0")}.chunk`)}`,
      ),
      problems.join("\n"),
    );
    assert.ok(
      problems.includes(`${dup.file}: is chunk 1 of its backup, listed as chunk ${n}`),
      problems.join("\n"),
    );
    assert.match(restore, /the backup is damaged: chunk entry \d+ names/);
  });

  it("a chunk entry pointing at another backup's blob", async function () {
    const other = await freshBackup();
    const m = await freshBackup();
    const foreign = other.chunks[1];
    assert.ok(foreign);
    m.chunks[1] = { ...foreign };
    await save(m);
    const { problems, restore } = await verdicts(m, "t_foreign");
    // Outside its own folder the blob does not count as present, whatever it holds.
    assert.deepEqual(
      [...problems].sort(),
      [
        `${foreign.file}: missing`,
        `${m.chunks[0]?.file.replace("000001", "000002") ?? ""}: under the backup but not in its manifest`,
        `chunk entry 2 names ${foreign.file}, expected ${m.chunks[0]?.file.replace("000001", "000002") ?? ""}`,
      ].sort(),
    );
    assert.match(restore, /refused, the backup is damaged: .*000002\.chunk is missing/);
  });

  it("dim lowered, a field removed, the key type changed", async function () {
    const edits: [string, (m: Manifest) => void, RegExp][] = [
      [
        "dim",
        (m) => {
          const v = m.schema.fields.find((f) => f.name === "v");
          assert.ok(v);
          v.typeParams.dim = "8";
        },
        /column v has dim 16, the manifest's schema says 8/,
      ],
      [
        "removed field",
        (m) => {
          m.schema.fields = m.schema.fields.filter((f) => f.name !== "text");
          m.columns = m.columns.filter((c) => c !== "text");
        },
        /column text is not a field of the manifest's schema/,
      ],
      [
        "key type",
        (m) => {
          const id = m.schema.fields.find((f) => f.name === "id");
          assert.ok(id);
          id.dataType = "VarChar";
          id.typeParams.max_length = "64";
        },
        /column id is Int64, the manifest's schema says VarChar/,
      ],
    ];
    for (const [what, edit, expected] of edits) {
      const m = await freshBackup();
      edit(m);
      await save(m);
      const { problems, restore } = await verdicts(m, `t_${what.replace(/ /g, "_")}`);
      assert.ok(
        problems.some((p) => expected.test(p)),
        `${what}: ${problems.join("\n")}`,
      );
      assert.ok(
        problems.some((p) => /was written for a different schema than the manifest now describes/.test(p)),
        what,
      );
      assert.match(
        restore,
        /the backup is damaged: .*(different schema|is not a field|dim 16|is Int64)/,
        what,
      );
    }
  });

  it("a format version lowered to switch the checks off, and a renamed collection", async function () {
    const down = await freshBackup();
    const v = down.schema.fields.find((f) => f.name === "v");
    assert.ok(v);
    v.typeParams.dim = "8";
    down.formatVersion = 1;
    await save(down);
    const lowered = await verdicts(down, "t_downgrade");
    assert.ok(
      lowered.problems.includes(
        `${down.chunks[0]?.file ?? ""}: is a format-2 chunk, but the manifest claims format 1 (the manifest was edited)`,
      ),
      lowered.problems.join("\n"),
    );
    assert.match(
      lowered.restore,
      /the backup is damaged: .*is a format-2 chunk, but the manifest claims format 1/,
    );

    // The collection name is restore's default target: an edit would aim --drop-existing elsewhere.
    const renamed = await freshBackup();
    renamed.collection = "payments";
    await save(renamed);
    const moved = await verdicts(renamed, "t_renamed");
    assert.ok(
      moved.problems.includes(
        "manifest names collection payments, but its schema is docs's (the manifest was edited)",
      ),
      moved.problems.join("\n"),
    );
  });

  it("an edit the chunks cannot see (the snapshot time) fails against the digest the backup logged", async function () {
    const r = await runCli(["backup", "--collection", "docs", "--chunk-size-mib", "0.05", "--json"], s.env);
    assert.equal(r.code, 0, r.stderr);
    const logged = (r.json as { backups: { backupId: string; manifestSha256: string }[] }).backups[0];
    assert.ok(logged);
    // The same digest is in the backup's `backup.done` log line.
    assert.match(r.stderr, new RegExp(`"event":"backup.done".*"manifestSha256":"${logged.manifestSha256}"`));
    const intact = await runCli(
      ["verify", "--backup", logged.backupId, "--manifest-sha256", logged.manifestSha256, "--json"],
      s.env,
    );
    assert.equal(intact.code, 0, intact.stderr);
    const m = JSON.parse((await store.get(manifestPath(logged.backupId))).toString()) as Manifest;
    m.time = "2020-01-01T00:00:00.000Z";
    await save(m);
    const edited = sha256(await store.get(manifestPath(logged.backupId)));
    const v = await runCli(
      ["verify", "--backup", logged.backupId, "--manifest-sha256", logged.manifestSha256, "--json"],
      s.env,
    );
    assert.equal(v.code, 1);
    assert.deepEqual((v.json as { problems: string[] }).problems, [
      `manifest SHA-256 ${edited} differs from ${logged.manifestSha256}, the one its backup logged: the manifest was changed after the backup`,
    ]);
    const restore = await runCli(
      [
        "restore",
        "--backup",
        logged.backupId,
        "--target",
        "t_time",
        "--manifest-sha256",
        logged.manifestSha256,
      ],
      s.env,
    );
    assert.equal(restore.code, 1);
    assert.equal(
      lastLine(restore.stderr),
      `error: restore of ${logged.backupId} refused: manifest SHA-256 ${edited} differs from ${logged.manifestSha256}, the one its backup logged: the manifest was changed after the backup. Nothing was changed.`,
    );
    const bad = await runCli(["verify", "--backup", logged.backupId, "--manifest-sha256", "XYZ"], s.env);
    assert.equal(bad.code, 2);
  });

  it("a corrupt gzip stream whose checksum was recomputed", async function () {
    const m = await freshBackup();
    const entry = m.chunks[0];
    assert.ok(entry);
    const data = await store.get(entry.file);
    const { header, bodyStart } = readChunkHeader(data, entry.file);
    const text = header.columns.find((c) => c.name === "text");
    assert.equal(text?.compression, "gzip", "the text column is stored compressed");
    assert.ok(text);
    // Flip bytes inside the deflate stream (not its header), then make the stored checksum agree.
    const at = bodyStart + text.offset + Math.floor(text.length / 2);
    for (let i = 0; i < 8; i++) data[at + i] = (data[at + i] ?? 0) ^ 0x5a;
    assert.throws(() =>
      gunzipSync(data.subarray(bodyStart + text.offset, bodyStart + text.offset + text.length)),
    );
    await store.put(entry.file, data);
    entry.sha256 = sha256(data);
    await save(m);
    const { problems, restore } = await verdicts(m, "t_gzip");
    assert.equal(problems.length, 1, problems.join("\n"));
    assert.match(problems[0] ?? "", /incorrect|invalid|unexpected end|wrong length/i);
    assert.match(
      restore,
      /restore of \S+ into t_gzip failed: .*State: (the partial collection t_gzip was dropped|nothing was created)/,
    );
  });
});
