/**
 * Users and roles for disaster recovery: `backup-rbac` writes Milvus's users (with their roles), roles,
 * grants and privilege groups into one blob, `rbac/<rbacId>.json`; `restore-rbac` adds to a server what
 * it lacks from such a blob; `list-rbac` lists the blobs. A collection restore never touches users or
 * roles: restoring them is always this separate, explicit command.
 *
 * Two ways to read a server, recorded in the document as `method`:
 * - "backup-rbac": the server's BackupRBAC call (Milvus 2.5+; SDK `backupRBAC`). Its answer carries each
 *   user's password as Milvus stores it, a bcrypt hash: Catalog.BackupRBAC in milvus-io/milvus
 *   internal/metastore/kv/rootcoord/kv_catalog.go fills UserInfo.Password from ListCredentialsWithPasswd
 *   (the EncryptedPassword of each credential) and leaves out root, admin and public. The hash is kept
 *   in the document, so the container's access control protects it like any credential.
 * - "listing": users, roles and grants read one by one (Milvus 2.3/2.4, which answer BackupRBAC with
 *   gRPC UNIMPLEMENTED, seen by the SDK as `{}`: measured here on Milvus 2.3.5). Nothing can read a
 *   password back, so such a document has no passwords at all.
 *
 * restore-rbac never uses RestoreRBAC to restore everything at once: MetaTable.CheckIfRBACRestorable
 * (internal/rootcoord/meta_table.go) refuses the whole request when any role, user or privilege group
 * in it already exists ("role [x] already exists"), so it cannot add what is missing to a server that
 * has some of it, and Catalog.RestoreRBAC writes each user's hash back with AlterCredential. Here it is
 * used for one thing only: creating a missing user with its backed-up hash (a request holding that one
 * user and no roles), when no password file is given for it. Everything else uses the ordinary calls,
 * which also work on 2.3.5.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  OperatePrivilegeType,
  promisify,
  type MilvusClient,
  type RestoreRBACRequest,
} from "@zilliz/milvus2-sdk-node";
import { loadPasswords, readAccessState } from "./access";
import { BUILTIN_ROLES, BUILTIN_USER, grantKey, type AccessState, type Grant } from "./accessPlan";
import type { BlobStore } from "./blobStore";
import { checkStatus, describeError, UsageError, WorkerError, type MilvusStatus } from "./errors";
import type { Log } from "./log";
import { Milvus } from "./milvus";
import { TOOL } from "./version";

export const RBAC_KIND = "milvus-rbac-backup";
export const RBAC_FORMAT_VERSION = 1;
export const RBAC_PREFIX = "rbac/";
export const RBAC_ID_PATTERN = /^rbac-\d{8}T\d{6}Z-[0-9a-f]{6}$/;
export const rbacPath = (rbacId: string) => `${RBAC_PREFIX}${rbacId}.json`;

const CALL_TIMEOUT_MS = 60_000;

export type RbacMethod = "backup-rbac" | "listing";

export interface RbacUser {
  name: string;
  /** Role names, sorted; the implicit `public` is never listed. May include the built-in `admin`. */
  roles: string[];
  /** The bcrypt hash Milvus stores (method "backup-rbac" only). Never printed or logged. */
  passwordHash?: string;
}

export interface RbacRole {
  name: string;
  description?: string;
}

export type RbacGrant = { role: string } & Grant;

export interface RbacPrivilegeGroup {
  name: string;
  privileges: string[];
}

export interface RbacDocument {
  kind: typeof RBAC_KIND;
  formatVersion: number;
  rbacId: string;
  /** When the server was read, ISO 8601 UTC. */
  time: string;
  tool: { name: string; version: string };
  method: RbacMethod;
  /** Listing only: the databases whose grants were read (grants elsewhere are not in the document). */
  databases?: string[];
  /** Sorted by name; never root. */
  users: RbacUser[];
  /** Sorted by name; never admin or public. */
  roles: RbacRole[];
  /** Sorted by role, then grantKey. */
  grants: RbacGrant[];
  /** Sorted by name. */
  privilegeGroups: RbacPrivilegeGroup[];
}

export function newRbacId(at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `rbac-${stamp}-${randomBytes(3).toString("hex")}`;
}

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const grantOrder = (a: RbacGrant, b: RbacGrant) => {
  const ka = `${a.role}\n${grantKey(a)}`;
  const kb = `${b.role}\n${grantKey(b)}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

/**
 * BackupRBACMetaResponse.RBAC_meta as the SDK decodes it: RBACMeta, UserInfo, RoleEntity, GrantEntity
 * and PrivilegeGroupInfo in node_modules/@zilliz/milvus2-sdk-node/dist/milvus/proto-json/milvus.js,
 * field names as in the proto (the SDK loads it with keepCase and defaults: dist/milvus/grpc/
 * GrpcClient.js). The SDK's own `RBACMeta` type (dist/milvus/types/User.d.ts) says `users: User[]`
 * with a `name`, which is not what arrives: UserInfo has `user`, `password` and `roles`.
 */
export interface ProtoRbacMeta {
  users?: { user?: string; password?: string; roles?: { name?: string; description?: string }[] }[];
  roles?: { name?: string; description?: string }[];
  grants?: {
    role?: { name?: string; description?: string };
    object?: { name?: string };
    object_name?: string;
    grantor?: { user?: { name?: string }; privilege?: { name?: string } };
    db_name?: string;
  }[];
  privilege_groups?: { group_name?: string; privileges?: { name?: string }[] }[];
}

type RbacContent = Pick<RbacDocument, "users" | "roles" | "grants" | "privilegeGroups">;

/** The document's content from a BackupRBAC answer (root, admin and public left out, as the server does). */
export function fromBackupRbacMeta(meta: ProtoRbacMeta): RbacContent {
  const users: RbacUser[] = [];
  for (const u of meta.users ?? []) {
    const name = u.user ?? "";
    if (name === "" || name === BUILTIN_USER) continue;
    const roles = [...new Set((u.roles ?? []).map((r) => r.name ?? "").filter((r) => r && r !== "public"))];
    const user: RbacUser = { name, roles: roles.sort() };
    if (u.password) user.passwordHash = u.password;
    users.push(user);
  }
  const roles: RbacRole[] = [];
  for (const r of meta.roles ?? []) {
    const name = r.name ?? "";
    if (name === "" || BUILTIN_ROLES.includes(name)) continue;
    roles.push(r.description ? { name, description: r.description } : { name });
  }
  const grants = new Map<string, RbacGrant>();
  for (const g of meta.grants ?? []) {
    const grant: RbacGrant = {
      role: g.role?.name ?? "",
      object: g.object?.name ?? "",
      name: g.object_name ?? "",
      database: g.db_name ?? "",
      privilege: g.grantor?.privilege?.name ?? "",
    };
    if (BUILTIN_ROLES.includes(grant.role)) continue;
    grants.set(`${grant.role}\n${grantKey(grant)}`, grant);
  }
  const privilegeGroups = (meta.privilege_groups ?? []).map((p) => ({
    name: p.group_name ?? "",
    privileges: [...new Set((p.privileges ?? []).map((x) => x.name ?? ""))].sort(),
  }));
  return {
    users: users.sort(byName),
    roles: roles.sort(byName),
    grants: [...grants.values()].sort(grantOrder),
    privilegeGroups: privilegeGroups.sort(byName),
  };
}

/** The document's content from a server read one call at a time (readAccessState). */
export function fromAccessState(state: AccessState, groups: RbacPrivilegeGroup[]): RbacContent {
  const users = Object.entries(state.users)
    .filter(([name]) => name !== BUILTIN_USER)
    .map(([name, roles]) => ({ name, roles: [...roles].sort() }));
  const roles = Object.keys(state.roles)
    .filter((r) => !BUILTIN_ROLES.includes(r))
    .map((name) => ({ name }));
  const grants: RbacGrant[] = [];
  for (const { name: role } of roles) for (const g of state.roles[role] ?? []) grants.push({ role, ...g });
  return {
    users: users.sort(byName),
    roles: roles.sort(byName),
    grants: grants.sort(grantOrder),
    privilegeGroups: [...groups].sort(byName),
  };
}

/** Throws unless `res` carries a success status; an answer without one means the call is not implemented. */
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

/** The SDK turns gRPC UNIMPLEMENTED into `{}` (getRetryInterceptor, dist/milvus/utils/Grpc.js). */
const unimplemented = (res: unknown) =>
  typeof res === "object" && res !== null && Object.keys(res).length === 0;

/** Custom privilege groups, or undefined when the server has none (before 2.5: ListPrivilegeGroups is UNIMPLEMENTED). */
async function readPrivilegeGroups(client: MilvusClient): Promise<RbacPrivilegeGroup[] | undefined> {
  const res = await client.listPrivilegeGroups();
  if (unimplemented(res)) return undefined;
  ensureOk(res, "listing privilege groups");
  return (res.privilege_groups as ProtoRbacMeta["privilege_groups"] & object).map((p) => ({
    name: p.group_name ?? "",
    privileges: [...new Set((p.privileges ?? []).map((x) => x.name ?? ""))].sort(),
  }));
}

/** Reads the server: through BackupRBAC where it exists, by listing otherwise. */
export async function readRbac(
  client: MilvusClient,
): Promise<RbacContent & { method: RbacMethod; databases?: string[] }> {
  const res = (await client.backupRBAC({ timeout: CALL_TIMEOUT_MS })) as unknown as {
    status?: MilvusStatus;
    RBAC_meta?: ProtoRbacMeta;
  };
  if (!unimplemented(res)) {
    ensureOk(res, "reading users and roles with BackupRBAC");
    return { method: "backup-rbac", ...fromBackupRbacMeta(res.RBAC_meta ?? {}) };
  }
  // readAccessState fails with a clear message on a server without users and roles (Milvus Lite).
  const state = await readAccessState(client, []);
  const dbs = await client.listDatabases();
  ensureOk(dbs, "listing databases");
  const groups = (await readPrivilegeGroups(client)) ?? [];
  return { method: "listing", databases: [...dbs.db_names].sort(), ...fromAccessState(state, groups) };
}

export interface RbacBackupSummary {
  rbacId: string;
  method: RbacMethod;
  users: number;
  roles: number;
  grants: number;
  privilegeGroups: number;
  /** Users whose password hash is in the document (method "backup-rbac"). */
  usersWithPasswordHash: number;
  bytes: number;
}

/** `backup-rbac`: reads the server and writes the one blob (a single upload: it exists whole or not at all). */
export async function backupRbac(milvus: Milvus, store: BlobStore, log: Log): Promise<RbacBackupSummary> {
  const time = new Date();
  const rbacId = newRbacId(time);
  const content = await readRbac(milvus.client);
  const doc: RbacDocument = {
    kind: RBAC_KIND,
    formatVersion: RBAC_FORMAT_VERSION,
    rbacId,
    time: time.toISOString(),
    tool: TOOL,
    ...content,
  };
  const data = Buffer.from(JSON.stringify(doc, null, 2) + "\n", "utf8");
  await store.ensureContainer();
  // Azure makes a blob visible only once it is whole: a Put Blob, or the Put Block List that commits
  // the staged blocks ("Put Block List", Azure Blob REST docs); an interrupted upload leaves nothing
  // under this name, so every listed document is complete.
  await store.put(rbacPath(rbacId), data);
  const summary: RbacBackupSummary = {
    rbacId,
    method: doc.method,
    users: doc.users.length,
    roles: doc.roles.length,
    grants: doc.grants.length,
    privilegeGroups: doc.privilegeGroups.length,
    usersWithPasswordHash: doc.users.filter((u) => u.passwordHash !== undefined).length,
    bytes: data.length,
  };
  log.info("rbac.backup.done", { ...summary }, `wrote ${rbacPath(rbacId)} (${doc.method})`);
  return summary;
}

// ---------------------------------------------------------------------------------------------------
// Reading a document back

const DOC_KEYS = [
  "kind",
  "formatVersion",
  "rbacId",
  "time",
  "tool",
  "method",
  "databases",
  "users",
  "roles",
  "grants",
  "privilegeGroups",
];
const USER_KEYS = ["name", "roles", "passwordHash"];
const ROLE_KEYS = ["name", "description"];
const GRANT_KEYS = ["role", "object", "name", "database", "privilege"];
const GROUP_KEYS = ["name", "privileges"];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const isString = (v: unknown): v is string => typeof v === "string" && v !== "";
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);

/**
 * Checks a stored document strictly: unknown keys, missing fields, root, built-in roles, bindings to
 * roles it does not hold, and grants of roles it does not hold are all errors, each named.
 */
export function parseRbacDocument(data: Buffer, rbacId: string): RbacDocument {
  const what = `RBAC backup ${rbacId}`;
  let doc: unknown;
  try {
    doc = JSON.parse(data.toString("utf8"));
  } catch {
    throw new WorkerError(`${what}: ${rbacPath(rbacId)} is not valid JSON; the document is damaged`);
  }
  if (!isRecord(doc) || doc.kind !== RBAC_KIND)
    throw new WorkerError(`${what}: ${rbacPath(rbacId)} is not an RBAC backup (kind ${RBAC_KIND})`);
  if (typeof doc.formatVersion !== "number" || doc.formatVersion > RBAC_FORMAT_VERSION) {
    throw new WorkerError(
      `${what} has format version ${String(doc.formatVersion)}; this worker reads up to ${RBAC_FORMAT_VERSION}: use a newer worker image`,
    );
  }
  const problems: string[] = [];
  const keys = (obj: Record<string, unknown>, allowed: string[], where: string) => {
    for (const k of Object.keys(obj))
      if (!allowed.includes(k)) problems.push(`unknown key ${JSON.stringify(k)} in ${where}`);
  };
  keys(doc, DOC_KEYS, "the document");
  if (doc.rbacId !== rbacId) problems.push(`it names a different backup (${String(doc.rbacId)})`);
  if (doc.method !== "backup-rbac" && doc.method !== "listing")
    problems.push(`method must be "backup-rbac" or "listing"`);
  if (!isString(doc.time)) problems.push("time is missing");
  const list = (key: string): Record<string, unknown>[] => {
    const v = doc[key];
    if (!Array.isArray(v) || !v.every(isRecord)) {
      problems.push(`${key} must be a list of objects`);
      return [];
    }
    return v;
  };
  const roleNames = new Set<string>();
  for (const [i, r] of list("roles").entries()) {
    keys(r, ROLE_KEYS, `roles[${i}]`);
    if (!isString(r.name)) problems.push(`roles[${i}].name is missing`);
    else if (BUILTIN_ROLES.includes(r.name)) problems.push(`roles[${i}]: ${r.name} is a built-in role`);
    else roleNames.add(r.name);
    if (r.description !== undefined && typeof r.description !== "string")
      problems.push(`roles[${i}].description must be text`);
  }
  for (const [i, u] of list("users").entries()) {
    keys(u, USER_KEYS, `users[${i}]`);
    if (!isString(u.name)) problems.push(`users[${i}].name is missing`);
    else if (u.name === BUILTIN_USER) problems.push(`users[${i}]: root is never backed up or restored`);
    if (!isStringList(u.roles)) problems.push(`users[${i}].roles must be a list of role names`);
    else {
      for (const r of u.roles)
        if (r !== "admin" && !roleNames.has(r))
          problems.push(
            `users[${i}] (${String(u.name)}) is bound to role ${r}, which the document does not hold`,
          );
    }
    if (u.passwordHash !== undefined && !isString(u.passwordHash))
      problems.push(`users[${i}].passwordHash must be text`);
  }
  const groupNames = new Set<string>();
  for (const [i, g] of list("privilegeGroups").entries()) {
    keys(g, GROUP_KEYS, `privilegeGroups[${i}]`);
    if (!isString(g.name)) problems.push(`privilegeGroups[${i}].name is missing`);
    else groupNames.add(g.name);
    if (!isStringList(g.privileges)) problems.push(`privilegeGroups[${i}].privileges must be a list`);
  }
  for (const [i, g] of list("grants").entries()) {
    keys(g, GRANT_KEYS, `grants[${i}]`);
    for (const k of GRANT_KEYS) if (!isString(g[k])) problems.push(`grants[${i}].${k} is missing`);
    if (isString(g.role) && !roleNames.has(g.role))
      problems.push(`grants[${i}] is of role ${g.role}, which the document does not hold`);
  }
  if (doc.databases !== undefined && !isStringList(doc.databases))
    problems.push("databases must be a list of names");
  if (problems.length > 0) throw new WorkerError(`${what} is not usable: ${problems.join("; ")}`);
  return doc as unknown as RbacDocument;
}

export async function loadRbacDocument(store: BlobStore, rbacId: string): Promise<RbacDocument> {
  if (!(await store.exists(rbacPath(rbacId)))) {
    throw new WorkerError(
      `RBAC backup ${rbacId} not found in ${store.location} (no ${rbacPath(rbacId)}); run \`list-rbac\` to see the available ones`,
    );
  }
  return parseRbacDocument(await store.get(rbacPath(rbacId)), rbacId);
}

export interface RbacListing {
  rbacId: string;
  time: string;
  method: RbacMethod;
  users: number;
  roles: number;
  grants: number;
  privilegeGroups: number;
}

/** A readable RBAC backup as stored: its listing, blob name and the storage's lastModified. */
export interface RbacStored extends RbacListing {
  name: string;
  lastModified: Date;
}

/**
 * Every blob under `rbac/`: the readable documents, and apart from them each blob that is not one
 * (`rbacId` set: named like a document but unusable; unset: a name no RBAC backup has), with why.
 * A read that fails for another reason than the worker's own checks is thrown, never hidden.
 */
export async function scanRbac(store: BlobStore): Promise<{
  documents: RbacStored[];
  unreadable: { name: string; rbacId?: string; reason: string }[];
}> {
  const documents: RbacStored[] = [];
  const unreadable: { name: string; rbacId?: string; reason: string }[] = [];
  for await (const b of store.list(RBAC_PREFIX)) {
    const rbacId = /^rbac\/(.+)\.json$/.exec(b.name)?.[1];
    if (!rbacId || !RBAC_ID_PATTERN.test(rbacId)) {
      unreadable.push({
        name: b.name,
        reason: `not an RBAC backup name (${RBAC_PREFIX}rbac-<yyyymmddThhmmssZ>-<6 hex>.json)`,
      });
      continue;
    }
    try {
      const d = parseRbacDocument(await store.get(b.name), rbacId);
      documents.push({
        rbacId,
        time: d.time,
        method: d.method,
        users: d.users.length,
        roles: d.roles.length,
        grants: d.grants.length,
        privilegeGroups: d.privilegeGroups.length,
        name: b.name,
        lastModified: b.lastModified,
      });
    } catch (e) {
      if (!(e instanceof WorkerError)) throw e;
      unreadable.push({ name: b.name, rbacId, reason: describeError(e) });
    }
  }
  documents.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  return { documents, unreadable };
}

/** `list-rbac`: every RBAC backup, newest first; an unreadable one is listed apart with its reason. */
export async function listRbac(
  store: BlobStore,
): Promise<{ backups: RbacListing[]; damaged: { rbacId: string; reason: string }[] }> {
  const { documents, unreadable } = await scanRbac(store);
  return {
    backups: documents.map(({ name: _name, lastModified: _modified, ...listing }) => listing),
    damaged: unreadable.flatMap((u) =>
      u.rbacId === undefined ? [] : [{ rbacId: u.rbacId, reason: u.reason }],
    ),
  };
}

// ---------------------------------------------------------------------------------------------------
// Restoring

export type RbacAction =
  | { action: "createPrivilegeGroup"; group: string }
  | { action: "addPrivilegesToGroup"; group: string; privileges: string[] }
  | { action: "createRole"; role: string }
  | ({ action: "grant"; role: string } & Grant)
  /** `password`: where it comes from, "file" (--passwords-dir) or "hash" (the backed-up hash). */
  | { action: "createUser"; user: string; password: "file" | "hash" }
  | { action: "addUserToRole"; user: string; role: string };

/** What restore-rbac finds on the target server. */
export interface RbacTarget {
  state: AccessState;
  /** Undefined: the server has no privilege groups (before Milvus 2.5). */
  privilegeGroups?: RbacPrivilegeGroup[];
  /** The server takes RestoreRBAC (Milvus 2.5+), so a user can be created from its hash. */
  restoreRbac: boolean;
}

export interface RbacPlan {
  actions: RbacAction[];
  /** Users of the document that are missing and cannot be created: no password file and no usable hash. */
  needsPassword: string[];
  /** Users of the document that exist already: their passwords are left as they are. */
  existingUsers: string[];
}

/**
 * What to add so the server holds everything in the document. Purely additive: nothing is revoked,
 * dropped, removed or changed, and an existing user's password is never touched. Order: privilege
 * groups (grants may name them), roles, grants, users, bindings. A password file wins over the
 * backed-up hash: it is what the operator asked for.
 */
export function planRbacRestore(doc: RbacDocument, target: RbacTarget, passwordFiles: Set<string>): RbacPlan {
  const actions: RbacAction[] = [];
  if (doc.privilegeGroups.length > 0 && target.privilegeGroups === undefined) {
    throw new WorkerError(
      `RBAC backup ${doc.rbacId} has ${doc.privilegeGroups.length} privilege group(s) (${doc.privilegeGroups
        .map((g) => g.name)
        .join(
          ", ",
        )}), and this Milvus has none (privilege groups came with Milvus 2.5): restore into Milvus 2.5 or later. Nothing was changed`,
    );
  }
  const haveGroups = new Map((target.privilegeGroups ?? []).map((g) => [g.name, new Set(g.privileges)]));
  for (const g of doc.privilegeGroups) {
    const have = haveGroups.get(g.name);
    if (!have) actions.push({ action: "createPrivilegeGroup", group: g.name });
    const missing = g.privileges.filter((p) => !have?.has(p));
    if (missing.length > 0)
      actions.push({ action: "addPrivilegesToGroup", group: g.name, privileges: missing });
  }
  const has = (rec: Record<string, unknown>, key: string) => Object.hasOwn(rec, key);
  for (const r of doc.roles)
    if (!has(target.state.roles, r.name)) actions.push({ action: "createRole", role: r.name });
  for (const g of doc.grants) {
    const existing = new Set(
      (has(target.state.roles, g.role) ? (target.state.roles[g.role] ?? []) : []).map(grantKey),
    );
    if (!existing.has(grantKey(g))) {
      const { role, object, name, database, privilege } = g;
      actions.push({ action: "grant", role, object, name, database, privilege });
    }
  }
  const needsPassword: string[] = [];
  const existingUsers: string[] = [];
  const created = new Set<string>();
  for (const u of doc.users) {
    if (has(target.state.users, u.name)) existingUsers.push(u.name);
    else if (passwordFiles.has(u.name)) {
      actions.push({ action: "createUser", user: u.name, password: "file" });
      created.add(u.name);
    } else if (u.passwordHash !== undefined && target.restoreRbac) {
      actions.push({ action: "createUser", user: u.name, password: "hash" });
      created.add(u.name);
    } else needsPassword.push(u.name);
  }
  for (const u of doc.users) {
    if (!created.has(u.name) && !has(target.state.users, u.name)) continue;
    const bound = new Set(has(target.state.users, u.name) ? (target.state.users[u.name] ?? []) : []);
    for (const role of u.roles)
      if (!bound.has(role)) actions.push({ action: "addUserToRole", user: u.name, role });
  }
  return { actions, needsPassword, existingUsers };
}

/** One line naming an action (never a password: actions hold none). */
export function describeRbacAction(a: RbacAction): string {
  switch (a.action) {
    case "createPrivilegeGroup":
      return `create privilege group ${a.group}`;
    case "addPrivilegesToGroup":
      return `add ${a.privileges.join(", ")} to privilege group ${a.group}`;
    case "createRole":
      return `create role ${a.role}`;
    case "grant":
      return `grant ${a.privilege} on ${a.object} ${a.database}/${a.name} to role ${a.role}`;
    case "createUser":
      return `create user ${a.user} (password from ${a.password === "file" ? "its password file" : "the backed-up hash"})`;
    case "addUserToRole":
      return `add user ${a.user} to role ${a.role}`;
  }
}

function raw<T>(client: MilvusClient, method: string, request: object): Promise<T> {
  return promisify(client.channelPool, method, request, CALL_TIMEOUT_MS) as Promise<T>;
}

async function readTarget(client: MilvusClient, doc: RbacDocument, needHashes: boolean): Promise<RbacTarget> {
  const databases = [...new Set(doc.grants.map((g) => g.database))];
  const state = await readAccessState(client, databases);
  const privilegeGroups = await readPrivilegeGroups(client);
  // Only asked when a user may need it: the answer carries the target's own hashes, which are dropped.
  let restoreRbac = false;
  if (needHashes) restoreRbac = !unimplemented(await client.backupRBAC({ timeout: CALL_TIMEOUT_MS }));
  return { state, privilegeGroups, restoreRbac };
}

async function execute(
  client: MilvusClient,
  a: RbacAction,
  doc: RbacDocument,
  passwords: Map<string, string>,
): Promise<void> {
  const what = describeRbacAction(a);
  switch (a.action) {
    case "createPrivilegeGroup":
      ensureOk(await client.createPrivilegeGroup({ group_name: a.group }), what);
      return;
    case "addPrivilegesToGroup":
      ensureOk(await client.addPrivilegesToGroup({ group_name: a.group, privileges: a.privileges }), what);
      return;
    case "createRole": {
      const description = doc.roles.find((r) => r.name === a.role)?.description;
      ensureOk(await client.createRole({ roleName: a.role, description }), what);
      return;
    }
    case "grant":
      // OperatePrivilege with an explicit db_name: the SDK's grantPrivilege sends none (backup/access.ts).
      ensureOk(
        await raw(client, "OperatePrivilege", {
          entity: {
            role: { name: a.role },
            object: { name: a.object },
            object_name: a.name,
            db_name: a.database,
            grantor: { privilege: { name: a.privilege } },
          },
          type: OperatePrivilegeType.Grant,
        }),
        what,
      );
      return;
    case "createUser":
      if (a.password === "file") {
        ensureOk(await client.createUser({ username: a.user, password: passwords.get(a.user) ?? "" }), what);
      } else {
        // The SDK's RestoreRBACRequest type has the wrong user shape (see ProtoRbacMeta).
        const request = restoreUserRequest(doc, a.user) as unknown as RestoreRBACRequest;
        ensureOk(await client.restoreRBAC(request), what);
      }
      return;
    case "addUserToRole":
      ensureOk(await client.addUserToRole({ username: a.user, roleName: a.role }), what);
      return;
  }
}

/**
 * The RestoreRBAC request that creates one user with its backed-up hash and nothing else: roles are
 * bound afterwards with AddUserToRole, like every other binding. Shaped as RestoreRBACMetaRequest's
 * RBAC_meta (proto-json RBACMeta/UserInfo, see ProtoRbacMeta).
 */
export function restoreUserRequest(
  doc: RbacDocument,
  user: string,
): { RBAC_meta: Required<ProtoRbacMeta>; timeout: number } {
  const u = doc.users.find((x) => x.name === user);
  if (u?.passwordHash === undefined) throw new WorkerError(`user ${user} has no backed-up password hash`);
  return {
    RBAC_meta: {
      users: [{ user, password: u.passwordHash, roles: [] }],
      roles: [],
      grants: [],
      privilege_groups: [],
    },
    timeout: CALL_TIMEOUT_MS,
  };
}

/**
 * Password files (same convention as apply-access: a file named exactly like the user, one trailing
 * line break dropped, 6 to 72 bytes) for the document's users that have one in `dir`; a user without a
 * file is simply not in the result. A file that exists but is unusable stops the command before anything
 * changes. Messages name files, never contents.
 */
export function loadRbacPasswords(dir: string | undefined, users: string[]): Map<string, string> {
  if (dir === undefined) return new Map();
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch (e) {
    throw new UsageError(
      `restore-rbac: --passwords-dir ${dir} cannot be read: ${(e as NodeJS.ErrnoException).code ?? describeError(e)}`,
    );
  }
  if (!stat.isDirectory()) throw new UsageError(`restore-rbac: --passwords-dir ${dir} is not a directory`);
  const present = users.filter((u) => fs.existsSync(path.join(dir, u)));
  try {
    return loadPasswords(dir, present);
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(e.message.replace(/^apply-access: /, "restore-rbac: "));
    throw e;
  }
}

export interface RbacRestoreOptions {
  rbacId?: string;
  passwordsDir?: string;
  dryRun: boolean;
}

export interface RbacRestoreSummary {
  rbacId: string;
  method: RbacMethod;
  dryRun: boolean;
  /** The plan (dry run) or the actions applied, in order. No passwords. */
  actions: RbacAction[];
  needsPassword: string[];
  existingUsers: string[];
  /** Every user, role, grant, privilege group and binding of the document is now on the server. */
  complete: boolean;
}

/** `restore-rbac`: checks the flags, the document and the password files, then plans and applies. */
export async function restoreRbac(
  connect: () => Promise<Milvus>,
  store: BlobStore,
  opts: RbacRestoreOptions,
  log: Log,
): Promise<RbacRestoreSummary> {
  if (!opts.rbacId)
    throw new UsageError("restore-rbac: --backup <rbacId> is required (ids are printed by `list-rbac`)");
  if (!RBAC_ID_PATTERN.test(opts.rbacId)) {
    throw new UsageError(
      `restore-rbac: --backup ${JSON.stringify(opts.rbacId)} is not an RBAC backup id (rbac-<yyyymmddThhmmssZ>-<6 hex>, printed by \`backup-rbac\` and \`list-rbac\`)`,
    );
  }
  const doc = await loadRbacDocument(store, opts.rbacId);
  const passwords = loadRbacPasswords(
    opts.passwordsDir,
    doc.users.map((u) => u.name),
  );
  const milvus = await connect();
  try {
    const client = milvus.client;
    const needHashes = doc.users.some((u) => u.passwordHash !== undefined && !passwords.has(u.name));
    const files = new Set(passwords.keys());
    const plan = planRbacRestore(doc, await readTarget(client, doc, needHashes), files);
    log.info("rbac.restore.plan", {
      rbacId: doc.rbacId,
      actions: plan.actions.length,
      needsPassword: plan.needsPassword,
      dryRun: opts.dryRun,
    });
    const result = (actions: RbacAction[], dryRun: boolean): RbacRestoreSummary => ({
      rbacId: doc.rbacId,
      method: doc.method,
      dryRun,
      actions,
      needsPassword: plan.needsPassword,
      existingUsers: plan.existingUsers,
      complete: plan.needsPassword.length === 0,
    });
    if (opts.dryRun) return result(plan.actions, true);
    const done: RbacAction[] = [];
    for (const [i, a] of plan.actions.entries()) {
      try {
        await execute(client, a, doc, passwords);
      } catch (e) {
        throw new WorkerError(
          `restore-rbac: step ${i + 1} of ${plan.actions.length} (${describeRbacAction(a)}) failed: ${describeError(e)}. ` +
            `${i} earlier step(s) were applied; restore-rbac only adds what is missing, so fix the cause and run it again.`,
        );
      }
      log.info("rbac.restore.applied", { step: i + 1, of: plan.actions.length, ...a }, describeRbacAction(a));
      done.push(a);
    }
    // Read back: nothing may be left but the users that need a password (and their bindings).
    const recheck = planRbacRestore(doc, await readTarget(client, doc, false), new Set());
    const left = [
      ...recheck.actions.map(describeRbacAction),
      ...recheck.needsPassword.filter((u) => !plan.needsPassword.includes(u)).map((u) => `user ${u}`),
    ];
    if (left.length > 0) {
      throw new WorkerError(
        `restore-rbac: every step succeeded, but the server still lacks: ${left.slice(0, 5).join("; ")}${
          left.length > 5 ? ` (and ${left.length - 5} more)` : ""
        }`,
      );
    }
    return result(done, false);
  } finally {
    await milvus.close();
  }
}
