/**
 * Renders docs/configuration.md, the stack configuration reference, from the schema in
 * components/common/configSchema.ts: every key with its description, its default in each environment and
 * what it allows. `npx ts-node --transpile-only tools/config-docs.ts` rewrites the file;
 * test/configSchema.test.ts fails when the committed file differs from what this produces.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as prettier from "prettier";
import { ENVIRONMENTS, Environment } from "../components/common/config";
import { defaultOf, stackConfigSchema, walkSchema } from "../components/common/configSchema";

export const CONFIG_DOCS_PATH = path.join(__dirname, "..", "docs", "configuration.md");
export const REGENERATE = "npx ts-node --transpile-only tools/config-docs.ts";

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
const code = (v: unknown) => {
  const text = typeof v === "string" ? (v === "" ? '""' : v) : JSON.stringify(v);
  // A backtick inside the value needs a longer fence.
  return text.includes("`") ? `\`\` ${text} \`\`` : `\`${text}\``;
};

/** The default column: one value when every environment agrees, else each value with its environments. */
function defaultCell(key: string): string {
  const per = new Map<string, Environment[]>();
  for (const env of ENVIRONMENTS) {
    const node = walkSchema(stackConfigSchema(env)).find((n) => n.key === key);
    if (!node) continue;
    const d = defaultOf(node.schema);
    const text =
      node.doc.defaultText ?? (d === undefined ? (node.doc.required ? "required" : "") : code(d.value));
    per.set(text, [...(per.get(text) ?? []), env]);
  }
  if (per.size === 1) return [...per.keys()][0] ?? "";
  return [...per.entries()].map(([text, envs]) => `${envs.join(", ")}: ${text}`).join("<br>");
}

/** The reference as committed: rendered, then formatted with the repository's prettier settings. */
export async function renderConfigDocs(): Promise<string> {
  const options = (await prettier.resolveConfig(CONFIG_DOCS_PATH)) ?? {};
  return prettier.format(renderMarkdown(), { ...options, parser: "markdown" });
}

function renderMarkdown(): string {
  const rows = walkSchema(stackConfigSchema("prod"))
    .filter((n) => n.doc.kind === "leaf" || n.key.endsWith(".*") || n.key.split(".").length === 1)
    .filter((n) => n.doc.kind === "leaf" || n.doc.description !== "")
    .map(
      (n) =>
        `| \`${n.key}\` | ${cell(n.doc.description)} | ${cell(defaultCell(n.key))} | ${cell(n.doc.allowed)} |`,
    );
  return [
    "# Stack configuration reference",
    "",
    "<!-- Generated from components/common/configSchema.ts by tools/config-docs.ts; do not edit by hand. -->",
    `<!-- Regenerate: ${REGENERATE} -->`,
    "",
    "Every stack sets its keys under the `milvus-aks:` namespace in `Pulumi.<stack>.yaml`. Nested keys are",
    "set with `--path`, e.g. `pulumi config set --path milvus-aks:backup.retentionDays 14`; without",
    "`--path` the CLI would create a top-level key named `backup.retentionDays`, which the program rejects.",
    "`environment` selects the defaults (prod and dr share the production shape) and the production rules.",
    "The program checks the whole file before it declares a resource and reports every problem at once:",
    "unknown keys (with the closest known key), values outside what the table allows, and the rules that",
    "relate several keys (components/common/config.ts). `access.roles.*` and `access.users.*` are maps by name.",
    "",
    "| Key | Description | Default | Allowed |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

if (require.main === module) {
  void renderConfigDocs().then((text) => {
    fs.mkdirSync(path.dirname(CONFIG_DOCS_PATH), { recursive: true });
    fs.writeFileSync(CONFIG_DOCS_PATH, text);
    console.log(`wrote ${path.relative(process.cwd(), CONFIG_DOCS_PATH)}`);
  });
}
