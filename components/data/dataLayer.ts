import * as pulumi from "@pulumi/pulumi";
import { StackConfig } from "../common/config";
import { EtcdComponent } from "./etcd";
import { MilvusComponent, MilvusObjectStoreArgs, milvusDefaults } from "./milvus";
import { MilvusBlobStorageComponent } from "../azure/milvusBlobStorage";
import { MilvusCertificatesComponent } from "./milvusCertificates";
import { AccountEncryption } from "../azure/storageAccount";
import { MinioComponent } from "./minio";
import { DATA_NAMESPACE, globalNameOutput, MILVUS_ROLES } from "../common/naming";
import { DataNamespaceComponent } from "./namespaces";
import { DataNetworkPoliciesComponent } from "./networkPolicies";
import { StorageClassesComponent } from "./storageClasses";

export interface DataLayerArgs {
  /** The validated stack configuration. @default none */
  config: StackConfig;
  /** Resource group for Azure resources of the data layer (the Azure Blob object store). @default none */
  resourceGroupName: pulumi.Input<string>;
  /** AKS node subnet, allowed through the Milvus storage account firewall. @default none */
  nodeSubnetId: pulumi.Input<string>;
  /** The cluster's OIDC issuer URL, for Milvus's workload identity. @default none */
  oidcIssuerUrl: pulumi.Input<string>;
  /** Data namespace name. @default "milvus" */
  namespace?: string;
  /**
   * The cert-manager issuer of Milvus's certificates and what must exist before a Certificate is
   * created (the release and the issuer). Required when `security.tls.enabled` or `internal` is on.
   * @default none
   */
  /** Disk encryption set for the StorageClasses (customer-managed key). @default none */
  diskEncryptionSetId?: pulumi.Input<string>;
  /** Encryption of Milvus's storage account (objectStore azureBlob). @default Azure's default */
  storageEncryption?: AccountEncryption;
  certificateIssuer?: {
    issuerRef: { name: string; kind: string; group: string };
    dependsOn: pulumi.Resource[];
  };
}

/**
 * The Kubernetes data layer: namespace, StorageClasses, etcd, the object store (MinIO, or Azure Blob
 * through workload identity), Milvus in the configured mode, and the namespace's NetworkPolicies.
 * Create it with the AKS component's Kubernetes provider (`providers: [aks.provider]`).
 */
export class DataLayerComponent extends pulumi.ComponentResource {
  /** In-cluster Milvus gRPC address, `host:port`. */
  public readonly milvusAddress: pulumi.Output<string>;
  /** Milvus root password (a Pulumi secret). */
  public readonly milvusRootPassword: pulumi.Output<string>;
  /** The client-facing Service (an internal LoadBalancer). */
  public readonly milvusServiceName: pulumi.Output<string>;
  public readonly namespace: pulumi.Output<string>;
  /** Storage account holding Milvus's data, when `objectStore` is `azureBlob`. */
  public readonly milvusStorageAccountName: pulumi.Output<string | undefined>;
  public readonly milvusStorageAccountId: pulumi.Output<string | undefined>;

  constructor(name: string, args: DataLayerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:k8s:DataLayer", name, {}, opts);
    const cfg = args.config;
    const nsName = args.namespace ?? DATA_NAMESPACE;
    const child = { parent: this };

    const ns = new DataNamespaceComponent(
      `${name}-namespace`,
      { environment: cfg.environment, name: nsName },
      child,
    );
    const classes = new StorageClassesComponent(
      `${name}-storage`,
      { diskSku: cfg.storage.diskSku, diskEncryptionSetId: args.diskEncryptionSetId },
      child,
    );

    const etcd = new EtcdComponent(
      `${name}-etcd`,
      {
        namespace: ns.name,
        namespaceName: nsName,
        replicas: cfg.etcd.replicas,
        diskSizeGi: cfg.etcd.diskSizeGi,
        quotaBackendBytes: cfg.etcd.quotaBackendBytes,
        storageClassName: classes.retainClassName,
      },
      child,
    );

    let objectStore: MilvusObjectStoreArgs;
    // Milvus starts only once etcd and its object store are ready (and MinIO's bucket exists).
    const milvusNeeds: pulumi.Resource[] = [etcd.statefulSet];
    let storageAccountName: pulumi.Output<string | undefined> = pulumi.output(undefined);
    let storageAccountId: pulumi.Output<string | undefined> = pulumi.output(undefined);
    if (cfg.objectStore === "minio") {
      const minio = new MinioComponent(
        `${name}-minio`,
        {
          namespace: ns.name,
          namespaceName: nsName,
          replicas: cfg.minio.replicas,
          zones: cfg.zones.length,
          diskSizeGi: cfg.minio.diskSizeGi,
          image: cfg.minio.image,
          clientImage: cfg.minio.clientImage,
          storageClassName: classes.retainClassName,
        },
        child,
      );
      milvusNeeds.push(minio.statefulSet, minio.bucketJob);
      objectStore = {
        kind: "minio",
        host: minio.host,
        port: minio.port,
        bucketName: minio.bucketName,
        accessKey: minio.accessKey,
        secretKey: minio.secretKey,
      };
    } else {
      const blob = new MilvusBlobStorageComponent(
        `${name}-blob`,
        {
          resourceGroupName: args.resourceGroupName,
          location: cfg.location,
          // Storage account names are global DNS names: unique per deployer and stack (naming.ts).
          accountName: globalNameOutput("milvusdata", cfg.stack),
          allowedSubnetId: args.nodeSubnetId,
          oidcIssuerUrl: args.oidcIssuerUrl,
          namespace: nsName,
          serviceAccountName: milvusDefaults(cfg.milvus.imageTag).serviceAccountName,
          production: cfg.production,
          encryption: args.storageEncryption,
          tags: cfg.tags,
        },
        child,
      );
      // The account, its container, the identity's role and federation (a component: all its children).
      milvusNeeds.push(blob);
      objectStore = {
        kind: "azureBlob",
        accountName: blob.accountName,
        containerName: blob.containerName,
        identityClientId: blob.identityClientId,
      };
      storageAccountName = blob.accountName;
      storageAccountId = blob.accountId;
    }

    const tls = cfg.security.tls;
    if ((tls.enabled || tls.internal) && !args.certificateIssuer) {
      throw new Error("DataLayerComponent: security.tls is on but no certificateIssuer was given");
    }
    if (args.certificateIssuer && (tls.enabled || tls.internal)) {
      const certs = new MilvusCertificatesComponent(
        `${name}-certificates`,
        {
          namespace: ns.name,
          namespaceName: nsName,
          serviceName: milvusDefaults(cfg.milvus.imageTag).serviceName,
          extraDnsNames: tls.dnsNames,
          client: tls.enabled,
          internal: tls.internal,
          issuerRef: args.certificateIssuer.issuerRef,
          dependsOn: args.certificateIssuer.dependsOn,
        },
        child,
      );
      // Milvus pods mount the certificate Secrets: they start only once cert-manager has written them.
      milvusNeeds.push(...certs.certificates);
    }

    const milvus = new MilvusComponent(
      `${name}-milvus`,
      {
        namespace: ns.name,
        namespaceName: nsName,
        milvus: cfg.milvus,
        etcdEndpoints: etcd.endpoints,
        objectStore,
        retainStorageClassName: classes.retainClassName,
        dependsOn: milvusNeeds,
        tls: { client: tls.enabled, internal: tls.internal },
        accessLog: cfg.security.audit.milvusAccessLog,
      },
      child,
    );

    new DataNetworkPoliciesComponent(
      `${name}-netpol`,
      {
        namespace: ns.name,
        clientRole: cfg.milvus.mode === "standalone" ? MILVUS_ROLES.standalone : MILVUS_ROLES.proxy,
        objectStore: cfg.objectStore,
      },
      child,
    );

    this.milvusAddress = pulumi.output(milvus.address);
    this.milvusRootPassword = milvus.rootPassword;
    this.milvusServiceName = pulumi.output(milvus.serviceName);
    this.namespace = ns.name;
    this.milvusStorageAccountName = storageAccountName;
    this.milvusStorageAccountId = storageAccountId;
    this.registerOutputs({
      milvusAddress: this.milvusAddress,
      milvusRootPassword: this.milvusRootPassword,
      milvusServiceName: this.milvusServiceName,
      namespace: this.namespace,
    });
  }
}
