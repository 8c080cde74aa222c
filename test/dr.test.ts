import * as assert from "node:assert/strict";
import { parseStackConfig } from "../components/common/config";
import { configErrors } from "./support/config";
import { renderStack, RenderResult } from "../tools/offline-runtime";

const validDr = () => ({
  environment: "dr",
  location: "northeurope",
  adminGroupObjectIds: ["6f1c2a5e-8d3b-4b7e-9a41-2c5d8e7f9b10"],
  dr: { pairedLocation: "westeurope", primaryStack: "acme/milvus-aks/prod" },
});

/** `key: reason` of every problem in a dr stack's config ([] when accepted, which the assertions reject). */
const reasons = (raw: Record<string, unknown>) =>
  configErrors(raw, "dr").map((e) => `${e.propertyPath}: ${e.reason}`);

const DR_SUBNET =
  "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/milvus-dr-rg/providers/Microsoft.Network/virtualNetworks/milvus-dr-vnet/subnets/nodes";

describe("disaster-recovery stacks", () => {
  describe("configuration", () => {
    it("requires a fully qualified primary stack on a dr stack", () => {
      const { dr, ...rest } = validDr();
      assert.deepEqual(reasons({ ...rest, dr: { pairedLocation: dr.pairedLocation } }), [
        "dr.primaryStack: dr.primaryStack = (missing) is invalid: expected the fully qualified primary stack, organization/project/stack, e.g. acme/milvus-aks/prod. Set it with `pulumi config set --path milvus-aks:dr.primaryStack acme/milvus-aks/prod` or in Pulumi.<stack>.yaml.",
      ]);
      assert.match(
        reasons({ ...validDr(), dr: { ...dr, primaryStack: "prod" } })[0] ?? "",
        /^dr\.primaryStack: dr\.primaryStack = "prod" is invalid/,
      );
    });

    it("reports a bad standby mode and malformed standby subnets together", () => {
      const problems = reasons({
        ...validDr(),
        dr: { ...validDr().dr, standby: "hot", standbySubnetIds: ["nodes"] },
      });
      assert.equal(problems.length, 2);
      assert.match(
        problems[0] ?? "",
        /^dr\.standby: dr\.standby = "hot" is invalid: expected one of warm, cold/,
      );
      assert.match(problems[1] ?? "", /^dr\.standbySubnetIds: .*expected a list of subnet resource ids/);
    });

    it("ignores primaryStack outside dr stacks and defaults to a warm standby", () => {
      const cfg = parseStackConfig("dr", validDr());
      assert.deepEqual(cfg.dr, {
        pairedLocation: "westeurope",
        primaryStack: "acme/milvus-aks/prod",
        standby: "warm",
        standbySubnetIds: [],
        standbyStack: "",
        activated: false,
      });
      assert.equal(cfg.production, true);
    });
  });

  describe("rendered dr stack", () => {
    let dr: RenderResult;
    before(async () => {
      dr = await renderStack("dr");
    });

    it("reads the primary stack through a StackReference and restores from its secondary endpoint", () => {
      const refs = dr.resources.filter((r) => r.type === "pulumi:pulumi:StackReference");
      assert.deepEqual(
        refs.map((r) => r.inputs.name),
        ["acme/milvus-aks/prod"],
      );
      assert.equal(
        dr.outputs.restoreSourceBlobEndpoint,
        "https://milvusbkprod3cd4f0-secondary.blob.core.windows.net/",
      );
      assert.equal(dr.outputs.restoreSourceContainerName, "milvus-backups");
      assert.equal(dr.outputs.primaryMilvusImageTag, dr.config.milvus.imageTag);
      assert.equal(dr.outputs.location, "northeurope");
      assert.equal(dr.outputs.pairedLocation, "westeurope");
    });

    it("runs the production shape with a warm standby of one data node per zone", () => {
      assert.deepEqual(dr.config.zones, ["1", "2", "3"]);
      assert.equal(dr.config.milvus.mode, "cluster");
      const pools = dr.resources
        .filter((r) => r.type === "azure-native:containerservice:AgentPool")
        .map((p) => [p.inputs.availabilityZones, p.inputs.minCount, p.inputs.maxCount]);
      assert.deepEqual(pools, [
        [["1"], 1, 6],
        [["2"], 1, 6],
        [["3"], 1, 6],
      ]);
    });
  });

  it("a cold standby keeps only network and storage until failover activates it", async () => {
    const types = (r: RenderResult) => new Set(r.resources.map((x) => x.type));
    const cold = await renderStack("dr", {
      overrides: { "milvus-aks:dr": { ...validDr().dr, standby: "cold" } },
    });
    const coldTypes = types(cold);
    assert.ok(coldTypes.has("azure-native:network:VirtualNetwork"));
    assert.ok(coldTypes.has("azure-native:storage:StorageAccount"));
    assert.ok(coldTypes.has("pulumi:pulumi:StackReference"));
    assert.equal(coldTypes.has("azure-native:containerservice:ManagedCluster"), false);
    assert.equal([...coldTypes].filter((t) => t.startsWith("kubernetes:")).length, 0);
    assert.equal(cold.outputs.clusterName, undefined);
    assert.match(String(cold.outputs.nodeSubnetId), /\/subnets\/nodes$/);

    const activated = await renderStack("dr", {
      overrides: { "milvus-aks:dr": { ...validDr().dr, standby: "cold", activated: "true" } },
    });
    assert.ok(types(activated).has("azure-native:containerservice:ManagedCluster"));
    assert.ok(types(activated).has("kubernetes:batch/v1:CronJob"));
    assert.deepEqual(reasons({ ...validDr(), dr: { ...validDr().dr, activated: "yes" } }), [
      'dr.activated: dr.activated = "yes" is invalid: expected true or false. Set it with `pulumi config set --path milvus-aks:dr.activated false` or in Pulumi.<stack>.yaml.',
    ]);
  });

  it("a primary lets the dr stack's node subnet through its backup-account firewall", async () => {
    const prod = await renderStack("prod", {
      overrides: { "milvus-aks:dr": { pairedLocation: "northeurope", standbySubnetIds: [DR_SUBNET] } },
    });
    const account = prod.resources.find((r) => r.type === "azure-native:storage:StorageAccount");
    const rules = (
      account?.inputs.networkRuleSet as { virtualNetworkRules: { virtualNetworkResourceId: string }[] }
    ).virtualNetworkRules;
    assert.equal(rules.length, 2);
    assert.match(rules[0]?.virtualNetworkResourceId ?? "", /milvus-prod-vnet.*\/subnets\/nodes$/);
    assert.equal(rules[1]?.virtualNetworkResourceId, DR_SUBNET);
    // A plain prod stack (no standby yet) keeps its own subnet only, and restores from its own account.
    const plain = await renderStack("prod");
    assert.equal(
      plain.outputs.restoreSourceBlobEndpoint,
      "https://milvusbkprod3cd4f0.blob.core.windows.net/",
    );
  });

  describe("the failover path through the primary's backup firewall", () => {
    const rules = (r: RenderResult) =>
      (
        r.resources.find((x) => x.type === "azure-native:storage:StorageAccount")?.inputs.networkRuleSet as {
          virtualNetworkRules: { virtualNetworkResourceId: string; action: string }[];
        }
      ).virtualNetworkRules;
    const PROD_SUBNET = DR_SUBNET.replace(/milvus-dr-/g, "milvus-prod-");

    it("the dr stack's node subnet has the fixed id the primary computes", async () => {
      const dr = await renderStack("dr");
      // Fixed group and VNet names (components/common/naming.ts), so the id is known before dr is deployed.
      assert.equal(dr.outputs.nodeSubnetId, DR_SUBNET);
      assert.equal(dr.outputs.resourceGroupName, "milvus-dr-rg");
    });

    it("prod admits dr's subnet once it exists with the Microsoft.Storage endpoint, and exports the list", async () => {
      const prod = await renderStack("prod", {
        liveSubnets: { [DR_SUBNET]: { serviceEndpoints: ["Microsoft.Storage"] } },
      });
      assert.equal(prod.config.dr.standbyStack, "dr");
      assert.deepEqual(rules(prod), [
        { virtualNetworkResourceId: PROD_SUBNET, action: "Allow" },
        { virtualNetworkResourceId: DR_SUBNET, action: "Allow" },
      ]);
      assert.deepEqual(prod.outputs.backupAllowedSubnetIds, [PROD_SUBNET, DR_SUBNET]);
      assert.deepEqual(prod.warnings, []);
    });

    it("a first prod deploy before dr exists leaves the rule out (Azure would reject it) and says how to close the gap", async () => {
      // The storage RP rejects a rule for a subnet without the Microsoft.Storage service endpoint
      // (NetworkAclsValidationFailure, SubnetsHaveNoServiceEndpointsConfigured: azure-cli #32434).
      for (const [liveSubnets, why] of [
        [{}, "does not exist yet"],
        [
          { [DR_SUBNET]: { serviceEndpoints: ["Microsoft.KeyVault"] } },
          "has no Microsoft.Storage service endpoint",
        ],
      ] as const) {
        const prod = await renderStack("prod", { liveSubnets });
        assert.deepEqual(rules(prod), [{ virtualNetworkResourceId: PROD_SUBNET, action: "Allow" }]);
        assert.deepEqual(prod.warnings, [
          `dr.standbyStack: the dr stack's node subnet (milvus-dr-rg/milvus-dr-vnet/nodes) ${why}, so this stack's backup firewall does not admit it and a failover to dr cannot read the backups. Run \`pulumi up --stack dr\`, then \`pulumi up\` on this stack again.`,
        ]);
      }
    });

    it("rejects a standby stack on a dr stack or naming itself", () => {
      assert.deepEqual(reasons({ ...validDr(), dr: { ...validDr().dr, standbyStack: "dr2" } }), [
        'dr.standbyStack: dr.standbyStack = "dr2" is invalid: expected the name of another stack, on a primary (not a dr) stack. Name the dr stack on the primary, e.g. `pulumi config set --path milvus-aks:dr.standbyStack dr --stack prod`; a dr stack has no standby of its own.',
      ]);
      assert.match(
        configErrors(
          {
            ...validDr(),
            environment: "prod",
            location: "westeurope",
            dr: { pairedLocation: "northeurope", standbyStack: "a/b" },
          },
          "prod",
        )
          .map((e) => `${e.propertyPath}: ${e.reason}`)
          .join("\n"),
        /dr\.standbyStack: dr\.standbyStack = "a\/b" is invalid: expected the name of this stack's dr stack/,
      );
    });
  });
});
