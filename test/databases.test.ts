/**
 * Milvus databases end to end: backups of same-named collections in several databases, list/prune/lock
 * keeping them apart, and restores that recreate each database (or restore into another one), on a real
 * Milvus 2.3.5 standalone server with authorization on and on Milvus Lite 2.5 (which has no databases).
 */
import * as assert from "node:assert/strict";
import { DataType, MilvusClient } from "@zilliz/milvus2-sdk-node";
import { AzureBlobStore, type BlobStore, type StorageSettings } from "../backup/blobStore";
import { BACKUP_ID_PATTERN, type BackupListing } from "../backup/catalog";
import { databaseSelection, ensureDatabase, manifestDatabase, qualifiedName } from "../backup/databases";
import { UsageError } from "../backup/errors";
import { manifestPath, type Manifest } from "../backup/format";
import { lockPath, LOCK_LEASE_SECONDS } from "../backup/lock";
import { Log } from "../backup/log";
import { Milvus } from "../backup/milvus";
import { planRetention } from "../backup/prune";
import { scheduledCommands } from "../components/backupDeployment/backupWorker";
import {
  startAzurite,
  startMilvusLite,
  startMilvusStandalone,
  type AzuriteServer,
  type MilvusLiteServer,
  type MilvusStandaloneServer,
} from "../tools/local-servers";
import { parseStackConfig } from "../components/common/config";
import { configErrors, validProd } from "./support/config";
import { runCli } from "./support/workerEnv";

function quietLog(): Log {
  const sink = { write: () => true } as unknown as NodeJS.WritableStream;
  return new Log(sink, false, { json: true });
}

describe("databases: units", function () {
  it("names a collection of another database <database>.<collection> in ids and locks; default stays as before", function () {
    assert.equal(qualifiedName("default", "docs"), "docs");
    assert.equal(qualifiedName("a", "docs"), "a.docs");
    assert.equal(lockPath("docs"), "locks/docs.lock");
    assert.equal(lockPath("docs", "default"), "locks/docs.lock");
    assert.equal(lockPath("docs", "a"), "locks/a.docs.lock");
    assert.notEqual(lockPath("docs", "a"), lockPath("docs", "b"));
    assert.ok(BACKUP_ID_PATTERN.test("a.docs-20260101T000000Z-abcdef"));
    assert.equal(manifestDatabase({}), "default");
    assert.equal(manifestDatabase({ database: "a" }), "a");
  });

  it("chooses databases and collections from the command line, refusing contradictions", function () {
    assert.deepEqual(databaseSelection("backup", [], ["docs"], false), {
      kind: "collections",
      databases: ["default"],
      collections: ["docs"],
    });
    assert.deepEqual(databaseSelection("backup", ["a", "b", "a"], [], false), {
      kind: "databases",
      databases: ["a", "b"],
      collections: [],
    });
    assert.deepEqual(databaseSelection("backup", [], [], true), {
      kind: "all",
      databases: [],
      collections: [],
    });
    assert.throws(
      () => databaseSelection("backup", [], ["docs"], true),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message ===
          "backup: --all-databases backs up every collection of every database and takes no --database or " +
            "--collection; to choose, name them with --database <db> [--collection <name>] instead",
    );
    assert.throws(
      () => databaseSelection("schedule", [], [], false),
      /^UsageError: schedule: --collection <name> is required \(repeat it for several collections\)$/,
    );
    assert.throws(
      () => databaseSelection("backup", ["a-b"], [], false),
      /backup: --database "a-b" is not a valid Milvus database name/,
    );
  });

  it("prune keeps the newest backup of docs in each database, not of docs across databases", function () {
    const now = new Date("2026-06-01T00:00:00Z");
    const old = (backupId: string, database: string | undefined, days: number): BackupListing => ({
      backupId,
      collection: "docs",
      ...(database ? { database } : {}),
      time: new Date(now.getTime() - days * 86_400_000).toISOString(),
      rows: 1,
      bytes: 1,
      chunks: 1,
      formatVersion: 2,
    });
    const backups = [old("a.docs-1", "a", 100), old("b.docs-1", "b", 90), old("docs-1", undefined, 80)];
    const { remove, keep } = planRetention(backups, { retentionDays: 30, keepLast: 1, now });
    // Without the database in the grouping, a.docs-1 and b.docs-1 would be deleted as older copies of docs.
    assert.deepEqual(remove, []);
    assert.deepEqual(keep.map((k) => k.b.backupId).sort(), ["a.docs-1", "b.docs-1", "docs-1"]);
  });

  it("the scheduled CronJob names databases", function () {
    assert.deepEqual(scheduledCommands(["docs"], 30, 3, ["a", "b"]).backup, [
      "backup",
      "--database",
      "a",
      "--database",
      "b",
      "--collection",
      "docs",
    ]);
    assert.deepEqual(scheduledCommands([], 30, 3, ["*"]).backup, ["backup", "--all-databases"]);
    assert.deepEqual(scheduledCommands(["docs"], 30, 3, []).backup, ["backup", "--collection", "docs"]);
  });

  it('backup.databases: names or ["*"] alone; the stack config refuses "*" with collections', function () {
    const parsed = parseStackConfig("t", { ...validProd(), backup: { databases: ["tenant_a", "default"] } });
    assert.deepEqual(parsed.backup.databases, ["tenant_a", "default"]);
    assert.deepEqual(parseStackConfig("t", validProd()).backup.databases, []);
    const clash = configErrors({ ...validProd(), backup: { databases: ["*"], collections: ["docs"] } });
    assert.deepEqual(
      clash.map((e) => e.propertyPath),
      ["backup.databases"],
    );
    assert.match(
      clash[0]?.reason ?? "",
      /\["\*"\] alone \(every collection of every database\), with backup\.collections empty/,
    );
    assert.deepEqual(
      configErrors({ ...validProd(), backup: { databases: ["a-b"] } }).map((e) => e.propertyPath),
      ["backup.databases"],
    );
  });

  it("refuses a bad --target-database or list --database before connecting anywhere", async function () {
    const env = {
      MILVUS_ADDRESS: "127.0.0.1:1",
      BACKUP_CONTAINER: "backups",
      AZURE_STORAGE_CONNECTION_STRING: "UseDevelopmentStorage=true",
    };
    const r = await runCli(["restore", "--backup", "docs-1", "--target-database", "a.b"], env);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'error: restore: --target-database "a.b" is not a valid Milvus database name (a letter or underscore, then ' +
        "letters, digits and underscores, at most 64 characters), e.g. default\n",
    );
    const l = await runCli(["list", "--database", "9x"], env);
    assert.equal(l.code, 2);
    assert.match(l.stderr, /^error: list: --database "9x" is not a valid Milvus database name/);
  });
});

/** The error lines of stderr (the connection's plaintext warning comes before them). */
const errorLines = (stderr: string) =>
  stderr
    .split("\n")
    .filter((l) => l.startsWith("error: "))
    .map((l) => `${l}\n`)
    .join("");

interface Row {
  id: string;
  title: string;
}

/** A small collection: int64 key, a title and a 4-d vector (FLAT index, loaded). */
async function seed(client: MilvusClient, name: string, rows: Row[]): Promise<void> {
  const res = await client.createCollection({
    collection_name: name,
    fields: [
      { name: "id", data_type: DataType.Int64, is_primary_key: true },
      { name: "title", data_type: DataType.VarChar, max_length: 64 },
      { name: "v", data_type: DataType.FloatVector, dim: 4 },
    ],
  });
  assert.equal(res.code, 0, res.reason);
  const ins = await client.insert({
    collection_name: name,
    data: rows.map((r, i) => ({ id: r.id, title: r.title, v: [i, 1, 2, 3] })),
  });
  assert.equal(ins.status.code, 0, ins.status.reason);
  const ix = await client.createIndex({
    collection_name: name,
    field_name: "v",
    index_type: "FLAT",
    metric_type: "L2",
  });
  assert.equal(ix.code, 0, ix.reason);
  const load = await client.loadCollectionSync({ collection_name: name });
  assert.equal(load.code, 0, load.reason);
}

const rowsOf = (prefix: string, from: number, n: number): Row[] =>
  Array.from({ length: n }, (_, i) => ({ id: String(from + i), title: `${prefix}-${from + i}` }));

/** Every row of a collection of a database, by a client of its own (independent of the worker). */
async function readRows(address: string, token: string, database: string, name: string): Promise<Row[]> {
  const c = new MilvusClient({ address, token, database, logLevel: "error" });
  try {
    const res = await c.query({
      collection_name: name,
      filter: "id >= 0",
      output_fields: ["id", "title"],
      limit: 16_000,
      consistency_level: "Strong" as never,
    });
    assert.equal(res.status.code, 0, res.status.reason);
    return res.data
      .map((r) => ({ id: String(r.id), title: String(r.title) }))
      .sort((x, y) => Number(x.id) - Number(y.id));
  } finally {
    await c.closeConnection();
  }
}

describe("databases on Milvus 2.3.5 (authorization on) and Milvus Lite 2.5", function () {
  this.timeout(600_000);
  let milvus: MilvusStandaloneServer;
  let lite: MilvusLiteServer;
  let azurite: AzuriteServer;
  let root: MilvusClient;
  let env: NodeJS.ProcessEnv;
  let store: AzureBlobStore;
  const ids = new Map<string, string>();
  const A = rowsOf("a", 0, 30);
  const B = rowsOf("b", 100, 20);
  const ONLY_B = rowsOf("only", 500, 7);
  const D = rowsOf("default", 900, 5);

  before(async function () {
    [milvus, lite, azurite] = await Promise.all([startMilvusStandalone(), startMilvusLite(), startAzurite()]);
    root = new MilvusClient({ address: milvus.address, token: milvus.rootToken, logLevel: "error" });
    env = {
      PATH: process.env.PATH,
      MILVUS_ADDRESS: milvus.address,
      MILVUS_TOKEN: milvus.rootToken,
      BACKUP_CONTAINER: "dbs",
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    };
    store = new AzureBlobStore({ container: "dbs", connectionString: azurite.connectionString });
    for (const db of ["a", "b"]) assert.equal((await root.createDatabase({ db_name: db })).code, 0);
    await root.use({ db_name: "a" });
    await seed(root, "docs", A);
    const alias = await root.createAlias({ collection_name: "docs", alias: "a_docs_alias", db_name: "a" });
    assert.equal(alias.code, 0, alias.reason);
    await root.use({ db_name: "b" });
    await seed(root, "docs", B);
    await seed(root, "only_b", ONLY_B);
    await root.use({ db_name: "default" });
    await seed(root, "docs", D);
  });

  after(async function () {
    await root.closeConnection().catch(() => undefined);
    await Promise.all([milvus.stop(), lite.stop(), azurite.stop()]);
  });

  it("measured: 2.3.5 lists databases but cannot describe them; Lite has no databases at all", async function () {
    const m = await Milvus.connect({ address: milvus.address, token: milvus.rootToken, tls: false });
    const l = await Milvus.connect({ address: lite.address, tls: false });
    try {
      assert.deepEqual((await m.listDatabases())?.sort(), ["a", "b", "default"]);
      assert.equal(await m.describeDatabase("a"), null);
      assert.equal(await l.listDatabases(), null);
      assert.equal(await l.describeDatabase("default"), null);
    } finally {
      await Promise.all([m.close(), l.close()]);
    }
  });

  it("backs up every collection of every database, with ids, listing and manifests that keep them apart", async function () {
    const r = await runCli(["backup", "--all-databases", "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    const out = r.json as {
      backups: { backupId: string; collection: string; database?: string; rows: number }[];
    };
    const got = out.backups.map((b) => [b.database ?? "default", b.collection, b.rows]);
    assert.deepEqual(got, [
      ["default", "docs", D.length],
      ["a", "docs", A.length],
      ["b", "docs", B.length],
      ["b", "only_b", ONLY_B.length],
    ]);
    for (const b of out.backups) {
      const q = qualifiedName(b.database ?? "default", b.collection);
      assert.ok(b.backupId.startsWith(`${q}-`), `${b.backupId} starts with ${q}-`);
      ids.set(q, b.backupId);
    }
    const manifest = JSON.parse(
      (await store.get(manifestPath(ids.get("a.docs") ?? ""))).toString("utf8"),
    ) as Manifest;
    assert.equal(manifest.database, "a");
    // Measured: Milvus 2.3.5 has no DescribeDatabase, so there are no properties to record.
    assert.equal(manifest.databaseProperties, null);
    const dm = JSON.parse(
      (await store.get(manifestPath(ids.get("docs") ?? ""))).toString("utf8"),
    ) as Manifest;
    assert.equal(dm.database, "default");

    const listA = await runCli(["list", "--database", "a", "--json"], env);
    assert.equal(listA.code, 0, listA.stderr);
    const la = listA.json as { backups: BackupListing[] };
    assert.deepEqual(
      la.backups.map((b) => [b.backupId, b.database, b.collection]),
      [[ids.get("a.docs"), "a", "docs"]],
    );
    const listDocs = await runCli(["list", "--collection", "docs"], env);
    assert.deepEqual(
      listDocs.stdout
        .trim()
        .split("\n")
        .map((l) => l.split("\t").slice(0, 2).join(" "))
        .sort(),
      [`${ids.get("a.docs")} a.docs`, `${ids.get("b.docs")} b.docs`, `${ids.get("docs")} docs`].sort(),
    );
    const listDefault = await runCli(["list", "--database", "default", "--json"], env);
    assert.deepEqual(
      (listDefault.json as { backups: BackupListing[] }).backups.map((b) => b.backupId),
      [ids.get("docs")],
    );
  });

  it("locks docs of database a without blocking docs of database b", async function () {
    const lease = await store.tryLease(lockPath("docs", "a"), LOCK_LEASE_SECONDS, "a test holding a.docs");
    assert.ok(lease);
    try {
      const blocked = await runCli(["backup", "--database", "a", "--collection", "docs"], env);
      assert.equal(blocked.code, 1);
      assert.match(
        blocked.stderr,
        /^error: backup of docs refused: another backup or restore of a\.docs is running \(a test holding a\.docs\)/m,
      );
      const free = await runCli(["backup", "--database", "b", "--collection", "docs"], env);
      assert.equal(free.code, 0, free.stderr);
      assert.match(free.stdout, /^b\.docs-\d{8}T\d{6}Z-[0-9a-f]{6}\tb\.docs\t20 rows\t/);
    } finally {
      await lease.release();
    }
  });

  it("refuses a database the server does not have, naming the ones it has", async function () {
    const r = await runCli(["backup", "--database", "nosuch"], env);
    assert.equal(r.code, 1);
    assert.equal(
      errorLines(r.stderr),
      `error: backup: database nosuch does not exist on ${milvus.address}; it has default, a, b. Check --database\n`,
    );
  });

  it("after both databases are dropped, restores each backup into its own database, recreated", async function () {
    for (const [db, names] of [
      ["a", ["docs"]],
      ["b", ["docs", "only_b"]],
    ] as const) {
      await root.use({ db_name: db });
      for (const n of names) assert.equal((await root.dropCollection({ collection_name: n })).code, 0);
      await root.use({ db_name: "default" });
      assert.equal((await root.dropDatabase({ db_name: db })).code, 0);
    }
    const dbs = await root.listDatabases();
    assert.deepEqual(dbs.db_names, ["default"]);

    const ra = await runCli(["restore", "--backup", ids.get("a.docs") ?? "", "--json"], env);
    assert.equal(ra.code, 0, ra.stderr);
    assert.deepEqual(
      (({ database, databaseCreated, collection, rows }) => ({
        database,
        databaseCreated,
        collection,
        rows,
      }))(ra.json as { database: string; databaseCreated: boolean; collection: string; rows: number }),
      { database: "a", databaseCreated: true, collection: "docs", rows: A.length },
    );
    const rb = await runCli(["restore", "--backup", ids.get("b.docs") ?? ""], env);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(rb.stdout, `restored ${B.length} rows of ${ids.get("b.docs")} into b.docs\n`);
    const ro = await runCli(["restore", "--backup", ids.get("b.only_b") ?? "", "--json"], env);
    assert.equal(ro.code, 0, ro.stderr);
    assert.equal((ro.json as { databaseCreated: boolean }).databaseCreated, false);

    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "a", "docs"), A);
    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "b", "docs"), B);
    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "b", "only_b"), ONLY_B);
    // default's docs was never touched.
    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "default", "docs"), D);
    // The alias came back in its database.
    const aliases = await root.listAliases({ collection_name: "docs", db_name: "a" });
    assert.equal(aliases.status.code, 0, aliases.status.reason);
    assert.deepEqual(aliases.aliases, ["a_docs_alias"]);
  });

  it("restores into --target-database (created when missing) and refuses to overwrite there", async function () {
    const r = await runCli(["restore", "--backup", ids.get("a.docs") ?? "", "--target-database", "c"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `restored ${A.length} rows of ${ids.get("a.docs")} into c.docs\n`);
    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "c", "docs"), A);
    // Into an existing database under another name, beside its own docs.
    const beside = await runCli(
      ["restore", "--backup", ids.get("a.docs") ?? "", "--target-database", "b", "--target", "docs_from_a"],
      env,
    );
    assert.equal(beside.code, 0, beside.stderr);
    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "b", "docs_from_a"), A);
    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "b", "docs"), B);
    const again = await runCli(["restore", "--backup", ids.get("b.docs") ?? ""], env);
    assert.equal(again.code, 1);
    assert.match(
      errorLines(again.stderr),
      /^error: restore of b\.docs-\S+ refused: collection docs already exists\./,
    );
    // Replacing it works inside its database (rename aside, rename into place, drop the old one).
    const replace = await runCli(
      ["restore", "--backup", ids.get("b.docs") ?? "", "--drop-existing", "--json"],
      env,
    );
    assert.equal(replace.code, 0, replace.stderr);
    assert.equal((replace.json as { method: string }).method, "rename");
    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "b", "docs"), B);
    assert.deepEqual(await readRows(milvus.address, milvus.rootToken, "default", "docs"), D);
    await root.use({ db_name: "b" });
    const inB = (await root.listCollections()).data.map((c) => c.name).sort();
    await root.use({ db_name: "default" });
    assert.deepEqual(inB, ["docs", "docs_from_a", "only_b"]);
    assert.deepEqual(
      (await root.listCollections()).data.map((c) => c.name),
      ["docs"],
    );
  });

  it("a failed restore drops the database it created", async function () {
    // Chunks fail to download: the collection is created, then the restore fails and cleans up.
    const failing = (s: StorageSettings): BlobStore => {
      const real = new AzureBlobStore(s);
      return new Proxy(real, {
        get(target, prop, receiver) {
          if (prop === "get")
            return (name: string) =>
              name.includes("/chunks/")
                ? Promise.reject(new Error("injected: chunk download failed"))
                : target.get(name);
          return Reflect.get(target, prop, receiver) as unknown;
        },
      });
    };
    const r = await runCli(
      ["restore", "--backup", ids.get("a.docs") ?? "", "--target-database", "e"],
      env,
      failing,
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /injected: chunk download failed/);
    assert.ok(!(await root.listDatabases()).db_names.includes("e"), "database e was dropped");
  });

  it("creating a database with recorded properties on 2.3.5 warns that they cannot be confirmed", async function () {
    const m = await Milvus.connect({ address: milvus.address, token: milvus.rootToken, tls: false });
    try {
      const out = await ensureDatabase(
        m,
        "props",
        { "database.max.collections": "5" },
        quietLog(),
        "restore of x",
      );
      assert.deepEqual(out, {
        database: "props",
        created: true,
        warnings: [
          "database props was created, but this server cannot describe databases, so its properties " +
            "(database.max.collections) could not be confirmed; set them by hand if they matter (alter_database_properties)",
        ],
      });
      const again = await ensureDatabase(m, "props", {}, quietLog(), "restore of x");
      assert.deepEqual(again, { database: "props", created: false, warnings: [] });
    } finally {
      await m.close();
    }
  });

  it("Milvus Lite: refuses a database other than default, restores a database's backup with --target-database default", async function () {
    const liteEnv = { ...env, MILVUS_ADDRESS: lite.address, MILVUS_TOKEN: "" };
    const b = await runCli(["backup", "--database", "a", "--collection", "docs"], liteEnv);
    assert.equal(b.code, 1);
    assert.equal(
      errorLines(b.stderr),
      `error: backup: the server at ${lite.address} has no databases (Milvus Lite, or a Milvus without databases), ` +
        'so database a cannot exist there; only "default" can be used\n',
    );
    const r = await runCli(["restore", "--backup", ids.get("a.docs") ?? ""], liteEnv);
    assert.equal(r.code, 1);
    assert.equal(
      errorLines(r.stderr),
      `error: restore of ${ids.get("a.docs")} refused: the backup belongs to database a, but the server at ${lite.address} ` +
        "has no databases (Milvus Lite, or a Milvus without databases). Nothing was changed. Restore into its default " +
        "database with --target-database default, or restore onto a Milvus server with databases.\n",
    );
    const ok = await runCli(
      ["restore", "--backup", ids.get("a.docs") ?? "", "--target-database", "default"],
      liteEnv,
    );
    assert.equal(ok.code, 0, ok.stderr);
    const c = new MilvusClient({ address: lite.address, logLevel: "error" });
    try {
      const res = await c.query({
        collection_name: "docs",
        filter: "id >= 0",
        output_fields: ["id", "title"],
        limit: 100,
      });
      assert.deepEqual(
        res.data
          .map((x) => ({ id: String(x.id), title: String(x.title) }))
          .sort((p, q) => Number(p.id) - Number(q.id)),
        A,
      );
    } finally {
      await c.closeConnection();
    }
  });
});
