/**
 * The pure half of `apply-access`: the declaration format and its strict validation, the mapping of
 * access levels to Milvus privileges, and `planAccess`, which compares a declaration with the users,
 * roles and grants read from a server and returns the ordered actions that make the server match.
 * Nothing here talks to Milvus (backup/access.ts does), so every rule is unit-tested without a server.
 *
 * The declaration is authoritative: whatever it does not name is removed. Access that exists only
 * because someone once granted it by hand is exactly what this command is there to prevent: the
 * declaration in the repository is the one place that says who can do what, it is reviewed like code,
 * and re-applying it repairs drift. Only the built-ins are left alone (see BUILTIN_*).
 */

/** Access levels a declared role can give on its collections. */
export type Access = "read" | "readWrite";

export interface RoleDeclaration {
  /** Milvus database the role's collections live in (grants are per database). */
  database: string;
  /** Collection names, or ["*"] for every collection of the database. */
  collections: string[];
  access: Access;
}

export interface UserDeclaration {
  /** Declared role names, or "admin" (Milvus's built-in all-privileges role). */
  roles: string[];
}

export interface Declaration {
  version: 1;
  roles: Record<string, RoleDeclaration>;
  users: Record<string, UserDeclaration>;
}

/**
 * One v1 grant as Milvus stores it: object type ("Collection" or "Global" for declared grants; whatever
 * the server has for grants read back), object name, database, privilege.
 */
export interface Grant {
  object: string;
  /** Collection name or "*". Global grants always use "*". */
  name: string;
  database: string;
  /** Privilege name as the API spells it (without the "Privilege" prefix of commonpb.ObjectPrivilege). */
  privilege: string;
}

/** Users, their roles and the grants of every role, as read from a server (or as a declaration wants). */
export interface AccessState {
  /** user -> role names (the implicit `public` role is never listed). */
  users: Record<string, string[]>;
  /** role -> grants. */
  roles: Record<string, Grant[]>;
}

export type AccessAction =
  | { action: "createRole"; role: string }
  | ({ action: "grant" | "revoke"; role: string } & Grant)
  | { action: "dropRole"; role: string }
  | { action: "createUser"; user: string }
  | { action: "resetPassword"; user: string }
  | { action: "addUserToRole" | "removeUserFromRole"; user: string; role: string }
  | { action: "deleteUser"; user: string };

/**
 * Never created, changed or removed by apply-access. `root` is the account that runs it (and can only be
 * managed with its own password); `admin` and `public` are created by Milvus itself and cannot be dropped
 * (internal/proxy/impl.go DropRole refuses default roles; pkg/util/constant.go DefaultRoles = admin, public).
 */
export const BUILTIN_USER = "root";
export const BUILTIN_ROLES: readonly string[] = ["admin", "public"];

/**
 * Access levels as v1 privileges (OperatePrivilege with an explicit db_name), chosen to be valid on every
 * Milvus from 2.3 to 2.6:
 *
 * - Every name below is in util.ObjectPrivileges[Collection] of pkg/util/constant.go (milvus-io/milvus,
 *   the 2.5/2.6 pkg/v2 line, commit 3b1e391 as stored), which rootcoord checks when granting, and the
 *   real-server test grants every one of them on Milvus 2.3.5, which answers "not found the privilege
 *   name[...]" for a name it does not know (it does so for DescribeDatabase, added after 2.3, so that one
 *   is not used).
 * - What each call checks is the privilege_ext_obj option of its request message in milvus.proto
 *   (node_modules/@zilliz/milvus2-sdk-node/dist/milvus/proto-json/milvus.js carries it): Search and
 *   HybridSearch -> Search, Query -> Query, DescribeIndex/GetIndexState/GetIndexBuildProgress ->
 *   IndexDetail, GetCollectionStatistics -> GetStatistics, ShowPartitions -> ShowPartitions,
 *   HasPartition -> HasPartition, GetFlushState -> GetFlushState, GetLoadState/GetLoadingProgress ->
 *   GetLoadState (2.4+; Milvus 2.3 checks Load for GetLoadState, so on 2.3 a read role cannot ask for
 *   the load state), Insert/Delete/Upsert/Import/Flush/Load/Release/CreateIndex/DropIndex/
 *   CreatePartition/DropPartition/ManualCompaction -> the privilege of the same name.
 */
export const READ_PRIVILEGES: readonly string[] = [
  "Search",
  "Query",
  "IndexDetail",
  "GetStatistics",
  "GetLoadState",
  "GetLoadingProgress",
  "GetFlushState",
  "ShowPartitions",
  "HasPartition",
];

export const READ_WRITE_PRIVILEGES: readonly string[] = [
  ...READ_PRIVILEGES,
  "Insert",
  "Delete",
  "Upsert",
  "Import",
  "Flush",
  "Load",
  "Release",
  "CreateIndex",
  "DropIndex",
  "CreatePartition",
  "DropPartition",
  "Compaction",
];

/**
 * DescribeCollection is a Global privilege in every version (DescribeCollectionRequest's
 * privilege_ext_obj is object_type Global, object_name_index -1; util.ObjectPrivileges lists it under
 * Global, and Milvus 2.3.5 rejects it on a Collection object). The Node SDK describes a collection before
 * every search, so without it a user can query but not search. Milvus gives it to the built-in `public`
 * role by default, but a role must not depend on that (an operator may revoke it): every declared role
 * gets it, as (Global, "*", its database). It lets the role's users read the schema of every collection
 * in that database, nothing more.
 */
export const GLOBAL_PRIVILEGES: readonly string[] = ["DescribeCollection"];

/**
 * Milvus 2.4+ also grants and revokes these when Load or Flush is granted or revoked
 * (util.RelatedPrivileges in pkg/util/constant.go, applied by Proxy.OperatePrivilege in
 * internal/proxy/impl.go); Milvus 2.3.5 does not. Both access levels already include the related
 * privileges, so what is read back equals what is declared; and when Load or Flush is revoked, the plan
 * grants the related privileges again if the role still needs them (on 2.3 that grant is a no-op: Milvus
 * answers Success for a grant that exists).
 */
export const RELATED_PRIVILEGES: Readonly<Record<string, readonly string[]>> = {
  Load: ["GetLoadState", "GetLoadingProgress"],
  Flush: ["GetFlushState"],
};

/**
 * Role, database and collection names: Milvus's validateName (internal/proxy/util.go: a letter or
 * underscore, then letters, digits, underscores, at most proxy.maxNameLength = 255), without the "$" it
 * also allows. The server checks again; checking here reports every bad name before anything changes.
 */
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
/** proxy.maxUsernameLength defaults to 32 (paramtable component_param.go); the first character is a letter. */
const USER_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

const TOP_KEYS = ["version", "roles", "users"];
const ROLE_KEYS = ["database", "collections", "access"];
const USER_KEYS = ["roles"];

export class DeclarationError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid access declaration: ${problems.join("; ")}`);
    this.name = "DeclarationError";
  }
}

/**
 * Names come from the declaration and the server, so records keyed by them have no prototype (a role
 * named "constructor" or "__proto__" is a name like any other) and are read with `own`.
 */
export function record<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

export function own<T>(rec: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(rec, key) ? rec[key] : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function unknownKeys(obj: Record<string, unknown>, allowed: string[], where: string, problems: string[]) {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      problems.push(`unknown key ${JSON.stringify(k)} in ${where}; allowed keys: ${allowed.join(", ")}`);
    }
  }
}

/**
 * Checks a parsed JSON document against the declaration format and returns it typed. Every problem is
 * reported at once (unknown keys name the key and the keys allowed there), so one run shows them all.
 */
export function parseDeclaration(doc: unknown): Declaration {
  const problems: string[] = [];
  if (!isObject(doc)) throw new DeclarationError(["the declaration must be a JSON object"]);
  unknownKeys(doc, TOP_KEYS, "the declaration", problems);
  if (doc.version !== 1) {
    problems.push(`version must be 1 (got ${JSON.stringify(doc.version ?? null)})`);
  }
  const roles = record<RoleDeclaration>();
  const users = record<UserDeclaration>();
  if (!isObject(doc.roles)) problems.push('"roles" must be an object of role name -> role (use {} for none)');
  else {
    for (const [name, r] of Object.entries(doc.roles)) {
      const where = `roles.${name}`;
      if (BUILTIN_ROLES.includes(name)) {
        problems.push(`${where}: ${name} is a built-in Milvus role and cannot be declared`);
        continue;
      }
      if (!NAME.test(name)) {
        problems.push(
          `${where}: a role name starts with a letter or underscore and has only letters, digits and underscores (at most 255)`,
        );
      }
      if (!isObject(r)) {
        problems.push(`${where} must be an object with ${ROLE_KEYS.join(", ")}`);
        continue;
      }
      unknownKeys(r, ROLE_KEYS, where, problems);
      const database = r.database;
      if (typeof database !== "string" || !NAME.test(database)) {
        problems.push(`${where}.database must be a database name, e.g. "default"`);
      }
      const access = r.access;
      if (access !== "read" && access !== "readWrite") {
        problems.push(
          `${where}.access must be "read" or "readWrite" (got ${JSON.stringify(access ?? null)})`,
        );
      }
      const cols = r.collections;
      if (!Array.isArray(cols) || cols.length === 0) {
        problems.push(`${where}.collections must be a non-empty list of collection names, or ["*"]`);
      } else {
        const seen = new Set<string>();
        for (const c of cols as unknown[]) {
          if (typeof c !== "string" || (c !== "*" && !NAME.test(c))) {
            problems.push(`${where}.collections: ${JSON.stringify(c)} is not a collection name or "*"`);
          } else if (seen.has(c)) problems.push(`${where}.collections lists ${c} twice`);
          seen.add(String(c));
        }
        if (seen.has("*") && cols.length > 1) {
          problems.push(
            `${where}.collections: "*" already means every collection; list nothing else with it`,
          );
        }
      }
      roles[name] = {
        database: String(database),
        collections: Array.isArray(cols) ? cols.map(String) : [],
        access: access === "readWrite" ? "readWrite" : "read",
      };
    }
  }
  if (!isObject(doc.users)) problems.push('"users" must be an object of user name -> user (use {} for none)');
  else {
    for (const [name, u] of Object.entries(doc.users)) {
      const where = `users.${name}`;
      if (name === BUILTIN_USER) {
        problems.push(
          `${where}: root is managed outside the declaration (it is the account that applies it)`,
        );
        continue;
      }
      if (!USER_NAME.test(name)) {
        problems.push(
          `${where}: a user name starts with a letter and has only letters, digits and underscores (at most 32)`,
        );
      }
      if (!isObject(u)) {
        problems.push(`${where} must be an object with ${USER_KEYS.join(", ")}`);
        continue;
      }
      unknownKeys(u, USER_KEYS, where, problems);
      const list = u.roles;
      if (!Array.isArray(list)) {
        problems.push(`${where}.roles must be a list of role names (may be empty)`);
        continue;
      }
      const seen = new Set<string>();
      for (const role of list as unknown[]) {
        if (typeof role !== "string") {
          problems.push(`${where}.roles: ${JSON.stringify(role)} is not a role name`);
        } else if (role === "public") {
          problems.push(`${where}.roles: every user has the public role implicitly; do not list it`);
        } else if (role !== "admin" && !(isObject(doc.roles) && Object.hasOwn(doc.roles, role))) {
          problems.push(`${where}.roles: ${role} is not a declared role (nor admin)`);
        }
        if (typeof role === "string" && seen.has(role)) problems.push(`${where}.roles lists ${role} twice`);
        if (typeof role === "string") seen.add(role);
      }
      users[name] = { roles: [...seen] };
    }
  }
  if (problems.length > 0) throw new DeclarationError(problems);
  return { version: 1, roles, users };
}

export function grantKey(g: Grant): string {
  return `${g.database}/${g.object}/${g.name}/${g.privilege}`;
}

function compareGrants(a: Grant, b: Grant): number {
  return grantKey(a) < grantKey(b) ? -1 : grantKey(a) > grantKey(b) ? 1 : 0;
}

/** The grants a declared role must have, exactly (sorted). */
export function roleGrants(r: RoleDeclaration): Grant[] {
  const privileges = r.access === "readWrite" ? READ_WRITE_PRIVILEGES : READ_PRIVILEGES;
  const grants: Grant[] = [];
  for (const name of r.collections) {
    for (const privilege of privileges) {
      grants.push({ object: "Collection", name, database: r.database, privilege });
    }
  }
  for (const privilege of GLOBAL_PRIVILEGES) {
    grants.push({ object: "Global", name: "*", database: r.database, privilege });
  }
  return grants.sort(compareGrants);
}

/** What the server must look like once the declaration is applied (built-ins excluded). */
export function desiredState(d: Declaration): AccessState {
  const roles = record<Grant[]>();
  for (const [name, r] of Object.entries(d.roles)) roles[name] = roleGrants(r);
  const users = record<string[]>();
  for (const [name, u] of Object.entries(d.users)) users[name] = [...u.roles].sort();
  return { users, roles };
}

const sorted = (xs: Iterable<string>) => [...xs].sort();

/**
 * The ordered actions that turn `current` into what `desired` declares. Taking away comes first, giving
 * second, so a run stopped half-way errs toward too little access, never too much:
 *
 * 1. removeUserFromRole: memberships the declaration does not have (for undeclared users and roles too:
 *    a user is taken out of every role before it is deleted, a role is emptied before it is dropped).
 * 2. revoke: grants of declared roles that are not declared, and every grant of an undeclared role
 *    (Milvus refuses to drop a role that still has privileges: "fail to drop the role that it has
 *    privileges. Use REVOKE API to revoke privileges", seen on 2.3.5).
 * 3. dropRole, 4. deleteUser: what is not declared.
 * 5. createRole, 6. grant, 7. createUser, 8. resetPassword (every declared user that already exists,
 *    on every run: the password files are the truth and nothing can read a password back to compare),
 *    9. addUserToRole.
 *
 * `root`, `admin` and `public` never appear, except that declared users may be added to `admin`.
 */
export function planAccess(desired: Declaration, current: AccessState): AccessAction[] {
  const want = desiredState(desired);
  const isBuiltinRole = (r: string) => BUILTIN_ROLES.includes(r);
  const currentUsers = sorted(Object.keys(current.users)).filter((u) => u !== BUILTIN_USER);
  const currentRoles = sorted(Object.keys(current.roles)).filter((r) => !isBuiltinRole(r));
  const actions: AccessAction[] = [];

  // 1. memberships to remove
  for (const user of currentUsers) {
    const wanted = new Set(own(want.users, user) ?? []);
    for (const role of sorted(new Set(own(current.users, user) ?? []))) {
      if (role === "public") continue; // implicit for every user
      if (!wanted.has(role)) actions.push({ action: "removeUserFromRole", user, role });
    }
  }

  // 2. grants to revoke; `remaining` tracks what each declared role keeps, including what Milvus 2.4+
  // revokes along with Load or Flush.
  const remaining = new Map<string, Map<string, Grant>>();
  for (const role of currentRoles) {
    const wanted = new Set((own(want.roles, role) ?? []).map(grantKey));
    const have = new Map<string, Grant>();
    for (const g of own(current.roles, role) ?? []) have.set(grantKey(g), g);
    const revoked: Grant[] = [];
    for (const g of [...have.values()].sort(compareGrants)) {
      if (!wanted.has(grantKey(g))) {
        actions.push({ action: "revoke", role, ...g });
        revoked.push(g);
      }
    }
    for (const g of revoked) {
      have.delete(grantKey(g));
      for (const related of own(RELATED_PRIVILEGES as Record<string, readonly string[]>, g.privilege) ?? []) {
        have.delete(grantKey({ ...g, privilege: related }));
      }
    }
    remaining.set(role, have);
  }

  // 3. roles and 4. users that are not declared
  for (const role of currentRoles) {
    if (!Object.hasOwn(want.roles, role)) actions.push({ action: "dropRole", role });
  }
  for (const user of currentUsers) {
    if (!Object.hasOwn(want.users, user)) actions.push({ action: "deleteUser", user });
  }

  // 5. roles to create and 6. grants to give
  const declaredRoles = sorted(Object.keys(want.roles));
  for (const role of declaredRoles) {
    if (!Object.hasOwn(current.roles, role)) actions.push({ action: "createRole", role });
  }
  for (const role of declaredRoles) {
    const have = remaining.get(role) ?? new Map<string, Grant>();
    for (const g of own(want.roles, role) ?? []) {
      if (!have.has(grantKey(g))) actions.push({ action: "grant", role, ...g });
    }
  }

  // 7. users to create, 8. passwords to reset, 9. memberships to add
  const declaredUsers = sorted(Object.keys(want.users));
  for (const user of declaredUsers) {
    if (!Object.hasOwn(current.users, user)) actions.push({ action: "createUser", user });
  }
  for (const user of declaredUsers) {
    if (Object.hasOwn(current.users, user)) actions.push({ action: "resetPassword", user });
  }
  for (const user of declaredUsers) {
    const have = new Set(own(current.users, user) ?? []);
    for (const role of own(want.users, user) ?? []) {
      if (!have.has(role)) actions.push({ action: "addUserToRole", user, role });
    }
  }
  return actions;
}

/** One line naming an action, for logs and error messages (never a password: actions hold none). */
export function describeAction(a: AccessAction): string {
  switch (a.action) {
    case "grant":
      return `grant ${a.privilege} on ${a.object} ${a.database}/${a.name} to role ${a.role}`;
    case "revoke":
      return `revoke ${a.privilege} on ${a.object} ${a.database}/${a.name} from role ${a.role}`;
    case "createRole":
    case "dropRole":
      return `${a.action} ${a.role}`;
    case "createUser":
    case "resetPassword":
    case "deleteUser":
      return `${a.action} ${a.user}`;
    case "addUserToRole":
      return `add user ${a.user} to role ${a.role}`;
    case "removeUserFromRole":
      return `remove user ${a.user} from role ${a.role}`;
  }
}
