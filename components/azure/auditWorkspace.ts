import * as pulumi from "@pulumi/pulumi";
import * as operationalinsights from "@pulumi/azure-native/operationalinsights";

export interface AuditWorkspaceArgs {
  /** Resource group of the workspace. @default none */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region (the cluster's). @default none */
  location: pulumi.Input<string>;
  /** Workspace name, unique in the resource group. @default none */
  workspaceName: string;
  /** Retention of every table, days. @default none: `security.audit.retentionDays` (365 prod/dr, 30 otherwise) */
  retentionDays: number;
  /** Protect the workspace from deletion (prod and dr: audit history is evidence). @default false */
  protect?: boolean;
  /** Tags. @default {} */
  tags?: Record<string, string>;
}

/** Workspace settings, as one pure function (unit-tested). */
export function auditWorkspaceDefaults() {
  return {
    // Pay-as-you-go per GB ingested; 31 days of retention are included in the ingestion price ("Azure
    // Monitor Logs cost calculations and options").
    sku: "PerGB2018",
    features: {
      // Readers see the logs of resources they may read, not the whole workspace ("Manage access to Log
      // Analytics workspaces", resource-context access).
      enableLogAccessUsingOnlyResourcePermissions: true,
      // Only Entra ID identities may send data: the Azure Monitor agent uses its managed identity.
      disableLocalAuth: true,
    },
  };
}

/**
 * The stack's Log Analytics workspace: the AKS audit log, the backup account's blob access log and the
 * container logs (Milvus's access log among them) land here. It exists before the cluster because the
 * cluster's monitoring add-on names it.
 */
export class AuditWorkspaceComponent extends pulumi.ComponentResource {
  public readonly workspaceId: pulumi.Output<string>;
  public readonly workspaceName: pulumi.Output<string>;
  /** The workspace's customer id (a GUID), which `az monitor log-analytics query -w` takes. */
  public readonly customerId: pulumi.Output<string>;

  constructor(name: string, args: AuditWorkspaceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:audit:AuditWorkspace", name, {}, opts);
    const d = auditWorkspaceDefaults();
    const ws = new operationalinsights.Workspace(
      `${name}-workspace`,
      {
        resourceGroupName: args.resourceGroupName,
        workspaceName: args.workspaceName,
        location: args.location,
        sku: { name: d.sku },
        retentionInDays: args.retentionDays,
        features: d.features,
        tags: args.tags,
      },
      // Audit history is evidence: in production deleting it is a deliberate, reviewed act.
      { parent: this, protect: args.protect ?? false },
    );
    this.workspaceId = ws.id;
    this.workspaceName = ws.name;
    this.customerId = ws.customerId;
    this.registerOutputs({ workspaceId: this.workspaceId, customerId: this.customerId });
  }
}
