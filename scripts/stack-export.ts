import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { DefaultAzureCredential } from "@azure/identity";
import { BlobServiceClient, ContainerClient } from "@azure/storage-blob";
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

/**
 * `npm run -s stack:export -- --stack prod --stack dr --account-url https://<acct>.blob.core.windows.net`
 * (STACK_EXPORT below is the full usage)
 *
 * Copies each stack's state (`pulumi stack export --show-secrets=false`: secret values stay encrypted
 * by the stack's secrets provider) and outputs (`pulumi stack output --json`: secrets print as
 * "[secret]") to a blob container in the paired region, so the infrastructure state survives the loss
 * of the primary region even when the Pulumi backend lives there. Authenticates with
 * DefaultAzureCredential (OIDC in CI, `az login` locally). Each run writes
 * `<prefix>/<stack>/<UTC timestamp>/{state,outputs}.json` and then `manifest.json` (sizes and SHA-256),
 * never overwriting a blob. `--dry-run` writes the same files under --out-dir and uploads nothing.
 * Restore: docs/delivery.md (`pulumi stack import`).
 */

const execFileAsync = promisify(execFile);

export interface ExportOptions {
  stacks: string[];
  accountUrl?: string;
  container: string;
  prefix: string;
  outDir?: string;
  dryRun: boolean;
  pulumi: string;
  cwd: string;
}

export const DEFAULT_CONTAINER = "pulumi-state-exports";
export const DEFAULT_PREFIX = "stack-exports";
export const DEFAULT_DRY_RUN_DIR = path.join("out", "stack-exports");

export const STACK_EXPORT: CommandSpec = {
  name: "stack:export",
  invocation: "npm run -s stack:export --",
  synopsis: "--stack <name> [--stack <name> ...] [--account-url <url>] [flags]",
  description:
    "Copies each stack's state (pulumi stack export --show-secrets=false) and outputs to a blob container in the\n" +
    "paired region as <prefix>/<stack>/<UTC timestamp>/{state,outputs,manifest}.json, never overwriting a blob.\n" +
    "A failing stack does not stop the others.",
  flags: {
    "--stack": {
      type: "string",
      multiple: true,
      value: "<name>",
      help: 'stack to export ("org/project/stack" or a bare stack name)',
    },
    "--account-url": {
      type: "string",
      value: "<url>",
      help: "blob endpoint of the export account, https://<account>.blob.core.windows.net\n(required unless --dry-run)",
    },
    "--container": {
      type: "string",
      value: "<name>",
      help: `container for the exports (default ${DEFAULT_CONTAINER})`,
    },
    "--prefix": { type: "string", value: "<path>", help: `blob name prefix (default ${DEFAULT_PREFIX})` },
    "--out-dir": {
      type: "string",
      value: "<dir>",
      help: `also write the files here (default ${DEFAULT_DRY_RUN_DIR} with --dry-run)`,
    },
    "--dry-run": { type: "boolean", help: "export and write locally; upload nothing" },
    "--pulumi": { type: "string", value: "<path>", help: "Pulumi CLI to run (default pulumi)" },
    "--cwd": {
      type: "string",
      value: "<dir>",
      help: "project directory the CLI runs in (default: the current directory)",
    },
  },
  env: [
    ["STACK_EXPORT_ACCOUNT_URL", "default of --account-url"],
    ["STACK_EXPORT_CONTAINER", "default of --container"],
    ["PULUMI_BIN", "default of --pulumi"],
    ["PULUMI_ACCESS_TOKEN, PULUMI_BACKEND_URL", "read by the Pulumi CLI to reach the state backend"],
    [
      "AZURE_CLIENT_ID, AZURE_TENANT_ID, ...",
      "read by DefaultAzureCredential for the upload (in CI the OIDC login, locally `az login`)",
    ],
  ],
  exitCodes: "0 every stack exported, 1 some stack failed, 2 bad usage",
};

const STACK_NAME = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+){0,2}$/;
/** Azure container names: 3-63 chars, lower-case letters, digits and single hyphens, alphanumeric ends. */
const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;
const PREFIX = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

/** Parses the command line; every problem is reported at once. */
export function parseArgs(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): { options: ExportOptions } | { problems: string[] } {
  return optionsFrom(parseCommandLine(argv, STACK_EXPORT.flags), env);
}

function optionsFrom(
  line: CommandLine,
  env: Record<string, string | undefined>,
): { options: ExportOptions } | { problems: string[] } {
  // This command's problems are sentences; the parser's get the same full stop.
  const problems = line.problems.map((p) => `${describeArgProblem(p)}.`);
  const stacks = line.values.get("--stack") ?? [];
  const single = (flag: string) => line.values.get(flag)?.[0];
  const dryRun = line.flags.has("--dry-run");
  if (stacks.length === 0)
    problems.push("no stack given; pass --stack <name> (e.g. --stack prod), once per stack.");
  for (const s of stacks) {
    if (!STACK_NAME.test(s)) {
      problems.push(
        `--stack ${JSON.stringify(s)} is not a stack name; use letters, digits, "-", "_", "." as "stack" or "org/project/stack".`,
      );
    }
  }
  const accountUrl = single("--account-url") ?? env.STACK_EXPORT_ACCOUNT_URL;
  if (accountUrl === undefined || accountUrl === "") {
    if (!dryRun) {
      problems.push(
        "--account-url is missing; pass the export account's blob endpoint (https://<account>.blob.core.windows.net), set STACK_EXPORT_ACCOUNT_URL, or use --dry-run.",
      );
    }
  } else {
    let url: URL | undefined;
    try {
      url = new URL(accountUrl);
    } catch {
      url = undefined;
    }
    // Plain HTTP only for a local emulator (Azurite): credentials never travel unencrypted.
    const loopback = url !== undefined && ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
    if (url === undefined || !(url.protocol === "https:" || (url.protocol === "http:" && loopback))) {
      problems.push(
        `--account-url ${JSON.stringify(accountUrl)} is not an https URL; use https://<account>.blob.core.windows.net (http only for a loopback emulator).`,
      );
    }
  }
  const container = single("--container") ?? env.STACK_EXPORT_CONTAINER ?? DEFAULT_CONTAINER;
  if (!CONTAINER_NAME.test(container)) {
    problems.push(
      `--container ${JSON.stringify(container)} is not a valid container name; use 3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit.`,
    );
  }
  const prefix = single("--prefix") ?? DEFAULT_PREFIX;
  if (!PREFIX.test(prefix)) {
    problems.push(
      `--prefix ${JSON.stringify(prefix)} is invalid; use path segments of letters, digits, "-", "_", "." separated by "/".`,
    );
  }
  if (problems.length > 0) return { problems };
  return {
    options: {
      stacks,
      accountUrl: accountUrl === "" ? undefined : accountUrl,
      container,
      prefix,
      outDir: single("--out-dir") ?? (dryRun ? DEFAULT_DRY_RUN_DIR : undefined),
      dryRun,
      pulumi: single("--pulumi") ?? env.PULUMI_BIN ?? "pulumi",
      cwd: single("--cwd") ?? process.cwd(),
    },
  };
}

/** UTC timestamp that sorts lexically in time order and is safe in blob and file names. */
export function exportTimestamp(at: Date): string {
  return at
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/:/g, "-");
}

export function blobNames(prefix: string, stack: string, at: Date) {
  const dir = `${prefix}/${stack}/${exportTimestamp(at)}`;
  return {
    dir,
    state: `${dir}/state.json`,
    outputs: `${dir}/outputs.json`,
    manifest: `${dir}/manifest.json`,
  };
}

const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** Paths of secrets that carry a decrypted `plaintext` (an export made with --show-secrets). */
export function plaintextSecretPaths(v: unknown, at = "$"): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => plaintextSecretPaths(x, `${at}[${i}]`));
  if (typeof v !== "object" || v === null) return [];
  const o = v as Record<string, unknown>;
  if (o[SECRET_SIG_KEY] === SECRET_SIG && "plaintext" in o) return [at];
  return Object.entries(o).flatMap(([k, x]) => plaintextSecretPaths(x, `${at}.${k}`));
}

export interface StackExport {
  stack: string;
  state: string;
  outputs: string;
}

/** Runs the two Pulumi CLI commands for one stack and checks what they return. */
export async function exportStack(options: ExportOptions, stack: string): Promise<StackExport> {
  const run = async (args: string[]) => {
    const { stdout } = await execFileAsync(options.pulumi, args, {
      cwd: options.cwd,
      maxBuffer: 1024 * 1024 * 1024,
      env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" },
    });
    return stdout;
  };
  const state = await run(["stack", "export", "--stack", stack, "--show-secrets=false"]);
  const outputs = await run(["stack", "output", "--json", "--stack", stack]);
  const parsed = JSON.parse(state) as { version?: unknown; deployment?: unknown };
  if (typeof parsed.version !== "number" || typeof parsed.deployment !== "object") {
    throw new Error(
      `pulumi stack export for ${stack} returned no deployment (expected {version, deployment}).`,
    );
  }
  const leaked = plaintextSecretPaths(parsed);
  if (leaked.length > 0) {
    throw new Error(
      `the export of ${stack} contains ${leaked.length} decrypted secret(s) (first at ${leaked[0] ?? "?"}); refusing to store it. Export without --show-secrets.`,
    );
  }
  JSON.parse(outputs);
  return { stack, state, outputs };
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export function manifestFor(e: StackExport, at: Date) {
  return {
    stack: e.stack,
    exportedAt: at.toISOString(),
    secrets: "encrypted (pulumi stack export --show-secrets=false)",
    files: {
      "state.json": { bytes: Buffer.byteLength(e.state), sha256: sha256(e.state) },
      "outputs.json": { bytes: Buffer.byteLength(e.outputs), sha256: sha256(e.outputs) },
    },
    restore: `pulumi stack import --stack ${e.stack} --file state.json`,
  };
}

/** Writes one export under `dir` with the blob layout; the manifest last. Returns the files written. */
export function writeLocal(dir: string, prefix: string, e: StackExport, at: Date): string[] {
  const names = blobNames(prefix, e.stack, at);
  const base = path.join(dir, ...names.dir.split("/"));
  fs.mkdirSync(base, { recursive: true });
  const files = [
    [path.join(base, "state.json"), e.state],
    [path.join(base, "outputs.json"), e.outputs],
    [path.join(base, "manifest.json"), JSON.stringify(manifestFor(e, at), null, 2)],
  ] as const;
  for (const [file, text] of files) fs.writeFileSync(file, text, { flag: "wx" });
  return files.map(([file]) => file);
}

/** Uploads one export; the manifest goes last so a listed manifest means a complete export. */
export async function upload(
  container: ContainerClient,
  prefix: string,
  e: StackExport,
  at: Date,
): Promise<string[]> {
  const names = blobNames(prefix, e.stack, at);
  const blobs = [
    [names.state, e.state],
    [names.outputs, e.outputs],
    [names.manifest, JSON.stringify(manifestFor(e, at), null, 2)],
  ] as const;
  for (const [name, text] of blobs) {
    await container.getBlockBlobClient(name).upload(text, Buffer.byteLength(text), {
      blobHTTPHeaders: { blobContentType: "application/json" },
      // Exports are append-only history: never replace one.
      conditions: { ifNoneMatch: "*" },
    });
  }
  return blobs.map(([name]) => name);
}

export async function run(
  options: ExportOptions,
  container: ContainerClient | undefined,
  now: () => Date = () => new Date(),
  log: (line: string) => void = console.log,
): Promise<{ failures: string[] }> {
  const failures: string[] = [];
  if (container) await container.createIfNotExists();
  for (const stack of options.stacks) {
    try {
      const at = now();
      const e = await exportStack(options, stack);
      if (options.outDir) {
        for (const f of writeLocal(options.outDir, options.prefix, e, at)) log(`wrote ${f}`);
      }
      if (container) {
        for (const b of await upload(container, options.prefix, e, at))
          log(`uploaded ${container.containerName}/${b}`);
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      failures.push(`${stack}: ${message}`);
      log(`export of ${stack} failed: ${message}`);
    }
  }
  return { failures };
}

/** Runs the command line; returns the exit code. */
export async function main(
  argv: string[],
  io: Io = processIo,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const line = parseCommandLine(argv, STACK_EXPORT.flags);
  if (line.help) {
    io.out(usageText(STACK_EXPORT));
    return 0;
  }
  const parsed = optionsFrom(line, env);
  if ("problems" in parsed) {
    io.err(usageError(STACK_EXPORT, parsed.problems));
    return 2;
  }
  const { options } = parsed;
  const container =
    options.dryRun || options.accountUrl === undefined
      ? undefined
      : new BlobServiceClient(options.accountUrl, new DefaultAzureCredential()).getContainerClient(
          options.container,
        );
  const { failures } = await run(options, container, undefined, io.out);
  if (failures.length > 0) {
    io.err(
      `stack:export: ${failures.length} of ${options.stacks.length} stack(s) failed:\n  - ${failures.join("\n  - ")}`,
    );
    return 1;
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`stack:export failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
