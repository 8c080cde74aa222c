import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import * as authorization from "@pulumi/azure-native/authorization";
import * as containerservice from "@pulumi/azure-native/containerservice";
import * as managedidentity from "@pulumi/azure-native/managedidentity";
import * as yaml from "js-yaml";
import {
  MaintenanceConfig,
  MILVUS_TERMINATION_GRACE_SECONDS,
  NodePoolConfig,
  UPGRADE_SETTINGS,
} from "../common/config";
import { DATA_POOL_LABEL, DATA_POOL_VALUE } from "../common/naming";
import { grantRole } from "./roles";

/**
 * Server id of the AKS Entra ID application, the audience kubelogin requests tokens for. The same in
 * every tenant: it is what AKS writes after `--server-id` in the user kubeconfig (Azure/kubelogin#193).
 */
export const AKS_AAD_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630";
export const SYSTEM_POOL_TAINT = "CriticalAddonsOnly=true:NoSchedule";

export interface AksClusterArgs {
  /** Resource group of the cluster. */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region. */
  location: pulumi.Input<string>;
  /** Availability zones for every pool; one data pool is created per zone. @default none (from config) */
  zones: string[];
  /** AKS Kubernetes version ("1.33" floats on patches via the auto-upgrade channel). @default none */
  kubernetesVersion: string;
  /** Subnet for all node pools. */
  nodeSubnetId: pulumi.Input<string>;
  /** System pool (tainted CriticalAddonsOnly). @default none */
  systemPool: NodePoolConfig;
  /** Data pool shape, instantiated once per zone. @default none */
  dataPool: NodePoolConfig;
  /** Node drain timeout for upgrades. @default none; validated to exceed Milvus's 1800 s grace period */
  drainTimeoutMinutes: number;
  /** Weekly window for Kubernetes and node-image upgrades. @default none */
  maintenance: MaintenanceConfig;
  /** Overlay pod range, service range and DNS IP. @default none */
  podCidr: string;
  serviceCidr: string;
  dnsServiceIp: string;
  /** Entra ID groups given cluster-admin through Azure RBAC; the deploying identity must be in one. @default none: at least one is required */
  adminGroupObjectIds: string[];
  /**
   * Encryption at host on every pool: temp disks, OS and data disk caches and ephemeral OS disks are
   * encrypted on the VM host ("Host-based encryption on AKS"). Set only when a pool is created; the
   * subscription must have registered Microsoft.Compute/EncryptionAtHost (docs/security.md).
   * @default none: `security.encryption.atHost` (true)
   */
  encryptionAtHost: pulumi.Input<boolean>;
  /**
   * Disk encryption set for the nodes' OS disks (customer-managed key). Fixed at cluster creation
   * (AKS "Bring your own keys (BYOK) with Azure managed disks"). @default none: platform-managed keys
   */
  diskEncryptionSetId?: pulumi.Input<string>;
  /** What must exist before the cluster uses the disk encryption set (its key role). @default [] */
  encryptionDependsOn?: pulumi.Resource[];
  /**
   * Log Analytics workspace for Container Insights (the `omsagent` add-on with the Azure Monitor agent
   * and managed-identity authentication). @default none: no container log collection
   */
  containerInsightsWorkspaceId?: pulumi.Input<string>;
  /** Tags applied to every Azure resource. @default {} */
  tags?: Record<string, string>;
}

/** Pure defaults for parts of the cluster the stack config does not expose. */
export function aksDefaults(zoneCount: number) {
  return {
    sku: { name: "Base", tier: "Standard" } as const,
    // "patch" keeps the configured minor and takes its patches; minors are a reviewed config change.
    upgradeChannel: "patch",
    nodeOSUpgradeChannel: "NodeImage",
    osSKU: "AzureLinux",
    maxPods: 110,
    // Each zonal data pool gets one surge node: zonal disks cannot follow a pod to another zone. The
    // maintenance-window estimate (config.ts, upgradeMinutesEstimate) uses the same numbers.
    dataPoolMaxSurge: String(UPGRADE_SETTINGS.dataPoolMaxSurgeNodes),
    systemPoolMaxSurge: `${UPGRADE_SETTINGS.systemPoolMaxSurgePercent}%`,
    nodeSoakDurationInMinutes: UPGRADE_SETTINGS.nodeSoakDurationInMinutes,
    autoScalerProfile: {
      balanceSimilarNodeGroups: String(zoneCount > 1),
      expander: "least-waste",
      // Milvus pods carry emptyDir scratch space; refusing to drain them would pin nodes forever.
      skipNodesWithLocalStorage: "false",
      maxGracefulTerminationSec: String(MILVUS_TERMINATION_GRACE_SECONDS),
      scaleDownUnneededTime: "10m",
      scaleDownDelayAfterAdd: "10m",
    },
  };
}

interface KubeconfigUser {
  name?: string;
  user?: { exec?: { command?: string; args?: unknown[] | null } & Record<string, unknown> } & Record<
    string,
    unknown
  >;
}

/**
 * Rewrites the user kubeconfig AKS returns (`listClusterUserCredential`, format `exec`) so kubelogin
 * logs in through the Azure CLI instead of the device-code prompt AKS writes, which nobody answers
 * during `pulumi up`. AKS emits block sequences (`args:` then `- get-token` lines) with `env: null`,
 * `installHint` and `provideClusterInfo` (Azure/kubelogin#193), so the file is parsed, edited and
 * dumped as YAML, never patched as text. The new args are what `kubelogin convert-kubeconfig -l azurecli`
 * writes (pkg/internal/converter/convert.go: `get-token --login azurecli --server-id <id>`). CI jobs
 * set `AAD_LOGIN_METHOD=workloadidentity`, which kubelogin applies over `--login` (its env override).
 */
export function kubeloginKubeconfig(userKubeconfig: string): string {
  const doc = yaml.load(userKubeconfig) as { users?: KubeconfigUser[] } | null;
  if (!doc || !Array.isArray(doc.users)) {
    throw new Error("the AKS user kubeconfig has no users list; cannot configure kubelogin");
  }
  let rewritten = 0;
  for (const entry of doc.users) {
    const exec = entry.user?.exec;
    const args = Array.isArray(exec?.args) ? exec.args.map(String) : [];
    if (!exec || !args.includes("get-token")) continue;
    const at = args.indexOf("--server-id");
    const serverId = at >= 0 ? (args[at + 1] ?? AKS_AAD_SERVER_ID) : AKS_AAD_SERVER_ID;
    exec.args = ["get-token", "--login", "azurecli", "--server-id", serverId];
    rewritten++;
  }
  if (rewritten === 0) {
    throw new Error(
      "the AKS user kubeconfig has no kubelogin exec user (`get-token`); is the cluster's Entra ID integration on?",
    );
  }
  return yaml.dump(doc, { lineWidth: -1, noRefs: true });
}

/**
 * The node count to send for an autoscaled pool: its live count, kept inside [minCount, maxCount].
 * AKS refuses a manual scale of an autoscaled pool ("Cannot manually scale AgentPool ... with cluster
 * autoscaler enabled", terraform-provider-azurerm#4543), so the count sent must be the pool's own; and
 * a count below a raised minCount is invalid, so it is lifted to the new minimum. A pool that does not
 * exist yet starts at minCount.
 */
export function poolCount(
  pool: Pick<NodePoolConfig, "minCount" | "maxCount">,
  live: number | undefined,
): number {
  if (live === undefined) return pool.minCount;
  return Math.min(pool.maxCount, Math.max(pool.minCount, live));
}

/** The pool's live node count, or undefined while the cluster or the pool does not exist. */
function livePoolCount(
  resourceGroupName: pulumi.Input<string>,
  clusterName: string,
  agentPoolName: string,
): pulumi.Output<number | undefined> {
  return pulumi.output(resourceGroupName).apply(async (rg) => {
    try {
      const pool = await containerservice.getAgentPool({
        resourceGroupName: rg,
        resourceName: clusterName,
        agentPoolName,
      });
      return pool.count;
    } catch (err) {
      // ARM answers 404 (ResourceNotFound / NotFound) for a cluster or pool that is not there yet.
      if (/\b404\b|NotFound/.test(String(err))) return undefined;
      throw err;
    }
  });
}

/**
 * Multi-zone AKS: Standard tier, a tainted system pool, one autoscaled data pool per zone, Azure CNI
 * overlay with Cilium, OIDC + workload identity, Entra ID with Azure RBAC and no local accounts.
 */
export class AksClusterComponent extends pulumi.ComponentResource {
  public readonly clusterName: pulumi.Output<string>;
  public readonly clusterId: pulumi.Output<string>;
  public readonly oidcIssuerUrl: pulumi.Output<string>;
  public readonly kubeletObjectId: pulumi.Output<string>;
  /** Kubernetes provider authenticating as the caller through kubelogin (never admin credentials). */
  public readonly provider: k8s.Provider;
  public readonly dataPoolNames: string[];

  constructor(name: string, args: AksClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:aks:AksCluster", name, {}, opts);
    const d = aksDefaults(args.zones.length);

    // A user-assigned control-plane identity lets us grant Network Contributor on the BYO subnet
    // before the cluster exists (a system-assigned one only exists after creation).
    const controlPlaneIdentity = new managedidentity.UserAssignedIdentity(
      `${name}-cp-identity`,
      { resourceGroupName: args.resourceGroupName, location: args.location, tags: args.tags },
      { parent: this },
    );
    const subnetRole = grantRole(
      `${name}-cp-subnet`,
      {
        scope: args.nodeSubnetId,
        principalId: controlPlaneIdentity.principalId,
        principalType: "ServicePrincipal",
        role: "networkContributor",
      },
      { parent: this },
    );

    const upgrade = (maxSurge: string) => ({
      maxSurge,
      drainTimeoutInMinutes: args.drainTimeoutMinutes,
      nodeSoakDurationInMinutes: d.nodeSoakDurationInMinutes,
    });
    // A fixed name (unique within the resource group), so the live pool counts can be read before the
    // cluster resource is declared.
    const clusterName = `${name}-aks`;
    const poolArgs = (p: NodePoolConfig, poolName: string) => ({
      vmSize: p.vmSize,
      enableAutoScaling: true,
      minCount: p.minCount,
      maxCount: p.maxCount,
      count: livePoolCount(args.resourceGroupName, clusterName, poolName).apply((live) => poolCount(p, live)),
      osDiskType: "Ephemeral",
      osDiskSizeGB: p.osDiskSizeGB,
      osType: "Linux",
      osSKU: d.osSKU,
      type: "VirtualMachineScaleSets",
      maxPods: d.maxPods,
      vnetSubnetID: args.nodeSubnetId,
      enableEncryptionAtHost: args.encryptionAtHost,
    });

    // The cluster identity reads the disk encryption set (AKS BYOK doc: "Reader" on the DES); the disk
    // CSI driver needs Microsoft.Compute/diskEncryptionSets/read for StorageClasses that name it.
    const desRole =
      args.diskEncryptionSetId !== undefined
        ? [
            grantRole(
              `${name}-cp-des`,
              {
                scope: args.diskEncryptionSetId,
                principalId: controlPlaneIdentity.principalId,
                principalType: "ServicePrincipal",
                role: "reader",
              },
              { parent: this },
            ),
          ]
        : [];
    const client = authorization.getClientConfigOutput();
    const cluster = new containerservice.ManagedCluster(
      `${name}-aks`,
      {
        resourceGroupName: args.resourceGroupName,
        resourceName: clusterName,
        location: args.location,
        sku: d.sku,
        kubernetesVersion: args.kubernetesVersion,
        dnsPrefix: name,
        identity: {
          type: "UserAssigned",
          userAssignedIdentities: [controlPlaneIdentity.id],
        },
        agentPoolProfiles: [
          {
            ...poolArgs(args.systemPool, "system"),
            name: "system",
            mode: "System",
            availabilityZones: args.zones,
            nodeTaints: [SYSTEM_POOL_TAINT],
            upgradeSettings: upgrade(d.systemPoolMaxSurge),
          },
        ],
        networkProfile: {
          networkPlugin: "azure",
          networkPluginMode: "overlay",
          networkDataplane: "cilium",
          networkPolicy: "cilium",
          podCidr: args.podCidr,
          serviceCidr: args.serviceCidr,
          dnsServiceIP: args.dnsServiceIp,
          loadBalancerSku: "standard",
        },
        oidcIssuerProfile: { enabled: true },
        securityProfile: { workloadIdentity: { enabled: true } },
        aadProfile: {
          managed: true,
          enableAzureRBAC: true,
          tenantID: client.tenantId,
          adminGroupObjectIDs: args.adminGroupObjectIds,
        },
        disableLocalAccounts: true,
        enableRBAC: true,
        autoUpgradeProfile: {
          upgradeChannel: d.upgradeChannel,
          nodeOSUpgradeChannel: d.nodeOSUpgradeChannel,
        },
        autoScalerProfile: d.autoScalerProfile,
        diskEncryptionSetID: args.diskEncryptionSetId,
        // Container Insights through the Azure Monitor agent with managed-identity auth (Microsoft's
        // MSI onboarding template for AKS: omsagent with useAADAuth "true"); the data collection rule
        // and its association are in auditDiagnostics.ts.
        addonProfiles:
          args.containerInsightsWorkspaceId !== undefined
            ? {
                omsagent: {
                  enabled: true,
                  config: {
                    logAnalyticsWorkspaceResourceID: args.containerInsightsWorkspaceId,
                    useAADAuth: "true",
                  },
                },
              }
            : undefined,
        tags: args.tags,
      },
      {
        parent: this,
        dependsOn: [subnetRole, ...desRole, ...(args.encryptionDependsOn ?? [])],
      },
    );

    this.dataPoolNames = args.zones.map((zone) => `data${zone}`);
    // AKS refuses a second operation on a cluster's pools while one runs ("Operation is not allowed:
    // Another agentpool operation ... is in progress", 409 OperationNotAllowed; AKS docs: "You can't
    // simultaneously submit multiple operations on a single control plane or node pool resource"), so
    // each pool waits for the one before it, and the maintenance windows for the last pool.
    const pools: containerservice.AgentPool[] = [];
    for (const zone of args.zones) {
      const poolName = `data${zone}`;
      const pool = new containerservice.AgentPool(
        `${name}-data${zone}`,
        {
          resourceGroupName: args.resourceGroupName,
          resourceName: cluster.name,
          agentPoolName: poolName,
          ...poolArgs(args.dataPool, poolName),
          mode: "User",
          // One pool per zone (Microsoft's guidance for zonal disks): the autoscaler can then add a
          // node in the zone where a pending pod's Premium disk lives.
          availabilityZones: [zone],
          nodeLabels: { [DATA_POOL_LABEL]: DATA_POOL_VALUE },
          upgradeSettings: upgrade(d.dataPoolMaxSurge),
          tags: args.tags,
        },
        { parent: this, dependsOn: [pools.at(-1) ?? cluster] },
      );
      pools.push(pool);
    }

    const window = (configName: string, after: pulumi.Resource) =>
      new containerservice.MaintenanceConfiguration(
        `${name}-${configName}`,
        {
          resourceGroupName: args.resourceGroupName,
          resourceName: cluster.name,
          configName,
          maintenanceWindow: {
            schedule: { weekly: { dayOfWeek: args.maintenance.day, intervalWeeks: 1 } },
            durationHours: args.maintenance.durationHours,
            startTime: `${String(args.maintenance.startHourUtc).padStart(2, "0")}:00`,
            utcOffset: "+00:00",
          },
        },
        { parent: this, dependsOn: [after] },
      );
    const upgradeWindow = window("aksManagedAutoUpgradeSchedule", pools.at(-1) ?? cluster);
    const nodeOsWindow = window("aksManagedNodeOSUpgradeSchedule", upgradeWindow);

    // The identity running `pulumi up` (a person, or CI's service principal) must be a member of one
    // of these groups to deploy the Kubernetes layer: with local accounts disabled there is no other way in.
    // Keyed by group, never by list position: removing one group leaves the others' assignments alone.
    for (const groupId of args.adminGroupObjectIds) {
      grantRole(
        `${name}-rbac-admin-${groupId}`,
        { scope: cluster.id, principalId: groupId, principalType: "Group", role: "aksRbacClusterAdmin" },
        { parent: this },
      );
    }

    const creds = containerservice.listManagedClusterUserCredentialsOutput({
      resourceGroupName: args.resourceGroupName,
      resourceName: cluster.name,
      format: "exec",
    });
    const kubeconfig = pulumi.secret(
      creds.kubeconfigs.apply((k) => {
        const value = k[0]?.value;
        if (!value) throw new Error(`AKS returned no user kubeconfig for cluster ${name}`);
        return kubeloginKubeconfig(Buffer.from(value, "base64").toString("utf8"));
      }),
    );
    // Everything deployed through this provider waits for it, and it waits for the node pools: without
    // nodes, StatefulSets and Helm releases would sit Pending until their await timed out.
    this.provider = new k8s.Provider(
      `${name}-k8s`,
      { kubeconfig, enableServerSideApply: true },
      { parent: this, dependsOn: [...pools, nodeOsWindow] },
    );

    this.clusterName = cluster.name;
    this.clusterId = cluster.id;
    this.oidcIssuerUrl = cluster.oidcIssuerProfile.apply((p) => p?.issuerURL ?? "");
    this.kubeletObjectId = cluster.identityProfile.apply((p) => p?.kubeletidentity.objectId ?? "");
    this.registerOutputs({
      clusterName: this.clusterName,
      clusterId: this.clusterId,
      oidcIssuerUrl: this.oidcIssuerUrl,
    });
  }
}
