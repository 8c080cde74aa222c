import * as pulumi from "@pulumi/pulumi";
import * as monitor from "@pulumi/azure-native/monitor";

/**
 * AKS control-plane log categories sent to the workspace ("Monitor Azure Kubernetes Service (AKS)",
 * resource logs): `kube-audit-admin` is the audit log without get and list events (the doc's advice
 * over `kube-audit`, which costs many times more and adds only reads), `guard` records Entra ID and
 * Azure RBAC authorization decisions.
 */
export const AKS_AUDIT_CATEGORIES = ["kube-audit-admin", "guard"] as const;
/** Blob service categories ("Monitoring Azure Blob Storage"): every read, write and delete, with caller. */
export const BLOB_AUDIT_CATEGORIES = ["StorageRead", "StorageWrite", "StorageDelete"] as const;

/**
 * Container Insights streams (Microsoft's managed-identity onboarding template for AKS,
 * microsoft/Docker-Provider scripts/onboarding/aks/onboarding-msi-terraform/variables.tf): container
 * logs in the ContainerLogV2 schema, Kubernetes events and the inventories the Insights views need.
 */
export const CONTAINER_INSIGHTS_STREAMS = [
  "Microsoft-ContainerLogV2",
  "Microsoft-KubeEvents",
  "Microsoft-KubePodInventory",
  "Microsoft-KubeNodeInventory",
  "Microsoft-KubePVInventory",
  "Microsoft-KubeServices",
  "Microsoft-KubeMonAgentEvents",
  "Microsoft-InsightsMetrics",
  "Microsoft-ContainerInventory",
  "Microsoft-ContainerNodeInventory",
  "Microsoft-Perf",
] as const;

/**
 * The association name the AKS monitoring add-on looks for (fixed in Microsoft's onboarding templates:
 * "ContainerInsightsExtension").
 */
export const CONTAINER_INSIGHTS_ASSOCIATION = "ContainerInsightsExtension";

/** The data collection rule's shape, as a pure function (unit-tested). */
export function containerInsightsRule(workspaceId: string) {
  const destination = "ciworkspace";
  return {
    kind: "Linux",
    dataSources: {
      extensions: [
        {
          name: "ContainerInsightsExtension",
          extensionName: "ContainerInsights",
          streams: [...CONTAINER_INSIGHTS_STREAMS],
          extensionSettings: {
            dataCollectionSettings: {
              interval: "1m",
              namespaceFilteringMode: "Off",
              // ContainerLogV2 carries pod and container names with every line ("Enable the ContainerLogV2 schema").
              enableContainerLogV2: true,
            },
          },
        },
      ],
    },
    destinations: { logAnalytics: [{ name: destination, workspaceResourceId: workspaceId }] },
    dataFlows: [{ streams: [...CONTAINER_INSIGHTS_STREAMS], destinations: [destination] }],
  };
}

export interface AuditDiagnosticsArgs {
  /** Resource group (for the data collection rule). @default none */
  resourceGroupName: pulumi.Input<string>;
  /** Region of the rule (the workspace's). @default none */
  location: pulumi.Input<string>;
  /** Log Analytics workspace resource id. @default none */
  workspaceId: pulumi.Input<string>;
  /** AKS cluster resource id (audit log; Container Insights association). @default none: no cluster settings */
  clusterId?: pulumi.Input<string>;
  /** Storage accounts whose blob access is logged, by a short stable key. @default {} */
  storageAccountIds?: Record<string, pulumi.Input<string>>;
  /** Collect container logs (Container Insights). @default none: `security.audit.containerInsights` */
  containerInsights: boolean;
  /** Tags. @default {} */
  tags?: Record<string, string>;
}

/**
 * Sends the AKS audit log and the storage accounts' blob access logs to the workspace (resource-specific
 * tables: AKSAuditAdmin, AKSControlPlane, StorageBlobLogs), and associates the Container Insights data
 * collection rule with the cluster. Deployed through ARM, the monitoring add-on needs this rule and
 * association ("Enable monitoring for Kubernetes clusters": the templates create both).
 */
export class AuditDiagnosticsComponent extends pulumi.ComponentResource {
  constructor(name: string, args: AuditDiagnosticsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:audit:AuditDiagnostics", name, {}, opts);
    const clusterId = args.clusterId;
    if (clusterId !== undefined) {
      new monitor.DiagnosticSetting(
        `${name}-aks`,
        {
          name: "audit-to-log-analytics",
          resourceUri: clusterId,
          workspaceId: args.workspaceId,
          logAnalyticsDestinationType: "Dedicated",
          logs: AKS_AUDIT_CATEGORIES.map((category) => ({ category, enabled: true })),
        },
        { parent: this },
      );
    }
    for (const [key, accountId] of Object.entries(args.storageAccountIds ?? {})) {
      new monitor.DiagnosticSetting(
        `${name}-blob-${key}`,
        {
          name: "audit-to-log-analytics",
          // Blob logs are a setting of the account's blob service, not of the account.
          resourceUri: pulumi.interpolate`${accountId}/blobServices/default`,
          workspaceId: args.workspaceId,
          logAnalyticsDestinationType: "Dedicated",
          logs: BLOB_AUDIT_CATEGORIES.map((category) => ({ category, enabled: true })),
        },
        { parent: this },
      );
    }
    if (args.containerInsights && clusterId !== undefined) {
      const shape = pulumi.output(args.workspaceId).apply(containerInsightsRule);
      const rule = new monitor.DataCollectionRule(
        `${name}-ci-rule`,
        {
          resourceGroupName: args.resourceGroupName,
          location: args.location,
          kind: "Linux",
          dataSources: shape.dataSources,
          destinations: shape.destinations,
          dataFlows: shape.dataFlows,
          description: "Container Insights: container logs and inventories of this stack's AKS cluster",
          tags: args.tags,
        },
        { parent: this },
      );
      new monitor.DataCollectionRuleAssociation(
        `${name}-ci-association`,
        {
          associationName: CONTAINER_INSIGHTS_ASSOCIATION,
          resourceUri: clusterId,
          dataCollectionRuleId: rule.id,
        },
        { parent: this },
      );
    }
    this.registerOutputs({});
  }
}
