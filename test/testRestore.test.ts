/**
 * test-restore against real servers (Milvus Lite 2.5 and Azurite): a good backup passes every check and
 * leaves no scratch collection; restored data that differs from the backup fails the sample check by
 * name; the scratch collection is dropped on a failed check, a failed restore and SIGTERM; and the run
 * works on a read-only view of the container (a SAS with read and list only, as the primary's
 * geo-secondary is on a dr stack) without writing anything to it.
 */
import * as assert from "node:assert/strict";
import {
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { AzureBlobStore } from "../backup/blobStore";
import { chunkPath, manifestPath, type Manifest } from "../backup/format";
import { Log } from "../backup/log";
import { Milvus } from "../backup/milvus";
import {
  ScratchRestoreStore,
  testRestore,
  type TestRestoreReport,
  type TestRestoreResult,
} from "../backup/testRestore";
import { AZURITE_ACCOUNT, AZURITE_KEY } from "../tools/local-servers";
import { runCli, seedRichCollection, startServers, type Servers } from "./support/workerEnv";

/**
 * A connection string for the backup container that can only read and list (a SAS with "rl"), as the
 * primary's geo-secondary is on a dr stack.
 */
function readOnlyConnectionString(blobEndpoint: string): string {
  const credential = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
  const sas = generateBlobSASQueryParameters(
    {
      containerName: "backups",
      permissions: ContainerSASPermissions.parse("rl"),
      startsOn: new Date(Date.now() - 60_000),
      expiresOn: new Date(Date.now() + 3600_000),
    },
    credential,
  ).toString();
  return `BlobEndpoint=${blobEndpoint};SharedAccessSignature=${sas}`;
}

/** The report's first result; fails the test when there is none. */
function first(report: TestRestoreReport): TestRestoreResult {
  const x = report.results.at(0);
  assert.ok(x, "the report has a result");
  return x;
}

describe("test-restore against Milvus Lite and Azurite", function () {
  this.timeout(180_000);
  let s: Servers;
  let store: AzureBlobStore;
  const ids: Record<string, string> = {};

  const scratchLeft = async () =>
    (await s.client.listCollections()).data.map((c) => c.name).filter((n) => n.includes("_testrestore_"));

  const blobNames = async (prefix: string) => {
    const names: string[] = [];
    for await (const b of store.list(prefix)) names.push(b.name);
    return names;
  };

  const sink = () => {
    const lines: string[] = [];
    return {
      lines,
      log: new Log({ write: (l: string) => lines.push(l) > 0 }, false, { json: true }),
    };
  };

  before(async function () {
    s = await startServers();
    store = new AzureBlobStore({
      container: "backups",
      connectionString: s.env.AZURE_STORAGE_CONNECTION_STRING,
    });
    await Promise.all([
      seedRichCollection(s.client, { name: "tr_int", rows: 1200, pk: "int64", array: "nums" }),
      seedRichCollection(s.client, { name: "tr_str", rows: 600, pk: "varchar", array: "tags" }),
    ]);
    for (const c of ["tr_int", "tr_str"]) {
      const r = await runCli(["backup", "--collection", c, "--json"], s.env);
      assert.equal(r.code, 0, r.stderr);
      ids[c] = (r.json as { backups: { backupId: string }[] }).backups[0]?.backupId ?? "";
    }
  });

  after(async function () {
    await s.stop();
  });

  it("passes every check of every backed-up collection and leaves nothing behind", async function () {
    const r = await runCli(["test-restore", "--sample-rows", "40", "--searches", "3", "--json"], s.env);
    assert.equal(r.code, 0, r.stderr);
    const report = r.json as TestRestoreReport;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.results.map((x) => [x.collection, x.backupId, x.rows, x.failed]),
      [
        ["tr_int", ids.tr_int, 1200, 0],
        ["tr_str", ids.tr_str, 600, 0],
      ],
    );
    for (const x of report.results) {
      assert.deepEqual(
        x.checks.map((c) => [c.name, c.ok]),
        [
          ["restore", true],
          ["rows", true],
          ["sample", true],
          ["search", true],
        ],
      );
      assert.equal(x.passed, 4);
      assert.ok((x.restoreSeconds ?? 0) > 0);
      assert.match(x.scratch ?? "", new RegExp(`^${x.collection}_testrestore_[0-9a-f]{8}$`));
      assert.equal(x.scratchDropped, true);
      assert.equal(x.checks[1]?.detail, `${x.rows} rows, as the manifest says`);
      assert.equal(x.checks[2]?.detail, "40 sampled rows equal the backup's, every field");
      assert.match(x.checks[3]?.detail ?? "", /^3 searches found their row/);
    }
    // The restore time is logged as its own event.
    const restored = r.stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; restoreSeconds?: number; collection?: string })
      .filter((l) => l.event === "test-restore.restored");
    assert.deepEqual(
      restored.map((l) => [l.collection, typeof l.restoreSeconds]),
      [
        ["tr_int", "number"],
        ["tr_str", "number"],
      ],
    );
    assert.deepEqual(await scratchLeft(), []);
    // Only reads: nothing about a scratch collection in the container (restore would otherwise lease
    // locks/<scratch>.lock and keep a resume record named after its target).
    assert.deepEqual(
      (await blobNames("")).filter((n) => n.includes("_testrestore_")),
      [],
    );
  });

  it("without --json prints one JSON summary line per collection; --collection narrows the run", async function () {
    const r = await runCli(["test-restore", "--collection", "tr_str", "--sample-rows", "5"], s.env);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 1);
    const x = JSON.parse(lines[0] ?? "") as TestRestoreResult;
    assert.equal(x.collection, "tr_str");
    assert.equal(x.failed, 0);
  });

  it("fails the sample check, naming the row and field, when the restored data differs; drops the scratch", async function () {
    const milvus = await Milvus.connect({ address: s.milvus.address, tls: false });
    const { log, lines } = sink();
    let scratchSeen = "";
    let report: TestRestoreReport;
    try {
      report = await testRestore(
        milvus,
        store,
        {
          collections: ["tr_str"],
          // More than the collection has: every row is compared, so the one altered row is caught.
          sampleRows: 10_000,
          searches: 1,
          beforeChecks: async (m, scratch) => {
            scratchSeen = scratch;
            const rows = await s.client.query({
              collection_name: scratch,
              filter: 'pk == "doc-0000007-7"',
              output_fields: ["*"],
            });
            const row = rows.data[0];
            assert.ok(row, "row doc-0000007-7 exists in the scratch collection");
            const up = await m.client.upsert({
              collection_name: scratch,
              data: [{ ...row, title: "tampered" }],
            });
            assert.equal(up.status.code, 0, up.status.reason);
          },
        },
        log,
      );
    } finally {
      await milvus.close();
    }
    assert.equal(report.ok, false);
    const x = first(report);
    assert.equal(x.scratch, scratchSeen);
    assert.deepEqual(
      x.checks.map((c) => [c.name, c.ok]),
      [
        ["restore", true],
        ["rows", true],
        ["sample", false],
        ["search", true],
      ],
    );
    assert.match(
      x.checks[2]?.detail ?? "",
      /^1 difference\(s\) between the backup and the restored rows: row pk="doc-0000007-7": field title differs \(backup \{"string_data":\{"data":\["title \d+ ?é*"\]\}\}, restored \{"string_data":\{"data":\["tampered"\]\}.*\)$/,
    );
    assert.equal(x.failed, 1);
    assert.equal(x.scratchDropped, true);
    assert.deepEqual(await scratchLeft(), []);
    assert.ok(lines.some((l) => l.includes('"event":"test-restore.done"')));
  });

  it("fails the search check when a restored vector differs from the backup's", async function () {
    const milvus = await Milvus.connect({ address: s.milvus.address, tls: false });
    let report: TestRestoreReport;
    try {
      report = await testRestore(
        milvus,
        store,
        {
          collections: ["tr_int"],
          sampleRows: 10_000,
          // Every row is searched: the altered one among them.
          searches: 10_000,
          beforeChecks: async (m, scratch) => {
            const key = String(2n ** 62n + 21n);
            const rows = await s.client.query({
              collection_name: scratch,
              filter: `pk == ${key}`,
              output_fields: ["*"],
            });
            const row = rows.data[0];
            assert.ok(row, `row ${key} exists in the scratch collection`);
            // Far from every seeded vector (components in [0, 1)): never among another's top 10.
            const up = await m.client.upsert({
              collection_name: scratch,
              data: [{ ...row, vec: Array.from({ length: 8 }, () => 50) }],
            });
            assert.equal(up.status.code, 0, up.status.reason);
          },
        },
        sink().log,
      );
    } finally {
      await milvus.close();
    }
    const x = first(report);
    assert.deepEqual(
      x.checks.map((c) => [c.name, c.ok]),
      [
        ["restore", true],
        ["rows", true],
        ["sample", false],
        ["search", false],
      ],
    );
    assert.match(
      x.checks[3]?.detail ?? "",
      /^1 of 1200 searches failed: a search of vec with the vector of row pk="4611686018427387925" ranks it outside the top 10, and restricted to its key it scores [\d.e+]+, not 0 \(L2 of a vector with itself\)/,
    );
    assert.deepEqual(await scratchLeft(), []);
  });

  it("drops the scratch collection when stopped by SIGTERM between the restore and the checks", async function () {
    const milvus = await Milvus.connect({ address: s.milvus.address, tls: false });
    const stop = new AbortController();
    let existed = false;
    let report: TestRestoreReport;
    try {
      report = await testRestore(
        milvus,
        store,
        {
          collections: ["tr_str"],
          signal: stop.signal,
          beforeChecks: async (m, scratch) => {
            existed = await m.exists(scratch);
            stop.abort("SIGTERM");
          },
        },
        sink().log,
      );
    } finally {
      await milvus.close();
    }
    assert.equal(existed, true);
    assert.equal(report.ok, false);
    const last = first(report).checks.at(-1);
    assert.ok(last);
    assert.equal(last.ok, false);
    assert.match(last.detail, /^checks stopped: stopped \(SIGTERM\) before counting rows$/);
    assert.equal(first(report).scratchDropped, true);
    assert.deepEqual(await scratchLeft(), []);
  });

  it("works on a read-only container (SAS with read and list only) and writes nothing there", async function () {
    const readOnly = readOnlyConnectionString(s.azurite.blobEndpoint);
    // The SAS really is read-only: a write and a lease are refused (as on the geo-secondary).
    const ro = new AzureBlobStore({ container: "backups", connectionString: readOnly });
    await assert.rejects(ro.put("probe.txt", Buffer.from("x")), /HTTP 403/);
    await assert.rejects(ro.tryLease("locks/probe.lock", 15, "probe"), /HTTP 403/);

    const r = await runCli(
      ["test-restore", "--collection", "tr_int", "--sample-rows", "20", "--searches", "2", "--json"],
      { ...s.env, AZURE_STORAGE_CONNECTION_STRING: readOnly },
    );
    assert.equal(r.code, 0, r.stderr);
    const x = first(r.json as TestRestoreReport);
    assert.equal(x.failed, 0);
    assert.equal(x.passed, 4);
    // No unserialized-lock warning: a scratch collection needs no lock at all.
    assert.doesNotMatch(r.stderr, /lock\.unavailable/);
    assert.deepEqual(await scratchLeft(), []);
  });

  it("lets a plain failover restore run from the read-only container (no lock, no progress record)", async function () {
    const readOnly = readOnlyConnectionString(s.azurite.blobEndpoint);
    const r = await runCli(["restore", "--backup", ids.tr_int, "--target", "tr_int_failover", "--json"], {
      ...s.env,
      AZURE_STORAGE_CONNECTION_STRING: readOnly,
    });
    try {
      assert.equal(r.code, 0, r.stderr);
      const summary = r.json as { rows: number; warnings: string[] };
      assert.equal(summary.rows, 1200);
      const count = await s.client.count({ collection_name: "tr_int_failover" });
      assert.equal(count.data, 1200);
      // Said, not silent: the run was unserialized and cannot be continued if interrupted.
      assert.match(r.stderr, /"lock\.unavailable"/);
      assert.match(r.stderr, /"restore\.progress-unwritable"/);
      assert.ok(
        summary.warnings.some((w) => /if it is interrupted it must be run again from the start/.test(w)),
        summary.warnings.join("\n"),
      );
      assert.deepEqual(await blobNames("progress/"), []);
    } finally {
      await s.client.dropCollection({ collection_name: "tr_int_failover" });
    }
  });

  it("fails with the restore's reason and leaves no scratch when a chunk is corrupt", async function () {
    const b = await runCli(["backup", "--collection", "tr_str", "--json"], s.env);
    assert.equal(b.code, 0, b.stderr);
    const id = (b.json as { backups: { backupId: string }[] }).backups[0]?.backupId ?? "";
    const m = JSON.parse((await store.get(manifestPath(id))).toString()) as Manifest;
    // Same size, one byte flipped at the end: the catalogue still lists the backup as intact (sizes
    // match), restore finds the SHA-256 mismatch when it downloads the chunk to insert it.
    const file = chunkPath(id, 1);
    const data = await store.get(file);
    data[data.length - 1] = (data[data.length - 1] ?? 0) ^ 0xff;
    await store.put(file, data);
    assert.equal(m.chunks[0]?.file, file);
    try {
      const r = await runCli(["test-restore", "--collection", "tr_str", "--json"], s.env);
      assert.equal(r.code, 1);
      const x = first(r.json as TestRestoreReport);
      assert.equal(x.backupId, id);
      assert.deepEqual(
        x.checks.map((c) => [c.name, c.ok]),
        [["restore", false]],
      );
      assert.match(x.checks[0]?.detail ?? "", /SHA-256 mismatch/);
      assert.match(r.stderr, /error: test restore of tr_str: restore check failed: .*SHA-256 mismatch/);
      assert.deepEqual(await scratchLeft(), []);
    } finally {
      for (const n of await blobNames(`backups/${id}/`)) await store.delete(n);
    }
  });

  it("fails for a named collection without a backup", async function () {
    const r = await runCli(["test-restore", "--collection", "nothing_here", "--json"], s.env);
    assert.equal(r.code, 1);
    const x = first(r.json as TestRestoreReport);
    assert.deepEqual(
      x.checks.map((c) => [c.name, c.ok]),
      [["backup", false]],
    );
    assert.match(x.checks[0]?.detail ?? "", /^no complete backup of nothing_here in /);
  });
});

describe("the store a test restore writes through", function () {
  it("keeps the scratch's own records in memory and refuses every other write", async function () {
    const writes: string[] = [];
    const inner = {
      location: "http://store/backups",
      put: (n: string) => {
        writes.push(n);
        return Promise.resolve();
      },
      exists: () => Promise.resolve(false),
    } as unknown as ConstructorParameters<typeof ScratchRestoreStore>[0];
    const s = new ScratchRestoreStore(inner, "docs_testrestore_0a1b2c3d");
    await s.put("progress/restores/docs_testrestore_0a1b2c3d.json", Buffer.from("{}"));
    assert.equal(await s.exists("progress/restores/docs_testrestore_0a1b2c3d.json"), true);
    assert.equal((await s.get("progress/restores/docs_testrestore_0a1b2c3d.json")).toString(), "{}");
    assert.equal(await s.delete("progress/restores/docs_testrestore_0a1b2c3d.json"), "deleted");
    const lease = await s.tryLease("locks/docs_testrestore_0a1b2c3d.lock");
    assert.ok(lease);
    await assert.rejects(
      s.put("backups/x/manifest.json", Buffer.from("{}")),
      /^WorkerError: test-restore only reads http:\/\/store\/backups; it tried to write backups\/x\/manifest\.json$/,
    );
    await assert.rejects(s.tryLease("locks/docs.lock"), /it tried to lease locks\/docs\.lock/);
    await assert.rejects(s.delete("progress/restores/docs.json"), /it tried to delete/);
    await assert.rejects(s.ensureContainer(), /it tried to create the container/);
    assert.deepEqual(writes, []);
  });
});

describe("test-restore command line", function () {
  const env = {
    MILVUS_ADDRESS: "127.0.0.1:1",
    BACKUP_CONTAINER: "backups",
    AZURE_STORAGE_CONNECTION_STRING: "x",
  };

  it("refuses a bad --sample-rows or --searches before connecting anywhere (exit 2)", async function () {
    const a = await runCli(["test-restore", "--sample-rows", "ten"], env);
    assert.equal(a.code, 2);
    assert.equal(a.stderr, 'error: test-restore: --sample-rows "ten" must be a whole number >= 0\n');
    const b = await runCli(["test-restore", "--searches", "-1"], env);
    assert.equal(b.code, 2);
    assert.equal(b.stderr, 'error: test-restore: --searches "-1" must be a whole number >= 0\n');
    const c = await runCli(["test-restore", "--collection", "bad-name"], env);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /--collection "bad-name" is not a valid Milvus collection name/);
  });
});
