/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-explicit-any --
 * Rendered objects are untyped JSON. */
/**
 * Users and roles are backed up on every scheduled run and kept by the backups' retention: the CronJob
 * runs `backup-rbac` as its second init container (after the collections, before prune), and prune
 * applies --retention-days/--keep-last to the RBAC documents on their own, never deleting a blob under
 * rbac/ it cannot read. Retention runs against a real Azurite.
 */
import * as assert from "node:assert/strict";
import { AzureBlobStore, type BlobStore, type DeleteOutcome } from "../backup/blobStore";
import { Log } from "../backup/log";
import { prune, readStorageTime, type RbacPruneResult } from "../backup/prune";
import { newRbacId, RBAC_FORMAT_VERSION, RBAC_KIND, rbacPath, type RbacDocument } from "../backup/rbac";
import { kubernetesObjects, renderStack, type RenderResult } from "../tools/offline-runtime";
import { startAzurite, type AzuriteServer } from "../tools/local-servers";
import { runCli } from "./support/workerEnv";

type Obj = Record<string, any>;

const DAY = 24 * 3600 * 1000;
const IMMUTABLE = "under an immutability policy or legal hold";

/**
 * What is wrong with a backup pod's RBAC step: it must be the second init container, named
 * backup-rbac, run exactly `backup-rbac`, and be the backup container in every other respect (image,
 * env, volume mounts, resources, security context), so it reaches the same Milvus and storage.
 */
function rbacStepProblems(podSpec: Obj): string[] {
  const init = (podSpec.initContainers ?? []) as Obj[];
  const problems: string[] = [];
  const names = init.map((c) => String(c.name));
  if (JSON.stringify(names) !== JSON.stringify(["backup", "backup-rbac"]))
    problems.push(`init containers are ${JSON.stringify(names)}, not ["backup","backup-rbac"]`);
  const backup = init.find((c) => c.name === "backup");
  const rbac = init.find((c) => c.name === "backup-rbac");
  if (!backup || !rbac) return problems;
  if (JSON.stringify(rbac.args) !== JSON.stringify(["backup-rbac"]))
    problems.push(`backup-rbac args are ${JSON.stringify(rbac.args)}`);
  const { name: _b, args: _ba, ...backupRest } = backup;
  const { name: _r, args: _ra, ...rbacRest } = rbac;
  for (const key of new Set([...Object.keys(backupRest), ...Object.keys(rbacRest)])) {
    if (JSON.stringify(backupRest[key]) !== JSON.stringify(rbacRest[key]))
      problems.push(`backup-rbac's ${key} differs from the backup container's`);
  }
  return problems;
}

describe("RBAC backup on schedule: the CronJob", function () {
  let renders: { prod: RenderResult; dr: RenderResult };
  const podSpec = (r: RenderResult): Obj => {
    const cron = kubernetesObjects(r)
      .map((o) => o.inputs as Obj)
      .filter((o) => o.kind === "CronJob" && o.metadata?.name === "milvus-backup");
    assert.equal(cron.length, 1);
    return cron[0]?.spec.jobTemplate.spec.template.spec as Obj;
  };

  before(async function () {
    this.timeout(300_000);
    renders = { prod: await renderStack("prod"), dr: await renderStack("dr") };
  });

  it("runs backup-rbac after the backup and before prune, as the backup container does, on every stack", function () {
    for (const [stack, r] of Object.entries(renders)) {
      const spec = podSpec(r);
      assert.deepEqual(rbacStepProblems(spec), [], stack);
      const rbac = (spec.initContainers as Obj[])[1] ?? {};
      assert.deepEqual(rbac.args, ["backup-rbac"]);
      // Exact where it matters: the worker's token, the CA it checks Milvus with, the storage.
      assert.deepEqual(
        (rbac.env as Obj[]).map((e) => e.name),
        ["MILVUS_ADDRESS", "BACKUP_CONTAINER", "AZURE_STORAGE_ACCOUNT_URL", "MILVUS_TOKEN", "MILVUS_CA_FILE"],
      );
      assert.deepEqual((rbac.env as Obj[])[3]?.valueFrom, {
        secretKeyRef: { name: "milvus-backup-credentials", key: "MILVUS_TOKEN" },
      });
      assert.deepEqual(rbac.volumeMounts, [
        { name: "tmp", mountPath: "/tmp" },
        { name: "milvus-ca", mountPath: "/etc/milvus-ca", readOnly: true },
      ]);
      assert.deepEqual(
        (spec.containers as Obj[]).map((c) => c.args[0]),
        ["prune"],
      );
    }
  });

  it("the check names a missing, misplaced, mis-argued or differently configured RBAC step", function () {
    const spec = podSpec(renders.prod);
    const broken = (edit: (s: Obj) => void): string[] => {
      const s = structuredClone(spec);
      edit(s);
      return rbacStepProblems(s);
    };
    assert.deepEqual(
      broken((s) => {
        s.initContainers = [s.initContainers[0]];
      }),
      ['init containers are ["backup"], not ["backup","backup-rbac"]'],
    );
    assert.deepEqual(
      broken((s) => {
        s.initContainers.reverse();
      }),
      ['init containers are ["backup-rbac","backup"], not ["backup","backup-rbac"]'],
    );
    assert.deepEqual(
      broken((s) => {
        s.initContainers[1].args = ["backup-rbac", "--json"];
      }),
      ['backup-rbac args are ["backup-rbac","--json"]'],
    );
    assert.deepEqual(
      broken((s) => {
        s.initContainers[1].env = s.initContainers[1].env.filter((e: Obj) => e.name !== "MILVUS_CA_FILE");
      }),
      ["backup-rbac's env differs from the backup container's"],
    );
    assert.deepEqual(
      broken((s) => {
        s.initContainers[1].volumeMounts = [{ name: "tmp", mountPath: "/tmp" }];
      }),
      ["backup-rbac's volumeMounts differs from the backup container's"],
    );
  });
});

/** A valid RBAC document taken at `time`, stored as backup-rbac stores it. */
async function writeRbac(store: BlobStore, time: Date): Promise<string> {
  const rbacId = newRbacId(time);
  const doc: RbacDocument = {
    kind: RBAC_KIND,
    formatVersion: RBAC_FORMAT_VERSION,
    rbacId,
    time: time.toISOString(),
    tool: { name: "milvus-azure-backup", version: "test" },
    method: "listing",
    databases: ["default"],
    users: [{ name: "app", roles: ["reader"] }],
    roles: [{ name: "reader" }],
    grants: [
      { role: "reader", object: "Collection", name: "documents", database: "default", privilege: "Search" },
    ],
    privilegeGroups: [],
  };
  await store.put(rbacPath(rbacId), Buffer.from(JSON.stringify(doc, null, 2) + "\n", "utf8"));
  return rbacId;
}

async function names(store: BlobStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const b of store.list(prefix)) out.push(b.name);
  return out.sort();
}

describe("RBAC backup retention: prune against Azurite", function () {
  this.timeout(120_000);
  let azurite: AzuriteServer;

  before(async function () {
    azurite = await startAzurite();
  });

  after(async function () {
    await azurite.stop();
  });

  async function container(name: string): Promise<AzureBlobStore> {
    const store = new AzureBlobStore({ container: name, connectionString: azurite.connectionString });
    await store.ensureContainer();
    return store;
  }
  const env = (name: string) => ({
    PATH: process.env.PATH,
    BACKUP_CONTAINER: name,
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
  });
  const quiet = () => new Log({ write: () => true }, true);

  it("deletes old documents past keep-last, keeps young ones, never touches unreadable or foreign blobs; dry run deletes nothing", async function () {
    const store = await container("rbac-retention");
    const now = await readStorageTime(store);
    const ago = (days: number) => new Date(now.getTime() - days * DAY);
    const [d50, d40, d20, d10, d2] = [
      await writeRbac(store, ago(50)),
      await writeRbac(store, ago(40)),
      await writeRbac(store, ago(20)),
      await writeRbac(store, ago(10)),
      await writeRbac(store, ago(2)),
    ] as [string, string, string, string, string];
    // Old by its name, but not readable: reported, never deleted.
    const damaged = "rbac/rbac-20200101T000000Z-abcdef.json";
    await store.put(damaged, Buffer.from("{ not json", "utf8"));
    await store.put("rbac/notes.txt", Buffer.from("hand-written notes", "utf8"));
    const before = await names(store, "rbac/");
    const time = (days: number) => ago(days).toISOString();

    const expected = (verb: "deleted"): RbacPruneResult => ({
      [verb]: [
        { rbacId: d40, time: time(40), reason: "older than 30 days" },
        { rbacId: d50, time: time(50), reason: "older than 30 days" },
      ],
      kept: [
        { rbacId: d2, time: time(2), reason: "newest RBAC backup" },
        { rbacId: d10, time: time(10), reason: "among the newest 2" },
        { rbacId: d20, time: time(20), reason: "within 30 days" },
      ],
      skipped: [],
      unreadable: [
        {
          name: "rbac/notes.txt",
          reason: "not an RBAC backup name (rbac/rbac-<yyyymmddThhmmssZ>-<6 hex>.json)",
        },
        {
          name: damaged,
          reason: `RBAC backup rbac-20200101T000000Z-abcdef: ${damaged} is not valid JSON; the document is damaged`,
        },
      ],
    });

    const dry = await runCli(
      ["prune", "--retention-days", "30", "--keep-last", "2", "--dry-run", "--json"],
      env("rbac-retention"),
    );
    assert.equal(dry.code, 0, dry.stderr);
    const dryJson = dry.json as { dryRun: boolean; rbac: RbacPruneResult; deleted: unknown[] };
    assert.equal(dryJson.dryRun, true);
    assert.deepEqual(dryJson.rbac, expected("deleted"));
    // RBAC documents are apart from collection backups.
    assert.deepEqual(dryJson.deleted, []);
    assert.deepEqual(await names(store, "rbac/"), before, "a dry run deletes nothing");
    assert.match(dry.stderr, /"event":"prune.rbac.unreadable".*rbac\/notes\.txt/);

    const text = await runCli(
      ["prune", "--retention-days", "30", "--keep-last", "2", "--dry-run"],
      env("rbac-retention"),
    );
    assert.deepEqual(text.stdout.trim().split("\n"), [
      `would delete\t${d40}\tolder than 30 days`,
      `would delete\t${d50}\tolder than 30 days`,
      `unreadable\trbac/notes.txt\tnot an RBAC backup name (rbac/rbac-<yyyymmddThhmmssZ>-<6 hex>.json)`,
      `unreadable\t${damaged}\tRBAC backup rbac-20200101T000000Z-abcdef: ${damaged} is not valid JSON; the document is damaged`,
    ]);

    const real = await runCli(
      ["prune", "--retention-days", "30", "--keep-last", "2", "--json"],
      env("rbac-retention"),
    );
    assert.equal(real.code, 0, real.stderr);
    assert.deepEqual((real.json as { rbac: RbacPruneResult }).rbac, expected("deleted"));
    assert.deepEqual(
      await names(store, "rbac/"),
      [rbacPath(d20), rbacPath(d10), rbacPath(d2), damaged, "rbac/notes.txt"].sort(),
    );
    const listed = await runCli(["list-rbac", "--json"], env("rbac-retention"));
    assert.deepEqual(
      (listed.json as { backups: { rbacId: string }[] }).backups.map((b) => b.rbacId),
      [d2, d10, d20],
    );
  });

  it("keeps the newest --keep-last however old, and skips an immutable document with a warning", async function () {
    const store = await container("rbac-old");
    const now = await readStorageTime(store);
    const ago = (days: number) => new Date(now.getTime() - days * DAY);
    const [d90, d80, d70, d60] = [
      await writeRbac(store, ago(90)),
      await writeRbac(store, ago(80)),
      await writeRbac(store, ago(70)),
      await writeRbac(store, ago(60)),
    ] as [string, string, string, string];
    // Azurite has no WORM: the immutability policy is simulated on one blob, as BlobStore reports it.
    const guarded: BlobStore = Object.assign(Object.create(store) as BlobStore, {
      delete: (n: string): Promise<DeleteOutcome> =>
        n === rbacPath(d90) ? Promise.resolve("immutable") : store.delete(n),
    });
    const lines: string[] = [];
    const log = new Log(
      {
        write: (s: string) => {
          lines.push(s);
          return true;
        },
      },
      true,
    );
    const r = await prune(guarded, { retentionDays: 30, keepLast: 2, dryRun: false }, log);
    assert.deepEqual(r.rbac, {
      deleted: [{ rbacId: d80, time: ago(80).toISOString(), reason: "older than 30 days" }],
      kept: [
        { rbacId: d60, time: ago(60).toISOString(), reason: "newest RBAC backup" },
        { rbacId: d70, time: ago(70).toISOString(), reason: "among the newest 2" },
      ],
      skipped: [{ rbacId: d90, time: ago(90).toISOString(), reason: IMMUTABLE }],
      unreadable: [],
    });
    assert.ok(
      lines.some((l) => l.includes('"event":"prune.immutable"') && l.includes(d90)),
      "an immutable RBAC document is reported",
    );
    assert.deepEqual(await names(store, "rbac/"), [rbacPath(d90), rbacPath(d70), rbacPath(d60)].sort());

    // keep-last 1 still keeps one, however old: a DR restore always finds users and roles.
    const again = await prune(store, { retentionDays: 0, keepLast: 1, dryRun: false }, quiet());
    assert.deepEqual(
      again.rbac.kept.map((k) => k.rbacId),
      [d60],
    );
    assert.deepEqual(await names(store, "rbac/"), [rbacPath(d60)]);
  });
});
