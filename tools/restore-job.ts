import { spawnSync } from "node:child_process";
import * as yaml from "js-yaml";

/**
 * `npm run restore-job -- --stack <stack> [--command restore|verify|list] --backup <id> [--target <name>]
 *   [--drop-existing] [--index-fallback <type>] [--namespace milvus] [--context <kubectl context>]
 *   [--storage-account-url <url> --container <name>] [--dry-run]`
 *
 * Creates a one-off Job from the backup CronJob's own pod template (same image, identity, Secret,
 * network policy and node placement), with the worker's `restore` (or `verify`, or `list --json`)
 * command, waits for it and reports the result. Nothing is edited by hand and no new credentials are
 * involved: the Blob data plane is reached from the cluster's subnet (which the backup account's
 * firewall admits) with the worker's workload identity, never from the operator's machine. `list`
 * prints the worker's JSON document on stdout.
 */

type Obj = Record<string, unknown>;

export type JobCommand = "restore" | "verify" | "list";

export interface RestoreRequest {
  stack: string;
  command: JobCommand;
  /** Backup id; empty for `list`. */
  backup: string;
  target?: string;
  dropExisting: boolean;
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

const USAGE =
  "usage: npm run restore-job -- --stack <stack> [--command restore|verify|list] --backup <backupId> [--target <collection>] [--drop-existing] " +
  "[--index-fallback <indexType>] [--namespace milvus] [--cronjob milvus-backup] [--context <kube-context>] " +
  "[--storage-account-url <https://account-secondary.blob.core.windows.net/> --container <name>] " +
  "[--timeout <seconds>] [--dry-run]";

/** Parses the command line; returns the request or a list of problems (all of them). */
export function parseRestoreArgs(argv: string[]): RestoreRequest | { problems: string[] } {
  const problems: string[] = [];
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const valued = new Set([
    "--stack",
    "--command",
    "--backup",
    "--target",
    "--index-fallback",
    "--namespace",
    "--cronjob",
    "--context",
    "--timeout",
    "--storage-account-url",
    "--container",
  ]);
  const boolean = new Set(["--drop-existing", "--dry-run"]);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv.at(i) ?? "";
    if (valued.has(arg)) {
      const v = argv.at(i + 1);
      if (v === undefined || v.startsWith("--")) problems.push(`${arg} needs a value`);
      else values.set(arg, v);
      i++;
    } else if (boolean.has(arg)) {
      flags.add(arg);
    } else {
      problems.push(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  const stack = values.get("--stack");
  const command = values.get("--command") ?? "restore";
  if (command !== "restore" && command !== "verify" && command !== "list")
    problems.push(`--command ${JSON.stringify(command)} is not one of restore, verify, list`);
  const backup = values.get("--backup") ?? (command === "list" ? "" : undefined);
  if (!stack)
    problems.push("--stack is required (the Pulumi stack whose cluster runs the Job, e.g. prod or dr)");
  if (backup === undefined)
    problems.push("--backup is required (a backup id from `npm run -s restore-job -- --command list`)");
  if (backup && !/^[A-Za-z0-9_.:-]+$/.test(backup))
    problems.push(`--backup ${JSON.stringify(backup)} is not a backup id`);
  const target = values.get("--target");
  if (target !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,254}$/.test(target)) {
    problems.push(`--target ${JSON.stringify(target)} is not a valid Milvus collection name`);
  }
  const storageAccountUrl = values.get("--storage-account-url");
  if (
    storageAccountUrl !== undefined &&
    !/^https:\/\/[a-z0-9-]+\.blob\.core\.[a-z.]+\/?$/.test(storageAccountUrl)
  )
    problems.push(
      `--storage-account-url ${JSON.stringify(storageAccountUrl)} is not an https blob endpoint such as https://milvusbkprod-secondary.blob.core.windows.net/`,
    );
  const container = values.get("--container");
  if (container !== undefined && !/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(container))
    problems.push(`--container ${JSON.stringify(container)} is not a valid blob container name`);
  const timeout = Number(values.get("--timeout") ?? "21600");
  if (!Number.isInteger(timeout) || timeout < 60)
    problems.push("--timeout must be an integer number of seconds >= 60");
  if (problems.length > 0 || !stack || backup === undefined) return { problems };
  return {
    stack,
    command: command as JobCommand,
    backup,
    target,
    dropExisting: flags.has("--drop-existing"),
    indexFallback: values.get("--index-fallback"),
    namespace: values.get("--namespace") ?? "milvus",
    cronJob: values.get("--cronjob") ?? "milvus-backup",
    context: values.get("--context"),
    storageAccountUrl,
    container,
    dryRun: flags.has("--dry-run"),
    timeoutSeconds: timeout,
  };
}

/** The worker arguments of the Job's command. */
export function workerArgs(
  req: Pick<RestoreRequest, "command" | "backup" | "target" | "dropExisting" | "indexFallback">,
): string[] {
  if (req.command === "list") return ["list", "--json"];
  if (req.command === "verify") return ["verify", "--backup", req.backup];
  return restoreArgs(req);
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
  req: Pick<RestoreRequest, "backup" | "target" | "dropExisting" | "indexFallback">,
): string[] {
  return [
    "restore",
    "--backup",
    req.backup,
    ...(req.target ? ["--target", req.target] : []),
    ...(req.dropExisting ? ["--drop-existing"] : []),
    ...(req.indexFallback ? ["--index-fallback", req.indexFallback] : []),
  ];
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
          containers: [{ ...base, name: req.command, args: workerArgs(req), env: restoreEnv(base, req) }],
        },
      },
    },
  };
}

function kubectl(req: RestoreRequest, args: string[], input?: string) {
  const full = [...(req.context ? ["--context", req.context] : []), "-n", req.namespace, ...args];
  const res = spawnSync("kubectl", full, { input, encoding: "utf8" });
  if (res.error)
    throw new Error(
      `kubectl could not be run (${res.error.message}); install kubectl and kubelogin, then \`az aks get-credentials\``,
    );
  return res;
}

function main(): number {
  const parsed = parseRestoreArgs(process.argv.slice(2));
  if ("problems" in parsed) {
    console.error(`restore-job: ${parsed.problems.join("; ")}\n${USAGE}`);
    return 2;
  }
  const req = parsed;
  const got = kubectl(req, ["get", "cronjob", req.cronJob, "-o", "json"]);
  if (got.status !== 0) {
    console.error(
      `restore-job: cannot read CronJob ${req.namespace}/${req.cronJob} for stack ${req.stack}: ${got.stderr.trim()}`,
    );
    return 1;
  }
  const job = restoreJobFromCronJob(JSON.parse(got.stdout) as Obj, req, new Date());
  const name = String((job.metadata as Obj).name);
  if (req.dryRun) {
    process.stdout.write(yaml.dump(job, { noRefs: true }));
    return 0;
  }
  const created = kubectl(req, ["create", "-f", "-"], JSON.stringify(job));
  if (created.status !== 0) {
    console.error(`restore-job: creating Job ${name} failed: ${created.stderr.trim()}`);
    return 1;
  }
  console.error(
    `restore-job: Job ${req.namespace}/${name} runs \`${workerArgs(req).join(" ")}\`; waiting up to ${req.timeoutSeconds}s`,
  );
  // Wait for either terminal condition, whichever comes first.
  const deadline = Date.now() + req.timeoutSeconds * 1000;
  for (;;) {
    const st = kubectl(req, ["get", "job", name, "-o", "jsonpath={.status.succeeded}/{.status.failed}"]);
    const [succeeded, failed = ""] = st.stdout.split("/");
    if (succeeded === "1" || (failed !== "" && failed !== "0") || Date.now() > deadline) {
      const logs = kubectl(req, ["logs", `job/${name}`, ...(req.command === "list" ? [] : ["--tail", "50"])]);
      if (req.command === "list" && succeeded === "1") {
        const doc = listedDocument(logs.stdout);
        if (doc === undefined) {
          console.error(
            `restore-job: Job ${name} printed no backup list; see \`kubectl -n ${req.namespace} logs job/${name}\``,
          );
          return 1;
        }
        process.stdout.write(`${doc}\n`);
        return 0;
      }
      process.stderr.write(logs.stdout);
      if (succeeded === "1") {
        console.log(
          req.command === "verify"
            ? `restore-job: Job ${name} succeeded: backup ${req.backup} verified`
            : `restore-job: Job ${name} succeeded: backup ${req.backup} restored${req.target ? ` as ${req.target}` : ""}`,
        );
        return 0;
      }
      console.error(
        `restore-job: Job ${name} ${Date.now() > deadline ? "timed out" : "failed"}; see \`kubectl -n ${req.namespace} logs job/${name}\``,
      );
      return 1;
    }
    spawnSync("sleep", ["5"]);
  }
}

if (require.main === module) {
  process.exit(main());
}
