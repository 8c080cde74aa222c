/**
 * `apply-access`: reads a declaration of Milvus users and roles (backup/accessPlan.ts describes the
 * format and the rules), reads the users, roles and grants the server has, and applies the difference.
 * It runs as root (MILVUS_TOKEN=root:<password>), from a Kubernetes Job; it is the only thing that uses
 * the root password, and gives the applications and the backup worker their own users.
 *
 * Calls go through the SDK where its request is right for every server version, and through the SDK's
 * raw `promisify` on the client's own channel pool where it is not (node_modules/@zilliz/
 * milvus2-sdk-node/dist/milvus/grpc/User.js):
 * - grants are read with SelectGrant {role, db_name} once per (role, database): the SDK's `listGrants`
 *   sends db_name "*", which Milvus 2.3.5 answers with no grants at all, and its `selectGrant` needs an
 *   object type and name. The databases are those ListDatabases returns plus the declared ones.
 * - grants are given and taken with OperatePrivilege carrying an explicit db_name: the SDK's
 *   `grantPrivilege`/`revokePrivilege` send none, so the server would use the connection's database.
 *   (OperatePrivilegeV2 would take a database too, but exists only from Milvus 2.5.)
 * Every answer must carry a status that says success. The SDK turns a gRPC UNIMPLEMENTED into an empty
 * answer `{}` (getRetryInterceptor in dist/milvus/utils/Grpc.js), and that is what Milvus Lite, which
 * has no users or roles, gives for every call here: an answer without a status is a failure.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { OperatePrivilegeType, promisify, type MilvusClient } from "@zilliz/milvus2-sdk-node";
import { checkStatus, describeError, UsageError, WorkerError, type MilvusStatus } from "./errors";
import type { Log } from "./log";
import { Milvus, type MilvusSettings } from "./milvus";
import {
  BUILTIN_ROLES,
  DeclarationError,
  describeAction,
  grantKey,
  own,
  parseDeclaration,
  planAccess,
  record,
  type AccessAction,
  type AccessState,
  type Declaration,
  type Grant,
} from "./accessPlan";

const CALL_TIMEOUT_MS = 60_000;

/**
 * Passwords are hashed with bcrypt (pkg/util/crypto PasswordEncrypt), which takes at most 72 bytes
 * (newer golang.org/x/crypto/bcrypt rejects longer ones, older ones cut them); Milvus's own minimum is
 * proxy.minPasswordLength, 6 by default (paramtable component_param.go).
 */
const MIN_PASSWORD_BYTES = 6;
const MAX_PASSWORD_BYTES = 72;

/** Reads and validates the declaration file; every problem is a usage error (exit code 2). */
export function loadDeclaration(file: string): Declaration {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`apply-access: cannot read the declaration ${file}: ${describeError(e)}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`apply-access: the declaration ${file} is not valid JSON: ${describeError(e)}`);
  }
  try {
    return parseDeclaration(doc);
  } catch (e) {
    if (e instanceof DeclarationError) throw new UsageError(`apply-access: ${file}: ${e.message}`);
    throw e;
  }
}

/**
 * One password per declared user, from the file named exactly like the user (a Kubernetes Secret
 * mounted as a directory). One trailing line break is dropped (`echo pw > file` and most editors add
 * one; a password cannot contain one). Every missing or unusable file is reported before anything is
 * changed; the messages name files, never contents.
 */
export function loadPasswords(dir: string, users: string[]): Map<string, string> {
  const passwords = new Map<string, string>();
  const problems: string[] = [];
  for (const user of users) {
    const file = path.join(dir, user);
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      problems.push(
        code === "ENOENT"
          ? `no password file for user ${user} (expected ${file})`
          : `cannot read the password file of ${user} (${file}): ${code ?? describeError(e)}`,
      );
      continue;
    }
    const pw = text.replace(/\r?\n$/, "");
    const bytes = Buffer.byteLength(pw, "utf8");
    if (/[\r\n\0]/.test(pw)) problems.push(`the password file of ${user} (${file}) has more than one line`);
    else if (bytes < MIN_PASSWORD_BYTES || bytes > MAX_PASSWORD_BYTES) {
      problems.push(
        `the password of ${user} (${file}) has ${bytes} bytes; Milvus accepts ${MIN_PASSWORD_BYTES} to ${MAX_PASSWORD_BYTES}`,
      );
    } else passwords.set(user, pw);
  }
  if (problems.length > 0) {
    throw new UsageError(`apply-access: ${problems.join("; ")} (nothing was changed)`);
  }
  return passwords;
}

/** Throws unless `res` is, or carries, a status that says success; no status at all is a failure too. */
function ensureOk(res: unknown, what: string): void {
  const r = (res ?? {}) as { status?: MilvusStatus } & MilvusStatus;
  const status: MilvusStatus | undefined =
    r.status ?? (r.error_code !== undefined || r.code !== undefined ? r : undefined);
  if (status === undefined) {
    throw new WorkerError(
      `${what}: the server returned no status (it does not implement this call; Milvus Lite, for one, has no users or roles)`,
    );
  }
  checkStatus(status, what);
}

interface RawGrantEntity {
  object?: { name?: string };
  object_name?: string;
  db_name?: string;
  grantor?: { privilege?: { name?: string } };
}

function raw<T>(client: MilvusClient, method: string, request: object): Promise<T> {
  return promisify(client.channelPool, method, request, CALL_TIMEOUT_MS) as Promise<T>;
}

/**
 * The users (with their roles), the roles, and the grants of every role that is not built in, in every
 * database Milvus lists plus `extraDatabases` (grants on a database that does not exist yet are kept
 * by Milvus, so the declared ones are always read).
 */
export async function readAccessState(client: MilvusClient, extraDatabases: string[]): Promise<AccessState> {
  const state: AccessState = { users: record<string[]>(), roles: record<Grant[]>() };
  const users = await client.listUsers();
  ensureOk(users, "listing users");
  for (const user of users.usernames) {
    const u = await client.describeUser({ username: user, includeRoleInfo: true });
    ensureOk(u, `reading the roles of user ${user}`);
    const roles = (u.results[0]?.roles ?? []).map((r) => r.name).filter((r) => r !== "public");
    state.users[user] = [...new Set(roles)].sort();
  }
  const roles = await client.listRoles();
  ensureOk(roles, "listing roles");
  const dbs = await client.listDatabases();
  ensureOk(dbs, "listing databases");
  const databases = [...new Set([...dbs.db_names, ...extraDatabases])].sort();
  for (const r of roles.results) {
    const role = r.role.name;
    const grants = new Map<string, Grant>();
    if (!BUILTIN_ROLES.includes(role)) {
      for (const db of databases) {
        const res = await raw<{ entities?: RawGrantEntity[] }>(client, "SelectGrant", {
          entity: { role: { name: role }, db_name: db },
        });
        ensureOk(res, `reading the grants of role ${role} in database ${db}`);
        for (const e of res.entities ?? []) {
          const g: Grant = {
            object: e.object?.name ?? "",
            name: e.object_name ?? "",
            database: e.db_name || db,
            privilege: e.grantor?.privilege?.name ?? "",
          };
          grants.set(grantKey(g), g);
        }
      }
    }
    state.roles[role] = [...grants.values()];
  }
  return state;
}

export type AppliedAction = AccessAction & {
  /** For resetPassword: how (never the password). */
  method?: "in-place" | "recreated";
};

async function operatePrivilege(
  client: MilvusClient,
  a: { action: "grant" | "revoke"; role: string } & Grant,
  type: OperatePrivilegeType,
) {
  const res = await raw<unknown>(client, "OperatePrivilege", {
    entity: {
      role: { name: a.role },
      object: { name: a.object },
      object_name: a.name,
      db_name: a.database,
      grantor: { privilege: { name: a.privilege } },
    },
    type,
  });
  ensureOk(res, describeAction(a));
}

/**
 * Sets a user's password to `password`. UpdateCredential checks the old password unless the caller is
 * listed in common.security.superUsers, which is empty by default (internal/proxy/impl.go
 * UpdateCredential, the same on 2.3 and later; milvus-io/milvus PR #23729 added the superUsers
 * exception; Milvus 2.3.5's milvus.yaml has `# superUsers: root` commented out). So the new password is
 * first offered as the old one too: that succeeds when it has not changed (or when root is a superuser).
 * Otherwise ("old password not correct", code 1400 on 2.3.5) the user is deleted and created again with
 * the new password (deleting a user also removes its role memberships, seen on 2.3.5), and its declared
 * roles are given back at once. Its connections fail in between, for a moment.
 */
async function resetPassword(
  client: MilvusClient,
  user: string,
  password: string,
  roles: string[],
): Promise<"in-place" | "recreated"> {
  const res = await client.updateUser({ username: user, oldPassword: password, newPassword: password });
  try {
    ensureOk(res, `resetting the password of ${user}`);
    return "in-place";
  } catch (e) {
    if (!(e instanceof WorkerError) || !/old password/i.test(e.message)) throw e;
  }
  ensureOk(await client.deleteUser({ username: user }), `deleting user ${user} to set its new password`);
  ensureOk(
    await client.createUser({ username: user, password }),
    `creating user ${user} again with its new password (it is now missing: run apply-access again)`,
  );
  for (const role of roles) {
    ensureOk(
      await client.addUserToRole({ username: user, roleName: role }),
      `giving the recreated user ${user} its role ${role} back`,
    );
  }
  return "recreated";
}

/**
 * Applies the actions in order. A failing step stops the run with an error that names the step and
 * how many were applied before it; since the plan is recomputed from the server on every run, running
 * again finishes the job.
 */
export async function executePlan(
  client: MilvusClient,
  plan: AccessAction[],
  declaration: Declaration,
  passwords: Map<string, string>,
  log: Log,
): Promise<AppliedAction[]> {
  const done: AppliedAction[] = [];
  /** Memberships already given back to recreated users (their planned addUserToRole is then done). */
  const restored = new Set<string>();
  for (const [i, a] of plan.entries()) {
    const applied: AppliedAction = { ...a };
    try {
      switch (a.action) {
        case "createRole":
          ensureOk(await client.createRole({ roleName: a.role }), describeAction(a));
          break;
        case "dropRole":
          ensureOk(await client.dropRole({ roleName: a.role }), describeAction(a));
          break;
        case "grant":
          await operatePrivilege(client, a, OperatePrivilegeType.Grant);
          break;
        case "revoke":
          await operatePrivilege(client, a, OperatePrivilegeType.Revoke);
          break;
        case "createUser":
          ensureOk(
            await client.createUser({ username: a.user, password: passwords.get(a.user) ?? "" }),
            describeAction(a),
          );
          break;
        case "deleteUser":
          ensureOk(await client.deleteUser({ username: a.user }), describeAction(a));
          break;
        case "resetPassword": {
          const roles = own(declaration.users, a.user)?.roles ?? [];
          applied.method = await resetPassword(client, a.user, passwords.get(a.user) ?? "", roles);
          if (applied.method === "recreated") for (const r of roles) restored.add(`${a.user}\n${r}`);
          break;
        }
        case "addUserToRole":
          if (restored.has(`${a.user}\n${a.role}`)) break;
          ensureOk(await client.addUserToRole({ username: a.user, roleName: a.role }), describeAction(a));
          break;
        case "removeUserFromRole":
          ensureOk(
            await client.removeUserFromRole({ username: a.user, roleName: a.role }),
            describeAction(a),
          );
          break;
      }
    } catch (e) {
      throw new WorkerError(
        `apply-access: step ${i + 1} of ${plan.length} (${describeAction(a)}) failed: ${describeError(e)}. ` +
          `${i} earlier step(s) were applied; the plan is recomputed from the server on every run, so fix the cause and run apply-access again.`,
      );
    }
    log.info("access.applied", { step: i + 1, of: plan.length, ...applied }, describeAction(a));
    done.push(applied);
  }
  return done;
}

export interface ApplyAccessOptions {
  /** --declaration: the JSON declaration (required). */
  declarationFile?: string;
  /** --passwords-dir: one file per declared user, named like the user (required). */
  passwordsDir?: string;
  dryRun: boolean;
}

export interface AccessSummary {
  dryRun: boolean;
  /** The plan (dry run) or the actions applied, in order; resetPassword says how. No passwords. */
  actions: AppliedAction[];
  /** Number of actions of each kind. */
  counts: Record<string, number>;
}

function countActions(actions: AccessAction[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of actions) counts[a.action] = (counts[a.action] ?? 0) + 1;
  return counts;
}

/** The whole command: validate the files, read the server, plan, apply (unless a dry run), verify. */
export async function applyAccess(
  settings: MilvusSettings,
  opts: ApplyAccessOptions,
  log: Log,
): Promise<AccessSummary> {
  // Everything that needs no network is checked before connecting.
  if (!opts.declarationFile || !opts.passwordsDir) {
    throw new UsageError(
      "apply-access: --declaration <file.json> and --passwords-dir <dir> are required (see `apply-access --help`)",
    );
  }
  const declaration = loadDeclaration(opts.declarationFile);
  const passwords = loadPasswords(opts.passwordsDir, Object.keys(declaration.users).sort());
  const databases = Object.values(declaration.roles).map((r) => r.database);
  const milvus = await Milvus.connect(settings);
  try {
    const client = milvus.client;
    const plan = planAccess(declaration, await readAccessState(client, databases));
    // Counts stay out of the log: Log redacts anything shaped like `password: value`, which a
    // {"resetPassword": n} entry is (it does appear in the summary on stdout).
    log.info("access.plan", { actions: plan.length, dryRun: opts.dryRun });
    if (opts.dryRun) return { dryRun: true, actions: plan, counts: countActions(plan) };
    const applied = await executePlan(client, plan, declaration, passwords, log);
    // Read everything back: what is left to do must be the password resets of every run, nothing else.
    const left = planAccess(declaration, await readAccessState(client, databases)).filter(
      (a) => a.action !== "resetPassword",
    );
    if (left.length > 0) {
      throw new WorkerError(
        `apply-access: every step succeeded, but the server still differs from the declaration: ${left
          .slice(0, 5)
          .map(describeAction)
          .join("; ")}${left.length > 5 ? ` (and ${left.length - 5} more)` : ""}`,
      );
    }
    return { dryRun: false, actions: applied, counts: countActions(applied) };
  } finally {
    await milvus.close();
  }
}
