import * as pulumi from "@pulumi/pulumi";

export interface PrimaryStackArgs {
  /** Fully qualified primary stack, `organization/milvus-aks/prod`. @default none: `dr.primaryStack` */
  stack: string;
}

/** The primary stack outputs a dr stack depends on; `requireOutput` fails the preview if one is missing. */
export const PRIMARY_OUTPUTS = [
  "backupAccountId",
  "backupAccountName",
  "backupSecondaryBlobEndpoint",
  "backupContainerName",
  "milvusImageTag",
  "milvusMode",
  "location",
] as const;

/**
 * Reads the primary stack's outputs for a dr stack in the paired region. Only outputs are read, never
 * the primary's resources: during a regional outage the primary's state is still readable from the
 * Pulumi backend (or from the exported copy, see `npm run stack:export`) while its Azure API is not.
 */
export class PrimaryStackComponent extends pulumi.ComponentResource {
  /** Resource id of the primary backup account (the DR worker gets read access to it). */
  public readonly backupAccountId: pulumi.Output<string>;
  public readonly backupAccountName: pulumi.Output<string>;
  /** Read-only, geo-replicated endpoint in this (paired) region: the restore source during a failover. */
  public readonly backupSecondaryBlobEndpoint: pulumi.Output<string>;
  public readonly backupContainerName: pulumi.Output<string>;
  /** The primary's Milvus image tag: a restore target should run the same version. */
  public readonly milvusImageTag: pulumi.Output<string>;
  public readonly milvusMode: pulumi.Output<string>;
  public readonly location: pulumi.Output<string>;

  constructor(name: string, args: PrimaryStackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:dr:PrimaryStack", name, {}, opts);
    const ref = new pulumi.StackReference(`${name}-ref`, { name: args.stack }, { parent: this });
    const read = (key: (typeof PRIMARY_OUTPUTS)[number]) => ref.requireOutput(key).apply((v) => String(v));
    this.backupAccountId = read("backupAccountId");
    this.backupAccountName = read("backupAccountName");
    this.backupSecondaryBlobEndpoint = read("backupSecondaryBlobEndpoint");
    this.backupContainerName = read("backupContainerName");
    this.milvusImageTag = read("milvusImageTag");
    this.milvusMode = read("milvusMode");
    this.location = read("location");
    this.registerOutputs({
      backupAccountId: this.backupAccountId,
      backupSecondaryBlobEndpoint: this.backupSecondaryBlobEndpoint,
      backupContainerName: this.backupContainerName,
    });
  }
}
