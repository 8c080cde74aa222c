import * as pulumi from "@pulumi/pulumi";
import * as storage from "@pulumi/azure-native/storage";

export interface HardenedAccountInput {
  resourceGroupName: pulumi.Input<string>;
  location: pulumi.Input<string>;
  accountName: pulumi.Input<string>;
  /** e.g. `Standard_RAGZRS` (backups) or `Standard_ZRS` (Milvus data). */
  sku: string;
  /** Subnets let through the firewall; everything else is denied. */
  allowedSubnetIds: pulumi.Input<pulumi.Input<string>[]>;
  tags?: Record<string, string>;
}

/**
 * The settings every storage account of this project shares: TLS 1.2, HTTPS only, no public blob
 * access, no shared keys (workload identity only), and a firewall that denies all but named subnets.
 * One function, so the backup account and Milvus's own account cannot drift apart.
 */
export function hardenedAccountArgs(input: HardenedAccountInput): storage.StorageAccountArgs {
  return {
    resourceGroupName: input.resourceGroupName,
    location: input.location,
    accountName: input.accountName,
    kind: "StorageV2",
    sku: { name: input.sku },
    accessTier: "Hot",
    minimumTlsVersion: "TLS1_2",
    enableHttpsTrafficOnly: true,
    allowBlobPublicAccess: false,
    allowSharedKeyAccess: false,
    defaultToOAuthAuthentication: true,
    allowCrossTenantReplication: false,
    // Service endpoints need public network access "Enabled"; the firewall denies everything else.
    publicNetworkAccess: "Enabled",
    networkRuleSet: {
      defaultAction: "Deny",
      bypass: "AzureServices",
      virtualNetworkRules: pulumi
        .output(input.allowedSubnetIds)
        .apply((ids) => ids.map((id) => ({ virtualNetworkResourceId: id, action: "Allow" as const }))),
      ipRules: [],
    },
    tags: input.tags,
  };
}
