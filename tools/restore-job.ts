import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";
import {
  describeArgProblem,
  parseCommandLine,
  processIo,
  usageError,
  usageText,
  type CommandLine,
  type CommandSpec,
  type Io,
} from "../backup/cliArgs";
import { checkDatabaseName } from "../backup/databases";
import { UsageError } from "../backup/errors";
import { RBAC_ID_PATTERN } from "../backup/rbac";

/**
 * `npm run -s restore-job -- --stack <stack> [--command restore|verify|list|list-rbac|restore-rbac] --backup <id>
 *   [--target <name>] [--target-database <db>] [--drop-existing] [--resume] [--index-fallback <type>]
 *   [--passwords-secret <name>] [--plan] [--namespace milvus] [--context <kubectl context>]
 *   [--storage-account-url <url> --container <name>] [--dry-run]` (RESTORE_JOB below is the full usage)
 *
 * Creates a one-off Job from the backup CronJob's own pod template (same image, identity, Secret,
 * network policy and node placement), with the worker's `restore` (or `verify`, `list --json`,
 * `list-rbac --json`, `restore-rbac`) command, waits for it and reports the result. Nothing is edited by hand and no new credentials are
 * involved: the Blob data plane is reached from the cluster's subnet (which the backup account's
 * firewall admits) with the worker's workload identity, never from the operator's machine. `list`
 * prints the worker's JSON document on stdout.
 */

type Obj = Record<string, unknown>;

export const JOB_COMMANDS = ["restore", "verify", "list", "list-rbac", "restore-rbac"] as const;
export type JobCommand = (typeof JOB_COMMANDS)[number];

/** Commands that take no --backup: they list what there is to restore. */
const LISTINGS: readonly JobCommand[] = ["list", "list-rbac"];

/**
 * Where the `--passwords-secret` Secret is mounted in the restore-rbac container (a directory with one
 * file per key: Kubernetes docs "Secrets", "Using Secrets as files from a Pod").
 */
export const PASSWORDS_DIR = "/etc/milvus-rbac-passwords";

export interface RestoreRequest {
  stack: string;
  command: JobCommand;
  /** Backup id (an RBAC backup id for `restore-rbac`); empty for `list` and `list-rbac`. */
  backup: string;
  target?: string;
  /** `restore --target-database`: restore into this database instead of the backup's own. */
  targetDatabase?: string;
  dropExisting: boolean;
  /** `restore --resume`: continue an interrupted restore of the same backup into the same target. */
  resume: boolean;
  /** `restore-rbac`: the Secret (in the Job's namespace) holding one password per user, key = user name. */
  passwordsSecret?: string;
  /** `restore-rbac --dry-run` in the cluster: print the plan, change nothing. */
  plan: boolean;
  indexFallback?: string;
  namespace: string;
  cronJob: string;
  context?: string;
  /**
   * Blob endpoint to restore from instead of the CronJob's own account: on a dr stack, the primary's
   * read-only secondary endpoint (the `restoreSourceBlobEndpoint` stack output).
   */
  storageAccountUrl?: string;
  /** Backup container at that endpoint (`restoreSourceContainerName`). */
  container?: string;
  dryRun: boolean;
  timeoutSeconds: number;
}

export const RESTORE_JOB: CommandSpec = {
  name: "restore-job",
  invocation: "npm run -s restore-job --",
  synopsis:
    "--stack <stack> [--command restore|verify|list|list-rbac|restore-rbac] --backup <backupId> [--target <collection>] " +
    "[--target-database <db>] [--drop-existing] [--resume] [--index-fallback <indexType>] [--passwords-secret <name>] [--plan] " +
    "[--context <kube-context>] [--storage-account-url <url> --container <name>] [--dry-run]",
  description:
    "Runs the worker's restore (or verify, list --json, list-rbac --json, restore-rbac) as a one-off Job in the stack's\n" +
    "cluster, built from the backup CronJob's own pod template (same image, workload identity, Secret, CA and network\n" +
    "policy), waits for it and prints the result. The Blob data plane is reached from the cluster's subnet, never from\n" +
    "this machine.",
  flags: {
    "--stack": {
      type: "string",
      value: "<stack>",
      help: "the stack whose cluster runs the Job (prod, dr, ...); selects the kube context milvus-<stack>-aks",
    },
    "--command": {
      type: "string",
      value: "restore|verify|list|list-rbac|restore-rbac",
      help: "worker command to run (default restore)",
    },
    "--backup": {
      type: "string",
      value: "<backupId>",
      help: "backup to restore or verify (ids: --command list); restore-rbac: an RBAC backup id (--command list-rbac)",
    },
    "--target": {
      type: "string",
      value: "<collection>",
      help: "restore under this name instead of the original",
    },
    "--target-database": {
      type: "string",
      value: "<db>",
      help: "restore: into this database (created when missing) instead of the backup's own",
    },
    "--drop-existing": { type: "boolean", help: "replace an existing collection of the target name" },
    "--resume": {
      type: "boolean",
      help: "restore: continue an interrupted restore of the same backup into the same target",
    },
    "--passwords-secret": {
      type: "string",
      value: "<name>",
      help: `restore-rbac: Secret in the namespace with one key per user (value: the password), mounted read-only at ${PASSWORDS_DIR}`,
    },
    "--plan": {
      type: "boolean",
      help: "restore-rbac: run the worker's restore-rbac --dry-run: print what would be added, change nothing",
    },
    "--index-fallback": {
      type: "string",
      value: "<indexType>",
      help: "index type to use where the captured one is rejected",
    },
    "--namespace": { type: "string", value: "<name>", help: "namespace of the CronJob (default milvus)" },
    "--cronjob": {
      type: "string",
      value: "<name>",
      help: "CronJob whose pod template is copied (default milvus-backup)",
    },
    "--context": {
      type: "string",
      value: "<kube-context>",
      help: "kube context to use instead of the stack's milvus-<stack>-aks",
    },
    "--storage-account-url": {
      type: "string",
      value: "<url>",
      help: "blob endpoint to read instead of the CronJob's account\n(a dr stack: the restoreSourceBlobEndpoint output)",
    },
    "--container": {
      type: "string",
      value: "<name>",
      help: "backup container at that endpoint (restoreSourceContainerName)",
    },
    "--timeout": {
      type: "string",
      value: "<seconds>",
      help: "the Job's deadline (default 21600, at least 60)",
    },
    "--dry-run": {
      type: "boolean",
      help: "print the Job, built from the offline render of the stack (no cluster needed), and exit",
    },
  },
  env: [
    ["KUBECONFIG", "kubeconfig holding the stack's context (kubectl's default: ~/.kube/config)"],
    ["MILVUS_AKS_TODAY", "with --dry-run: YYYY-MM-DD the offline render judges the Kubernetes calendar at"],
  ],
  exitCodes:
    "0 the Job succeeded (or --dry-run printed it), 1 it failed or could not be run (restore-rbac: also while users " +
    "lack a password), 2 bad usage",
};

const STACK_NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * The kube context of a stack's cluster. The AKS cluster of stack S is named `milvus-S-aks`, fixed by the
 * program rather than autonamed (components/stack.ts names the stack's components `milvus-S`,
 * components/azure/aksCluster.ts the cluster `${name}-aks`), in the resource group `milvus-S-rg`
 * (components/common/naming.ts stackResourceGroupName), and `az aks get-credentials` names the context after
 * the cluster. So `--stack` alone selects the right cluster without Azure or Pulumi access, instead of
 * restoring into whatever kubectl's current context happens to be; test/restoreJob.test.ts checks the
 * name against the rendered ManagedCluster. The context must exist: it is never created or guessed
 * beyond this name (see {@link contextProblem}), and `--context` overrides it.
 */
export function clusterContext(stack: string): string {
  return `milvus-${stack}-aks`;
}

/** The resource group of a stack's cluster (components/common/naming.ts stackResourceGroupName). */
export function clusterResourceGroup(stack: string): string {
  return `milvus-${stack}-rg`;
}

/** Parses the command line; returns the request or a list of problems (all of them). */
export function parseRestoreArgs(argv: string[]): RestoreRequest | { problems: string[] } {
  return requestFrom(parseCommandLine(argv, RESTORE_JOB.flags));
}

function requestFrom(line: CommandLine): RestoreRequest | { problems: string[] } {
  const problems = line.problems.map(describeArgProblem);
  const value = (flag: string) => line.values.get(flag)?.[0];
  const stack = value("--stack");
  const command = value("--command") ?? "restore";
  const known = (JOB_COMMANDS as readonly string[]).includes(command);
  if (!known) problems.push(`--command ${JSON.stringify(command)} is not one of ${JOB_COMMANDS.join(", ")}`);
  const backup = value("--backup") ?? (LISTINGS.includes(command as JobCommand) ? "" : undefined);
  if (!stack)
    problems.push("--stack is required (the Pulumi stack whose cluster runs the Job, e.g. prod or dr)");
  else if (!STACK_NAME.test(stack))
    problems.push(
      `--stack ${JSON.stringify(stack)} is not a stack name (the short name, e.g. prod: its cluster is milvus-<stack>-aks)`,
    );
  if (backup === undefined)
    problems.push(
      command === "restore-rbac"
        ? "--backup is required (an RBAC backup id from `npm run -s restore-job -- --command list-rbac`)"
        : "--backup is required (a backup id from `npm run -s restore-job -- --command list`)",
    );
  if (backup && command === "restore-rbac" && !RBAC_ID_PATTERN.test(backup))
    problems.push(
      `--backup ${JSON.stringify(backup)} is not an RBAC backup id (rbac-<yyyymmddThhmmssZ>-<6 hex>, from \`--command list-rbac\`)`,
    );
  else if (backup && !/^[A-Za-z0-9_.:-]+$/.test(backup))
    problems.push(`--backup ${JSON.stringify(backup)} is not a backup id`);
  // Flags of one worker command are refused with another rather than silently dropped from the Job.
  const onlyFor = (flag: string, owner: JobCommand, why: string) => {
    if (known && command !== owner && (line.values.has(flag) || line.flags.has(flag)))
      problems.push(`${flag} is only for --command ${owner} (${why}), not ${command}`);
  };
  onlyFor("--target-database", "restore", "the database a restore writes into");
  onlyFor("--resume", "restore", "it continues an interrupted restore");
  onlyFor("--passwords-secret", "restore-rbac", "it mounts the users' passwords for restore-rbac");
  onlyFor("--plan", "restore-rbac", "it prints restore-rbac's plan; --dry-run prints the Job of any command");
  const targetDatabase = value("--target-database");
  if (targetDatabase !== undefined) {
    try {
      checkDatabaseName(targetDatabase, "--target-database");
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      problems.push(e.message);
    }
  }
  const passwordsSecret = value("--passwords-secret");
  // A Secret's name is a DNS subdomain (Kubernetes docs "Object Names and IDs").
  if (
    passwordsSecret !== undefined &&
    (passwordsSecret.length > 253 ||
      !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(passwordsSecret))
  )
    problems.push(
      `--passwords-secret ${JSON.stringify(passwordsSecret)} is not a Kubernetes Secret name (lower-case letters, digits, '-' and '.', e.g. milvus-rbac-passwords)`,
    );
  const target = value("--target");
  if (target !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,254}$/.test(target)) {
    problems.push(`--target ${JSON.stringify(target)} is not a valid Milvus collection name`);
  }
  const storageAccountUrl = value("--storage-account-url");
  if (
    storageAccountUrl !== undefined &&
    !/^https:\/\/[a-z0-9-]+\.blob\.core\.[a-z.]+\/?$/.test(storageAccountUrl)
  )
    problems.push(
      `--storage-account-url ${JSON.stringify(storageAccountUrl)} is not an https blob endpoint such as https://milvusbkprod-secondary.blob.core.windows.net/`,
    );
  const container = value("--container");
  if (container !== undefined && !/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(container))
    problems.push(`--container ${JSON.stringify(container)} is not a valid blob container name`);
  const timeout = Number(value("--timeout") ?? "21600");
  if (!Number.isInteger(timeout) || timeout < 60)
    problems.push("--timeout must be an integer number of seconds >= 60");
  if (problems.length > 0 || !stack || backup === undefined) return { problems };
  return {
    stack,
    command: command as JobCommand,
    backup,
    target,
    targetDatabase,
    dropExisting: line.flags.has("--drop-existing"),
    resume: line.flags.has("--resume"),
    passwordsSecret,
    plan: line.flags.has("--plan"),
    indexFallback: value("--index-fallback"),
    namespace: value("--namespace") ?? "milvus",
    cronJob: value("--cronjob") ?? "milvus-backup",
    context: value("--context"),
    storageAccountUrl,
    container,
    dryRun: line.flags.has("--dry-run"),
    timeoutSeconds: timeout,
  };
}

type WorkerArgsRequest = Pick<
  RestoreRequest,
  | "command"
  | "backup"
  | "target"
  | "targetDatabase"
  | "dropExisting"
  | "resume"
  | "indexFallback"
  | "passwordsSecret"
  | "plan"
>;

/** The worker arguments of the Job's command. Never a secret: a password Secret is a mounted directory. */
export function workerArgs(req: WorkerArgsRequest): string[] {
  switch (req.command) {
    case "list":
    case "list-rbac":
      return [req.command, "--json"];
    case "verify":
      return ["verify", "--backup", req.backup];
    case "restore-rbac":
      return [
        "restore-rbac",
        "--backup",
        req.backup,
        ...(req.passwordsSecret ? ["--passwords-dir", PASSWORDS_DIR] : []),
        ...(req.plan ? ["--dry-run"] : []),
      ];
    case "restore":
      return restoreArgs(req);
  }
}

/** The worker's `list --json` document among a Job's log lines (stderr carries the worker's log). */
export function listedDocument(logs: string): string | undefined {
  return logs
    .split("\n")
    .filter((line) => line.startsWith('{"backups":'))
    .at(-1);
}

/** The worker arguments of a restore. */
export function restoreArgs(
  req: Pick<
    RestoreRequest,
    "backup" | "target" | "dropExisting" | "indexFallback" | "targetDatabase" | "resume"
  >,
): string[] {
  return [
    "restore",
    "--backup",
    req.backup,
    ...(req.target ? ["--target", req.target] : []),
    ...(req.targetDatabase ? ["--target-database", req.targetDatabase] : []),
    ...(req.dropExisting ? ["--drop-existing"] : []),
    ...(req.resume ? ["--resume"] : []),
    ...(req.indexFallback ? ["--index-fallback", req.indexFallback] : []),
  ];
}

/**
 * The worker's report of restore-rbac users left without a password (backup/cli.ts prints it on stderr
 * and exits 1; test/rbac.test.ts pins the wording against a real Milvus 2.3.5): the user names, or
 * undefined when the logs do not hold it.
 */
export function usersWithoutPassword(logs: string): string[] | undefined {
  const m =
    /^error: restore-rbac: \d+ user\(s\) not created, no password for them: (.*?)\. Everything else was restored/m.exec(
      logs,
    );
  return m?.[1]?.split(", ");
}

/** The container's environment with the restore source (if given) replacing the CronJob's own account. */
export function restoreEnv(
  container: Obj,
  req: Pick<RestoreRequest, "storageAccountUrl" | "container">,
): unknown[] {
  const overrides = new Map<string, string>();
  if (req.storageAccountUrl) overrides.set("AZURE_STORAGE_ACCOUNT_URL", req.storageAccountUrl);
  if (req.container) overrides.set("BACKUP_CONTAINER", req.container);
  const env = ((container.env as Obj[] | undefined) ?? []).filter((e) => !overrides.has(String(e.name)));
  return [...env, ...[...overrides].map(([name, value]) => ({ name, value }))];
}

/**
 * Builds the restore Job from the CronJob: same pod template, one container running `restore`
 * (the backup/prune steps are dropped), no retries (a restore is checked and re-run by a person).
 */
export function restoreJobFromCronJob(cronJob: Obj, req: RestoreRequest, now: Date): Obj {
  const spec = cronJob.spec as Obj | undefined;
  const jobTemplate = spec?.jobTemplate as Obj | undefined;
  const jobSpec = jobTemplate?.spec as Obj | undefined;
  const template = jobSpec?.template as Obj | undefined;
  const podSpec = template?.spec as Obj | undefined;
  const containers = [
    ...((podSpec?.initContainers as Obj[] | undefined) ?? []),
    ...((podSpec?.containers as Obj[] | undefined) ?? []),
  ];
  const base = containers.at(0);
  if (!template || !podSpec || !base) {
    throw new Error(
      `CronJob ${req.namespace}/${req.cronJob} has no pod template to copy; is the backup worker deployed to stack ${req.stack}?`,
    );
  }
  const stamp = now.toISOString().replace(/[-:T]/g, "").slice(0, 14);
  const name = `milvus-${req.command}-${stamp}`;
  const { initContainers: _dropped, ...restOfPod } = podSpec;
  const passwords = req.passwordsSecret ? passwordsVolume(podSpec, req) : undefined;
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: req.namespace,
      labels: {
        ...((template.metadata as Obj | undefined)?.labels as Obj | undefined),
        "milvus-aks/restore": "true",
      },
      annotations: { "milvus-aks/backup-id": req.backup, "milvus-aks/target": req.target ?? "" },
    },
    spec: {
      backoffLimit: 0,
      activeDeadlineSeconds: req.timeoutSeconds,
      ttlSecondsAfterFinished: 7 * 24 * 3600,
      template: {
        metadata: template.metadata,
        spec: {
          ...restOfPod,
          restartPolicy: "Never",
          ...(passwords
            ? { volumes: [...((podSpec.volumes as Obj[] | undefined) ?? []), passwords.volume] }
            : {}),
          containers: [
            {
              ...base,
              name: req.command,
              args: workerArgs(req),
              env: restoreEnv(base, req),
              ...(passwords
                ? {
                    volumeMounts: [...((base.volumeMounts as Obj[] | undefined) ?? []), passwords.mount],
                  }
                : {}),
            },
          ],
        },
      },
    },
  };
}

const PASSWORDS_VOLUME = "rbac-passwords";

/**
 * The `--passwords-secret` Secret as a read-only directory: one file per key (the user name), holding
 * the value (the password), which the worker reads as `--passwords-dir` (backup/access.ts
 * loadPasswords). The password never travels in args, environment or logs, only as a file.
 *
 * Mode 0400 keeps the files from the world and from other users; the worker's non-root user reads
 * them through the pod's fsGroup: the kubelet gives a secret volume's files to group fsGroup and adds
 * group read to read-only volumes (kubernetes pkg/volume/volume_linux.go, changeFilePermission:
 * chown to fsGroup, mode | 0440; SecretVolumeSource.defaultMode API doc: "This might be in conflict
 * with other options that affect the file mode, like fsGroup"), so they end up 0440 root:<fsGroup>.
 * Without an fsGroup they would stay root's alone, unreadable by the worker: refused here rather
 * than left to fail in the cluster. The backup CronJob sets fsGroup to the worker's user
 * (components/backupDeployment/backupWorker.ts; test/restoreJob.test.ts checks the render).
 */
function passwordsVolume(podSpec: Obj, req: RestoreRequest): { volume: Obj; mount: Obj } {
  const fsGroup = (podSpec.securityContext as Obj | undefined)?.fsGroup;
  if (typeof fsGroup !== "number") {
    throw new Error(
      `CronJob ${req.namespace}/${req.cronJob}'s pod template sets no securityContext.fsGroup, so the worker's ` +
        `non-root user could not read the files of Secret ${String(req.passwordsSecret)} (mode 0400, owned by root); ` +
        "deploy the backup worker of this checkout (its pod sets fsGroup) and run again",
    );
  }
  return {
    volume: { name: PASSWORDS_VOLUME, secret: { secretName: req.passwordsSecret, defaultMode: 0o400 } },
    mount: { name: PASSWORDS_VOLUME, mountPath: PASSWORDS_DIR, readOnly: true },
  };
}

/** Runs kubectl with these arguments (and standard input); tests pass a stand-in. */
export type Kubectl = (
  args: string[],
  input?: string,
) => { status: number | null; stdout: string; stderr: string };

const runKubectl: Kubectl = (args, input) => {
  const res = spawnSync("kubectl", args, { input, encoding: "utf8" });
  if (res.error)
    throw new Error(
      `kubectl could not be run (${res.error.message}); install kubectl and kubelogin, then \`az aks get-credentials\``,
    );
  return res;
};

/** Why the kube context cannot be used (it is not in the kubeconfig), with the commands that create it. */
function contextProblem(req: RestoreRequest, context: string, run: Kubectl): string | undefined {
  const res = run(["config", "get-contexts", context, "-o", "name"]);
  if (res.status === 0 && res.stdout.trim() === context) return undefined;
  const how = req.context
    ? "pick one of `kubectl config get-contexts -o name`"
    : `run \`az aks get-credentials -g ${clusterResourceGroup(req.stack)} -n ${context}\` and ` +
      "`kubelogin convert-kubeconfig -l azurecli` (user credentials, never --admin), or pass --context";
  return `restore-job: no kube context ${context} for stack ${req.stack} in the kubeconfig; ${how}`;
}

/** Everything main needs from outside, replaceable in tests. */
export interface RestoreJobIo extends Io {
  kubectl?: Kubectl;
  now?: () => Date;
  /** Pause between polls of the Job. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * The CronJob as the offline render of the stack declares it (tools/offline-runtime.ts, the runtime of
 * `npm run render`): what `pulumi up` of this checkout deploys, available without a cluster or Azure.
 */
async function renderedCronJob(req: RestoreRequest): Promise<Obj> {
  // Loaded only for --dry-run: the Pulumi program is not needed to run a Job in a cluster.
  const { kubernetesObjects, renderStack, ROOT } = await import("./offline-runtime");
  if (!fs.existsSync(path.join(ROOT, `Pulumi.${req.stack}.yaml`)))
    throw new Error(`no stack file Pulumi.${req.stack}.yaml to render stack ${req.stack} from`);
  const result = await renderStack(req.stack);
  const found = kubernetesObjects(result).find((o) => {
    const meta = (o.inputs.metadata ?? {}) as Obj;
    return o.inputs.kind === "CronJob" && meta.name === req.cronJob && meta.namespace === req.namespace;
  });
  if (!found) {
    throw new Error(
      `the offline render of stack ${req.stack} has no CronJob ${req.namespace}/${req.cronJob}: ` +
        "the stack deploys no backup worker (a cold dr standby deploys no cluster until dr.activated)",
    );
  }
  return found.inputs;
}

/** Runs the command line; returns the exit code. */
export async function main(argv: string[], io: RestoreJobIo = processIo): Promise<number> {
  const line = parseCommandLine(argv, RESTORE_JOB.flags);
  if (line.help) {
    io.out(usageText(RESTORE_JOB));
    return 0;
  }
  const parsed = requestFrom(line);
  if ("problems" in parsed) {
    io.err(usageError(RESTORE_JOB, parsed.problems));
    return 2;
  }
  const req = parsed;
  const now = io.now ?? (() => new Date());
  const context = req.context ?? clusterContext(req.stack);
  try {
    if (req.dryRun) {
      // No cluster is contacted: the Job comes from the render, so a dry run works before the cluster
      // exists, during an outage, and from a machine without credentials.
      const { redactSecrets } = await import("./offline-runtime");
      const job = restoreJobFromCronJob(await renderedCronJob(req), req, now());
      io.err(
        `restore-job: dry run: Job built from the offline render of stack ${req.stack} (this checkout's Pulumi.${req.stack}.yaml), ` +
          `not read from the cluster; it would run in kube context ${context}`,
      );
      io.out(yaml.dump(redactSecrets(job), { noRefs: true }).trimEnd());
      return 0;
    }
    const run = io.kubectl ?? runKubectl;
    const missing = contextProblem(req, context, run);
    if (missing) {
      io.err(missing);
      return 1;
    }
    const kubectl = (args: string[], input?: string) =>
      run(["--context", context, "-n", req.namespace, ...args], input);
    return await runJob(
      req,
      context,
      kubectl,
      io,
      now,
      io.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
    );
  } catch (err) {
    io.err(`restore-job: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

/** What a succeeded Job did, for its one-line report. */
function succeededWhat(req: RestoreRequest): string {
  switch (req.command) {
    case "verify":
      return `backup ${req.backup} verified`;
    case "restore-rbac":
      return req.plan
        ? `planned the restore of RBAC backup ${req.backup} (nothing was changed; the plan is in the log above)`
        : `users, roles and grants of RBAC backup ${req.backup} restored`;
    default:
      return (
        `backup ${req.backup} ${req.resume ? "restored (resumed)" : "restored"}` +
        `${req.target ? ` as ${req.target}` : ""}${req.targetDatabase ? ` in database ${req.targetDatabase}` : ""}`
      );
  }
}

async function runJob(
  req: RestoreRequest,
  context: string,
  kubectl: (args: string[], input?: string) => ReturnType<Kubectl>,
  io: Io,
  now: () => Date,
  sleep: (ms: number) => Promise<void>,
): Promise<number> {
  const got = kubectl(["get", "cronjob", req.cronJob, "-o", "json"]);
  if (got.status !== 0) {
    io.err(
      `restore-job: cannot read CronJob ${req.namespace}/${req.cronJob} for stack ${req.stack} (context ${context}): ${got.stderr.trim()}`,
    );
    return 1;
  }
  if (req.passwordsSecret) {
    // A missing Secret would leave the pod in ContainerCreating until the deadline (hours): check first.
    // Only the name is printed: the values stay in the cluster.
    const secret = kubectl(["get", "secret", req.passwordsSecret, "-o", "jsonpath={.metadata.name}"]);
    if (secret.status !== 0) {
      io.err(
        `restore-job: --passwords-secret ${req.passwordsSecret}: cannot read Secret ${req.passwordsSecret} in namespace ${req.namespace} ` +
          `(context ${context}): ${secret.stderr.trim()}; create it with one key per user (value: the password), e.g. ` +
          `\`kubectl -n ${req.namespace} create secret generic ${req.passwordsSecret} --from-file=<dir>\``,
      );
      return 1;
    }
  }
  const job = restoreJobFromCronJob(JSON.parse(got.stdout) as Obj, req, now());
  const name = String((job.metadata as Obj).name);
  const created = kubectl(["create", "-f", "-"], JSON.stringify(job));
  if (created.status !== 0) {
    io.err(`restore-job: creating Job ${name} failed: ${created.stderr.trim()}`);
    return 1;
  }
  io.err(
    `restore-job: Job ${req.namespace}/${name} in context ${context} runs \`${workerArgs(req).join(" ")}\`; waiting up to ${req.timeoutSeconds}s`,
  );
  // Wait for either terminal condition, whichever comes first.
  const deadline = now().getTime() + req.timeoutSeconds * 1000;
  for (;;) {
    const st = kubectl(["get", "job", name, "-o", "jsonpath={.status.succeeded}/{.status.failed}"]);
    const [succeeded, failed = ""] = st.stdout.split("/");
    const late = now().getTime() > deadline;
    if (succeeded === "1" || (failed !== "" && failed !== "0") || late) {
      const listing = LISTINGS.includes(req.command);
      const logs = kubectl(["logs", `job/${name}`, ...(listing ? [] : ["--tail", "50"])]);
      if (listing && succeeded === "1") {
        const doc = listedDocument(logs.stdout);
        if (doc === undefined) {
          io.err(
            `restore-job: Job ${name} printed no backup list; see \`kubectl --context ${context} -n ${req.namespace} logs job/${name}\``,
          );
          return 1;
        }
        io.out(doc);
        return 0;
      }
      if (logs.stdout.trim() !== "") io.err(logs.stdout.trimEnd());
      if (succeeded === "1") {
        io.out(`restore-job: Job ${name} succeeded: ${succeededWhat(req)}`);
        return 0;
      }
      const noPassword =
        req.command === "restore-rbac" && !late ? usersWithoutPassword(logs.stdout) : undefined;
      if (noPassword) {
        const secret = req.passwordsSecret ?? "<name>";
        io.err(
          `restore-job: Job ${name}: restore-rbac restored everything of ${req.backup} except ${noPassword.length} user(s) ` +
            `with no password: ${noPassword.join(", ")}. Add a key named like each user (value: the password) to Secret ` +
            `${secret} in namespace ${req.namespace} and run again with --passwords-secret ${secret}`,
        );
        return 1;
      }
      io.err(
        `restore-job: Job ${name} ${late ? "timed out" : "failed"}; see \`kubectl --context ${context} -n ${req.namespace} logs job/${name}\``,
      );
      return 1;
    }
    await sleep(5000);
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exit(code);
  });
}
