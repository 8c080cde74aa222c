import * as pulumi from "@pulumi/pulumi";
import * as authorization from "@pulumi/azure-native/authorization";
import * as compute from "@pulumi/azure-native/compute";
import * as keyvault from "@pulumi/azure-native/keyvault";
import * as managedidentity from "@pulumi/azure-native/managedidentity";
import { grantRole } from "./roles";

export interface EncryptionKeysArgs {
  /** Resource group of the vault, key, identity and disk encryption set. @default none */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region (the disk encryption set must be in the disks' region). @default none */
  location: pulumi.Input<string>;
  /** Key Vault name: global, 3-24 letters, digits and dashes. @default none */
  vaultName: pulumi.Input<string>;
  /** Tags. @default {} */
  tags?: Record<string, string>;
}

/** Vault and key settings, as one pure function (unit-tested). */
export function encryptionKeyDefaults() {
  return {
    vault: {
      sku: { family: "A", name: "standard" } as const,
      // Both are required for customer-managed keys by Azure Storage and by disk encryption sets
      // ("Customer-managed keys for Azure Storage encryption"; AKS "Bring your own keys (BYOK) with
      // Azure managed disks"); purge protection cannot be switched off once on.
      enableSoftDelete: true,
      enablePurgeProtection: true,
      softDeleteRetentionInDays: 90,
      enableRbacAuthorization: true,
      /**
       * Access is by Azure RBAC alone. The firewall stays open because ARM creates `vaults/keys` through
       * the vault's data plane as the caller, and a Deny default fails that create from a deploying
       * machine outside the allowed networks (hashicorp/terraform#27062, cloud-custodian#4683).
       */
      networkAcls: { defaultAction: "Allow", bypass: "AzureServices" },
    },
    // RSA 3072: a size both Azure Storage and managed disks accept (2048, 3072 or 4096).
    key: { kty: "RSA", keySize: 3072, keyOps: ["wrapKey", "unwrapKey"] },
    // A new key version every year; the disk encryption set and the storage accounts follow it.
    rotateAfter: "P1Y",
  };
}

/**
 * The stack's customer-managed key: a Key Vault (soft delete, purge protection, RBAC), an RSA key that
 * rotates yearly, a disk encryption set for the cluster's OS disks and the StorageClasses, and a
 * user-assigned identity with which the storage accounts wrap their keys. Opt-in per stack
 * (`security.encryption.customerManagedKey`): losing the key loses every disk and blob it protects.
 */
export class EncryptionKeysComponent extends pulumi.ComponentResource {
  public readonly vaultUri: pulumi.Output<string>;
  public readonly keyName: pulumi.Output<string>;
  /** Disk encryption set id, for AKS `diskEncryptionSetID` and the StorageClass parameter. */
  public readonly diskEncryptionSetId: pulumi.Output<string>;
  /** User-assigned identity the storage accounts use for the key. */
  public readonly storageIdentityId: pulumi.Output<string>;
  /** Everything a consumer of the key must wait for (role assignments propagate before use). */
  public readonly ready: pulumi.Resource[];

  constructor(name: string, args: EncryptionKeysArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:security:EncryptionKeys", name, {}, opts);
    const d = encryptionKeyDefaults();
    const client = authorization.getClientConfigOutput();
    const vault = new keyvault.Vault(
      `${name}-vault`,
      {
        resourceGroupName: args.resourceGroupName,
        vaultName: args.vaultName,
        location: args.location,
        properties: { tenantId: client.tenantId, ...d.vault },
        tags: args.tags,
      },
      // Deleting the vault makes every disk and blob encrypted with its key unreadable.
      { parent: this, protect: true },
    );
    const deployer = grantRole(
      `${name}-deployer-crypto-officer`,
      { scope: vault.id, principalId: client.objectId, role: "keyVaultCryptoOfficer" },
      { parent: this },
    );
    const key = new keyvault.Key(
      `${name}-key`,
      {
        resourceGroupName: args.resourceGroupName,
        vaultName: vault.name,
        keyName: "milvus-aks",
        properties: {
          ...d.key,
          rotationPolicy: {
            lifetimeActions: [{ action: { type: "rotate" }, trigger: { timeAfterCreate: d.rotateAfter } }],
          },
        },
      },
      { parent: this, protect: true, dependsOn: [deployer] },
    );
    const des = new compute.DiskEncryptionSet(
      `${name}-des`,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        identity: { type: "SystemAssigned" },
        encryptionType: "EncryptionAtRestWithCustomerKey",
        // The DES needs a versioned key URL; with rotation on, disks move to a new version within an hour.
        activeKey: { keyUrl: key.keyUriWithVersion, sourceVault: { id: vault.id } },
        rotationToLatestKeyVersionEnabled: true,
        tags: args.tags,
      },
      { parent: this },
    );
    const desRole = grantRole(
      `${name}-des-key`,
      {
        scope: vault.id,
        principalId: des.identity.apply((i) => i?.principalId ?? ""),
        principalType: "ServicePrincipal",
        role: "keyVaultCryptoServiceEncryptionUser",
      },
      { parent: this },
    );
    const storageIdentity = new managedidentity.UserAssignedIdentity(
      `${name}-storage-identity`,
      { resourceGroupName: args.resourceGroupName, location: args.location, tags: args.tags },
      { parent: this },
    );
    const storageRole = grantRole(
      `${name}-storage-key`,
      {
        scope: vault.id,
        principalId: storageIdentity.principalId,
        principalType: "ServicePrincipal",
        role: "keyVaultCryptoServiceEncryptionUser",
      },
      { parent: this },
    );
    this.vaultUri = vault.properties.apply((p) => p.vaultUri);
    this.keyName = key.name;
    this.diskEncryptionSetId = des.id;
    this.storageIdentityId = storageIdentity.id;
    this.ready = [key, des, desRole, storageRole];
    this.registerOutputs({
      vaultUri: this.vaultUri,
      diskEncryptionSetId: this.diskEncryptionSetId,
    });
  }
}
