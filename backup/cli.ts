/**
 * Command line of the backup/restore worker. The container's args are this command line, e.g.
 * `backup --collection documents` or `prune --retention-days 30 --keep-last 3`.
 */
import * as path from "node:path";
import { applyAccess } from "./access";
import { AzureBlobStore, type BlobStore, type StorageSettings } from "./blobStore";
import { backupCollections, resumeBackup, type BackupSummary } from "./backup";
import { BACKUP_ID_PATTERN, listCatalog, verifyBackup } from "./catalog";
import {
  backupTargets,
  checkDatabaseName,
  databaseSelection,
  DEFAULT_DATABASE,
  qualifiedName,
  type BackupTarget,
  type DatabaseSelection,
} from "./databases";
import { describeError, UsageError, WorkerError } from "./errors";
import { Log } from "./log";
import { Milvus, type MilvusSettings } from "./milvus";
import { checkServerName, loadCaFile, parseMilvusAddress, settingText } from "./tls";
import { prune } from "./prune";
import { backupRbac, describeRbacAction, listRbac, restoreRbac } from "./rbac";
import { parseCommandLine, type ArgProblem, type FlagSpecs } from "./cliArgs";
import { COLLECTION_NAME, restoreBackup } from "./restore";
import { parseCron, scheduleLoop } from "./schedule";
import { DEFAULT_SAMPLE_ROWS, DEFAULT_SEARCHES, testRestore } from "./testRestore";

const CONNECTION_HELP = `connection flags (each also read from the environment variable in brackets):
  --milvus-address <host:port>          [MILVUS_ADDRESS]
  --milvus-token <user:password>        [MILVUS_TOKEN]
  --milvus-tls                          [MILVUS_TLS=true]
  --milvus-ca-file <path>               [MILVUS_CA_FILE]          PEM CA bundle that issued Milvus's certificate; implies TLS
  --milvus-tls-server-name <name>       [MILVUS_TLS_SERVER_NAME]  name the certificate must carry (default: host of the address)
  --container <name>                    [BACKUP_CONTAINER]
  --storage-connection-string <cs>      [AZURE_STORAGE_CONNECTION_STRING]  Azurite / development
  --storage-account-url <url>           [AZURE_STORAGE_ACCOUNT_URL]        production: workload identity
  --json                                one JSON document on stdout
  -h, --help                            print the usage and exit`;

interface CommandSpec {
  usage: string;
  values: string[];
  flags: string[];
  repeatable?: string[];
  needsMilvus: boolean;
}

const COMMANDS: Partial<Record<string, CommandSpec>> = {
  backup: {
    usage:
      "backup --collection <name> [--collection <name> ...] [--database <db> ...] | --all-databases [--chunk-size-mib <n>]\n" +
      "  Consistent backup of each collection (flush, then every row as of that point) into the container.\n" +
      '  --collection alone: collections of database "default". --database <db> (repeatable): the named\n' +
      "  collections of each database, or all of its collections without --collection. --all-databases: every\n" +
      "  collection of every database. The collections of a database are read at one cut (one timestamp).\n" +
      "backup --resume <backupId>\n" +
      "  Continues an interrupted backup from its last uploaded chunk, at its cut, if the server can still read at it.",
    values: ["--collection", "--database", "--chunk-size-mib", "--resume"],
    flags: ["--all-databases"],
    repeatable: ["--collection", "--database"],
    needsMilvus: true,
  },
  restore: {
    usage:
      "restore --backup <backupId> [--target <collection>] [--target-database <db>] [--drop-existing] [--index-fallback <indexType>] [--manifest-sha256 <hex>]\n" +
      "  Checks every chunk, recreates the collection (schema, partitions, indexes, load state) and verifies the row count.\n" +
      "  Restores into the backup's database (created when missing), or into --target-database.\n" +
      "  --resume continues an interrupted restore of the same backup into the same target from its last inserted chunk.",
    values: ["--backup", "--target", "--target-database", "--index-fallback", "--manifest-sha256"],
    flags: ["--drop-existing", "--resume"],
    needsMilvus: true,
  },
  "test-restore": {
    usage:
      "test-restore [--collection <name> ...] [--sample-rows <n>] [--searches <n>]\n" +
      "  Restores the newest complete backup of each collection (default: every collection with one) into a\n" +
      "  scratch collection, checks row count, sampled rows and searches against the backup, drops it, and\n" +
      "  prints a JSON summary per collection (restore seconds: the measured RTO). Only reads the container.",
    values: ["--collection", "--sample-rows", "--searches"],
    flags: [],
    repeatable: ["--collection"],
    needsMilvus: true,
  },
  list: {
    usage: "list [--collection <name>] [--database <db>]\n  Complete backups, newest first.",
    values: ["--collection", "--database"],
    flags: [],
    needsMilvus: false,
  },
  verify: {
    usage:
      "verify --backup <backupId> [--manifest-sha256 <hex>]\n  Checks manifest, presence, sizes, SHA-256 and row totals of every chunk (no Milvus needed);\n" +
      "  with --manifest-sha256 (from the backup's log) also that the manifest is the one the backup wrote.",
    values: ["--backup", "--manifest-sha256"],
    flags: [],
    needsMilvus: false,
  },
  prune: {
    usage:
      "prune --retention-days <n> [--keep-last <k>] [--partial-grace-hours <h>] [--dry-run]\n" +
      "  Deletes backups older than n days, keeping the newest k (default 1) of every collection, and partial\n" +
      "  (interrupted, resumable) backups untouched for h hours (default 24). RBAC backups (rbac/) get the same\n" +
      "  retention, their newest k kept; a blob under rbac/ that is not a readable one is reported, never deleted.",
    values: ["--retention-days", "--keep-last", "--partial-grace-hours"],
    flags: ["--dry-run"],
    needsMilvus: false,
  },
  schedule: {
    usage:
      'schedule --cron "<expression>" --collection <name> [...] [--database <db> ...] | --all-databases [--retention-days <n>] [--keep-last <k>]\n' +
      "  Long-running: backs up on the cron schedule (UTC), one run at a time, then applies retention. Stops on SIGTERM.\n" +
      "  --collection, --database and --all-databases choose what as for `backup`.",
    values: ["--cron", "--collection", "--database", "--retention-days", "--keep-last", "--chunk-size-mib"],
    flags: ["--all-databases"],
    repeatable: ["--collection", "--database"],
    needsMilvus: true,
  },
  "apply-access": {
    usage:
      "apply-access --declaration <file.json> --passwords-dir <dir> [--dry-run]\n" +
      "  Makes Milvus's users, roles and grants exactly the declared ones (run as root; no storage flags needed);\n" +
      "  --dry-run prints the plan only. Prints a JSON summary of the actions, never passwords.",
    values: ["--declaration", "--passwords-dir"],
    flags: ["--dry-run"],
    needsMilvus: true,
  },
  "backup-rbac": {
    usage:
      "backup-rbac\n" +
      "  Writes Milvus's users (with their roles), roles, grants and privilege groups to rbac/<rbacId>.json\n" +
      "  (BackupRBAC on Milvus 2.5+, with password hashes; otherwise listed one by one, without passwords). Run as root or admin.",
    values: [],
    flags: [],
    needsMilvus: true,
  },
  "restore-rbac": {
    usage:
      "restore-rbac --backup <rbacId> [--passwords-dir <dir>] [--dry-run]\n" +
      "  Adds the roles, grants, privilege groups, users and role bindings of an RBAC backup that Milvus lacks;\n" +
      "  never changes or removes anything, never an existing user's password, never root. A missing user is\n" +
      "  created from <dir>/<user> (or its backed-up hash on Milvus 2.5+); without either it is reported and the\n" +
      "  exit code is 1. --dry-run prints the plan only. Never prints passwords.",
    values: ["--backup", "--passwords-dir"],
    flags: ["--dry-run"],
    needsMilvus: true,
  },
  "list-rbac": {
    usage: "list-rbac\n  RBAC backups (backup-rbac), newest first.",
    values: [],
    flags: [],
    needsMilvus: false,
  },
};

const CONNECTION_VALUES = [
  "--milvus-address",
  "--milvus-token",
  "--milvus-ca-file",
  "--milvus-tls-server-name",
  "--container",
  "--storage-connection-string",
  "--storage-account-url",
];
/** Boolean flags every command takes (`--help`/`-h` is added by the shared parser). */
const GLOBAL_FLAGS = ["--json", "--milvus-tls"];

/**
 * How the worker is run, for the usage line: from the repository root through npm (ts-node), or, in
 * the image, as the compiled file the ENTRYPOINT names (WORKDIR /app: `node dist/cli.js`).
 */
export const NPM_INVOCATION = "npm run -s worker --";

const ENVIRONMENT_HELP = `environment variables (besides those of the connection flags):
  AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE
      read by DefaultAzureCredential with --storage-account-url; AKS workload identity sets them in the pod
      (on a workstation it falls back to \`az login\`)`;

const EXIT_HELP = "exit codes: 0 success, 1 the operation failed, 2 bad flags or settings";

export function usage(command?: string, invocation = NPM_INVOCATION): string {
  const head = `usage: ${invocation} <command> [flags]`;
  const spec = command ? COMMANDS[command] : undefined;
  const tail = `${CONNECTION_HELP}\n\n${ENVIRONMENT_HELP}\n\n${EXIT_HELP}`;
  if (spec) return `${head}\n\n${spec.usage}\n\n${tail}`;
  return `${head}\n\ncommands:\n${Object.values(COMMANDS)
    .map((c) => `  ${c?.usage.split("\n")[0] ?? ""}`)
    .join("\n")}\n\n${tail}\n\n\`<command> --help\` describes one command.`;
}

export interface ParsedArgs {
  command: string;
  values: Map<string, string[]>;
  flags: Set<string>;
}

/** The flags one command accepts, for the shared parser. */
function flagSpecs(spec: CommandSpec): FlagSpecs {
  const specs: FlagSpecs = {};
  for (const name of [...spec.values, ...CONNECTION_VALUES])
    specs[name] = { type: "string", multiple: spec.repeatable?.includes(name), help: "" };
  for (const name of [...spec.flags, ...GLOBAL_FLAGS]) specs[name] = { type: "boolean", help: "" };
  return specs;
}

/** A parse problem as one line; never with a value (a mistyped flag or stray argument may be a secret). */
function problemText(command: string, spec: CommandSpec, p: ArgProblem): string {
  const accepts = `${command} accepts ${[...spec.values, ...spec.flags].join(", ") || "no flags"} plus the connection flags (see --help)`;
  switch (p.kind) {
    case "unknown-flag":
      return `${command}: unknown flag ${JSON.stringify(p.flag)}${p.inlineValue ? " (its value is not shown)" : ""}; ${accepts}`;
    case "positional":
      return `${command}: unknown argument #${p.index + 2} (not shown: it may be a secret); ${accepts}`;
    case "missing-value":
      return `${command}: ${p.flag} needs a value (see \`${command} --help\`)`;
    case "unexpected-value":
      return `${command}: ${p.flag} takes no value (its value is not shown; see \`${command} --help\`)`;
    case "repeated":
      return `${command}: ${p.flag} given more than once`;
  }
}

export function parseArgs(argv: string[]): ParsedArgs {
  const command = argv[0] as string | undefined;
  const rest = argv.slice(1);
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    return { command: "help", values: new Map(), flags: new Set() };
  }
  const commands = Object.keys(COMMANDS).join(", ");
  if (command.startsWith("-")) {
    // Only the flag's name: `--milvus-token=user:password` typed before the command must not be echoed.
    const name = command.split("=")[0] ?? command;
    throw new UsageError(
      `unknown flag ${JSON.stringify(name)} before the command; the command comes first, one of ${commands} (see --help)`,
    );
  }
  const spec = COMMANDS[command];
  if (!spec) {
    throw new UsageError(
      `unknown command ${JSON.stringify(command)}; expected one of ${commands} (see --help)`,
    );
  }
  const line = parseCommandLine(rest, flagSpecs(spec));
  const flags = new Set(line.flags);
  // --help wins over anything else on the line: asking how to fix a command line must work on a broken one.
  if (line.help) return { command, values: line.values, flags: flags.add("--help") };
  const first = line.problems.at(0);
  if (first) throw new UsageError(problemText(command, spec, first));
  return { command, values: line.values, flags };
}

const one = (p: ParsedArgs, name: string) => p.values.get(name)?.[0];

function intFlag(p: ParsedArgs, name: string, min: number, fallback?: number): number | undefined {
  const raw = one(p, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) {
    throw new UsageError(`${p.command}: ${name} ${JSON.stringify(raw)} must be a whole number >= ${min}`);
  }
  return Number(raw);
}

function milvusSettings(p: ParsedArgs, env: NodeJS.ProcessEnv, log?: Log): MilvusSettings {
  const address = one(p, "--milvus-address") ?? env.MILVUS_ADDRESS;
  if (!address) {
    throw new UsageError(
      `${p.command} needs Milvus: set --milvus-address or MILVUS_ADDRESS (host:port, e.g. milvus.milvus.svc:19530)`,
    );
  }
  const tlsEnv = (env.MILVUS_TLS ?? "").toLowerCase();
  if (tlsEnv && !["true", "false", "1", "0", "yes", "no"].includes(tlsEnv)) {
    throw new UsageError(`MILVUS_TLS=${JSON.stringify(env.MILVUS_TLS)} must be true or false`);
  }
  const token = one(p, "--milvus-token") ?? env.MILVUS_TOKEN;
  // Empty values count as unset (a templated manifest may render MILVUS_CA_FILE=""); the plaintext
  // warning still says so when that leaves TLS off.
  const caFlag = one(p, "--milvus-ca-file");
  const caFile = caFlag || env.MILVUS_CA_FILE || undefined;
  const caName = caFlag ? "--milvus-ca-file" : "MILVUS_CA_FILE";
  const nameFlag = one(p, "--milvus-tls-server-name");
  const serverName = nameFlag || env.MILVUS_TLS_SERVER_NAME || undefined;
  const https = parseMilvusAddress(address).https;
  const tlsAsked = p.flags.has("--milvus-tls") || ["true", "1", "yes"].includes(tlsEnv);
  const tlsRefused = ["false", "0", "no"].includes(tlsEnv) && !p.flags.has("--milvus-tls");
  // A CA file or a server name only mean something with TLS: they turn it on, unless TLS is switched
  // off explicitly, which contradicts them and is refused rather than silently resolved either way.
  if (tlsRefused && (caFile !== undefined || serverName !== undefined || https)) {
    const why =
      caFile !== undefined
        ? "MILVUS_CA_FILE"
        : serverName !== undefined
          ? "MILVUS_TLS_SERVER_NAME"
          : "an https:// MILVUS_ADDRESS";
    throw new UsageError(
      `MILVUS_TLS=${JSON.stringify(env.MILVUS_TLS)} turns TLS off, but ${why} is set, which needs TLS. ` +
        `Fix: set MILVUS_TLS=true (or unset it), or remove ${why}`,
    );
  }
  if (serverName !== undefined)
    checkServerName(serverName, nameFlag ? "--milvus-tls-server-name" : "MILVUS_TLS_SERVER_NAME");
  return {
    address,
    token: token || undefined,
    tls: tlsAsked || caFile !== undefined || serverName !== undefined || https,
    // Read and checked here, before any network, so a bad path is a usage error (exit code 2).
    ca: caFile === undefined ? undefined : loadCaFile(caFile, caName),
    caSetting: caFile === undefined ? undefined : settingText(caName, caFile),
    serverName,
    log,
  };
}

function storageSettings(p: ParsedArgs, env: NodeJS.ProcessEnv): StorageSettings {
  const container = one(p, "--container") ?? env.BACKUP_CONTAINER;
  const connectionString = one(p, "--storage-connection-string") ?? env.AZURE_STORAGE_CONNECTION_STRING;
  const accountUrl = one(p, "--storage-account-url") ?? env.AZURE_STORAGE_ACCOUNT_URL;
  const problems: string[] = [];
  if (!container) problems.push("set --container or BACKUP_CONTAINER (the blob container holding backups)");
  else if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(container)) {
    problems.push(
      `container ${JSON.stringify(container)} is not a valid container name (3-63 lowercase letters, digits, single hyphens)`,
    );
  }
  if (!connectionString && !accountUrl) {
    problems.push(
      "set --storage-account-url or AZURE_STORAGE_ACCOUNT_URL (https://<account>.blob.core.windows.net/, uses workload identity), " +
        "or --storage-connection-string or AZURE_STORAGE_CONNECTION_STRING (Azurite/development)",
    );
  }
  if (accountUrl && !/^https?:\/\/[^\s/]+/.test(accountUrl)) {
    problems.push(
      `storage account URL ${JSON.stringify(accountUrl)} must look like https://<account>.blob.core.windows.net/`,
    );
  }
  if (problems.length > 0)
    throw new UsageError(`${p.command}: missing or invalid storage settings: ${problems.join("; ")}`);
  return {
    container: container ?? "",
    connectionString: connectionString || undefined,
    accountUrl: accountUrl || undefined,
  };
}

/** What `backup`/`schedule` cover: --collection, --database and --all-databases (databases.ts). */
function selection(p: ParsedArgs): DatabaseSelection {
  const names = p.values.get("--collection") ?? [];
  return databaseSelection(
    p.command,
    p.values.get("--database") ?? [],
    names.length > 0 ? collections(p) : [],
    p.flags.has("--all-databases"),
  );
}

/** A database flag's value, checked (`list --database`, `restore --target-database`). */
function databaseFlag(p: ParsedArgs, name: string): string | undefined {
  const v = one(p, name);
  return v === undefined ? undefined : checkDatabaseName(v, `${p.command}: ${name}`);
}

/** Backs up each target in turn, each in its own database; one failing does not stop the others. */
async function backupEach(
  milvus: Milvus,
  store: BlobStore,
  targets: BackupTarget[],
  log: Log,
  opts: { chunkBytes?: number; signal?: AbortSignal },
): Promise<{
  results: (BackupSummary & { database?: string })[];
  failed: { collection: string; database?: string; error: string }[];
}> {
  const results: (BackupSummary & { database?: string })[] = [];
  const failed: { collection: string; database?: string; error: string }[] = [];
  // The collections of one database are backed up at one cut (backup.ts backupCollections).
  for (const database of [...new Set(targets.map((t) => t.database))]) {
    const names = targets.filter((t) => t.database === database).map((t) => t.collection);
    const db = database === DEFAULT_DATABASE ? {} : { database };
    await milvus.useDatabase(database);
    const run = await backupCollections(milvus, store, names, log, opts, targets.length === 1);
    for (const r of run.backups) results.push({ ...r, ...db });
    for (const f of run.failed) failed.push({ collection: f.collection, ...db, error: f.error });
  }
  return { results, failed };
}

function collections(p: ParsedArgs): string[] {
  const list = p.values.get("--collection") ?? [];
  if (list.length === 0)
    throw new UsageError(`${p.command}: --collection <name> is required (repeat it for several collections)`);
  for (const c of list) {
    if (!COLLECTION_NAME.test(c))
      throw new UsageError(
        `${p.command}: --collection ${JSON.stringify(c)} is not a valid Milvus collection name`,
      );
  }
  return [...new Set(list)];
}

function backupId(p: ParsedArgs): string {
  const id = one(p, "--backup");
  if (!id)
    throw new UsageError(`${p.command}: --backup <backupId> is required (ids are printed by \`list\`)`);
  if (!BACKUP_ID_PATTERN.test(id))
    throw new UsageError(`${p.command}: --backup ${JSON.stringify(id)} is not a backup id`);
  return id;
}

/** The manifest digest the backup logged (`backup.done`), to check the manifest against. */
function manifestSha256(p: ParsedArgs): string | undefined {
  const v = one(p, "--manifest-sha256");
  if (v !== undefined && !/^[0-9a-f]{64}$/.test(v)) {
    throw new UsageError(
      `${p.command}: --manifest-sha256 must be 64 lowercase hex digits (the manifestSha256 of the backup's backup.done log line)`,
    );
  }
  return v;
}

function chunkBytes(p: ParsedArgs): number | undefined {
  const raw = one(p, "--chunk-size-mib");
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0.01 || n > 1024) {
    throw new UsageError(
      `${p.command}: --chunk-size-mib ${JSON.stringify(raw)} must be a number between 0.01 and 1024`,
    );
  }
  return Math.round(n * 1024 * 1024);
}

export interface CliIo {
  stdout: { write(s: string): boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Replaces the Azure store (tests inject faults through it). */
  store?: (s: StorageSettings) => BlobStore;
  /** Aborted on SIGTERM/SIGINT: a backup or restore stops cleanly and says what state it left. */
  signal?: AbortSignal;
  /** How the worker was started, for the usage text. @default {@link NPM_INVOCATION} */
  invocation?: string;
}

/** Runs one command; returns the process exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  let json = argv.includes("--json");
  // --json keeps stderr machine-readable (JSON lines, no progress bar) even on a terminal.
  const log = new Log(io.stderr, false, { json });
  const emit = (doc: unknown) => {
    if (json) io.stdout.write(JSON.stringify(doc) + "\n");
  };
  try {
    const p = parseArgs(argv);
    json = p.flags.has("--json");
    if (p.command === "help" || p.flags.has("--help")) {
      io.stdout.write(usage(p.command === "help" ? undefined : p.command, io.invocation) + "\n");
      return 0;
    }
    const spec = COMMANDS[p.command];
    if (p.command === "apply-access") {
      // Needs Milvus (as root) but no blob storage, so it is dispatched before storage settings are required.
      const summary = await applyAccess(
        milvusSettings(p, io.env, log),
        {
          declarationFile: one(p, "--declaration"),
          passwordsDir: one(p, "--passwords-dir"),
          dryRun: p.flags.has("--dry-run"),
        },
        log,
      );
      io.stdout.write(JSON.stringify(summary) + "\n");
      return 0;
    }
    // Validate everything that needs no network before connecting anywhere.
    const storage = storageSettings(p, io.env);
    const milvusCfg = spec?.needsMilvus ? milvusSettings(p, io.env, log) : undefined;
    const makeStore = io.store ?? ((s: StorageSettings) => new AzureBlobStore(s));
    switch (p.command) {
      case "backup": {
        const resumeId = one(p, "--resume");
        if (resumeId !== undefined) {
          if (!BACKUP_ID_PATTERN.test(resumeId))
            throw new UsageError(
              `backup: --resume ${JSON.stringify(resumeId)} is not a backup id (the backupId of the interrupted backup's backup.start log line)`,
            );
          if (p.values.has("--collection") || p.values.has("--database") || p.flags.has("--all-databases"))
            throw new UsageError(
              "backup: --resume <backupId> continues that backup's own collection at its cut; drop --collection, --database and --all-databases",
            );
          const store = makeStore(storage);
          const milvus = await Milvus.connect(milvusCfg as MilvusSettings);
          try {
            const r = await resumeBackup(milvus, store, resumeId, log, {
              chunkBytes: chunkBytes(p),
              signal: io.signal,
            });
            emit({ backups: [r] });
            if (!json) io.stdout.write(`${r.backupId}\t${r.collection}\t${r.rows} rows\t${r.bytes} bytes\n`);
          } finally {
            await milvus.close();
          }
          return 0;
        }
        const chosen = selection(p);
        const chunk = chunkBytes(p);
        const store = makeStore(storage);
        const milvus = await Milvus.connect(milvusCfg as MilvusSettings);
        try {
          await store.ensureContainer();
          // Every named database and collection is checked before the first backup starts.
          const targets = await backupTargets(milvus, chosen, log);
          // One collection failing does not cost the others their backup; the exit code still says so.
          const { results, failed } = await backupEach(milvus, store, targets, log, {
            chunkBytes: chunk,
            signal: io.signal,
          });
          if (!json)
            for (const r of results)
              io.stdout.write(
                `${r.backupId}\t${qualifiedName(r.database ?? DEFAULT_DATABASE, r.collection)}\t${r.rows} rows\t${r.bytes} bytes\n`,
              );
          if (failed.length > 0) {
            emit({ backups: results, failed });
            log.close();
            for (const f of failed) io.stderr.write(`error: ${f.error}\n`);
            return 1;
          }
          emit({ backups: results });
        } finally {
          await milvus.close();
        }
        return 0;
      }
      case "restore": {
        const id = backupId(p);
        const target = one(p, "--target");
        if (target !== undefined && !COLLECTION_NAME.test(target)) {
          throw new UsageError(
            `restore: --target ${JSON.stringify(target)} is not a valid Milvus collection name`,
          );
        }
        const fallback = one(p, "--index-fallback");
        if (fallback !== undefined && !/^[A-Z][A-Z0-9_]*$/.test(fallback)) {
          throw new UsageError(
            `restore: --index-fallback ${JSON.stringify(fallback)} must be an index type such as AUTOINDEX, FLAT or HNSW`,
          );
        }
        const targetDatabase = databaseFlag(p, "--target-database");
        const store = makeStore(storage);
        const milvus = await Milvus.connect(milvusCfg as MilvusSettings);
        try {
          const r = await restoreBackup(
            milvus,
            store,
            {
              backupId: id,
              target,
              targetDatabase,
              dropExisting: p.flags.has("--drop-existing"),
              indexFallback: fallback,
              manifestSha256: manifestSha256(p),
              signal: io.signal,
              resume: p.flags.has("--resume"),
            },
            log,
          );
          emit(r);
          if (!json)
            io.stdout.write(
              `restored ${r.rows} rows of ${r.backupId} into ${qualifiedName(r.database, r.collection)}\n`,
            );
        } finally {
          await milvus.close();
        }
        return 0;
      }
      case "test-restore": {
        const names = p.values.has("--collection") ? collections(p) : undefined;
        const sampleRows = intFlag(p, "--sample-rows", 0, DEFAULT_SAMPLE_ROWS) ?? DEFAULT_SAMPLE_ROWS;
        const searches = intFlag(p, "--searches", 0, DEFAULT_SEARCHES) ?? DEFAULT_SEARCHES;
        const store = makeStore(storage);
        const milvus = await Milvus.connect(milvusCfg as MilvusSettings);
        try {
          const report = await testRestore(
            milvus,
            store,
            { collections: names, sampleRows, searches, signal: io.signal },
            log,
          );
          emit(report);
          if (!json) for (const r of report.results) io.stdout.write(JSON.stringify(r) + "\n");
          if (!report.ok) {
            log.close();
            for (const r of report.results)
              for (const c of r.checks.filter((x) => !x.ok))
                io.stderr.write(
                  `error: test restore of ${r.collection}: ${c.name} check failed: ${c.detail}\n`,
                );
            return 1;
          }
        } finally {
          await milvus.close();
        }
        return 0;
      }
      case "list": {
        const c = one(p, "--collection");
        const db = databaseFlag(p, "--database");
        // One damaged backup is listed apart with its reason; it never hides the others.
        const { backups, damaged } = await listCatalog(makeStore(storage), c, db);
        for (const d of damaged)
          log.warn(
            "list.damaged",
            { backupId: d.backupId, reason: d.reason },
            `backup ${d.backupId} is damaged: ${d.reason}`,
          );
        emit({ backups, damaged });
        if (!json) {
          for (const b of backups)
            io.stdout.write(
              `${b.backupId}\t${qualifiedName(b.database ?? DEFAULT_DATABASE, b.collection)}\t${b.time}\t${b.rows} rows\t${b.bytes} bytes\n`,
            );
          for (const d of damaged) io.stdout.write(`damaged\t${d.backupId}\t${d.reason}\n`);
        }
        return 0;
      }
      case "verify": {
        const r = await verifyBackup(makeStore(storage), backupId(p), log, manifestSha256(p));
        emit(r);
        if (!json)
          io.stdout.write(
            r.ok ? `backup ${r.backupId} is intact (${r.rows ?? 0} rows, ${r.chunks ?? 0} chunks)\n` : "",
          );
        if (!r.ok) {
          log.close();
          // Without a manifest nothing was verified: the backup does not exist (or never completed, or
          // its manifest is unreadable), and the problem says which; "failed verification" would
          // send the operator looking for corrupt chunks.
          const verified = r.chunks !== undefined;
          io.stderr.write(
            verified
              ? `error: backup ${r.backupId} failed verification: ${r.problems.join("; ")}\n`
              : `error: ${r.problems.join("; ")}\n`,
          );
          return 1;
        }
        return 0;
      }
      case "prune": {
        const retentionDays = intFlag(p, "--retention-days", 0);
        if (retentionDays === undefined) throw new UsageError("prune: --retention-days <n> is required");
        const keepLast = intFlag(p, "--keep-last", 1, 1) ?? 1;
        const partialGraceHours = intFlag(p, "--partial-grace-hours", 1, 24) ?? 24;
        const r = await prune(
          makeStore(storage),
          { retentionDays, keepLast, partialGraceHours, dryRun: p.flags.has("--dry-run") },
          log,
        );
        emit(r);
        if (!json) {
          for (const d of r.deleted)
            io.stdout.write(`${r.dryRun ? "would delete" : "deleted"}\t${d.backupId}\t${d.reason}\n`);
          for (const s of r.skipped) io.stdout.write(`skipped\t${s.backupId}\t${s.reason}\n`);
          for (const d of r.damaged) io.stdout.write(`damaged\t${d.backupId}\t${d.reason}\n`);
          for (const d of r.rbac.deleted)
            io.stdout.write(`${r.dryRun ? "would delete" : "deleted"}\t${d.rbacId}\t${d.reason}\n`);
          for (const s of r.rbac.skipped) io.stdout.write(`skipped\t${s.rbacId}\t${s.reason}\n`);
          for (const u of r.rbac.unreadable) io.stdout.write(`unreadable\t${u.name}\t${u.reason}\n`);
        }
        return 0;
      }
      case "schedule": {
        const cronExpr = one(p, "--cron");
        if (!cronExpr)
          throw new UsageError('schedule: --cron "<expression>" is required, e.g. --cron "0 2 * * *"');
        const cron = parseCron(cronExpr);
        const chosen = selection(p);
        const retentionDays = intFlag(p, "--retention-days", 0);
        const keepLast = intFlag(p, "--keep-last", 1, 1) ?? 1;
        const chunk = chunkBytes(p);
        const store = makeStore(storage);
        await scheduleLoop(
          cron,
          {
            run: async () => {
              const milvus = await Milvus.connect(milvusCfg as MilvusSettings);
              try {
                await store.ensureContainer();
                // Resolved on every run: with --all-databases or a whole --database, new collections join.
                const targets = await backupTargets(milvus, chosen, log);
                const { failed } = await backupEach(milvus, store, targets, log, { chunkBytes: chunk });
                const first = failed.at(0);
                if (first) throw new WorkerError(first.error);
              } finally {
                await milvus.close();
              }
              if (retentionDays !== undefined)
                await prune(store, { retentionDays, keepLast, dryRun: false }, log);
            },
          },
          log,
        );
        return 0;
      }
      case "backup-rbac": {
        const store = makeStore(storage);
        const milvus = await Milvus.connect(milvusCfg as MilvusSettings);
        try {
          const r = await backupRbac(milvus, store, log);
          emit(r);
          if (!json)
            io.stdout.write(
              `${r.rbacId}\t${r.method}\t${r.users} users\t${r.roles} roles\t${r.grants} grants\t${r.privilegeGroups} privilege groups\n`,
            );
        } finally {
          await milvus.close();
        }
        return 0;
      }
      case "restore-rbac": {
        const r = await restoreRbac(
          () => Milvus.connect(milvusCfg as MilvusSettings),
          makeStore(storage),
          {
            rbacId: one(p, "--backup"),
            passwordsDir: one(p, "--passwords-dir"),
            dryRun: p.flags.has("--dry-run"),
          },
          log,
        );
        emit(r);
        if (!json) {
          for (const a of r.actions) io.stdout.write(`${r.dryRun ? "would " : ""}${describeRbacAction(a)}\n`);
          for (const u of r.needsPassword) io.stdout.write(`needs a password\t${u}\n`);
          if (r.actions.length === 0) io.stdout.write("nothing to add\n");
        }
        if (!r.complete && !r.dryRun) {
          log.close();
          io.stderr.write(
            `error: restore-rbac: ${r.needsPassword.length} user(s) not created, no password for them: ${r.needsPassword.join(", ")}. ` +
              `Everything else was restored. Put each one's password in --passwords-dir as a file named like the user and run restore-rbac again\n`,
          );
          return 1;
        }
        return 0;
      }
      case "list-rbac": {
        const { backups, damaged } = await listRbac(makeStore(storage));
        for (const d of damaged)
          log.warn(
            "list.damaged",
            { rbacId: d.rbacId, reason: d.reason },
            `${d.rbacId} is damaged: ${d.reason}`,
          );
        emit({ backups, damaged });
        if (!json) {
          for (const b of backups)
            io.stdout.write(
              `${b.rbacId}\t${b.time}\t${b.method}\t${b.users} users\t${b.roles} roles\t${b.grants} grants\t${b.privilegeGroups} privilege groups\n`,
            );
          for (const d of damaged) io.stdout.write(`damaged\t${d.rbacId}\t${d.reason}\n`);
        }
        return 0;
      }
      default:
        throw new UsageError(`unknown command ${p.command}`);
    }
  } catch (e) {
    log.close();
    const code = e instanceof WorkerError ? e.exitCode : 1;
    const msg = e instanceof WorkerError ? describeError(e) : `unexpected failure: ${describeError(e)}`;
    io.stderr.write(`error: ${msg}\n`);
    emit({ error: msg });
    return code;
  }
}

if (require.main === module) {
  // Kubernetes sends SIGTERM when it deletes the pod: stop between batches, clean up, say what is left.
  // (`schedule` installs its own handlers: it finishes the running backup first.)
  const stop = new AbortController();
  if (process.argv[2] !== "schedule") {
    for (const sig of ["SIGTERM", "SIGINT"] as const) {
      process.once(sig, () => {
        process.stderr.write(`${sig} received: stopping after the current batch\n`);
        stop.abort(sig);
      });
    }
  }
  // Compiled (the image: ENTRYPOINT node /app/dist/cli.js, WORKDIR /app) the usage names the file as
  // run from its directory's parent; under ts-node it is the npm script.
  const invocation = __filename.endsWith(".js")
    ? `node ${path.relative(path.dirname(__dirname), __filename)}`
    : NPM_INVOCATION;
  main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    signal: stop.signal,
    invocation,
  })
    .then((code) => {
      process.exitCode = code;
      // gRPC keeps handles open after close; leave once output is flushed.
      process.stdout.write("", () => process.exit(code));
    })
    .catch((e: unknown) => {
      process.stderr.write(`error: unexpected failure: ${describeError(e)}\n`);
      process.exit(1);
    });
}
