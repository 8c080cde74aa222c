import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import * as authorization from "@pulumi/azure-native/authorization";
import * as containerservice from "@pulumi/azure-native/containerservice";
import * as managedidentity from "@pulumi/azure-native/managedidentity";
import { MaintenanceConfig, MILVUS_TERMINATION_GRACE_SECONDS, NodePoolConfig } from "./config";
import { DATA_POOL_LABEL, DATA_POOL_VALUE } from "./naming";
import { BUILTIN_ROLES, roleDefinitionId } from "./roles";

/** Server id of the AKS AAD application, the audience kubelogin requests tokens for. */
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
    // Each zonal data pool gets one surge node: zonal disks cannot follow a pod to another zone.
    dataPoolMaxSurge: "1",
    systemPoolMaxSurge: "33%",
    nodeSoakDurationInMinutes: 5,
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

/** Rewrites the AKS user kubeconfig so kubelogin uses the Azure CLI login (people and CI alike). */
export function kubeloginKubeconfig(userKubeconfig: string): string {
  return userKubeconfig.replace(/args:\s*\[[^\]]*\]|args:\n(\s+- .*\n)+/m, (match) =>
    match.includes("get-token")
      ? `args: [get-token, --login, azurecli, --server-id, ${AKS_AAD_SERVER_ID}]`
      : match,
  );
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
    const subnetRole = new authorization.RoleAssignment(
      `${name}-cp-subnet`,
      {
        scope: args.nodeSubnetId,
        principalId: controlPlaneIdentity.principalId,
        principalType: "ServicePrincipal",
        roleDefinitionId: roleDefinitionId(BUILTIN_ROLES.networkContributor),
      },
      { parent: this },
    );

    const upgrade = (maxSurge: string) => ({
      maxSurge,
      drainTimeoutInMinutes: args.drainTimeoutMinutes,
      nodeSoakDurationInMinutes: d.nodeSoakDurationInMinutes,
    });
    const pool = (p: NodePoolConfig) => ({
      vmSize: p.vmSize,
      enableAutoScaling: true,
      minCount: p.minCount,
      maxCount: p.maxCount,
      count: p.minCount,
      osDiskType: "Ephemeral",
      osDiskSizeGB: p.osDiskSizeGB,
      osType: "Linux",
      osSKU: d.osSKU,
      type: "VirtualMachineScaleSets",
      maxPods: d.maxPods,
      vnetSubnetID: args.nodeSubnetId,
    });

    const client = authorization.getClientConfigOutput();
    const cluster = new containerservice.ManagedCluster(
      `${name}-aks`,
      {
        resourceGroupName: args.resourceGroupName,
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
            ...pool(args.systemPool),
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
        tags: args.tags,
      },
      // Pools below are managed as AgentPool resources; node counts move under the autoscaler.
      { parent: this, dependsOn: [subnetRole], ignoreChanges: ["agentPoolProfiles[0].count"] },
    );

    this.dataPoolNames = args.zones.map((zone) => `data${zone}`);
    for (const zone of args.zones) {
      new containerservice.AgentPool(
        `${name}-data${zone}`,
        {
          resourceGroupName: args.resourceGroupName,
          resourceName: cluster.name,
          agentPoolName: `data${zone}`,
          ...pool(args.dataPool),
          mode: "User",
          // One pool per zone (Microsoft's guidance for zonal disks): the autoscaler can then add a
          // node in the zone where a pending pod's Premium disk lives.
          availabilityZones: [zone],
          nodeLabels: { [DATA_POOL_LABEL]: DATA_POOL_VALUE },
          upgradeSettings: upgrade(d.dataPoolMaxSurge),
          tags: args.tags,
        },
        { parent: this, ignoreChanges: ["count"] },
      );
    }

    const window = (configName: string) =>
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
        { parent: this },
      );
    window("aksManagedAutoUpgradeSchedule");
    window("aksManagedNodeOSUpgradeSchedule");

    // The identity running `pulumi up` (a person, or CI's service principal) must be a member of one
    // of these groups to deploy the Kubernetes layer: with local accounts disabled there is no other way in.
    args.adminGroupObjectIds.forEach((groupId, i) => {
      new authorization.RoleAssignment(
        `${name}-rbac-admin-${i}`,
        {
          scope: cluster.id,
          principalId: groupId,
          principalType: "Group",
          roleDefinitionId: roleDefinitionId(BUILTIN_ROLES.aksRbacClusterAdmin),
        },
        { parent: this },
      );
    });

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
    this.provider = new k8s.Provider(
      `${name}-k8s`,
      { kubeconfig, enableServerSideApply: true },
      { parent: this },
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
