import * as pulumi from "@pulumi/pulumi";
import * as authorization from "@pulumi/azure-native/authorization";
import * as storage from "@pulumi/azure-native/storage";
import { AccountEncryption, hardenedAccountArgs } from "./storageAccount";

export interface BackupStorageArgs {
  /** Resource group of the account. */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region (the primary; RA-GZRS replicates to its Azure pair). */
  location: pulumi.Input<string>;
  /** Globally unique account name, 3-24 lower-case alphanumerics (naming.ts, globalName). */
  accountName: pulumi.Input<string>;
  /** Subnet allowed through the storage firewall (the AKS node subnet). */
  allowedSubnetId: pulumi.Input<string>;
  /**
   * More subnets allowed through the firewall: the dr stack's node subnet, so a DR cluster in the paired
   * region can read the geo-replicated secondary (its Microsoft.Storage service endpoint covers the
   * region pair). @default []
   */
  standbySubnetIds?: pulumi.Input<string[]>;
  /** Backup retention the worker's `prune` applies; drives the lifecycle rules. @default none (config) */
  retentionDays: number;
  /** Time-based immutability on the backup container; 0 disables it. @default 0 */
  immutabilityDays?: number;
  /** Container that holds the backups. @default "milvus-backups" */
  containerName?: string;
  /** Tags applied to every resource. @default {} */
  /** Encryption at rest (storageAccount.ts). @default Azure's default: one layer, Microsoft-managed keys */
  encryption?: AccountEncryption;
  tags?: Record<string, string>;
}

/**
 * Pure defaults and derived values, unit-tested on their own.
 *
 * With time-based immutability (WORM) on the container, blob versioning is off. Lifecycle management
 * does not act on blobs in an immutable container ("Lifecycle management overview": the delete action
 * "won't work with any blob in an immutable container"), and only Storage Blob Data Owner may delete
 * previous versions (`deleteBlobVersion/action`, which Storage Blob Data Contributor lacks: "Azure
 * built-in roles"). So with versioning on, every backup `prune` deleted would live on as a version
 * nothing can remove. WORM already forbids overwriting or deleting a backup while it is protected,
 * which is what versioning was for; after that, prune's deletes go to soft delete and are purged.
 * test/backupRetention.test.ts replays a year of backups against these rules.
 */
export function backupStorageDefaults(retentionDays: number, immutabilityDays = 0) {
  const worm = immutabilityDays > 0;
  return {
    containerName: "milvus-backups",
    sku: "Standard_RAGZRS",
    versioning: !worm,
    // Soft delete outlives one full retention period plus a week, so a bad prune or a mistaken
    // delete is recoverable for at least as long as the backups it removed were meant to live.
    softDeleteDays: Math.min(365, retentionDays + 7),
    // Backstop only: the worker's `prune` is the primary retention and never deletes a collection's
    // newest complete backup. This rule bounds cost if the pruning job stops; the backup-freshness
    // alert fires within a day, long before it could reach the newest backup.
    lifecycleDeleteAfterDays: retentionDays + 30,
    // Superseded versions (from overwrites or deletes) are only kept as long as the retention.
    versionDeleteAfterDays: retentionDays,
  };
}

/**
 * Hardened backup account: RA-GZRS (readable secondary for region failover), TLS 1.2, HTTPS only,
 * no public or shared-key access (the worker uses workload identity), versioning, soft delete,
 * lifecycle rules from the retention, optional time-based immutability, and a firewall that admits
 * only the node subnet.
 */
export class BackupStorageComponent extends pulumi.ComponentResource {
  public readonly accountName: pulumi.Output<string>;
  public readonly accountId: pulumi.Output<string>;
  public readonly primaryBlobEndpoint: pulumi.Output<string>;
  public readonly secondaryBlobEndpoint: pulumi.Output<string>;
  public readonly containerName: pulumi.Output<string>;
  /** Every subnet the firewall admits: the node subnet, then the standby subnets. */
  public readonly allowedSubnetIds: pulumi.Output<string[]>;

  constructor(name: string, args: BackupStorageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:storage:BackupStorage", name, {}, opts);
    const d = backupStorageDefaults(args.retentionDays, args.immutabilityDays ?? 0);
    const containerName = args.containerName ?? d.containerName;
    this.allowedSubnetIds = pulumi
      .all([args.allowedSubnetId, args.standbySubnetIds ?? []])
      .apply(([own, standby]) => [own, ...standby]);

    const account = new storage.StorageAccount(
      `${name}-account`,
      hardenedAccountArgs({
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        accountName: args.accountName,
        sku: d.sku,
        allowedSubnetIds: this.allowedSubnetIds,

        encryption: args.encryption,
        tags: args.tags,
      }),
      // Deleting the account deletes every backup: make that a deliberate two-step change.
      { parent: this, protect: true },
    );
    // `protect` guards against Pulumi; an ARM lock also guards against the portal, the CLI and other
    // tools ("Lock your resources to protect your infrastructure": CanNotDelete). Data-plane deletes
    // (prune) are not affected. Removing it is a documented step (docs/architecture.md "Backup storage account").
    new authorization.ManagementLockByScope(
      `${name}-lock`,
      {
        scope: account.id,
        lockName: "milvus-backups-do-not-delete",
        level: "CanNotDelete",
        notes: "Holds every Milvus backup of this stack; see the project's README before removing.",
      },
      { parent: this },
    );

    const blobService = new storage.BlobServiceProperties(
      `${name}-blob-service`,
      {
        resourceGroupName: args.resourceGroupName,
        accountName: account.name,
        blobServicesName: "default",
        isVersioningEnabled: d.versioning,
        deleteRetentionPolicy: { enabled: true, days: d.softDeleteDays },
        containerDeleteRetentionPolicy: { enabled: true, days: d.softDeleteDays },
      },
      { parent: this },
    );

    const container = new storage.BlobContainer(
      `${name}-container`,
      {
        resourceGroupName: args.resourceGroupName,
        accountName: account.name,
        containerName,
        publicAccess: "None",
      },
      { parent: this, dependsOn: [blobService] },
    );

    if ((args.immutabilityDays ?? 0) > 0) {
      // Left unlocked: locking is irreversible, so it is an operator decision (see README). azure-native
      // cannot delete this policy (412 "incorrect etag": pulumi-azure-native#2156) and ARM refuses to
      // shorten a locked one, so Pulumi creates it once and never updates or deletes it: changes go
      // through the `az storage container immutability-policy` steps in docs/architecture.md "Backup storage account".
      new storage.BlobContainerImmutabilityPolicy(
        `${name}-immutability`,
        {
          resourceGroupName: args.resourceGroupName,
          accountName: account.name,
          containerName: container.name,
          immutabilityPolicyName: "default",
          immutabilityPeriodSinceCreationInDays: args.immutabilityDays,
          allowProtectedAppendWrites: false,
        },
        {
          parent: this,
          retainOnDelete: true,
          ignoreChanges: ["immutabilityPeriodSinceCreationInDays", "allowProtectedAppendWrites"],
        },
      );
    }

    new storage.ManagementPolicy(
      `${name}-lifecycle`,
      {
        resourceGroupName: args.resourceGroupName,
        accountName: account.name,
        managementPolicyName: "default",
        policy: {
          rules: [
            {
              name: "backup-retention-backstop",
              enabled: true,
              type: "Lifecycle",
              definition: {
                filters: { blobTypes: ["blockBlob"], prefixMatch: [`${containerName}/`] },
                actions: {
                  baseBlob: { delete: { daysAfterModificationGreaterThan: d.lifecycleDeleteAfterDays } },
                  ...(d.versioning
                    ? { version: { delete: { daysAfterCreationGreaterThan: d.versionDeleteAfterDays } } }
                    : {}),
                },
              },
            },
          ],
        },
      },
      { parent: this, dependsOn: [blobService] },
    );

    this.accountName = account.name;
    this.accountId = account.id;
    this.primaryBlobEndpoint = account.primaryEndpoints.apply((e) => e.blob);
    this.secondaryBlobEndpoint = account.secondaryEndpoints.apply((e) => e.blob);
    this.containerName = container.name;
    this.registerOutputs({
      accountName: this.accountName,
      accountId: this.accountId,
      primaryBlobEndpoint: this.primaryBlobEndpoint,
      secondaryBlobEndpoint: this.secondaryBlobEndpoint,
      containerName: this.containerName,
      allowedSubnetIds: this.allowedSubnetIds,
    });
  }
}
