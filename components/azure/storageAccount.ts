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
  /** Encryption at rest beyond Azure's default (Microsoft-managed keys, one layer). */
  encryption?: AccountEncryption;
  tags?: Record<string, string>;
}

/** How a storage account encrypts at rest. */
export interface AccountEncryption {
  /** Second, infrastructure-level AES-256 layer with a separate Microsoft-managed key. */
  infrastructure: boolean;
  /** Service-level encryption with a key in the stack's Key Vault, through a user-assigned identity. */
  customerManagedKey?: {
    keyVaultUri: pulumi.Input<string>;
    keyName: pulumi.Input<string>;
    /** Resource id of the user-assigned identity allowed to wrap and unwrap with the key. */
    identityId: pulumi.Input<string>;
  };
}

/**
 * The account's `encryption` and `identity` (pure, unit-tested).
 * - `requireInfrastructureEncryption` "cannot be enabled or disabled after the account has been created"
 *   ("Enable infrastructure encryption for double encryption of data"): switching it replaces the
 *   account, which the preview guard (scripts/check-preview.ts) stops for the backup account.
 * - A customer-managed key set at creation needs a user-assigned identity ("Customer-managed keys for
 *   Azure Storage encryption"); without a key version Azure Storage follows the key's newest version.
 */
export function accountEncryptionArgs(
  e: AccountEncryption | undefined,
): Pick<storage.StorageAccountArgs, "encryption" | "identity"> {
  const services = {
    blob: { enabled: true, keyType: "Account" },
    file: { enabled: true, keyType: "Account" },
  };
  const cmk = e?.customerManagedKey;
  return {
    encryption: {
      requireInfrastructureEncryption: e?.infrastructure ?? false,
      services,
      keySource: cmk ? "Microsoft.Keyvault" : "Microsoft.Storage",
      keyVaultProperties: cmk ? { keyVaultUri: cmk.keyVaultUri, keyName: cmk.keyName } : undefined,
      encryptionIdentity: cmk ? { encryptionUserAssignedIdentity: cmk.identityId } : undefined,
    },
    identity: cmk
      ? { type: "UserAssigned", userAssignedIdentities: pulumi.output(cmk.identityId).apply((id) => [id]) }
      : undefined,
  };
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
    ...accountEncryptionArgs(input.encryption),
    tags: input.tags,
  };
}
