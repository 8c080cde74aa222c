import { spawnSync } from "node:child_process";
import {
  describeArgProblem,
  parseCommandLine,
  processIo,
  usageError,
  usageText,
  wholeNumber,
  type CommandLine,
  type CommandSpec,
  type Io,
} from "../backup/cliArgs";

/**
 * `npm run -s dr:failover -- --from prod --to dr [--collection <name> ...] [--max-age-hours 30]
 *   [--data-min-count 2] [--execute]` (DR_FAILOVER below is the full usage)
 *
 * Fails Milvus over to the dr stack in the paired region. Dry-run by default: it reads the dr stack's
 * outputs and prints every command it would run. With `--execute` it runs them in order and stops at
 * the first failure.
 *
 * Where each step runs matters on the worst day. Prod's backup account admits only subnets through its
 * firewall, so every Blob data-plane step (list, verify, restore) runs as a Job in the dr cluster, whose
 * node subnet prod admits (`dr.standbyStack`; checked against both stacks' outputs before step 1), with the worker's workload identity (Blob Data
 * Reader on prod's account). The operator needs the Pulumi backend, rights to deploy the dr stack and
 * the dr cluster's RBAC, and no standing Blob data role at all. The config change that activates the dr
 * stack is committed and pushed, so CI's next deploy of main cannot undo the failover.
 */

export interface FailoverRequest {
  from: string;
  to: string;
  collections: string[];
  maxAgeHours: number;
  dataMinCount: number;
  execute: boolean;
}

/** One entry of `worker list --json` (the worker's documented JSON contract). */
export interface ListedBackup {
  backupId: string;
  collection: string;
  time: string;
  rows: number | string;
  bytes: number;
}

/** Where a step runs: on the operator's (or CI's) machine, or as a Job inside the dr cluster. */
export type Where = "operator" | "dr-cluster";

export interface Step {
  title: string;
  where: Where;
  /** Reads or writes backup blobs (and so must pass prod's storage firewall). */
  dataPlane: boolean;
  /** Built from the dr stack's outputs as they are when the step runs (a cold standby gains its cluster at `pulumi up`). */
  command: (dr: StackOutputs) => string[];
  /** The dr stack's outputs change with this step and are read again after it. */
  refreshesOutputs?: boolean;
}

export const DR_FAILOVER: CommandSpec = {
  name: "dr:failover",
  invocation: "npm run -s dr:failover --",
  synopsis:
    "--from <primary stack> --to <dr stack> [--collection <name> ...] [--max-age-hours <h>] [--data-min-count <n>] [--execute]",
  description:
    "Fails Milvus over to the dr stack. Dry run by default: checks that the primary's backup firewall admits the\n" +
    "dr cluster's subnet and prints every step. With --execute it runs them in order (config, commit and push,\n" +
    "pulumi up, credentials, list/verify/restore Jobs in the dr cluster) and stops at the first failure.",
  flags: {
    "--from": { type: "string", value: "<stack>", help: "the primary stack that was lost (e.g. prod)" },
    "--to": { type: "string", value: "<stack>", help: "the dr stack to fail over to (e.g. dr)" },
    "--collection": {
      type: "string",
      multiple: true,
      value: "<name>",
      help: "collection to restore (default: every collection with a backup)",
    },
    "--max-age-hours": {
      type: "string",
      value: "<h>",
      help: "refuse a newest backup older than this (default 30)",
    },
    "--data-min-count": {
      type: "string",
      value: "<n>",
      help: "data nodes per zone the dr stack scales to (default 2)",
    },
    "--execute": { type: "boolean", help: "run the steps (without it: dry run, prints them)" },
    "--dry-run": { type: "boolean", help: "print the steps only (the default)" },
  },
  env: [
    [
      "(none of its own)",
      "the CLIs it runs read theirs: pulumi (PULUMI_ACCESS_TOKEN or PULUMI_BACKEND_URL,\n" +
        "PULUMI_CONFIG_PASSPHRASE), az, kubelogin, git, and kubectl through restore-job (KUBECONFIG)",
    ],
  ],
  exitCodes: "0 done (or dry run printed), 1 a check or step failed, 2 bad usage",
};

/** Parses the command line; every problem is reported at once. */
export function parseFailoverArgs(argv: string[]): FailoverRequest | { problems: string[] } {
  return requestFrom(parseCommandLine(argv, DR_FAILOVER.flags));
}

function requestFrom(line: CommandLine): FailoverRequest | { problems: string[] } {
  const problems = line.problems.map(describeArgProblem);
  const value = (flag: string) => line.values.get(flag)?.[0];
  const req: FailoverRequest = {
    from: value("--from") ?? "",
    to: value("--to") ?? "",
    collections: line.values.get("--collection") ?? [],
    maxAgeHours: wholeNumber("--max-age-hours", value("--max-age-hours"), 1, 30, problems),
    dataMinCount: wholeNumber("--data-min-count", value("--data-min-count"), 1, 2, problems),
    execute: line.flags.has("--execute"),
  };
  if (req.execute && line.flags.has("--dry-run"))
    problems.push("--execute and --dry-run contradict each other; give one");
  if (!req.from) problems.push("--from is required (the primary stack, e.g. prod)");
  if (!req.to) problems.push("--to is required (the dr stack, e.g. dr)");
  if (req.from && req.from === req.to) problems.push("--from and --to must be different stacks");
  return problems.length > 0 ? { problems } : req;
}

/**
 * The newest complete backup of each collection, checked against the recovery-point budget. Every
 * collection without a usable backup is reported, not only the first.
 */
export function latestBackups(
  listed: ListedBackup[],
  collections: string[],
  now: Date,
  maxAgeHours: number,
): { chosen: ListedBackup[]; problems: string[] } {
  const wanted = collections.length > 0 ? collections : [...new Set(listed.map((b) => b.collection))].sort();
  const problems: string[] = [];
  const chosen: ListedBackup[] = [];
  if (wanted.length === 0) problems.push("the backup container holds no complete backup at all");
  for (const collection of wanted) {
    const newest = listed
      .filter((b) => b.collection === collection)
      .sort((a, b) => Date.parse(b.time) - Date.parse(a.time))
      .at(0);
    if (!newest) {
      problems.push(`collection ${collection}: no complete backup on the secondary endpoint`);
      continue;
    }
    const ageHours = (now.getTime() - Date.parse(newest.time)) / 3_600_000;
    if (ageHours > maxAgeHours) {
      problems.push(
        `collection ${collection}: newest backup ${newest.backupId} is ${ageHours.toFixed(1)} h old, over --max-age-hours ${maxAgeHours}; ` +
          "check geo-replication (Last Sync Time) or raise --max-age-hours to accept the data loss",
      );
      continue;
    }
    chosen.push(newest);
  }
  return { chosen, problems };
}

export interface StackOutputs {
  resourceGroupName: string;
  /** Absent on a cold standby before its first activated `pulumi up`. */
  clusterName?: string;
  restoreSourceBlobEndpoint: string;
  restoreSourceContainerName: string;
  milvusImageTag: string;
  primaryMilvusImageTag?: string;
  milvusAddress?: string;
  /** The stack's own node subnet (the subnet the dr cluster's Jobs reach storage from). */
  nodeSubnetId?: string;
  /** On the primary: every subnet its backup firewall admits. */
  backupAllowedSubnetIds?: string[];
}

/**
 * Whether the primary's backup firewall admits the dr cluster's node subnet, judged from the outputs
 * of both stacks' last `pulumi up` (the Pulumi backend keeps them while the primary region is down).
 * Without that rule every data-plane step fails with 403 AuthorizationFailure, and during a regional
 * outage the primary's account may not accept the change, so the failover stops before it starts.
 */
export function firewallProblems(req: FailoverRequest, primary: StackOutputs, dr: StackOutputs): string[] {
  if (!dr.nodeSubnetId)
    return [`the ${req.to} stack exports no nodeSubnetId: run \`pulumi up --stack ${req.to}\` first`];
  const admitted = primary.backupAllowedSubnetIds ?? [];
  const wanted = dr.nodeSubnetId.toLowerCase();
  if (admitted.some((id) => id.toLowerCase() === wanted)) return [];
  return [
    `the ${req.from} stack's backup firewall does not admit the ${req.to} cluster's node subnet ${dr.nodeSubnetId} ` +
      `(it admits ${admitted.length > 0 ? admitted.join(", ") : "nothing the outputs show"}), so every Job in the ${req.to} cluster would get 403. ` +
      `Set \`pulumi config set --path milvus-aks:dr.standbyStack ${req.to} --stack ${req.from}\` and run \`pulumi up --stack ${req.from}\` ` +
      `(if the ${req.from} region's Azure Resource Manager still answers), or add the rule with ` +
      `\`az storage account network-rule add --account-name <${req.from} backupAccountName> --subnet ${dr.nodeSubnetId}\`, then re-run`,
  ];
}

const configSet = (stack: string, key: string, value: string) => [
  "pulumi",
  "config",
  "set",
  "--stack",
  stack,
  "--path",
  `milvus-aks:${key}`,
  value,
];

/** A worker command run as a Job in the dr cluster, reading prod's geo-replicated secondary. */
function inClusterJob(req: FailoverRequest, dr: StackOutputs, args: string[]): string[] {
  return [
    "npm",
    "run",
    "-s",
    "restore-job",
    "--",
    "--stack",
    req.to,
    ...args,
    "--storage-account-url",
    dr.restoreSourceBlobEndpoint,
    "--container",
    dr.restoreSourceContainerName,
  ];
}

/** Lists the complete backups on prod's secondary, from inside the dr cluster. */
export function listStep(req: FailoverRequest): Step {
  return {
    title: "list the complete backups on the primary's secondary endpoint (Job in the dr cluster)",
    where: "dr-cluster",
    dataPlane: true,
    command: (dr) => inClusterJob(req, dr, ["--command", "list"]),
  };
}

/**
 * Brings the dr stack up: the activating config change, committed and pushed (CI deploys main on every
 * push; an uncommitted change would be undone by the next deploy), `pulumi up`, and cluster credentials.
 */
export function activationSteps(req: FailoverRequest): Step[] {
  const file = `Pulumi.${req.to}.yaml`;
  const operator = { where: "operator" as const, dataPlane: false };
  return [
    {
      ...operator,
      title: `scale the ${req.to} stack's data pools to ${req.dataMinCount} nodes per zone`,
      command: () => configSet(req.to, "nodePools.data.minCount", String(req.dataMinCount)),
    },
    {
      // A cold standby deploys its cluster only once activated; for a warm one this changes nothing.
      ...operator,
      title: `activate the ${req.to} stack`,
      command: () => configSet(req.to, "dr.activated", "true"),
    },
    {
      ...operator,
      title: `commit ${file}, so the next deploy of main keeps the failover`,
      command: () => ["git", "commit", "-m", `dr: fail over from ${req.from} to ${req.to}`, "--", file],
    },
    {
      ...operator,
      title: "push the commit to main (if main is protected, merge it before anything else is deployed)",
      command: () => ["git", "push", "origin", "HEAD:main"],
    },
    {
      ...operator,
      title: `bring up the ${req.to} stack`,
      command: () => ["pulumi", "up", "--stack", req.to, "--yes", "--skip-preview"],
      refreshesOutputs: true,
    },
    {
      ...operator,
      title: "fetch user credentials for the dr cluster (kubelogin, no admin credentials)",
      command: (now) => [
        "az",
        "aks",
        "get-credentials",
        "-g",
        now.resourceGroupName,
        "-n",
        now.clusterName ?? "<clusterName output after pulumi up>",
        "--overwrite-existing",
      ],
    },
    {
      ...operator,
      title: "convert the kubeconfig for kubelogin",
      command: () => ["kubelogin", "convert-kubeconfig", "-l", "azurecli"],
    },
  ];
}

/** Verifies and restores the chosen backups, each as a Job in the dr cluster. */
export function restoreSteps(req: FailoverRequest, chosen: ListedBackup[]): Step[] {
  const job = { where: "dr-cluster" as const, dataPlane: true };
  return [
    ...chosen.map((b) => ({
      ...job,
      title: `verify backup ${b.backupId} (${b.collection}, ${String(b.rows)} rows) on the secondary`,
      command: (dr: StackOutputs) => inClusterJob(req, dr, ["--command", "verify", "--backup", b.backupId]),
    })),
    ...chosen.map((b) => ({
      // The worker restores into a temporary collection, checks the row count against the manifest and
      // only then renames it into place, so a failed restore leaves nothing under the target name.
      ...job,
      title: `restore ${b.collection} from ${b.backupId} and verify ${String(b.rows)} rows`,
      command: (dr: StackOutputs) => inClusterJob(req, dr, ["--backup", b.backupId]),
    })),
  ];
}

/** What application owners must change after the failover. */
export function clientInstructions(req: FailoverRequest, dr: StackOutputs, chosen: ListedBackup[]): string[] {
  const lines = [
    `Milvus now serves from the ${req.to} stack: point clients at ${dr.milvusAddress ?? `the internal load balancer of cluster ${dr.clusterName ?? "(see the dr stack's clusterName output)"}`} (gRPC 19530).`,
    `Credentials changed: the ${req.to} stack has its own root password; read it with \`pulumi stack output --stack ${req.to} --show-secrets milvusRootPassword\` and rotate application users.`,
    `Writes made after these backups are lost and must be replayed by the producers: ${chosen.map((b) => `${b.collection} as of ${b.time}`).join(", ")}.`,
    "Collections were restored with replica_number from their backup; load them with replica_number >= 2 for drains.",
    `Backups now go to the ${req.to} stack's own backup account; keep the ${req.from} stack untouched until the region is back, then fail back the same way.`,
  ];
  if (dr.primaryMilvusImageTag && dr.primaryMilvusImageTag !== dr.milvusImageTag) {
    lines.unshift(
      `WARNING: ${req.to} runs Milvus ${dr.milvusImageTag} but ${req.from} ran ${dr.primaryMilvusImageTag}; align milvus.imageTag before relying on the restore.`,
    );
  }
  return lines;
}

export type Runner = (command: string[]) => { status: number; stdout: string; stderr: string };

const run: Runner = (command) => {
  const [bin = "", ...args] = command;
  const res = spawnSync(bin, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (res.error) return { status: 127, stdout: "", stderr: `${bin}: ${res.error.message}` };
  return { status: res.status ?? 1, stdout: res.stdout, stderr: res.stderr };
};

function outputsOf(stack: string, runner: Runner): StackOutputs {
  const res = runner(["pulumi", "stack", "output", "--json", "--stack", stack]);
  if (res.status !== 0) {
    throw new Error(
      `cannot read outputs of stack ${stack}: ${res.stderr.trim()} (is the Pulumi CLI logged in to the backend? During an outage of the backend's region, import the exported state first: see docs/delivery.md "Stack state exports and the import runbook")`,
    );
  }
  return JSON.parse(res.stdout) as StackOutputs;
}

/** Runs the failover (or prints it); returns the process exit code. */
export function failover(
  req: FailoverRequest,
  runner: Runner,
  now: Date,
  log: (line: string) => void,
): number {
  let outputs = outputsOf(req.to, runner);
  // Checked before any step, dry run included: a closed path is found in the drill, not on the day.
  const closed = firewallProblems(req, outputsOf(req.from, runner), outputs);
  if (closed.length > 0) {
    log(`dr:failover: refusing to start:\n${closed.map((p) => `  - ${p}`).join("\n")}`);
    return 1;
  }
  let n = 0;
  /** Prints a step and, with --execute, runs it; undefined when it failed (already reported). */
  const runStep = (step: Step): { stdout: string } | undefined => {
    n++;
    const command = step.command(outputs);
    log(`  ${n}. [${step.where}] ${step.title}\n     $ ${command.join(" ")}`);
    if (!req.execute) return { stdout: "" };
    const started = Date.now();
    const res = runner(command);
    if (res.status !== 0) {
      log(
        `dr:failover: step ${n} failed (${step.title}): ${res.stderr.trim()}; fix it and re-run: completed steps are safe to repeat`,
      );
      return undefined;
    }
    log(`     done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (step.refreshesOutputs) outputs = outputsOf(req.to, runner);
    return res;
  };
  const runSteps = (steps: Step[]) => steps.every((step) => runStep(step) !== undefined);
  log(`dr:failover: ${req.execute ? "executing" : "dry run (add --execute to run)"}`);
  if (!runSteps(activationSteps(req))) return 1;
  const listed = runStep(listStep(req));
  if (!listed) return 1;
  if (!req.execute) {
    log("  then, for the newest complete backup of each collection (checked against --max-age-hours):");
    runSteps(
      restoreSteps(req, [
        { backupId: "<backup>", collection: "<collection>", time: "", rows: "<rows>", bytes: 0 },
      ]),
    );
    return 0;
  }
  // `list --json` lists intact backups only; damaged ones (a missing chunk, a bad manifest) apart.
  const { backups, damaged = [] } = JSON.parse(listed.stdout) as {
    backups: ListedBackup[];
    damaged?: { backupId: string; reason: string }[];
  };
  for (const d of damaged) log(`  warning: backup ${d.backupId} is damaged and not used: ${d.reason}`);
  const { chosen, problems } = latestBackups(backups, req.collections, now, req.maxAgeHours);
  if (problems.length > 0) {
    log(`dr:failover: refusing to restore:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    return 1;
  }
  if (!runSteps(restoreSteps(req, chosen))) return 1;
  log("Clients must now:");
  for (const line of clientInstructions(req, outputs, chosen)) log(`  - ${line}`);
  return 0;
}

/** Runs the command line; returns the exit code. */
export function main(argv: string[], io: Io = processIo, runner: Runner = run, now = new Date()): number {
  const line = parseCommandLine(argv, DR_FAILOVER.flags);
  if (line.help) {
    io.out(usageText(DR_FAILOVER));
    return 0;
  }
  const parsed = requestFrom(line);
  if ("problems" in parsed) {
    io.err(usageError(DR_FAILOVER, parsed.problems));
    return 2;
  }
  try {
    return failover(parsed, runner, now, io.err);
  } catch (err) {
    io.err(`dr:failover: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (require.main === module) {
  process.exit(main(process.argv.slice(2)));
}
