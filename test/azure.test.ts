import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import * as yaml from "js-yaml";
import { aksDefaults, kubeloginKubeconfig, SYSTEM_POOL_TAINT } from "../components/azure/aksCluster";
import { backupStorageDefaults } from "../components/azure/backupStorage";
import { globalName } from "../components/common/naming";
import {
  AKS_USER_KUBECONFIG,
  RenderedResource,
  RenderResult,
  renderStack,
  ROOT,
} from "../tools/offline-runtime";

type Obj = Record<string, unknown>;
const ofType = (r: RenderResult, type: string) =>
  r.resources.filter((x) => x.type === `azure-native:${type}`);
const one = (r: RenderResult, type: string): RenderedResource => {
  const found = ofType(r, type);
  assert.equal(found.length, 1, `expected exactly one ${type}, found ${found.length}`);
  return found[0];
};

describe("Azure layer", () => {
  let prod: RenderResult;
  let dev: RenderResult;
  before(async () => {
    prod = await renderStack("prod");
    dev = await renderStack("dev");
  });

  describe("AKS (prod)", () => {
    let cluster: Obj;
    before(() => {
      cluster = one(prod, "containerservice:ManagedCluster").inputs;
    });

    it("is Standard tier with Entra ID, Azure RBAC, no local accounts, OIDC and workload identity", () => {
      assert.deepEqual(cluster.sku, { name: "Base", tier: "Standard" });
      assert.equal(cluster.disableLocalAccounts, true);
      assert.deepEqual(cluster.aadProfile, {
        managed: true,
        enableAzureRBAC: true,
        tenantID: "00000000-0000-0000-0000-000000000002",
        adminGroupObjectIDs: ["9b3e7d21-4c6a-4f08-8e5d-7a2b1c9f0e34"],
      });
      assert.deepEqual(cluster.oidcIssuerProfile, { enabled: true });
      assert.deepEqual(cluster.securityProfile, { workloadIdentity: { enabled: true } });
      assert.equal(cluster.kubernetesVersion, "1.36");
    });

    it("uses Azure CNI overlay with the Cilium dataplane and network policy", () => {
      assert.deepEqual(cluster.networkProfile, {
        networkPlugin: "azure",
        networkPluginMode: "overlay",
        networkDataplane: "cilium",
        networkPolicy: "cilium",
        podCidr: "192.168.0.0/16",
        serviceCidr: "10.100.0.0/16",
        dnsServiceIP: "10.100.0.10",
        loadBalancerSku: "standard",
        outboundType: "loadBalancer",
      });
    });

    it("has a tainted, autoscaled, three-zone system pool on ephemeral OS disks", () => {
      const pools = cluster.agentPoolProfiles as Obj[];
      assert.equal(pools.length, 1);
      const system = pools[0];
      assert.equal(system.mode, "System");
      assert.deepEqual(system.availabilityZones, ["1", "2", "3"]);
      assert.deepEqual(system.nodeTaints, ["CriticalAddonsOnly=true:NoSchedule"]);
      assert.equal(system.enableAutoScaling, true);
      assert.equal(system.minCount, 3);
      assert.equal(system.maxCount, 5);
      assert.equal(system.osDiskType, "Ephemeral");
      assert.equal((system.upgradeSettings as Obj).drainTimeoutInMinutes, 40);
    });

    it("has one autoscaled data pool per zone, balanced by the cluster autoscaler", () => {
      const pools = ofType(prod, "containerservice:AgentPool").map((p) => p.inputs);
      assert.deepEqual(
        pools.map((p) => [
          p.agentPoolName,
          p.availabilityZones,
          p.mode,
          p.enableAutoScaling,
          p.minCount,
          p.maxCount,
        ]),
        [
          ["data1", ["1"], "User", true, 2, 6],
          ["data2", ["2"], "User", true, 2, 6],
          ["data3", ["3"], "User", true, 2, 6],
        ],
      );
      for (const p of pools) {
        assert.equal(p.osDiskType, "Ephemeral");
        assert.equal(p.vmSize, "Standard_E16ds_v5");
        assert.deepEqual(p.nodeLabels, { "milvus-aks/pool": "data" });
        assert.equal(p.nodeTaints, undefined);
        // The drain timeout must outlast Milvus's 1800 s graceful stop.
        assert.equal((p.upgradeSettings as Obj).drainTimeoutInMinutes, 40);
        assert.ok(40 * 60 > 1800);
      }
      const autoscaler = cluster.autoScalerProfile as Obj;
      assert.equal(autoscaler.balanceSimilarNodeGroups, "true");
      assert.equal(autoscaler.maxGracefulTerminationSec, "1800");
    });

    it("upgrades automatically inside weekly maintenance windows", () => {
      assert.deepEqual(cluster.autoUpgradeProfile, {
        upgradeChannel: "patch",
        nodeOSUpgradeChannel: "NodeImage",
      });
      const windows = ofType(prod, "containerservice:MaintenanceConfiguration").map((m) => m.inputs);
      assert.deepEqual(windows.map((w) => w.configName).sort(), [
        "aksManagedAutoUpgradeSchedule",
        "aksManagedNodeOSUpgradeSchedule",
      ]);
      for (const w of windows) {
        // Prod patches on Thursday, two days after staging; 20 h fits 21 surge batches of 55 min.
        assert.deepEqual(w.maintenanceWindow, {
          schedule: { weekly: { dayOfWeek: "Thursday", intervalWeeks: 1 } },
          durationHours: 20,
          startTime: "04:00",
          utcOffset: "+00:00",
        });
      }
    });

    it("grants the control-plane identity Network Contributor on the node subnet only", () => {
      const assignments = ofType(prod, "authorization:RoleAssignment").map((a) => a.inputs);
      const subnet = assignments.find((a) =>
        String(a.roleDefinitionId).endsWith("4d97b98b-1d4f-4787-a291-c67834d212e7"),
      );
      assert.ok(subnet);
      assert.match(String(subnet.scope), /\/subnets\/nodes$/);
      const admins = assignments.filter((a) =>
        String(a.roleDefinitionId).endsWith("b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"),
      );
      assert.deepEqual(
        admins.map((a) => [a.principalType, a.principalId]),
        [["Group", "9b3e7d21-4c6a-4f08-8e5d-7a2b1c9f0e34"]],
      );
    });

    it("gives later layers a kubelogin-based Kubernetes provider, never admin credentials", () => {
      const provider = prod.resources.find((r) => r.type === "pulumi:providers:kubernetes");
      assert.ok(provider);
      const kubeconfig = provider.inputs.kubeconfig as Obj;
      // The kubeconfig is a secret.
      assert.equal(kubeconfig["4dabf18193072939515e22adb298388d"], "1b47061264138c4ac30d75fd1eb44270");
      const text = String(kubeconfig.value);
      const doc = yaml.load(text) as { users: { user: Obj }[] };
      assert.deepEqual(doc.users[0]?.user.exec, {
        apiVersion: "client.authentication.k8s.io/v1beta1",
        args: ["get-token", "--login", "azurecli", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630"],
        command: "kubelogin",
        env: null,
        installHint:
          "\nkubelogin is not installed which is required to connect to AAD enabled cluster.\n\nTo learn more, please go to https://aka.ms/aks/kubelogin",
        provideClusterInfo: false,
      });
      assert.doesNotMatch(text, /client-key-data|token:/);
    });
  });

  describe("AKS (dev)", () => {
    it("is a one-zone cluster with one data pool", () => {
      const cluster = one(dev, "containerservice:ManagedCluster").inputs;
      const system = (cluster.agentPoolProfiles as Obj[])[0];
      assert.deepEqual(system.availabilityZones, ["1"]);
      assert.deepEqual(system.nodeTaints, [SYSTEM_POOL_TAINT]);
      assert.deepEqual(
        ofType(dev, "containerservice:AgentPool").map((p) => p.inputs.agentPoolName),
        ["data1"],
      );
      assert.equal((cluster.autoScalerProfile as Obj).balanceSimilarNodeGroups, "false");
    });
  });

  describe("network", () => {
    it("has a node subnet with the storage service endpoint and a private-endpoint subnet", () => {
      const vnet = one(prod, "network:VirtualNetwork").inputs;
      assert.deepEqual(vnet.addressSpace, { addressPrefixes: ["10.10.0.0/16"] });
      assert.deepEqual(vnet.subnets, [
        {
          name: "nodes",
          addressPrefix: "10.10.0.0/20",
          serviceEndpoints: [{ service: "Microsoft.Storage" }],
        },
        { name: "endpoints", addressPrefix: "10.10.16.0/24", privateEndpointNetworkPolicies: "Enabled" },
      ]);
    });
  });

  describe("backup storage account", () => {
    it("is hardened: RA-GZRS, TLS 1.2, HTTPS only, no public or shared-key access, subnet-only firewall", () => {
      const account = one(prod, "storage:StorageAccount").inputs;
      assert.equal(
        account.accountName,
        globalName("milvusbk", "prod", "00000000-0000-0000-0000-000000000001"),
      );
      assert.deepEqual(account.sku, { name: "Standard_RAGZRS" });
      assert.equal(account.kind, "StorageV2");
      assert.equal(account.minimumTlsVersion, "TLS1_2");
      assert.equal(account.enableHttpsTrafficOnly, true);
      assert.equal(account.allowBlobPublicAccess, false);
      assert.equal(account.allowSharedKeyAccess, false);
      assert.equal(account.allowCrossTenantReplication, false);
      const rules = account.networkRuleSet as Obj;
      assert.equal(rules.defaultAction, "Deny");
      assert.deepEqual(rules.ipRules, []);
      const vnetRules = rules.virtualNetworkRules as Obj[];
      assert.equal(vnetRules.length, 1);
      assert.match(String(vnetRules[0].virtualNetworkResourceId), /\/subnets\/nodes$/);
    });

    it("keeps soft-deleted blobs and containers beyond the retention; versions only without WORM", () => {
      const svc = one(prod, "storage:BlobServiceProperties").inputs;
      // prod has immutabilityDays 7: WORM replaces versioning (backupStorage.ts explains why).
      assert.equal(svc.isVersioningEnabled, false);
      assert.deepEqual(svc.deleteRetentionPolicy, { enabled: true, days: 37 });
      assert.deepEqual(svc.containerDeleteRetentionPolicy, { enabled: true, days: 37 });
      assert.equal(one(dev, "storage:BlobServiceProperties").inputs.isVersioningEnabled, true);
    });

    it("derives lifecycle rules from the retention and keeps the container private", () => {
      const policy = one(prod, "storage:ManagementPolicy").inputs;
      assert.deepEqual(policy.policy, {
        rules: [
          {
            name: "backup-retention-backstop",
            enabled: true,
            type: "Lifecycle",
            definition: {
              filters: { blobTypes: ["blockBlob"], prefixMatch: ["milvus-backups/"] },
              actions: {
                baseBlob: { delete: { daysAfterModificationGreaterThan: 60 } },
              },
            },
          },
        ],
      });
      const devRule = (one(dev, "storage:ManagementPolicy").inputs.policy as { rules: Obj[] }).rules[0];
      assert.deepEqual((devRule.definition as Obj).actions, {
        baseBlob: { delete: { daysAfterModificationGreaterThan: 37 } },
        version: { delete: { daysAfterCreationGreaterThan: 7 } },
      });
      const container = one(prod, "storage:BlobContainer").inputs;
      assert.equal(container.containerName, "milvus-backups");
      assert.equal(container.publicAccess, "None");
    });

    it("applies time-based immutability only when configured", () => {
      assert.equal(
        one(prod, "storage:BlobContainerImmutabilityPolicy").inputs.immutabilityPeriodSinceCreationInDays,
        7,
      );
      assert.equal(ofType(dev, "storage:BlobContainerImmutabilityPolicy").length, 0);
    });

    it("exports what the DR stack needs", () => {
      const account = globalName("milvusbk", "prod", "00000000-0000-0000-0000-000000000001");
      assert.equal(prod.outputs.backupAccountName, account);
      assert.equal(prod.outputs.backupPrimaryBlobEndpoint, `https://${account}.blob.core.windows.net/`);
      assert.equal(
        prod.outputs.backupSecondaryBlobEndpoint,
        `https://${account}-secondary.blob.core.windows.net/`,
      );
      assert.equal(prod.outputs.backupContainerName, "milvus-backups");
      assert.equal(prod.outputs.pairedLocation, "northeurope");
    });
  });

  describe("pure defaults", () => {
    it("aksDefaults balances node groups only when there are several zones", () => {
      assert.equal(aksDefaults(3).autoScalerProfile.balanceSimilarNodeGroups, "true");
      assert.equal(aksDefaults(1).autoScalerProfile.balanceSimilarNodeGroups, "false");
      assert.deepEqual(aksDefaults(3).sku, { name: "Base", tier: "Standard" });
    });

    it("backupStorageDefaults derives soft delete and lifecycle from the retention", () => {
      assert.deepEqual(backupStorageDefaults(30), {
        containerName: "milvus-backups",
        sku: "Standard_RAGZRS",
        versioning: true,
        softDeleteDays: 37,
        lifecycleDeleteAfterDays: 60,
        versionDeleteAfterDays: 30,
      });
      assert.equal(backupStorageDefaults(400).softDeleteDays, 365);
      assert.equal(backupStorageDefaults(30, 7).versioning, false);
    });

    it("kubeloginKubeconfig switches the exec plugin to the Azure CLI login", () => {
      const out = yaml.load(kubeloginKubeconfig(AKS_USER_KUBECONFIG)) as { users: { user: Obj }[] };
      assert.deepEqual((out.users[0]?.user.exec as Obj).args, [
        "get-token",
        "--login",
        "azurecli",
        "--server-id",
        "6dae42f8-4368-4678-94ff-3960e28e3630",
      ]);
      assert.doesNotMatch(kubeloginKubeconfig(AKS_USER_KUBECONFIG), /devicecode/);
    });
  });

  describe("npm run render", () => {
    it("exits non-zero with the validation message for a broken stack file", () => {
      const res = spawnSync(
        process.execPath,
        [
          require.resolve("ts-node/dist/bin.js"),
          "--transpile-only",
          "tools/render.ts",
          "broken",
          "--file",
          path.join(__dirname, "fixtures/Pulumi.broken.yaml"),
        ],
        { cwd: ROOT, encoding: "utf8" },
      );
      assert.equal(res.status, 1);
      assert.match(res.stderr, /Stack "broken" has 14 configuration problem\(s\):/);
      assert.match(res.stderr, /backup\.retentionDays = 0 is invalid/);
      assert.equal(res.stdout, "");
    });
  });
});
