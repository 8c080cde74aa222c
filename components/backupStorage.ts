import * as pulumi from "@pulumi/pulumi";
import * as storage from "@pulumi/azure-native/storage";
import { hardenedAccountArgs } from "./storageAccount";

export interface BackupStorageArgs {
  /** Resource group of the account. */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region (the primary; RA-GZRS replicates to its Azure pair). */
  location: pulumi.Input<string>;
  /** Globally unique account name, 3-24 lower-case alphanumerics. */
  accountName: string;
  /** Subnet allowed through the storage firewall (the AKS node subnet). */
  allowedSubnetId: pulumi.Input<string>;
  /**
   * More subnets allowed through the firewall: the dr stack's node subnet, so a DR cluster in the paired
   * region can read the geo-replicated secondary (its Microsoft.Storage service endpoint covers the
   * region pair). @default []
   */
  standbySubnetIds?: string[];
  /** Backup retention the worker's `prune` applies; drives the lifecycle rules. @default none (config) */
  retentionDays: number;
  /** Time-based immutability on the backup container; 0 disables it. @default 0 */
  immutabilityDays?: number;
  /** Container that holds the backups. @default "milvus-backups" */
  containerName?: string;
  /** Tags applied to every resource. @default {} */
  tags?: Record<string, string>;
}

/** Pure defaults and derived values, unit-tested on their own. */
export function backupStorageDefaults(retentionDays: number) {
  return {
    containerName: "milvus-backups",
    sku: "Standard_RAGZRS",
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

  constructor(name: string, args: BackupStorageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:storage:BackupStorage", name, {}, opts);
    const d = backupStorageDefaults(args.retentionDays);
    const containerName = args.containerName ?? d.containerName;

    const account = new storage.StorageAccount(
      `${name}-account`,
      hardenedAccountArgs({
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        accountName: args.accountName,
        sku: d.sku,
        allowedSubnetIds: [args.allowedSubnetId, ...(args.standbySubnetIds ?? [])],
        tags: args.tags,
      }),
      // Deleting the account deletes every backup: make that a deliberate two-step change.
      { parent: this, protect: true },
    );

    const blobService = new storage.BlobServiceProperties(
      `${name}-blob-service`,
      {
        resourceGroupName: args.resourceGroupName,
        accountName: account.name,
        blobServicesName: "default",
        isVersioningEnabled: true,
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
      // Left unlocked: locking is irreversible, so it is an operator decision (see README).
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
        { parent: this },
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
                  version: { delete: { daysAfterCreationGreaterThan: d.versionDeleteAfterDays } },
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
    });
  }
}
