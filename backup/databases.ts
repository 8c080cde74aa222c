/**
 * Milvus databases: which collections of which databases a backup run covers, how a collection of a
 * database other than "default" is named in backup ids, locks and listings, and making sure a restore's
 * database exists (with the properties it had) before the collection is created.
 *
 * Measured here on Milvus 2.3.5 (test/databases.test.ts): ListDatabases and CreateDatabase work,
 * DescribeDatabase and AlterDatabase are not implemented (the SDK turns gRPC UNIMPLEMENTED into an empty
 * answer: node_modules/@zilliz/milvus2-sdk-node/dist/milvus/utils/Grpc.js, getRetryInterceptor), so
 * there are no database properties to capture, and a non-empty database cannot be dropped. Milvus Lite
 * 2.5 implements none of the database calls and ignores the database header: a collection created
 * "in" database a is also listed in "default" (measured), so on Lite only "default" is accepted.
 */
import { UsageError, WorkerError } from "./errors";
import type { Log } from "./log";
import type { Milvus } from "./milvus";

export const DEFAULT_DATABASE = "default";

/**
 * Database names: a letter or underscore, then letters, digits and underscores, at most 64 characters
 * (milvus internal/proxy/validate_util.go, ValidateDatabaseName; the same rule as
 * components/common/configSchema.ts). No dot: that is what keeps `<database>.<collection>` unambiguous.
 */
export const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/**
 * How a collection is named where names of several databases meet (backup ids, lock blobs, listings):
 * plain for "default", so names and ids from before databases were supported stay what they were, and
 * `<database>.<collection>` otherwise. Collection names cannot hold a dot (restore.ts COLLECTION_NAME),
 * so `docs` of database `a` and a collection `a` never share a name.
 */
export function qualifiedName(database: string, collection: string): string {
  return database === DEFAULT_DATABASE ? collection : `${database}.${collection}`;
}

/** A manifest's database: manifests written before databases were recorded are of "default". */
export function manifestDatabase(m: { database?: unknown }): string {
  return typeof m.database === "string" ? m.database : DEFAULT_DATABASE;
}

export function checkDatabaseName(name: string, setting: string): string {
  if (!DATABASE_NAME.test(name)) {
    throw new UsageError(
      `${setting} ${JSON.stringify(name)} is not a valid Milvus database name (a letter or underscore, then ` +
        "letters, digits and underscores, at most 64 characters), e.g. default",
    );
  }
  return name;
}

/** What a backup run covers, as the command line says it. */
export type DatabaseSelection =
  /** `--collection` only: those collections of "default" (as before databases were supported). */
  | { kind: "collections"; databases: [typeof DEFAULT_DATABASE]; collections: string[] }
  /** `--database` (repeatable) with or without `--collection`: the named collections, or all, of each. */
  | { kind: "databases"; databases: string[]; collections: string[] }
  /** `--all-databases`: every collection of every database, as found at the start of the run. */
  | { kind: "all"; databases: []; collections: [] };

/**
 * The command line's choice of databases and collections; usage errors name the flags. Names are
 * checked for shape here (before any network) and for existence once connected ({@link backupTargets}).
 */
export function databaseSelection(
  command: string,
  databases: string[],
  collections: string[],
  allDatabases: boolean,
): DatabaseSelection {
  for (const d of databases) checkDatabaseName(d, `${command}: --database`);
  if (allDatabases) {
    if (databases.length > 0 || collections.length > 0) {
      throw new UsageError(
        `${command}: --all-databases backs up every collection of every database and takes no --database or ` +
          "--collection; to choose, name them with --database <db> [--collection <name>] instead",
      );
    }
    return { kind: "all", databases: [], collections: [] };
  }
  if (databases.length > 0) return { kind: "databases", databases: [...new Set(databases)], collections };
  if (collections.length === 0) {
    // Worded as before databases were supported (scripts match it); --help names --database and --all-databases.
    throw new UsageError(`${command}: --collection <name> is required (repeat it for several collections)`);
  }
  return { kind: "collections", databases: [DEFAULT_DATABASE], collections };
}

export interface BackupTarget {
  database: string;
  collection: string;
}

/** "default" first, then by name: ListDatabases's order is not stable (measured on 2.3.5). */
function inOrder(databases: string[]): string[] {
  return [...databases].sort((a, b) =>
    a === b ? 0 : a === DEFAULT_DATABASE ? -1 : b === DEFAULT_DATABASE ? 1 : a < b ? -1 : 1,
  );
}

/** Refuses a database other than "default" on a server without databases, and one that does not exist. */
export async function requireDatabase(
  milvus: Pick<Milvus, "listDatabases" | "address">,
  database: string,
  what: string,
): Promise<void> {
  const all = await milvus.listDatabases();
  if (all === null) {
    if (database === DEFAULT_DATABASE) return;
    throw new WorkerError(
      `${what}: the server at ${milvus.address} has no databases (Milvus Lite, or a Milvus without databases), so database ` +
        `${database} cannot exist there; only "default" can be used`,
    );
  }
  if (!all.includes(database)) {
    throw new WorkerError(
      `${what}: database ${database} does not exist on ${milvus.address}; it has ${inOrder(all).join(", ")}. Check --database`,
    );
  }
}

/**
 * Every (database, collection) a run backs up, in a stable order: databases as named (or as the server
 * lists them), collections as named (or sorted). A named database that does not exist is an error before
 * anything is backed up; a named collection that does not exist fails its own backup only (as with
 * `--collection` alone); a database with no collections is said in the log and skipped.
 */
export async function backupTargets(
  milvus: Pick<Milvus, "listDatabases" | "useDatabase" | "listCollections" | "address">,
  selection: DatabaseSelection,
  log: Pick<Log, "warn">,
): Promise<BackupTarget[]> {
  // `--collection` alone asks nothing of the server, exactly as before databases were supported.
  if (selection.kind === "collections")
    return selection.collections.map((collection) => ({ database: DEFAULT_DATABASE, collection }));
  const databases =
    selection.kind === "all"
      ? inOrder((await milvus.listDatabases()) ?? [DEFAULT_DATABASE])
      : selection.databases;
  const targets: BackupTarget[] = [];
  for (const database of databases) {
    if (selection.kind === "databases") await requireDatabase(milvus, database, "backup");
    let names = selection.collections;
    if (names.length === 0) {
      await milvus.useDatabase(database);
      names = [...(await milvus.listCollections())].sort();
      if (names.length === 0)
        log.warn(
          "backup.empty-database",
          { database },
          `database ${database} has no collections: nothing to back up there`,
        );
    }
    for (const collection of names) targets.push({ database, collection });
  }
  if (targets.length === 0) {
    throw new WorkerError(
      `backup: database ${databases.join(", ")} on ${milvus.address} holds no collections: there is nothing to back up`,
    );
  }
  return targets;
}

/** What a restore did about its database, for the summary and the log. */
export interface DatabaseOutcome {
  database: string;
  created: boolean;
  warnings: string[];
}

/**
 * Makes sure `database` exists before a restore creates its collection: created when missing, with the
 * properties the backup recorded. Refused on a server without databases unless it is "default".
 * Properties are applied by CreateDatabase (Milvus >= 2.4.x; milvus-proto CreateDatabaseRequest
 * `properties`); an older server drops the unknown field (protobuf ignores unknown fields), so when the
 * server cannot describe the new database to confirm them, the restore says so instead of pretending.
 */
export async function ensureDatabase(
  milvus: Milvus,
  database: string,
  properties: Record<string, string> | null | undefined,
  log: Log,
  what: string,
): Promise<DatabaseOutcome> {
  const outcome: DatabaseOutcome = { database, created: false, warnings: [] };
  const all = await milvus.listDatabases();
  if (all === null) {
    if (database === DEFAULT_DATABASE) return outcome;
    throw new WorkerError(
      `${what} refused: the backup belongs to database ${database}, but the server at ${milvus.address} has no ` +
        "databases (Milvus Lite, or a Milvus without databases). Nothing was changed. Restore into its default database " +
        "with --target-database default, or restore onto a Milvus server with databases.",
    );
  }
  if (all.includes(database)) return outcome;
  const props = properties ?? {};
  await milvus.createDatabase(database, props);
  outcome.created = true;
  log.info("restore.database-created", { database, properties: Object.keys(props).length });
  if (Object.keys(props).length > 0) {
    const found = await milvus.describeDatabase(database);
    const unapplied =
      found === null
        ? Object.keys(props)
        : Object.entries(props)
            .filter(([k, v]) => found[k] !== v)
            .map(([k]) => k);
    if (unapplied.length > 0) {
      const w =
        found === null
          ? `database ${database} was created, but this server cannot describe databases, so its properties ` +
            `(${unapplied.join(", ")}) could not be confirmed; set them by hand if they matter (alter_database_properties)`
          : `database ${database} was created without the recorded properties ${unapplied.join(", ")} (the server ` +
            "did not keep them); set them by hand (alter_database_properties)";
      outcome.warnings.push(w);
      log.warn("restore.database-properties", { database, properties: unapplied }, w);
    }
  }
  return outcome;
}
