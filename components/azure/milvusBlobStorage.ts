import * as pulumi from "@pulumi/pulumi";
import * as managedidentity from "@pulumi/azure-native/managedidentity";
import * as storage from "@pulumi/azure-native/storage";
import { AccountEncryption, hardenedAccountArgs } from "./storageAccount";
import { grantRole } from "./roles";

export interface MilvusBlobStorageArgs {
  /** Resource group of the account and identity. */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region. */
  location: pulumi.Input<string>;
  /** Globally unique account name, 3-24 lower-case alphanumerics. */
  accountName: pulumi.Input<string>;
  /** Subnet allowed through the storage firewall (the AKS node subnet). */
  allowedSubnetId: pulumi.Input<string>;
  /** The cluster's OIDC issuer URL (federated credential issuer). */
  oidcIssuerUrl: pulumi.Input<string>;
  /** Namespace of Milvus's service account. @default none */
  namespace: string;
  /** Milvus's service account name (federated credential subject). @default none */
  serviceAccountName: string;
  /** Zone-redundant storage in production, locally redundant elsewhere. @default none */
  production: boolean;
  /** Tags for every resource. @default {} */
  /** Encryption at rest (storageAccount.ts). @default Azure's default: one layer, Microsoft-managed keys */
  encryption?: AccountEncryption;
  tags?: Record<string, string>;
}

/** Account settings, as one pure function (unit-tested). */
export function milvusBlobStorageDefaults(production: boolean) {
  return {
    containerName: "milvus",
    // Milvus's segments and the Woodpecker WAL must survive a zone loss like the pods do. Backups, not
    // geo-replication, cover a region loss (the backup account is RA-GZRS).
    sku: production ? "Standard_ZRS" : "Standard_LRS",
    federationAudience: "api://AzureADTokenExchange",
  };
}

/**
 * Azure Blob Storage as Milvus's object store (`objectStore: azureBlob`): a dedicated account (not the
 * backup account) with no shared keys, a container, and a user-assigned identity federated with
 * Milvus's Kubernetes service account that holds Storage Blob Data Contributor on this account only.
 */
export class MilvusBlobStorageComponent extends pulumi.ComponentResource {
  public readonly accountName: pulumi.Output<string>;
  public readonly accountId: pulumi.Output<string>;
  public readonly containerName: pulumi.Output<string>;
  /** Client id for the service account's `azure.workload.identity/client-id` annotation. */
  public readonly identityClientId: pulumi.Output<string>;

  constructor(name: string, args: MilvusBlobStorageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:storage:MilvusBlobStorage", name, {}, opts);
    const d = milvusBlobStorageDefaults(args.production);

    const account = new storage.StorageAccount(
      `${name}-account`,
      // Milvus authenticates with workload identity (`minio.useIAM`); keys would only be a leak risk.
      hardenedAccountArgs({
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        accountName: args.accountName,
        sku: d.sku,
        allowedSubnetIds: [args.allowedSubnetId],

        encryption: args.encryption,
        tags: args.tags,
      }),
      // This account holds every vector Milvus stores: deleting it must be a deliberate change.
      { parent: this, protect: true },
    );

    const container = new storage.BlobContainer(
      `${name}-container`,
      {
        resourceGroupName: args.resourceGroupName,
        accountName: account.name,
        containerName: d.containerName,
        publicAccess: "None",
      },
      { parent: this },
    );

    const identity = new managedidentity.UserAssignedIdentity(
      `${name}-identity`,
      { resourceGroupName: args.resourceGroupName, location: args.location, tags: args.tags },
      { parent: this },
    );
    grantRole(
      `${name}-blob-contributor`,
      {
        scope: account.id,
        principalId: identity.principalId,
        principalType: "ServicePrincipal",
        role: "storageBlobDataContributor",
      },
      { parent: this },
    );
    new managedidentity.FederatedIdentityCredential(
      `${name}-federation`,
      {
        resourceGroupName: args.resourceGroupName,
        resourceName: identity.name,
        federatedIdentityCredentialResourceName: `${args.serviceAccountName}-${args.namespace}`,
        issuer: args.oidcIssuerUrl,
        subject: `system:serviceaccount:${args.namespace}:${args.serviceAccountName}`,
        audiences: [d.federationAudience],
      },
      { parent: this },
    );

    this.accountName = account.name;
    this.accountId = account.id;
    this.containerName = container.name;
    this.identityClientId = identity.clientId;
    this.registerOutputs({
      accountName: this.accountName,
      accountId: this.accountId,
      containerName: this.containerName,
      identityClientId: this.identityClientId,
    });
  }
}
