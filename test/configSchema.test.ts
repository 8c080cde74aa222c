import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";
import { ENVIRONMENTS, loadStackConfig, parseStackConfig } from "../components/common/config";
import { defaultOf, stackConfigSchema, walkSchema } from "../components/common/configSchema";
import { CONFIG_DOCS_PATH, REGENERATE, renderConfigDocs } from "../tools/config-docs";
import * as pulumi from "@pulumi/pulumi";
import { configErrors, validProd } from "./support/config";

const ROOT = path.join(__dirname, "..");

/** The Pulumi type a top-level schema key declares in Pulumi.yaml. */
function pulumiType(key: string): string {
  const node = walkSchema(stackConfigSchema("prod")).find((n) => n.key === key);
  assert.ok(node, key);
  if (node.doc.kind === "node") return "object";
  const d = defaultOf(node.schema)?.value;
  const sample = d ?? { environment: "prod", location: "westeurope" }[key];
  if (Array.isArray(sample)) return "array";
  if (typeof sample === "number") return "integer";
  if (typeof sample === "boolean") return "boolean";
  if (typeof sample === "object") return "object";
  return "string";
}

describe("stack configuration schema", () => {
  const topLevel = walkSchema(stackConfigSchema("prod"))
    .map((n) => n.key)
    .filter((k) => !k.includes("."));

  it("is declared key for key in Pulumi.yaml, with the same types and environment-independent defaults", () => {
    const project = yaml.load(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as {
      config: Partial<
        Record<string, { type?: string; description?: string; default?: unknown; items?: unknown }>
      >;
    };
    const declared = Object.keys(project.config)
      .filter((k) => k.startsWith("milvus-aks:"))
      .map((k) => k.slice("milvus-aks:".length));
    assert.deepEqual([...declared].sort(), [...topLevel].sort());
    for (const key of topLevel) {
      const decl = project.config[`milvus-aks:${key}`];
      assert.ok(decl, `Pulumi.yaml declares milvus-aks:${key}`);
      assert.ok(decl.description, `${key} has a description`);
      assert.equal(decl.type, pulumiType(key), `${key}'s type`);
      if (decl.type === "array") assert.deepEqual(decl.items, { type: "string" }, `${key}'s items`);
      const defaults = ENVIRONMENTS.map((env) => {
        const n = walkSchema(stackConfigSchema(env)).find((x) => x.key === key);
        if (!n || n.doc.kind !== "leaf") return "object";
        const d = defaultOf(n.schema);
        return d === undefined ? "none" : JSON.stringify(d.value);
      });
      if (decl.default === undefined) {
        // No default: required by the CLI, so only keys without one, or whose default differs by environment.
        assert.ok(
          // dr and adminGroupObjectIds have schema defaults but the parser rejects a stack without them.
          defaults[0] === "none" || new Set(defaults).size > 1 || ["dr", "adminGroupObjectIds"].includes(key),
          `${key} has a default in every environment (${defaults[0]}): declare it`,
        );
      } else if (decl.type === "object") {
        assert.deepEqual(decl.default, {}, `${key}: objects default to {} so the schema's defaults apply`);
      } else {
        assert.ok(new Set(defaults).size === 1, `${key}'s default differs by environment`);
        assert.equal(JSON.stringify(decl.default), defaults[0], `${key}'s default`);
      }
    }
  });

  it("generates docs/configuration.md", async () => {
    const expected = await renderConfigDocs();
    const actual = fs.existsSync(CONFIG_DOCS_PATH) ? fs.readFileSync(CONFIG_DOCS_PATH, "utf8") : "";
    assert.ok(
      actual === expected,
      `docs/configuration.md differs from what the schema generates: run \`${REGENERATE}\` and commit it`,
    );
    // Every key of the schema is in the table, with its default per environment.
    for (const n of walkSchema(stackConfigSchema("prod")).filter((x) => x.doc.kind === "leaf")) {
      assert.ok(expected.includes(`| \`${n.key}\` `), n.key);
    }
    assert.match(expected, /\| `zones` +\| .* \| dev: `\["1"\]`<br>staging, prod, dr: `\["1","2","3"\]` +\|/);
  });

  it("parses every committed stack file", async () => {
    for (const f of fs
      .readdirSync(ROOT)
      .filter((x) => /^Pulumi\.[^.]+\.yaml$/.test(x) && x !== "Pulumi.yaml")) {
      // loadStackConfig names the stack with pulumi.getStack(): run as that stack, whatever ran before.
      await pulumi.runtime.setMocks(
        {
          newResource: (a) => ({ id: `${a.name}-id`, state: a.inputs as Record<string, unknown> }),
          call: (a) => a.inputs as Record<string, unknown>,
        },
        "milvus-aks",
        f.replace(/^Pulumi\.|\.yaml$/g, ""),
        true,
      );
      const doc = yaml.load(fs.readFileSync(path.join(ROOT, f), "utf8")) as {
        config: Record<string, unknown>;
      };
      const config: Record<string, string> = {};
      for (const [k, v] of Object.entries(doc.config))
        config[k] = typeof v === "string" ? v : JSON.stringify(v);
      pulumi.runtime.setAllConfig(config);
      try {
        assert.equal(
          loadStackConfig({ warn: () => undefined }).environment,
          config["milvus-aks:environment"],
          f,
        );
      } finally {
        pulumi.runtime.setAllConfig({});
      }
    }
  });

  it("reads every milvus-aks key of the stack, so a typo at the top level is reported", () => {
    pulumi.runtime.setAllConfig({
      "azure-native:location": "westeurope",
      "milvus-aks:environment": "prod",
      "milvus-aks:location": "westeurope",
      "milvus-aks:adminGroupObjectIds": '["9b3e7d21-4c6a-4f08-8e5d-7a2b1c9f0e34"]',
      "milvus-aks:dr": '{"pairedLocation":"northeurope"}',
      "milvus-aks:kubernetesVersoin": "1.36",
    });
    try {
      assert.throws(
        () => loadStackConfig({ warn: () => undefined }),
        /kubernetesVersoin = "1\.36" is invalid: expected a key of milvus-aks \(did you mean kubernetesVersion\?\)/,
      );
    } finally {
      pulumi.runtime.setAllConfig({});
    }
  });

  it("rejects unknown keys at every level, with a suggestion only when one is close", () => {
    const errors = configErrors({
      ...validProd(),
      nodePools: { data: { vmsize: "Standard_E16ds_v5" } },
      security: { tls: { issuer: { kind: "ClusterIssuer", nmae: "corp-ca" } } },
      access: { roles: { search: { database: "default", collections: ["docs"], acess: "read" } } },
      backup: { frobnicate: true },
    });
    const reasons = Object.fromEntries(errors.map((e) => [e.propertyPath, e.reason]));
    assert.match(reasons["nodePools.data.vmsize"] ?? "", /did you mean nodePools\.data\.vmSize\?/);
    assert.match(reasons["security.tls.issuer.nmae"] ?? "", /did you mean security\.tls\.issuer\.name\?/);
    assert.match(reasons["access.roles.search.acess"] ?? "", /did you mean access\.roles\.search\.access\?/);
    // The role's missing `access` is its own problem.
    assert.match(
      reasons["access.roles.search.access"] ?? "",
      /\(missing\) is invalid: expected one of read, readWrite/,
    );
    assert.match(
      reasons["backup.frobnicate"] ?? "",
      /expected one of the keys of backup: schedule, retentionDays, immutabilityDays, collections, databases, image, testRestore\. This program does not read backup\.frobnicate/,
    );
    assert.equal(errors.length, 5, errors.map((e) => e.reason).join("\n"));
  });

  it("reports a wrong type once per key, and an object given as a scalar", () => {
    const errors = configErrors({ ...validProd(), etcd: { replicas: "three" }, monitoring: "big" });
    assert.deepEqual(
      errors.map((e) => e.reason),
      [
        'etcd.replicas = "three" is invalid: expected an integer from 1 to 7. Set it with `pulumi config set --path milvus-aks:etcd.replicas 3` or in Pulumi.<stack>.yaml.',
        'monitoring = "big" is invalid: expected an object with the keys chartVersion, retentionDays, storageGi. Set it with `pulumi config set --path milvus-aks:monitoring <value>` or in Pulumi.<stack>.yaml.',
      ],
    );
  });

  it("takes the defaults of the stack's environment from the schema", () => {
    const dev = parseStackConfig("d", { ...validProd(), environment: "dev" });
    const prod = parseStackConfig("p", validProd());
    assert.deepEqual(dev.zones, ["1"]);
    assert.deepEqual(prod.zones, ["1", "2", "3"]);
    assert.equal(prod.maintenance.day, "Thursday");
    assert.equal(dev.maintenance.day, "Monday");
    assert.ok(prod.maintenance.durationHours >= 4);
  });
});
