import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as yaml from "js-yaml";
import { kubernetesObjects, redactSecrets, renderStack, ROOT } from "./offline-runtime";
import { topology } from "./topology";
import { failureDomains, formatFailureDomains } from "./failureDomains";

/**
 * `npm run render -- <stack> [--file <stack file>]`: what `pulumi up` would declare for a stack, offline.
 * Writes out/<stack>/resources.yaml (every resource with its inputs, secrets redacted) and
 * out/<stack>/kubernetes/*.yaml (every Kubernetes object), then prints a summary.
 */
async function main(): Promise<void> {
  const stack = process.argv[2];
  if (!stack) {
    console.error("usage: npm run render -- <stack>   (stacks: Pulumi.<stack>.yaml at the repository root)");
    process.exit(2);
  }
  const fileFlag = process.argv.indexOf("--file");
  const file =
    fileFlag > 0 && process.argv[fileFlag + 1]
      ? path.resolve(process.argv[fileFlag + 1] ?? "")
      : path.join(ROOT, `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(file)) {
    console.error(
      `render: no stack file ${path.relative(process.cwd(), file)}; create it or pick an existing stack.`,
    );
    process.exit(2);
  }
  const result = await renderStack(stack, { stackFile: file });
  // What `pulumi preview` would print as warnings (e.g. a Kubernetes minor near its end of life).
  for (const warning of result.warnings) console.error(`warning: ${warning}`);
  const outDir = path.join(ROOT, "out", stack);
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(path.join(outDir, "kubernetes"), { recursive: true });

  const list = result.resources.map((r) => ({ type: r.type, name: r.name, inputs: redactSecrets(r.inputs) }));
  fs.writeFileSync(path.join(outDir, "resources.yaml"), yaml.dump(list, { noRefs: true, lineWidth: 120 }));
  const objects = kubernetesObjects(result);
  objects.forEach((o, i) => {
    const kind = String(o.inputs.kind).toLowerCase();
    const file = `${String(i).padStart(3, "0")}-${kind}-${o.name}.yaml`;
    fs.writeFileSync(
      path.join(outDir, "kubernetes", file),
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
  console.log(
    `stack ${stack}: ${c.environment} in ${c.location} (zones ${c.zones.join(",")}), Milvus ${c.milvus.mode} ${c.milvus.imageTag}, object store ${c.objectStore}`,
  );
  console.log(
    `${result.resources.length} resources, ${objects.length} Kubernetes objects -> ${path.relative(process.cwd(), outDir)}/`,
  );
  console.log("workloads:");
  for (const line of topology(result)) console.log(`  ${line}`);
  console.log("resources by type:");
  for (const [type, n] of [...byType.entries()].sort()) console.log(`  ${String(n).padStart(3)}  ${type}`);
  const domains = failureDomains(result);
  console.log("failure domains:");
  for (const line of formatFailureDomains(domains)) console.log(`  ${line}`);
  // A production stack must survive any one zone; the report names what would not.
  if (domains.problems.length > 0) {
    console.error(
      `render: ${stack} cannot survive the loss of one zone:\n${domains.problems.map((p) => `  - ${p}`).join("\n")}`,
    );
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  if (pulumi.InputPropertiesError.isInstance(err)) {
    console.error(err.message);
  } else {
    console.error(`render failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  process.exit(1);
});
