/**
 * apply-access: the declaration format, the pure plan, the password files, and the command against
 * real servers: a Milvus standalone 2.3.5 with authorization on (PyPI package "milvus", installed on
 * first use into .tmp/ by tools/local-servers.ts; a failed install fails these tests), and Milvus Lite,
 * which has no users or roles and must make the command fail rather than report success.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DataType, MilvusClient, OperatePrivilegeType, promisify } from "@zilliz/milvus2-sdk-node";
import { loadPasswords } from "../backup/access";
import {
  BUILTIN_ROLES,
  desiredState,
  grantKey,
  parseDeclaration,
  planAccess,
  READ_PRIVILEGES,
  READ_WRITE_PRIVILEGES,
  roleGrants,
  type AccessAction,
  type AccessState,
  type Declaration,
  type Grant,
} from "../backup/accessPlan";
import {
  startMilvusLite,
  startMilvusStandalone,
  type MilvusLiteServer,
  type MilvusStandaloneServer,
} from "../tools/local-servers";
import { runCli } from "./support/workerEnv";

const decl = (doc: unknown): Declaration => parseDeclaration(doc);

const BASE = {
  version: 1,
  roles: {
    docs_read: { database: "default", collections: ["documents"], access: "read" },
    docs_write: { database: "default", collections: ["documents"], access: "readWrite" },
  },
  users: {
    app: { roles: ["docs_read"] },
    writer: { roles: ["docs_write", "admin"] },
  },
};

/** A server with only the built-ins: root, admin, and public with Milvus's default grants. */
function emptyServer(): AccessState {
  return {
    users: { root: [] },
    roles: {
      admin: [],
      public: [
        { object: "Global", name: "*", database: "*", privilege: "DescribeCollection" },
        { object: "Global", name: "*", database: "*", privilege: "ShowCollections" },
        { object: "Collection", name: "*", database: "*", privilege: "IndexDetail" },
      ],
    },
  };
}

/** The server once `d` is applied, plus the built-ins. */
function appliedServer(d: Declaration): AccessState {
  const want = desiredState(d);
  const base = emptyServer();
  return { users: { ...base.users, ...want.users }, roles: { ...base.roles, ...want.roles } };
}

const kinds = (plan: AccessAction[]) => plan.map((a) => a.action);
const resets = (...users: string[]): AccessAction[] =>
  users.map((user) => ({ action: "resetPassword", user }));

describe("access declaration", function () {
  it("accepts the documented format", function () {
    const d = decl(BASE);
    assert.deepEqual(d.roles.docs_read, { database: "default", collections: ["documents"], access: "read" });
    assert.deepEqual(d.users.writer, { roles: ["docs_write", "admin"] });
  });

  it("names an unknown key and the keys allowed there, at every level", function () {
    const bad = {
      ...BASE,
      userz: {},
      roles: { r: { database: "default", collections: ["*"], access: "read", acess: "read" } },
      users: { u: { roles: ["r"], role: "r" } },
    };
    assert.throws(
      () => decl(bad),
      (e: Error) => {
        assert.match(
          e.message,
          /unknown key "userz" in the declaration; allowed keys: version, roles, users/,
        );
        assert.match(
          e.message,
          /unknown key "acess" in roles\.r; allowed keys: database, collections, access/,
        );
        assert.match(e.message, /unknown key "role" in users\.u; allowed keys: roles/);
        return true;
      },
    );
  });

  it("rejects what it cannot apply safely", function () {
    const cases: [unknown, RegExp][] = [
      [{ ...BASE, version: 2 }, /version must be 1/],
      [{ version: 1, roles: {} }, /"users" must be an object/],
      [{ ...BASE, roles: { ...BASE.roles, admin: BASE.roles.docs_read } }, /admin is a built-in Milvus role/],
      [{ ...BASE, users: { root: { roles: [] } } }, /root is managed outside the declaration/],
      [{ ...BASE, users: { u: { roles: ["nope"] } } }, /users\.u\.roles: nope is not a declared role/],
      [{ ...BASE, users: { u: { roles: ["public"] } } }, /public role implicitly/],
      [
        { ...BASE, roles: { r: { database: "default", collections: ["*", "documents"], access: "read" } } },
        /"\*" already means every collection/,
      ],
      [{ ...BASE, roles: { r: { database: "default", collections: [], access: "read" } } }, /non-empty list/],
      [
        { ...BASE, roles: { r: { database: "default", collections: ["a"], access: "write" } } },
        /"read" or "readWrite"/,
      ],
      [{ ...BASE, roles: { r: { collections: ["a"], access: "read" } } }, /roles\.r\.database must be/],
      [{ ...BASE, users: { "9lives": { roles: [] } } }, /users\.9lives: a user name starts with a letter/],
    ];
    for (const [doc, re] of cases) assert.throws(() => decl(doc), re, JSON.stringify(doc));
  });

  it("treats names like constructor and __proto__ as plain names", function () {
    const d = decl(
      JSON.parse(
        '{"version":1,"roles":{"constructor":{"database":"default","collections":["*"],"access":"read"}},' +
          '"users":{"toString":{"roles":["constructor"]}}}',
      ),
    );
    const plan = planAccess(d, emptyServer());
    assert.ok(plan.some((a) => a.action === "createRole" && a.role === "constructor"));
    assert.ok(
      plan.some((a) => a.action === "addUserToRole" && a.user === "toString" && a.role === "constructor"),
    );
    assert.throws(() => decl(JSON.parse('{"version":1,"roles":{},"users":{"u":{"roles":["toString"]}}}')));
  });
});

describe("access levels", function () {
  it("read is the search/query/describe family and nothing that writes or loads", function () {
    assert.deepEqual([...READ_PRIVILEGES].sort(), [
      "GetFlushState",
      "GetLoadState",
      "GetLoadingProgress",
      "GetStatistics",
      "HasPartition",
      "IndexDetail",
      "Query",
      "Search",
      "ShowPartitions",
    ]);
  });

  it("readWrite is read plus data, index, load and partition management", function () {
    for (const p of READ_PRIVILEGES) assert.ok(READ_WRITE_PRIVILEGES.includes(p), p);
    for (const p of [
      "Insert",
      "Delete",
      "Upsert",
      "Import",
      "Flush",
      "Load",
      "Release",
      "CreateIndex",
      "DropIndex",
    ]) {
      assert.ok(READ_WRITE_PRIVILEGES.includes(p), p);
    }
    assert.equal(new Set(READ_WRITE_PRIVILEGES).size, READ_WRITE_PRIVILEGES.length);
  });

  it("every role can describe collections of its database (a Global privilege), so its users can search", function () {
    const g = roleGrants({ database: "shop", collections: ["a", "b"], access: "read" });
    assert.deepEqual(
      g.filter((x) => x.object === "Global"),
      [{ object: "Global", name: "*", database: "shop", privilege: "DescribeCollection" }],
    );
    assert.equal(g.filter((x) => x.object === "Collection").length, 2 * READ_PRIVILEGES.length);
    assert.ok(g.every((x) => x.database === "shop"));
  });
});

describe("planAccess", function () {
  it("creates everything on an empty server: roles, grants, users, memberships, in that order", function () {
    const d = decl(BASE);
    const plan = planAccess(d, emptyServer());
    const order = ["createRole", "grant", "createUser", "addUserToRole"];
    const seen = kinds(plan);
    assert.deepEqual([...new Set(seen)], order);
    assert.deepEqual(
      seen,
      [...seen].sort((a, b) => order.indexOf(a) - order.indexOf(b)),
    );
    assert.deepEqual(
      plan.filter((a) => a.action === "createRole"),
      [
        { action: "createRole", role: "docs_read" },
        { action: "createRole", role: "docs_write" },
      ],
    );
    for (const role of ["docs_read", "docs_write"] as const) {
      const granted = plan.filter((a) => a.action === "grant" && a.role === role) as (Grant & {
        role: string;
      })[];
      assert.deepEqual(
        granted.map(({ object, name, database, privilege }) =>
          grantKey({ object, name, database, privilege }),
        ),
        roleGrants(d.roles[role]).map(grantKey),
      );
    }
    assert.deepEqual(
      plan.filter((a) => a.action === "createUser" || a.action === "addUserToRole"),
      [
        { action: "createUser", user: "app" },
        { action: "createUser", user: "writer" },
        { action: "addUserToRole", user: "app", role: "docs_read" },
        { action: "addUserToRole", user: "writer", role: "admin" },
        { action: "addUserToRole", user: "writer", role: "docs_write" },
      ],
    );
  });

  it("is a no-op once applied, except that every declared user's password is reset on every run", function () {
    const d = decl(BASE);
    assert.deepEqual(planAccess(d, appliedServer(d)), resets("app", "writer"));
  });

  it("revokes a grant that is not declared", function () {
    const d = decl(BASE);
    const server = appliedServer(d);
    const extra: Grant = {
      object: "Collection",
      name: "documents",
      database: "default",
      privilege: "Insert",
    };
    server.roles.docs_read = [...server.roles.docs_read, extra];
    assert.deepEqual(planAccess(d, server), [
      { action: "revoke", role: "docs_read", ...extra },
      ...resets("app", "writer"),
    ]);
  });

  it("drops a role that is not declared: first its members and grants, then the role", function () {
    const d = decl(BASE);
    const server = appliedServer(d);
    const g1: Grant = { object: "Collection", name: "*", database: "default", privilege: "Query" };
    const g2: Grant = { object: "Global", name: "*", database: "default", privilege: "CreateCollection" };
    server.roles.legacy = [g2, g1];
    server.users.app = ["docs_read", "legacy"];
    assert.deepEqual(planAccess(d, server), [
      { action: "removeUserFromRole", user: "app", role: "legacy" },
      { action: "revoke", role: "legacy", ...g1 },
      { action: "revoke", role: "legacy", ...g2 },
      { action: "dropRole", role: "legacy" },
      ...resets("app", "writer"),
    ]);
  });

  it("removes a user from a role the declaration no longer gives it", function () {
    const d = decl(BASE);
    const server = appliedServer(d);
    server.users.app = ["docs_read", "docs_write"];
    assert.deepEqual(planAccess(d, server), [
      { action: "removeUserFromRole", user: "app", role: "docs_write" },
      ...resets("app", "writer"),
    ]);
  });

  it("deletes a user that is not declared, after taking it out of its roles", function () {
    const d = decl(BASE);
    const server = appliedServer(d);
    server.users.stale = ["admin", "docs_read"];
    assert.deepEqual(planAccess(d, server), [
      { action: "removeUserFromRole", user: "stale", role: "admin" },
      { action: "removeUserFromRole", user: "stale", role: "docs_read" },
      { action: "deleteUser", user: "stale" },
      ...resets("app", "writer"),
    ]);
  });

  it("never touches root, admin or public (declared users may still be added to admin)", function () {
    const d = decl({ version: 1, roles: {}, users: {} });
    const server = emptyServer();
    server.users.root = ["admin", "legacy"];
    server.roles.admin = [{ object: "Global", name: "*", database: "default", privilege: "All" }];
    server.roles.legacy = [];
    const plan = planAccess(d, server);
    assert.deepEqual(plan, [{ action: "dropRole", role: "legacy" }]);
    for (const a of plan) {
      assert.notEqual((a as { user?: string }).user, "root");
      assert.ok(!BUILTIN_ROLES.includes((a as { role?: string }).role ?? ""));
    }
    const withAdmin = decl({ version: 1, roles: {}, users: { ops: { roles: ["admin"] } } });
    assert.deepEqual(planAccess(withAdmin, emptyServer()), [
      { action: "createUser", user: "ops" },
      { action: "addUserToRole", user: "ops", role: "admin" },
    ]);
  });

  it("resets the password of every existing declared user on every run, and creates the new ones", function () {
    const d = decl(BASE);
    const server = appliedServer(d);
    delete server.users.writer;
    const plan = planAccess(d, server);
    assert.deepEqual(
      plan.filter((a) => a.action === "resetPassword" || a.action === "createUser"),
      [
        { action: "createUser", user: "writer" },
        { action: "resetPassword", user: "app" },
      ],
    );
  });

  it("grants again what Milvus 2.4+ revokes along with Load and Flush when readWrite becomes read", function () {
    const before = decl(BASE);
    const after = decl({
      ...BASE,
      roles: { ...BASE.roles, docs_write: { ...BASE.roles.docs_write, access: "read" } },
    });
    const plan = planAccess(after, appliedServer(before)).filter(
      (a) => "role" in a && a.role === "docs_write",
    );
    const revoked = plan.filter((a) => a.action === "revoke").map((a) => (a as Grant).privilege);
    assert.deepEqual(
      revoked.sort(),
      READ_WRITE_PRIVILEGES.filter((p) => !READ_PRIVILEGES.includes(p)).sort(),
    );
    const granted = plan.filter((a) => a.action === "grant").map((a) => (a as Grant).privilege);
    assert.deepEqual(granted.sort(), ["GetFlushState", "GetLoadState", "GetLoadingProgress"]);
    const lastRevoke = plan.map((a) => a.action).lastIndexOf("revoke");
    const firstGrant = plan.map((a) => a.action).indexOf("grant");
    assert.ok(lastRevoke < firstGrant);
  });
});

describe("password files", function () {
  let dir: string;
  beforeEach(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "access-pw-"));
  });
  afterEach(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("reads one file per user and drops one trailing line break", function () {
    fs.writeFileSync(path.join(dir, "app"), "s3cret-pw\n");
    fs.writeFileSync(path.join(dir, "writer"), "an0ther-pw");
    fs.writeFileSync(path.join(dir, "unrelated"), "ignored");
    const pw = loadPasswords(dir, ["app", "writer"]);
    assert.deepEqual(
      [...pw.entries()],
      [
        ["app", "s3cret-pw"],
        ["writer", "an0ther-pw"],
      ],
    );
  });

  it("names every missing or unusable file, never a password, before anything changes", function () {
    fs.writeFileSync(path.join(dir, "short"), "abc\n");
    fs.writeFileSync(path.join(dir, "multi"), "line-one\nline-two\n");
    assert.throws(
      () => loadPasswords(dir, ["app", "short", "multi", "writer"]),
      (e: Error) => {
        assert.match(e.message, /no password file for user app/);
        assert.match(e.message, /no password file for user writer/);
        assert.match(e.message, /password of short .* has 3 bytes/);
        assert.match(e.message, /password file of multi .* more than one line/);
        assert.match(e.message, /nothing was changed/);
        assert.doesNotMatch(e.message, /abc|line-one/);
        return true;
      },
    );
  });
});

// ---------------------------------------------------------------------------------------------------

interface Files {
  dir: string;
  declaration: string;
  passwords: string;
}

function writeFiles(root: string, name: string, doc: unknown, passwords: Record<string, string>): Files {
  const dir = path.join(root, name);
  const pwDir = path.join(dir, "passwords");
  fs.mkdirSync(pwDir, { recursive: true });
  const declaration = path.join(dir, "access.json");
  fs.writeFileSync(declaration, JSON.stringify(doc, null, 2));
  for (const [user, pw] of Object.entries(passwords)) fs.writeFileSync(path.join(pwDir, user), pw + "\n");
  return { dir, declaration, passwords: pwDir };
}

interface Summary {
  dryRun: boolean;
  actions: (AccessAction & { method?: string })[];
  counts: Record<string, number>;
}

async function applyAccess(env: NodeJS.ProcessEnv, f: Files, extra: string[] = []) {
  const r = await runCli(
    ["apply-access", "--declaration", f.declaration, "--passwords-dir", f.passwords, ...extra],
    env,
  );
  const summary = r.code === 0 ? (JSON.parse(r.stdout) as Summary) : undefined;
  return { ...r, summary };
}

describe("apply-access command line", function () {
  let tmp: string;
  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "access-cli-"));
  });
  after(function () {
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  // Nothing listens on port 1: these errors must come before any connection is tried.
  const env = { MILVUS_ADDRESS: "127.0.0.1:1", MILVUS_TOKEN: "root:not-used" };

  it("needs --declaration and --passwords-dir (usage error, exit code 2), and no storage settings", async function () {
    const r = await runCli(["apply-access"], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--declaration <file\.json> and --passwords-dir <dir> are required/);
  });

  it("reports an invalid declaration before connecting", async function () {
    const f = writeFiles(
      tmp,
      "bad",
      { ...BASE, roles: { r: { ...BASE.roles.docs_read, acess: "read" } } },
      {},
    );
    const r = await applyAccess(env, f);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown key "acess" in roles\.r; allowed keys: database, collections, access/);
    assert.doesNotMatch(r.stderr, /cannot reach Milvus/);
  });

  it("reports missing password files before connecting", async function () {
    const r = await applyAccess(env, writeFiles(tmp, "nopw", BASE, { app: "app-password" }));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no password file for user writer .*nothing was changed/);
  });
});

describe("apply-access against Milvus Lite (no users or roles)", function () {
  this.timeout(120_000);
  let lite: MilvusLiteServer;
  let tmp: string;
  before(async function () {
    lite = await startMilvusLite();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "access-lite-"));
  });
  after(async function () {
    await lite.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("fails with the reason instead of reporting success (Lite answers these calls with no status)", async function () {
    const f = writeFiles(tmp, "lite", BASE, { app: "app-password", writer: "writer-password" });
    const r = await applyAccess({ MILVUS_ADDRESS: lite.address, MILVUS_TOKEN: "root:Milvus" }, f);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /listing users: the server returned no status/);
    assert.equal(r.stdout, "");
  });
});

describe("apply-access against a real Milvus (standalone 2.3.5, authorization on)", function () {
  this.timeout(180_000);
  let server: MilvusStandaloneServer;
  let root: MilvusClient;
  let env: NodeJS.ProcessEnv;
  let tmp: string;
  const clients: MilvusClient[] = [];

  /** Users, roles and grants (in every database used here) as the server reports them, read directly. */
  async function serverState(): Promise<AccessState> {
    const users: Record<string, string[]> = {};
    const list = await root.listUsers();
    for (const u of list.usernames) {
      const r = await root.describeUser({ username: u, includeRoleInfo: true });
      users[u] = (r.results[0]?.roles ?? []).map((x) => x.name).sort();
    }
    const roles: Record<string, Grant[]> = {};
    for (const r of (await root.listRoles()).results) {
      const grants: Grant[] = [];
      for (const db of ["default", "*"]) {
        const res = (await promisify(
          root.channelPool,
          "SelectGrant",
          {
            entity: { role: { name: r.role.name }, db_name: db },
          },
          30_000,
        )) as {
          entities: {
            object: { name: string };
            object_name: string;
            db_name: string;
            grantor: { privilege: { name: string } };
          }[];
        };
        for (const e of res.entities) {
          if (db === "*" && e.db_name !== "*") continue;
          grants.push({
            object: e.object.name,
            name: e.object_name,
            database: e.db_name,
            privilege: e.grantor.privilege.name,
          });
        }
      }
      roles[r.role.name] = grants.sort((a, b) => (grantKey(a) < grantKey(b) ? -1 : 1));
    }
    return { users, roles };
  }

  function expectApplied(state: AccessState, d: Declaration, builtins: AccessState) {
    const want = desiredState(d);
    assert.deepEqual(Object.keys(state.users).sort(), ["root", ...Object.keys(want.users)].sort(), "users");
    for (const [u, roles] of Object.entries(want.users))
      assert.deepEqual(state.users[u], roles, `roles of ${u}`);
    assert.deepEqual(state.users.root, builtins.users.root, "root untouched");
    assert.deepEqual(
      Object.keys(state.roles).sort(),
      [...BUILTIN_ROLES, ...Object.keys(want.roles)].sort(),
      "roles",
    );
    for (const [r, grants] of Object.entries(want.roles)) {
      assert.deepEqual(state.roles[r].map(grantKey), grants.map(grantKey).sort(), `grants of ${r}`);
    }
    for (const r of BUILTIN_ROLES) assert.deepEqual(state.roles[r], builtins.roles[r], `${r} untouched`);
  }

  function client(user: string, password: string): MilvusClient {
    const c = new MilvusClient({
      address: server.address,
      token: `${user}:${password}`,
      logLevel: "error",
      maxRetries: 0,
      timeout: 30_000,
    });
    c.connectPromise.catch(() => undefined);
    clients.push(c);
    return c;
  }

  /** Reading one's own user needs no privilege (isCurUserObject in internal/proxy/privilege_interceptor.go). */
  async function canLogIn(user: string, password: string): Promise<boolean> {
    try {
      const r = await client(user, password).describeUser({ username: user });
      return r.status.code === 0;
    } catch {
      return false;
    }
  }

  async function denied(p: Promise<unknown>): Promise<string> {
    try {
      const r = (await p) as { status?: { code?: number; reason?: string } };
      assert.notEqual(
        r.status?.code ?? 0,
        0,
        `expected a permission error, got ${JSON.stringify(r).slice(0, 200)}`,
      );
      return r.status?.reason ?? "";
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  }

  const V1 = {
    version: 1,
    roles: {
      docs_read: { database: "default", collections: ["documents"], access: "read" },
      docs_write: { database: "default", collections: ["documents"], access: "readWrite" },
      all_read: { database: "default", collections: ["*"], access: "read" },
    },
    users: {
      app_reader: { roles: ["docs_read"] },
      app_writer: { roles: ["docs_write", "all_read"] },
      backup: { roles: ["all_read", "docs_write"] },
      ops: { roles: ["admin"] },
    },
  };
  const PW1 = {
    app_reader: "reader-pw-1",
    app_writer: "writer-pw-1",
    backup: "backup-pw-1",
    ops: "ops-pw-1",
  };
  /** docs_write drops to read, all_read and backup go, app_reader gets a new password. */
  const V2 = {
    version: 1,
    roles: {
      docs_read: V1.roles.docs_read,
      docs_write: { ...V1.roles.docs_write, access: "read" },
    },
    users: {
      app_reader: { roles: ["docs_read"] },
      app_writer: { roles: ["docs_write"] },
      ops: { roles: ["admin"] },
    },
  };
  const PW2 = { app_reader: "reader-pw-2", app_writer: "writer-pw-1", ops: "ops-pw-1" };
  let builtins: AccessState;

  before(async function () {
    server = await startMilvusStandalone();
    env = { MILVUS_ADDRESS: server.address, MILVUS_TOKEN: server.rootToken };
    root = new MilvusClient({
      address: server.address,
      token: server.rootToken,
      logLevel: "error",
      timeout: 60_000,
    });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "access-real-"));
    for (const name of ["documents", "notes"]) {
      const created = await root.createCollection({
        collection_name: name,
        fields: [
          { name: "id", data_type: DataType.Int64, is_primary_key: true },
          { name: "v", data_type: DataType.FloatVector, dim: 4 },
        ],
      });
      assert.equal(created.code, 0, created.reason);
      const ins = await root.insert({
        collection_name: name,
        data: [
          { id: 1, v: [1, 0, 0, 0] },
          { id: 2, v: [0, 1, 0, 0] },
        ],
      });
      assert.equal(ins.status.code, 0, ins.status.reason);
      await root.createIndex({
        collection_name: name,
        field_name: "v",
        index_type: "FLAT",
        metric_type: "L2",
      });
      const loaded = await root.loadCollectionSync({ collection_name: name });
      assert.equal(loaded.code, 0, loaded.reason);
    }
    // Drift made by hand, which the declaration must undo: a role the declaration does not know, with a
    // grant and a member who is not declared either, and a declared role with one grant too many.
    const op = async (role: string, object: string, name: string, privilege: string, db = "default") => {
      const r = (await promisify(
        root.channelPool,
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
    };
    assert.equal((await root.createRole({ roleName: "legacy" })).code, 0);
    await op("legacy", "Global", "*", "CreateCollection");
    assert.equal((await root.createUser({ username: "stale", password: "stale-pw-1" })).code, 0);
    assert.equal((await root.addUserToRole({ username: "stale", roleName: "legacy" })).code, 0);
    assert.equal((await root.createRole({ roleName: "docs_read" })).code, 0);
    await op("docs_read", "Collection", "documents", "DropIndex");
    // Take the public role's default grants away (DescribeCollection, ShowCollections, IndexDetail), so
    // the searches below prove the declared roles are enough on their own.
    for (const [object, name, privilege] of [
      ["Global", "*", "DescribeCollection"],
      ["Global", "*", "ShowCollections"],
      ["Collection", "*", "IndexDetail"],
    ] as const) {
      const r = (await promisify(
        root.channelPool,
        "OperatePrivilege",
        {
          entity: {
            role: { name: "public" },
            object: { name: object },
            object_name: name,
            db_name: "*",
            grantor: { privilege: { name: privilege } },
          },
          type: OperatePrivilegeType.Revoke,
        },
        30_000,
      )) as { code: number; reason: string };
      assert.equal(r.code, 0, r.reason);
    }
    builtins = await serverState();
    assert.deepEqual(builtins.roles.public, []);
  });

  after(async function () {
    for (const c of clients) await c.closeConnection().catch(() => undefined);
    // Either may be missing when `before` failed half-way.
    await (root as MilvusClient | undefined)?.closeConnection().catch(() => undefined);
    await (server as MilvusStandaloneServer | undefined)?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("applies the declaration: creates, revokes the extra grant, drops the undeclared role and user", async function () {
    const f = writeFiles(tmp, "v1", V1, PW1);
    const r = await applyAccess(env, f);
    assert.equal(r.code, 0, r.stderr);
    for (const pw of [...Object.values(PW1), server.rootToken]) {
      assert.ok(!r.stdout.includes(pw) && !r.stderr.includes(pw), "no password in the output");
    }
    const s = r.summary!;
    assert.equal(s.dryRun, false);
    assert.deepEqual(
      s.actions.filter((a) => a.action !== "grant"),
      [
        { action: "removeUserFromRole", user: "stale", role: "legacy" },
        {
          action: "revoke",
          role: "docs_read",
          object: "Collection",
          name: "documents",
          database: "default",
          privilege: "DropIndex",
        },
        {
          action: "revoke",
          role: "legacy",
          object: "Global",
          name: "*",
          database: "default",
          privilege: "CreateCollection",
        },
        { action: "dropRole", role: "legacy" },
        { action: "deleteUser", user: "stale" },
        { action: "createRole", role: "all_read" },
        { action: "createRole", role: "docs_write" },
        { action: "createUser", user: "app_reader" },
        { action: "createUser", user: "app_writer" },
        { action: "createUser", user: "backup" },
        { action: "createUser", user: "ops" },
        { action: "addUserToRole", user: "app_reader", role: "docs_read" },
        { action: "addUserToRole", user: "app_writer", role: "all_read" },
        { action: "addUserToRole", user: "app_writer", role: "docs_write" },
        { action: "addUserToRole", user: "backup", role: "all_read" },
        { action: "addUserToRole", user: "backup", role: "docs_write" },
        { action: "addUserToRole", user: "ops", role: "admin" },
      ],
    );
    const state = await serverState();
    expectApplied(state, decl(V1), builtins);
    // The exact grants of the read role, spelled out once rather than derived from the code under test.
    assert.deepEqual(state.roles.docs_read.map(grantKey), [
      "default/Collection/documents/GetFlushState",
      "default/Collection/documents/GetLoadState",
      "default/Collection/documents/GetLoadingProgress",
      "default/Collection/documents/GetStatistics",
      "default/Collection/documents/HasPartition",
      "default/Collection/documents/IndexDetail",
      "default/Collection/documents/Query",
      "default/Collection/documents/Search",
      "default/Collection/documents/ShowPartitions",
      "default/Global/*/DescribeCollection",
    ]);
    for (const [u, pw] of Object.entries(PW1))
      assert.ok(await canLogIn(u, pw), `${u} logs in with its password`);
    assert.ok(!(await canLogIn("stale", "stale-pw-1")), "the undeclared user is gone");
  });

  it("re-applying changes nothing but resetting passwords (in place: they are unchanged)", async function () {
    const r = await applyAccess(env, writeFiles(tmp, "v1-again", V1, PW1));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.summary!.actions, [
      { action: "resetPassword", user: "app_reader", method: "in-place" },
      { action: "resetPassword", user: "app_writer", method: "in-place" },
      { action: "resetPassword", user: "backup", method: "in-place" },
      { action: "resetPassword", user: "ops", method: "in-place" },
    ]);
    expectApplied(await serverState(), decl(V1), builtins);
  });

  it("a read user can search and query its collection with its own password, but not insert", async function () {
    const reader = client("app_reader", PW1.app_reader);
    const found = await reader.search({ collection_name: "documents", data: [1, 0, 0, 0], limit: 1 });
    assert.equal(found.status.code, 0, found.status.reason);
    assert.equal(found.results[0]?.id, "1");
    const rows = await reader.query({
      collection_name: "documents",
      filter: "id > 0",
      output_fields: ["id"],
    });
    assert.equal(rows.status.code, 0, rows.status.reason);
    assert.deepEqual(rows.data.map((x) => String(x.id)).sort(), ["1", "2"]);
    assert.match(
      await denied(reader.insert({ collection_name: "documents", data: [{ id: 3, v: [0, 0, 1, 0] }] })),
      /PrivilegeInsert: permission deny to app_reader/,
    );
    assert.match(
      await denied(reader.query({ collection_name: "notes", filter: "id > 0", output_fields: ["id"] })),
      /PrivilegeQuery: permission deny to app_reader/,
    );
    // ... and a readWrite user can insert.
    const writer = client("app_writer", PW1.app_writer);
    const ins = await writer.insert({ collection_name: "documents", data: [{ id: 3, v: [0, 0, 1, 0] }] });
    assert.equal(ins.status.code, 0, ins.status.reason);
  });

  it("--dry-run prints the plan of a changed declaration and changes nothing", async function () {
    const before = await serverState();
    const r = await applyAccess(env, writeFiles(tmp, "v2-dry", V2, PW2), ["--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.summary!.dryRun, true);
    assert.ok(r.summary!.actions.some((a) => a.action === "dropRole" && a.role === "all_read"));
    assert.ok(r.summary!.actions.every((a) => a.method === undefined));
    assert.deepEqual(await serverState(), before);
    assert.ok(await canLogIn("app_reader", PW1.app_reader), "password not reset by a dry run");
  });

  it("a missing password file is an error before any change", async function () {
    const before = await serverState();
    const f = writeFiles(tmp, "v2-missing", V2, { app_reader: PW2.app_reader, ops: PW2.ops });
    const r = await applyAccess(env, f);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no password file for user app_writer/);
    assert.deepEqual(await serverState(), before);
  });

  it("applies a changed declaration: revokes write access, drops a role, deletes a user, sets a new password", async function () {
    const r = await applyAccess(env, writeFiles(tmp, "v2", V2, PW2));
    assert.equal(r.code, 0, r.stderr);
    const s = r.summary!;
    assert.ok(s.actions.some((a) => a.action === "deleteUser" && a.user === "backup"));
    assert.ok(s.actions.some((a) => a.action === "dropRole" && a.role === "all_read"));
    assert.ok(
      s.actions.some(
        (a) => a.action === "revoke" && a.role === "docs_write" && (a as Grant).privilege === "Insert",
      ),
    );
    // Root cannot set another user's password without the old one (no superUsers configured), so the
    // user whose password changed is recreated and keeps its roles; the others are reset in place.
    assert.deepEqual(
      s.actions.filter((a) => a.action === "resetPassword"),
      [
        { action: "resetPassword", user: "app_reader", method: "recreated" },
        { action: "resetPassword", user: "app_writer", method: "in-place" },
        { action: "resetPassword", user: "ops", method: "in-place" },
      ],
    );
    expectApplied(await serverState(), decl(V2), builtins);
    assert.ok(await canLogIn("app_reader", PW2.app_reader), "new password works");
    assert.ok(!(await canLogIn("app_reader", PW1.app_reader)), "old password no longer works");
    assert.ok(!(await canLogIn("backup", PW1.backup)), "deleted user cannot log in");
    const reader = client("app_reader", PW2.app_reader);
    const found = await reader.search({ collection_name: "documents", data: [1, 0, 0, 0], limit: 1 });
    assert.equal(found.status.code, 0, found.status.reason);
    const writer = client("app_writer", PW2.app_writer);
    assert.match(
      await denied(writer.insert({ collection_name: "documents", data: [{ id: 4, v: [0, 0, 0, 1] }] })),
      /PrivilegeInsert: permission deny to app_writer/,
    );
    const again = await applyAccess(env, writeFiles(tmp, "v2-again", V2, PW2));
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(
      again.summary!.actions.map((a) => a.action),
      ["resetPassword", "resetPassword", "resetPassword"],
    );
  });
});
