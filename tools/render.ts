import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as yaml from "js-yaml";
import {
  describeArgProblem,
  parseCommandLine,
  processIo,
  usageError,
  usageText,
  type CommandSpec,
  type Io,
} from "../backup/cliArgs";
import {
  kubernetesObjects,
  redactSecrets,
  renderStack,
  ROOT,
  type RenderedResource,
} from "./offline-runtime";
import { topology } from "./topology";
import { failureDomains, formatFailureDomains } from "./failureDomains";

/**
 * `npm run -s render -- [--stack] <stack> [--file <stack file>]`: what `pulumi up` would declare for a
 * stack, offline. Writes out/<stack>/resources.yaml (every resource with its inputs, secrets redacted),
 * out/<stack>/kubernetes/*.yaml (every Kubernetes object, one file named by kind, namespace and name)
 * and out/<stack>/outputs.yaml, then prints a summary.
 */

export const RENDER: CommandSpec = {
  name: "render",
  invocation: "npm run -s render --",
  synopsis: "[--stack] <stack> [--file <path>]",
  description:
    "Runs the Pulumi program for one stack under Pulumi's mock runtime (no Azure account, no Pulumi CLI) and\n" +
    "writes out/<stack>/resources.yaml, out/<stack>/kubernetes/<kind>_<namespace>_<name>.yaml and\n" +
    "out/<stack>/outputs.yaml, then prints the workload topology, resources by type and the failure-domain report.",
  positionals: [["<stack>", "the stack to render (Pulumi.<stack>.yaml at the repository root); or --stack"]],
  flags: {
    "--stack": { type: "string", value: "<stack>", help: "the stack to render (instead of the positional)" },
    "--file": {
      type: "string",
      value: "<path>",
      help: "read the stack's configuration from this file instead of Pulumi.<stack>.yaml",
    },
  },
  env: [["MILVUS_AKS_TODAY", "YYYY-MM-DD the Kubernetes release calendar is judged at (default: today)"]],
  exitCodes:
    "0 rendered, 1 a configuration error or a production stack that cannot lose a zone, 2 bad usage or no stack file",
};

const STACK_NAME = /^[A-Za-z0-9_.-]+$/;

/** Characters of a Kubernetes name or kind are kept; anything else (from a fallback name) becomes "-". */
const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, "-");

/**
 * The file name of each rendered Kubernetes object, in the order given: `<kind>_<namespace>_<name>.yaml`
 * (`<kind>_<name>.yaml` when cluster-scoped), lower-case kind. Names and namespaces cannot contain "_"
 * (DNS labels and subdomains), so two different objects never share a name unless they have the same
 * kind, namespace and name in different API groups; those get the group too
 * (`certificate.cert-manager.io_milvus_x.yaml`). No position in the list is part of the name, so adding
 * or removing one object changes only that object's file in a render diff. Throws on a true duplicate.
 */
export function objectFileNames(objects: readonly Pick<RenderedResource, "name" | "inputs">[]): string[] {
  const parts = objects.map((o) => {
    const meta = (o.inputs.metadata ?? {}) as Record<string, unknown>;
    const name = typeof meta.name === "string" && meta.name !== "" ? meta.name : o.name;
    const namespace =
      typeof meta.namespace === "string" && meta.namespace !== "" ? meta.namespace : undefined;
    const apiVersion = String(o.inputs.apiVersion);
    const group = apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.lastIndexOf("/")) : "";
    const kind = String(o.inputs.kind).toLowerCase();
    const file = (k: string) =>
      `${[k, namespace, name]
        .filter((x) => x !== undefined)
        .map(safe)
        .join("_")}.yaml`;
    return { plain: file(kind), grouped: file(group ? `${kind}.${group}` : kind), resource: o.name };
  });
  const count = new Map<string, number>();
  for (const p of parts) count.set(p.plain, (count.get(p.plain) ?? 0) + 1);
  const names = parts.map((p) => ((count.get(p.plain) ?? 0) > 1 ? p.grouped : p.plain));
  const seen = new Map<string, string>();
  names.forEach((n, i) => {
    const resource = parts[i]?.resource ?? "";
    const other = seen.get(n);
    if (other !== undefined) {
      throw new Error(
        `two Kubernetes objects would both be written to ${n} (Pulumi resources ${other} and ${resource}): ` +
          "the same kind, API group, namespace and name is declared twice",
      );
    }
    seen.set(n, resource);
  });
  return names;
}

export interface RenderIo extends Io {
  /** Directory the out/<stack>/ tree goes under. @default `<repository>/out` */
  outRoot?: string;
}

/** Runs the command line; returns the exit code. */
export async function main(argv: string[], io: RenderIo = processIo): Promise<number> {
  const line = parseCommandLine(argv, RENDER.flags, { maxPositionals: 1 });
  if (line.help) {
    io.out(usageText(RENDER));
    return 0;
  }
  const problems = line.problems.map(describeArgProblem);
  const flagged = line.values.get("--stack")?.[0];
  const positional = line.positionals.at(0);
  if (flagged !== undefined && positional !== undefined && flagged !== positional)
    problems.push(
      `the stack is given twice (${JSON.stringify(positional)} and --stack ${JSON.stringify(flagged)})`,
    );
  const stack = flagged ?? positional;
  if (stack === undefined) {
    problems.push(
      line.values.has("--file")
        ? "--file names the configuration, not the stack: give the stack name too (e.g. `prod --file <path>`)"
        : "a stack is required (e.g. prod; stacks are the Pulumi.<stack>.yaml files at the repository root)",
    );
  } else if (!STACK_NAME.test(stack)) {
    problems.push(`${JSON.stringify(stack)} is not a stack name (letters, digits, "-", "_", ".")`);
  }
  if (problems.length > 0 || stack === undefined) {
    io.err(usageError(RENDER, problems));
    return 2;
  }
  const fileFlag = line.values.get("--file")?.[0];
  const file = fileFlag !== undefined ? path.resolve(fileFlag) : path.join(ROOT, `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(file)) {
    io.err(
      `render: no stack file ${path.relative(process.cwd(), file)}; create it or pick an existing stack.`,
    );
    return 2;
  }
  try {
    return await render(stack, file, io);
  } catch (err) {
    io.err(
      pulumi.InputPropertiesError.isInstance(err)
        ? err.message
        : `render failed: ${err instanceof Error ? err.message : String(err)}`,
    );
    return 1;
  }
}

async function render(stack: string, file: string, io: RenderIo): Promise<number> {
  const result = await renderStack(stack, { stackFile: file });
  // What `pulumi preview` would print as warnings (e.g. a Kubernetes minor near its end of life).
  for (const warning of result.warnings) io.err(`warning: ${warning}`);
  const outDir = path.join(io.outRoot ?? path.join(ROOT, "out"), stack);
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(path.join(outDir, "kubernetes"), { recursive: true });

  const list = result.resources.map((r) => ({ type: r.type, name: r.name, inputs: redactSecrets(r.inputs) }));
  fs.writeFileSync(path.join(outDir, "resources.yaml"), yaml.dump(list, { noRefs: true, lineWidth: 120 }));
  const objects = kubernetesObjects(result);
  const names = objectFileNames(objects);
  objects.forEach((o, i) => {
    fs.writeFileSync(
      path.join(outDir, "kubernetes", names[i] ?? ""),
      yaml.dump(redactSecrets(o.inputs), { noRefs: true, lineWidth: 120 }),
    );
  });
  fs.writeFileSync(
    path.join(outDir, "outputs.yaml"),
    yaml.dump(redactSecrets(result.outputs), { noRefs: true }),
  );

  const byType = new Map<string, number>();
  for (const r of result.resources) byType.set(r.type, (byType.get(r.type) ?? 0) + 1);
  const c = result.config;
  io.out(
    `stack ${stack}: ${c.environment} in ${c.location} (zones ${c.zones.join(",")}), Milvus ${c.milvus.mode} ${c.milvus.imageTag}, object store ${c.objectStore}`,
  );
  io.out(
    `${result.resources.length} resources, ${objects.length} Kubernetes objects -> ${path.relative(process.cwd(), outDir)}/`,
  );
  io.out("workloads:");
  for (const line of topology(result)) io.out(`  ${line}`);
  io.out("resources by type:");
  for (const [type, n] of [...byType.entries()].sort()) io.out(`  ${String(n).padStart(3)}  ${type}`);
  const domains = failureDomains(result);
  io.out("failure domains:");
  for (const line of formatFailureDomains(domains)) io.out(`  ${line}`);
  // A production stack must survive any one zone; the report names what would not.
  if (domains.problems.length > 0) {
    io.err(
      `render: ${stack} cannot survive the loss of one zone:\n${domains.problems.map((p) => `  - ${p}`).join("\n")}`,
    );
    return 1;
  }
  return 0;
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    // A failed render can leave the Pulumi runtime's handles open: do not wait for them.
    if (code !== 0) process.exit(code);
  });
}
