/**
 * backup-rbac / restore-rbac / list-rbac: the document built from a BackupRBAC answer, the strict
 * document check, the additive restore plan, the password files, and the commands end to end on two
 * real Milvus 2.3.5 standalone servers (a primary and a fresh "DR" server, authorization on) with
 * Azurite, plus Milvus Lite, which has no users or roles and must make backup-rbac fail.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MilvusClient, OperatePrivilegeType, promisify } from "@zilliz/milvus2-sdk-node";
import { readAccessState } from "../backup/access";
import type { AccessState } from "../backup/accessPlan";
import { AzureBlobStore } from "../backup/blobStore";
import {
  fromBackupRbacMeta,
  loadRbacPasswords,
  parseRbacDocument,
  planRbacRestore,
  RBAC_ID_PATTERN,
  rbacPath,
  restoreUserRequest,
  type ProtoRbacMeta,
  type RbacDocument,
  type RbacTarget,
} from "../backup/rbac";
import {
  startAzurite,
  startMilvusLite,
  startMilvusStandalone,
  type AzuriteServer,
  type MilvusLiteServer,
  type MilvusStandaloneServer,
} from "../tools/local-servers";
import { runCli } from "./support/workerEnv";

/**
 * A BackupRBAC answer's RBAC_meta exactly as the SDK decodes it (keepCase, defaults: true, so every
 * field is present): RBACMeta { users: UserInfo{user, password, roles: RoleEntity[]}, roles:
 * RoleEntity[], grants: GrantEntity{role, object, object_name, grantor{user, privilege}, db_name},
 * privilege_groups: PrivilegeGroupInfo{group_name, privileges: PrivilegeEntity[]} } in
 * node_modules/@zilliz/milvus2-sdk-node/dist/milvus/proto-json/milvus.js. The hashes are bcrypt's shape.
 */
const HASH_APP = "$2a$10$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU";
const HASH_OPS = "$2a$10$zyxwvutsrqponmlkjihgfeZYXWVUTSRQPONMLKJIHGFEDCBA98765";
const META: ProtoRbacMeta = {
  users: [
    {
      user: "ops",
      password: HASH_OPS,
      roles: [
        { name: "admin", description: "" },
        { name: "public", description: "" },
      ],
    },
    { user: "app", password: HASH_APP, roles: [{ name: "reader", description: "" }] },
  ],
  roles: [
    { name: "reader", description: "reads documents" },
    { name: "ingest", description: "" },
  ],
  grants: [
    {
      role: { name: "reader", description: "" },
      object: { name: "Collection" },
      object_name: "documents",
      grantor: { user: { name: "root" }, privilege: { name: "Search" } },
      db_name: "default",
    },
    {
      role: { name: "ingest", description: "" },
      object: { name: "Global" },
      object_name: "*",
      grantor: { user: { name: "root" }, privilege: { name: "ingest_group" } },
      db_name: "sales",
    },
    {
      role: { name: "reader", description: "" },
      object: { name: "Collection" },
      object_name: "documents",
      grantor: { user: { name: "root" }, privilege: { name: "Query" } },
      db_name: "default",
    },
  ],
  privilege_groups: [{ group_name: "ingest_group", privileges: [{ name: "Upsert" }, { name: "Insert" }] }],
};

function doc(over: Partial<RbacDocument> = {}): RbacDocument {
  return {
    kind: "milvus-rbac-backup",
    formatVersion: 1,
    rbacId: "rbac-20260101T000000Z-abcdef",
    time: "2026-01-01T00:00:00.000Z",
    tool: { name: "milvus-aks-backup", version: "0.1.0" },
    method: "backup-rbac",
    ...fromBackupRbacMeta(META),
    ...over,
  };
}

const emptyTarget = (over: Partial<RbacTarget> = {}): RbacTarget => ({
  state: { users: { root: [] }, roles: { admin: [], public: [] } },
  privilegeGroups: [],
  restoreRbac: true,
  ...over,
});

describe("RBAC document from BackupRBAC", function () {
  it("keeps users with roles and hashes, roles, grants and privilege groups; drops public; sorts", function () {
    const c = fromBackupRbacMeta(META);
    assert.deepEqual(c.users, [
      { name: "app", roles: ["reader"], passwordHash: HASH_APP },
      { name: "ops", roles: ["admin"], passwordHash: HASH_OPS },
    ]);
    assert.deepEqual(c.roles, [{ name: "ingest" }, { name: "reader", description: "reads documents" }]);
    assert.deepEqual(c.grants, [
      { role: "ingest", object: "Global", name: "*", database: "sales", privilege: "ingest_group" },
      { role: "reader", object: "Collection", name: "documents", database: "default", privilege: "Query" },
      { role: "reader", object: "Collection", name: "documents", database: "default", privilege: "Search" },
    ]);
    assert.deepEqual(c.privilegeGroups, [{ name: "ingest_group", privileges: ["Insert", "Upsert"] }]);
  });

  it("never carries root, admin or public even if a server sent them", function () {
    const c = fromBackupRbacMeta({
      users: [{ user: "root", password: "$2a$x", roles: [{ name: "admin" }] }],
      roles: [{ name: "admin" }, { name: "public" }],
      grants: [
        {
          role: { name: "public" },
          object: { name: "Global" },
          object_name: "*",
          grantor: { privilege: { name: "ShowCollections" } },
          db_name: "*",
        },
      ],
      privilege_groups: [],
    });
    assert.deepEqual(c, { users: [], roles: [], grants: [], privilegeGroups: [] });
  });

  it("the RestoreRBAC request for one user holds that user, its hash and nothing else", function () {
    assert.deepEqual(restoreUserRequest(doc(), "app").RBAC_meta, {
      users: [{ user: "app", password: HASH_APP, roles: [] }],
      roles: [],
      grants: [],
      privilege_groups: [],
    });
    assert.throws(() => restoreUserRequest(doc({ users: [{ name: "x", roles: [] }] }), "x"), /no backed-up/);
  });
});

describe("RBAC document check", function () {
  const parse = (d: unknown, id = "rbac-20260101T000000Z-abcdef") =>
    parseRbacDocument(Buffer.from(JSON.stringify(d)), id);

  it("reads back what it wrote", function () {
    assert.deepEqual(parse(doc()), doc());
  });

  it("names every problem: unknown keys, root, built-in roles, dangling bindings and grants, another id", function () {
    const bad = {
      ...doc(),
      extra: 1,
      users: [
        { name: "root", roles: [] },
        { name: "u", roles: ["ghost"], pasword: "x" },
      ],
      roles: [{ name: "admin" }, { name: "reader" }],
      grants: [{ role: "ghost", object: "Global", name: "*", database: "default", privilege: "Search" }],
    };
    assert.throws(
      () => parse(bad),
      (e: Error) => {
        for (const re of [
          /unknown key "extra" in the document/,
          /users\[0\]: root is never backed up or restored/,
          /unknown key "pasword" in users\[1\]/,
          /users\[1\] \(u\) is bound to role ghost, which the document does not hold/,
          /roles\[0\]: admin is a built-in role/,
          /grants\[0\] is of role ghost/,
        ])
          assert.match(e.message, re);
        return true;
      },
    );
    assert.throws(() => parse(doc(), "rbac-20260101T000000Z-000000"), /names a different backup/);
    assert.throws(() => parse({ ...doc(), formatVersion: 2 }), /format version 2; this worker reads up to 1/);
    assert.throws(
      () => parseRbacDocument(Buffer.from("{"), "rbac-20260101T000000Z-abcdef"),
      /not valid JSON/,
    );
  });

  it("ids look like rbac-<UTC stamp>-<hex>", function () {
    assert.ok(RBAC_ID_PATTERN.test("rbac-20260101T000000Z-abcdef"));
    assert.ok(!RBAC_ID_PATTERN.test("documents-20260101T000000Z-abcdef"));
    assert.ok(!RBAC_ID_PATTERN.test("rbac-20260101T000000Z-abcdef/../x"));
  });
});

describe("RBAC restore plan", function () {
  it("on an empty server: groups, roles, grants, users (file first, else hash), bindings, in that order", function () {
    const plan = planRbacRestore(doc(), emptyTarget(), new Set(["ops"]));
    assert.deepEqual(plan.actions, [
      { action: "createPrivilegeGroup", group: "ingest_group" },
      { action: "addPrivilegesToGroup", group: "ingest_group", privileges: ["Insert", "Upsert"] },
      { action: "createRole", role: "ingest" },
      { action: "createRole", role: "reader" },
      {
        action: "grant",
        role: "ingest",
        object: "Global",
        name: "*",
        database: "sales",
        privilege: "ingest_group",
      },
      {
        action: "grant",
        role: "reader",
        object: "Collection",
        name: "documents",
        database: "default",
        privilege: "Query",
      },
      {
        action: "grant",
        role: "reader",
        object: "Collection",
        name: "documents",
        database: "default",
        privilege: "Search",
      },
      { action: "createUser", user: "app", password: "hash" },
      { action: "createUser", user: "ops", password: "file" },
      { action: "addUserToRole", user: "app", role: "reader" },
      { action: "addUserToRole", user: "ops", role: "admin" },
    ]);
    assert.deepEqual(plan.needsPassword, []);
  });

  it("without RestoreRBAC or a hash, a missing user without a file needs a password and gets no bindings", function () {
    const plan = planRbacRestore(doc(), emptyTarget({ restoreRbac: false }), new Set(["ops"]));
    assert.deepEqual(plan.needsPassword, ["app"]);
    assert.ok(!plan.actions.some((a) => "user" in a && a.user === "app"));
  });

  it("only adds: an existing user keeps its password and extra roles, gets the missing binding", function () {
    const state: AccessState = {
      users: { root: [], app: ["other"], ops: ["admin"] },
      roles: {
        admin: [],
        public: [],
        other: [],
        reader: [{ object: "Collection", name: "documents", database: "default", privilege: "Query" }],
        ingest: [],
      },
    };
    const plan = planRbacRestore(
      doc(),
      emptyTarget({ state, privilegeGroups: [{ name: "ingest_group", privileges: ["Insert", "Delete"] }] }),
      new Set(["app", "ops"]),
    );
    assert.deepEqual(plan.actions, [
      { action: "addPrivilegesToGroup", group: "ingest_group", privileges: ["Upsert"] },
      {
        action: "grant",
        role: "ingest",
        object: "Global",
        name: "*",
        database: "sales",
        privilege: "ingest_group",
      },
      {
        action: "grant",
        role: "reader",
        object: "Collection",
        name: "documents",
        database: "default",
        privilege: "Search",
      },
      { action: "addUserToRole", user: "app", role: "reader" },
    ]);
    assert.deepEqual(plan.existingUsers, ["app", "ops"]);
  });

  it("refuses, before any change, privilege groups on a server that has none", function () {
    assert.throws(
      () => planRbacRestore(doc(), emptyTarget({ privilegeGroups: undefined }), new Set()),
      /has 1 privilege group\(s\) \(ingest_group\), and this Milvus has none .*Nothing was changed/,
    );
  });
});

describe("RBAC password files", function () {
  let dir: string;
  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "rbac-pw-"));
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("reads the files that exist (apply-access's convention), skips users without one, no dir: none", function () {
    fs.writeFileSync(path.join(dir, "app"), "app-secret-1\n");
    fs.writeFileSync(path.join(dir, "stranger"), "not-in-the-document");
    assert.deepEqual([...loadRbacPasswords(dir, ["app", "ops"])], [["app", "app-secret-1"]]);
    assert.equal(loadRbacPasswords(undefined, ["app"]).size, 0);
  });

  it("an unusable file stops the command, naming the file, never its content", function () {
    fs.writeFileSync(path.join(dir, "ops"), "short");
    assert.throws(
      () => loadRbacPasswords(dir, ["ops"]),
      (e: Error) => {
        assert.match(
          e.message,
          /^restore-rbac: the password of ops \(.*\/ops\) has 5 bytes; Milvus accepts 6 to 72/,
        );
        assert.ok(!e.message.includes("short"));
        return true;
      },
    );
    assert.throws(
      () => loadRbacPasswords(path.join(dir, "nope"), ["ops"]),
      /--passwords-dir .* cannot be read: ENOENT/,
    );
  });
});

describe("backup-rbac and restore-rbac on real servers (Milvus 2.3.5 standalone, Azurite)", function () {
  this.timeout(300_000);
  let primary: MilvusStandaloneServer;
  let dr: MilvusStandaloneServer;
  let azurite: AzuriteServer;
  let root: MilvusClient;
  let drRoot: MilvusClient;
  let tmp: string;
  let rbacId: string;
  const clients: MilvusClient[] = [];
  const PASSWORDS = { app: "app-password-1", writer: "writer-password-1", ops: "ops-password-1" };
  const DR_WRITER_PASSWORD = "dr-writer-own-1";

  const envFor = (s: MilvusStandaloneServer) => ({
    PATH: process.env.PATH,
    MILVUS_ADDRESS: s.address,
    MILVUS_TOKEN: s.rootToken,
    BACKUP_CONTAINER: "backups",
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
  });

  function connect(s: MilvusStandaloneServer, token: string): MilvusClient {
    const c = new MilvusClient({
      address: s.address,
      token,
      logLevel: "error",
      maxRetries: 0,
      timeout: 30_000,
    });
    c.connectPromise.catch(() => undefined);
    clients.push(c);
    return c;
  }

  /** Logs in and lists collections (public's default ShowCollections grant). */
  async function canList(s: MilvusStandaloneServer, user: string, password: string): Promise<boolean> {
    try {
      const r = await connect(s, `${user}:${password}`).showCollections();
      return r.status.code === 0;
    } catch {
      return false;
    }
  }

  async function grant(
    c: MilvusClient,
    role: string,
    object: string,
    name: string,
    privilege: string,
    db: string,
  ) {
    const r = (await promisify(
      c.channelPool,
      "OperatePrivilege",
      {
        entity: {
          role: { name: role },
          object: { name: object },
          object_name: name,
          db_name: db,
          grantor: { privilege: { name: privilege } },
        },
        type: OperatePrivilegeType.Grant,
      },
      30_000,
    )) as { code: number; reason: string };
    assert.equal(r.code, 0, r.reason);
  }

  const ok = (r: { code?: number; reason?: string }) => {
    assert.equal(r.code, 0, r.reason);
  };

  /** The primary's users and roles, as restore-rbac must recreate them (grants in two databases). */
  const ROLES: Record<string, [string, string, string, string][]> = {
    reader: [
      ["Collection", "documents", "Search", "default"],
      ["Collection", "documents", "Query", "default"],
      ["Global", "*", "DescribeCollection", "default"],
    ],
    sales_writer: [
      ["Collection", "*", "Insert", "sales"],
      ["Collection", "orders", "Search", "sales"],
    ],
  };
  const USERS: Record<string, string[]> = {
    app: ["reader"],
    writer: ["reader", "sales_writer"],
    ops: ["admin"],
    orphan: ["sales_writer"],
  };

  before(async function () {
    [primary, dr, azurite] = await Promise.all([
      startMilvusStandalone(),
      startMilvusStandalone(),
      startAzurite(),
    ]);
    root = connect(primary, primary.rootToken);
    drRoot = connect(dr, dr.rootToken);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rbac-real-"));
    ok(await root.createDatabase({ db_name: "sales" }));
    for (const [role, grants] of Object.entries(ROLES)) {
      ok(await root.createRole({ roleName: role }));
      for (const [object, name, privilege, db] of grants)
        await grant(root, role, object, name, privilege, db);
    }
    for (const [user, roles] of Object.entries(USERS)) {
      ok(await root.createUser({ username: user, password: `${user}-primary-pw` }));
      for (const role of roles) ok(await root.addUserToRole({ username: user, roleName: role }));
    }
    // The DR server already has `writer` (say, from its own access declaration) with its own password.
    ok(await drRoot.createUser({ username: "writer", password: DR_WRITER_PASSWORD }));
  });

  after(async function () {
    for (const c of clients) await c.closeConnection().catch(() => undefined);
    // Any of them may be missing when `before` failed half-way.
    const servers = [primary, dr, azurite] as ({ stop(): Promise<void> } | undefined)[];
    await Promise.all(servers.map((s) => s?.stop() ?? Promise.resolve()));
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const drState = () => readAccessState(drRoot, ["sales"]);

  it("backup-rbac lists users, roles and grants of both databases (no BackupRBAC on 2.3.5), no root, no passwords", async function () {
    // As ops, a user with the built-in admin role: admin is enough (the backup worker's own user has it).
    const r = await runCli(["backup-rbac", "--json"], {
      ...envFor(primary),
      MILVUS_TOKEN: "ops:ops-primary-pw",
    });
    assert.equal(r.code, 0, r.stderr);
    const summary = r.json as {
      rbacId: string;
      method: string;
      users: number;
      usersWithPasswordHash: number;
    };
    assert.match(summary.rbacId, RBAC_ID_PATTERN);
    assert.equal(summary.method, "listing");
    assert.equal(summary.usersWithPasswordHash, 0);
    rbacId = summary.rbacId;
    const store = new AzureBlobStore({ container: "backups", connectionString: azurite.connectionString });
    const stored = parseRbacDocument(await store.get(rbacPath(rbacId)), rbacId);
    assert.deepEqual(
      stored.users,
      Object.entries(USERS)
        .map(([name, roles]) => ({ name, roles: [...roles].sort() }))
        .sort((a, b) => (a.name < b.name ? -1 : 1)),
    );
    assert.deepEqual(stored.roles, [{ name: "reader" }, { name: "sales_writer" }]);
    const grants = Object.entries(ROLES)
      .flatMap(([role, gs]) =>
        gs.map(([object, name, privilege, database]) => ({ role, object, name, database, privilege })),
      )
      .map((g) => JSON.stringify(g))
      .sort();
    assert.deepEqual(stored.grants.map((g) => JSON.stringify(g)).sort(), grants);
    assert.deepEqual(stored.databases, ["default", "sales"]);
    assert.deepEqual(stored.privilegeGroups, []);

    const list = await runCli(["list-rbac", "--json"], envFor(primary));
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(list.json, {
      backups: [
        { rbacId, time: stored.time, method: "listing", users: 4, roles: 2, grants: 5, privilegeGroups: 0 },
      ],
      damaged: [],
    });
  });

  it("restore-rbac --dry-run prints the plan and changes nothing", async function () {
    const before = await drState();
    const pwDir = path.join(tmp, "pw");
    fs.mkdirSync(pwDir);
    for (const [u, pw] of Object.entries(PASSWORDS)) fs.writeFileSync(path.join(pwDir, u), `${pw}\n`);
    const r = await runCli(
      ["restore-rbac", "--backup", rbacId, "--passwords-dir", pwDir, "--dry-run", "--json"],
      envFor(dr),
    );
    assert.equal(r.code, 0, r.stderr);
    const s = r.json as {
      dryRun: boolean;
      actions: { action: string }[];
      needsPassword: string[];
      existingUsers: string[];
    };
    assert.equal(s.dryRun, true);
    assert.deepEqual(s.needsPassword, ["orphan"]);
    assert.deepEqual(s.existingUsers, ["writer"]);
    const counts: Record<string, number> = {};
    for (const a of s.actions) counts[a.action] = (counts[a.action] ?? 0) + 1;
    // 2 roles, 5 grants, app and ops created, bindings: app 1, ops 1, writer 2 (orphan: none).
    assert.deepEqual(counts, { createRole: 2, grant: 5, createUser: 2, addUserToRole: 4 });
    assert.deepEqual(await drState(), before);
    const text = await runCli(
      ["restore-rbac", "--backup", rbacId, "--passwords-dir", pwDir, "--dry-run"],
      envFor(dr),
    );
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^would create role reader$/m);
    assert.match(text.stdout, /^would create user app \(password from its password file\)$/m);
    assert.match(text.stdout, /^needs a password\torphan$/m);
  });

  it("restore-rbac recreates roles, grants, users and bindings; reports orphan; never changes writer's password", async function () {
    const pwDir = path.join(tmp, "pw");
    const r = await runCli(
      ["restore-rbac", "--backup", rbacId, "--passwords-dir", pwDir, "--json"],
      envFor(dr),
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /error: restore-rbac: 1 user\(s\) not created, no password for them: orphan\. Everything else was restored\./,
    );
    const s = r.json as { complete: boolean; needsPassword: string[]; actions: unknown[] };
    assert.equal(s.complete, false);
    assert.deepEqual(s.needsPassword, ["orphan"]);
    assert.equal(s.actions.length, 13);
    for (const pw of [...Object.values(PASSWORDS), dr.rootToken, DR_WRITER_PASSWORD])
      assert.ok(!r.stdout.includes(pw) && !r.stderr.includes(pw), "no password in the output");

    const state = await drState();
    assert.deepEqual(
      Object.fromEntries(Object.entries(state.users).map(([u, roles]) => [u, [...roles].sort()])),
      { root: [], app: ["reader"], ops: ["admin"], writer: ["reader", "sales_writer"] },
    );
    for (const [role, grants] of Object.entries(ROLES)) {
      assert.deepEqual(
        (state.roles[role] ?? []).map((g) => `${g.database}/${g.object}/${g.name}/${g.privilege}`).sort(),
        grants.map(([object, name, privilege, db]) => `${db}/${object}/${name}/${privilege}`).sort(),
        role,
      );
    }
    assert.ok(await canList(dr, "app", PASSWORDS.app), "app logs in with its restored password");
    assert.ok(await canList(dr, "ops", PASSWORDS.ops), "ops logs in with its restored password");
    assert.ok(await canList(dr, "writer", DR_WRITER_PASSWORD), "writer keeps the DR server's password");
    assert.ok(!(await canList(dr, "writer", PASSWORDS.writer)), "writer's password was not changed");
    assert.ok(!(await canList(dr, "orphan", "orphan-primary-pw")), "orphan was not created");
  });

  it("running it again changes nothing; with orphan's password file it adds orphan only, then exits 0", async function () {
    const pwDir = path.join(tmp, "pw");
    const again = await runCli(
      ["restore-rbac", "--backup", rbacId, "--passwords-dir", pwDir, "--json"],
      envFor(dr),
    );
    assert.equal(again.code, 1, again.stderr);
    assert.deepEqual((again.json as { actions: unknown[] }).actions, []);
    fs.writeFileSync(path.join(pwDir, "orphan"), "orphan-password-1");
    const last = await runCli(
      ["restore-rbac", "--backup", rbacId, "--passwords-dir", pwDir, "--json"],
      envFor(dr),
    );
    assert.equal(last.code, 0, last.stderr);
    assert.deepEqual((last.json as { actions: unknown[] }).actions, [
      { action: "createUser", user: "orphan", password: "file" },
      { action: "addUserToRole", user: "orphan", role: "sales_writer" },
    ]);
    assert.ok(await canList(dr, "orphan", "orphan-password-1"));
    const quiet = await runCli(["restore-rbac", "--backup", rbacId, "--passwords-dir", pwDir], {
      ...envFor(dr),
      MILVUS_TOKEN: `ops:${PASSWORDS.ops}`,
    });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stdout, "nothing to add\n");
  });

  it("restore-rbac names a bad or unknown id, and never runs without --backup", async function () {
    const missing = await runCli(["restore-rbac"], envFor(dr));
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /restore-rbac: --backup <rbacId> is required/);
    const bad = await runCli(["restore-rbac", "--backup", "documents-20260101T000000Z-abcdef"], envFor(dr));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /is not an RBAC backup id/);
    const unknown = await runCli(["restore-rbac", "--backup", "rbac-20200101T000000Z-000000"], envFor(dr));
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /RBAC backup rbac-20200101T000000Z-000000 not found .*run `list-rbac`/);
  });
});

describe("backup-rbac on Milvus Lite (no users or roles)", function () {
  this.timeout(120_000);
  let lite: MilvusLiteServer;
  let azurite: AzuriteServer;
  before(async function () {
    [lite, azurite] = await Promise.all([startMilvusLite(), startAzurite()]);
  });
  after(async function () {
    const servers = [lite, azurite] as ({ stop(): Promise<void> } | undefined)[];
    await Promise.all(servers.map((s) => s?.stop() ?? Promise.resolve()));
  });

  it("fails with a clear message and writes nothing", async function () {
    const r = await runCli(["backup-rbac"], {
      PATH: process.env.PATH,
      MILVUS_ADDRESS: lite.address,
      BACKUP_CONTAINER: "backups",
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr.trim().split("\n").at(-1),
      "error: listing users: the server returned no status (it does not implement this call; Milvus Lite, for one, has no users or roles)",
    );
    const store = new AzureBlobStore({ container: "backups", connectionString: azurite.connectionString });
    await store.ensureContainer();
    const names: string[] = [];
    for await (const b of store.list("rbac/")) names.push(b.name);
    assert.deepEqual(names, []);
  });
});
