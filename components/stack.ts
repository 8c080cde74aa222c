import * as pulumi from "@pulumi/pulumi";
import * as resources from "@pulumi/azure-native/resources";
import { StackConfig } from "./common/config";
import { AksClusterComponent } from "./azure/aksCluster";
import { BackupStorageComponent } from "./azure/backupStorage";
import { NetworkComponent } from "./azure/network";
import { PrimaryStackComponent } from "./azure/primaryStack";
import { DataLayerComponent } from "./data/dataLayer";
import {
  DATA_NAMESPACE,
  NODE_SUBNET_NAME,
  globalNameOutput,
  stackResourceGroupName,
  stackVnetName,
} from "./common/naming";
import { liveSubnet } from "./azure/network";
import { MonitoringComponent } from "./monitoring/monitoring";
import { BackupWorkerComponent, backupWorkerDefaults } from "./backupDeployment/backupWorker";
import { TestRestoreComponent, testRestoreConfig } from "./backupDeployment/testRestore";
import * as random from "@pulumi/random";
import { AuditWorkspaceComponent } from "./azure/auditWorkspace";
import { AuditDiagnosticsComponent } from "./azure/auditDiagnostics";
import { CertManagerComponent } from "./data/certManager";
import { EncryptionKeysComponent } from "./azure/encryptionKeys";
import { encryptionAtHostReady } from "./azure/subscriptionFeatures";
import { MilvusAccessComponent, milvusAccessDefaults } from "./backupDeployment/milvusAccess";
import { AccountEncryption } from "./azure/storageAccount";
import { BACKUP_MILVUS_USER } from "./common/config";

/**
 * Subnets of the dr stack admitted through this stack's backup firewall: the ones configured, plus the
 * named dr stack's node subnet once it exists with its storage service endpoint (Azure rejects a rule
 * naming any other subnet, network.ts). Until then a warning says the failover path is still closed
 * and how to open it, so a first deploy of prod before dr succeeds and the next `up` closes the gap.
 */
function standbySubnetIds(cfg: StackConfig, warn: (message: string) => void): pulumi.Output<string[]> {
  const configured = cfg.dr.standbySubnetIds;
  const standby = cfg.dr.standbyStack;
  if (!standby) return pulumi.output(configured);
  const rg = stackResourceGroupName(standby);
  const vnet = stackVnetName(standby);
  return liveSubnet(rg, vnet, NODE_SUBNET_NAME).apply((live) => {
    if (live?.storageEndpoint) return [...new Set([...configured, live.id])];
    warn(
      `dr.standbyStack: the ${standby} stack's node subnet (${rg}/${vnet}/${NODE_SUBNET_NAME}) ` +
        (live ? "has no Microsoft.Storage service endpoint" : "does not exist yet") +
        `, so this stack's backup firewall does not admit it and a failover to ${standby} cannot read the backups. ` +
        `Run \`pulumi up --stack ${standby}\`, then \`pulumi up\` on this stack again.`,
    );
    return configured;
  });
}

/**
 * Composes the whole platform from a validated config. index.ts exports what this returns; the
 * offline renderer and the tests call it under Pulumi's mocks.
 */
export interface CreateStackOptions {
  /** Where program warnings go. @default pulumi.log.warn (shown by `pulumi preview` and `up`) */
  warn?: (message: string) => void;
}

export function createStack(cfg: StackConfig, options: CreateStackOptions = {}) {
  const warn = options.warn ?? ((m: string) => void pulumi.log.warn(m));
  const name = `milvus-${cfg.stack}`;
  const tags = cfg.tags;

  // Fixed group and VNet names (naming.ts): the primary computes its dr stack's node subnet id from them.
  const rg = new resources.ResourceGroup(`${name}-rg`, {
    resourceGroupName: stackResourceGroupName(cfg.stack),
    location: cfg.location,
    tags,
  });

  const net = new NetworkComponent(name, {
    resourceGroupName: rg.name,
    vnetName: stackVnetName(cfg.stack),
    location: cfg.location,
    vnetCidr: cfg.network.vnetCidr,
    nodeSubnetCidr: cfg.network.nodeSubnetCidr,
    endpointSubnetCidr: cfg.network.endpointSubnetCidr,
    tags,
  });

  // Opt-in customer-managed key: created first, because disks and storage accounts name it at creation.
  const keys = cfg.security.encryption.customerManagedKey
    ? new EncryptionKeysComponent(`${name}-cmk`, {
        resourceGroupName: rg.name,
        location: cfg.location,
        // Vault names are global DNS names, 3-24 characters (naming.ts).
        vaultName: globalNameOutput("milvuskv", cfg.stack),
        tags,
      })
    : undefined;
  const storageEncryption: AccountEncryption = {
    infrastructure: cfg.security.encryption.infrastructure,
    customerManagedKey: keys && {
      keyVaultUri: keys.vaultUri,
      keyName: keys.keyName,
      identityId: keys.storageIdentityId,
    },
  };
  const audit = cfg.security.audit.enabled
    ? new AuditWorkspaceComponent(`${name}-audit`, {
        resourceGroupName: rg.name,
        location: cfg.location,
        workspaceName: `${name}-logs`,
        retentionDays: cfg.security.audit.retentionDays,
        protect: cfg.production,
        tags,
      })
    : undefined;

  const backupStorage = new BackupStorageComponent(
    `${name}-backup`,
    {
      resourceGroupName: rg.name,
      location: cfg.location,
      // Storage account names are global DNS names: unique per deployer and stack (naming.ts).
      accountName: globalNameOutput("milvusbk", cfg.stack),
      allowedSubnetId: net.nodeSubnetId,
      standbySubnetIds: standbySubnetIds(cfg, warn),
      retentionDays: cfg.backup.retentionDays,
      immutabilityDays: cfg.backup.immutabilityDays,
      encryption: storageEncryption,
      tags,
    },
    keys ? { dependsOn: keys.ready } : undefined,
  );
  if (audit) {
    // Every read, write and delete of a backup blob, with the identity that made it.
    new AuditDiagnosticsComponent(`${name}-audit-backup`, {
      resourceGroupName: rg.name,
      location: cfg.location,
      workspaceId: audit.workspaceId,
      storageAccountIds: { backup: backupStorage.accountId },
      containerInsights: false,
      tags,
    });
  }

  // A dr stack restores from the primary's geo-replicated secondary; every other stack from its own account.
  const primary =
    cfg.environment === "dr"
      ? new PrimaryStackComponent(`${name}-primary`, { stack: cfg.dr.primaryStack })
      : undefined;
  const restoreSource = {
    blobEndpoint: primary ? primary.backupSecondaryBlobEndpoint : backupStorage.primaryBlobEndpoint,
    containerName: primary ? primary.backupContainerName : backupStorage.containerName,
  };

  // A cold dr standby keeps only the network (so the primary's firewall can already name its subnet)
  // and the backup account until failover sets dr.activated; everything else is warm or live.
  const cluster =
    cfg.environment === "dr" && cfg.dr.standby === "cold" && !cfg.dr.activated
      ? undefined
      : deployCluster(cfg, { name, tags, rg, net, backupStorage, primary, keys, audit, storageEncryption });

  return {
    resourceGroupName: rg.name,
    location: pulumi.output(cfg.location),
    pairedLocation: pulumi.output(cfg.dr.pairedLocation),
    vnetId: net.vnetId,
    nodeSubnetId: net.nodeSubnetId,
    // dr:failover checks the dr stack's nodeSubnetId is in this list before anything else.
    backupAllowedSubnetIds: backupStorage.allowedSubnetIds,
    backupAccountName: backupStorage.accountName,
    backupAccountId: backupStorage.accountId,
    backupPrimaryBlobEndpoint: backupStorage.primaryBlobEndpoint,
    backupSecondaryBlobEndpoint: backupStorage.secondaryBlobEndpoint,
    backupContainerName: backupStorage.containerName,
    milvusImageTag: pulumi.output(cfg.milvus.imageTag),
    milvusMode: pulumi.output(cfg.milvus.mode),
    restoreSourceBlobEndpoint: restoreSource.blobEndpoint,
    restoreSourceContainerName: restoreSource.containerName,
    primaryMilvusImageTag: primary ? primary.milvusImageTag : pulumi.output(cfg.milvus.imageTag),
    logAnalyticsWorkspaceId: audit ? audit.workspaceId : pulumi.output(""),
    logAnalyticsCustomerId: audit ? audit.customerId : pulumi.output(""),
    diskEncryptionSetId: keys ? keys.diskEncryptionSetId : pulumi.output(""),
    ...cluster,
  };
}

interface Foundation {
  name: string;
  tags: Record<string, string>;
  rg: resources.ResourceGroup;
  net: NetworkComponent;
  backupStorage: BackupStorageComponent;
  primary: PrimaryStackComponent | undefined;
  keys: EncryptionKeysComponent | undefined;
  audit: AuditWorkspaceComponent | undefined;
  storageEncryption: AccountEncryption;
}

/** AKS and everything running in it: data layer, monitoring and the backup worker. */
function deployCluster(
  cfg: StackConfig,
  { name, tags, rg, net, backupStorage, primary, keys, audit, storageEncryption }: Foundation,
) {
  const security = cfg.security;
  const aks = new AksClusterComponent(name, {
    resourceGroupName: rg.name,
    location: cfg.location,
    zones: cfg.zones,
    kubernetesVersion: cfg.kubernetesVersion,
    nodeSubnetId: net.nodeSubnetId,
    systemPool: cfg.nodePools.system,
    dataPool: cfg.nodePools.data,
    drainTimeoutMinutes: cfg.drainTimeoutMinutes,
    maintenance: cfg.maintenance,
    podCidr: cfg.network.podCidr,
    serviceCidr: cfg.network.serviceCidr,
    dnsServiceIp: cfg.network.dnsServiceIp,
    adminGroupObjectIds: cfg.adminGroupObjectIds,
    // Fails the preview, with the commands to run, while the subscription lacks the feature.
    encryptionAtHost: encryptionAtHostReady(security.encryption.atHost),
    diskEncryptionSetId: keys?.diskEncryptionSetId,
    encryptionDependsOn: keys?.ready,
    containerInsightsWorkspaceId: security.audit.containerInsights ? audit?.workspaceId : undefined,
    tags,
  });

  const tlsOn = security.tls.enabled || security.tls.internal;
  const certManager = tlsOn
    ? new CertManagerComponent(
        `${name}-cert-manager`,
        {
          chartVersion: security.tls.certManagerChartVersion,
          production: cfg.production,
          stack: cfg.stack,
          issuer: security.tls.issuer,
          caBundle: security.tls.caBundle,
        },
        { providers: { kubernetes: aks.provider } },
      )
    : undefined;

  // [data-layer] Kubernetes data layer (etcd, object store, Milvus) is composed here.
  const dataLayer = new DataLayerComponent(
    `${name}-data`,
    {
      config: cfg,
      resourceGroupName: rg.name,
      nodeSubnetId: net.nodeSubnetId,
      oidcIssuerUrl: aks.oidcIssuerUrl,
      diskEncryptionSetId: keys?.diskEncryptionSetId,
      storageEncryption,
      certificateIssuer: certManager && { issuerRef: certManager.issuerRef, dependsOn: certManager.ready },
    },
    { providers: { kubernetes: aks.provider } },
  );

  if (audit) {
    new AuditDiagnosticsComponent(`${name}-audit-cluster`, {
      resourceGroupName: rg.name,
      location: cfg.location,
      workspaceId: audit.workspaceId,
      clusterId: aks.clusterId,
      storageAccountIds:
        cfg.objectStore === "azureBlob"
          ? { milvus: dataLayer.milvusStorageAccountId.apply((id) => id ?? "") }
          : {},
      containerInsights: security.audit.containerInsights,
      tags,
    });
  }

  // [monitoring] Monitoring stack (Prometheus, Alertmanager, Grafana) is composed here.
  const backupJob = backupWorkerDefaults();
  const monitoring = new MonitoringComponent(
    `${name}-monitoring`,
    {
      chartVersion: cfg.monitoring.chartVersion,
      retentionDays: cfg.monitoring.retentionDays,
      storageGi: cfg.monitoring.storageGi,
      production: cfg.production,
      milvusMode: cfg.milvus.mode,
      minio: cfg.objectStore === "minio",
      etcdQuotaBytes: cfg.etcd.quotaBackendBytes,
      backup: {
        namespace: DATA_NAMESPACE,
        cronJobName: backupJob.name,
        schedule: cfg.backup.schedule,
        // A scheduled run may start up to startingDeadlineSeconds late and run for activeDeadlineSeconds.
        graceSeconds: backupJob.startingDeadlineSeconds + backupJob.activeDeadlineSeconds,
      },
    },
    { providers: { kubernetes: aks.provider } },
  );

  // The worker's own Milvus user (components/backupDeployment/milvusAccess.ts): generated here because the access Job
  // runs the worker's image and the worker's CronJob carries this user's token.
  const backupPassword = pulumi.secret(
    new random.RandomPassword(`${name}-milvus-backup-password`, { length: 32, special: false }).result,
  );
  const caCertificate = security.tls.enabled ? certManager?.caCertificate : undefined;
  // The worker backs up to this stack's own account; on a dr stack it may also read the primary's.
  const worker = new BackupWorkerComponent(
    `${name}-backup-worker`,
    {
      resourceGroupName: rg.name,
      location: cfg.location,
      // Registry names are global, alphanumeric, 5-50 characters.
      registryName: globalNameOutput("milvusacr", cfg.stack, 50),
      kubeletObjectId: aks.kubeletObjectId,
      oidcIssuerUrl: aks.oidcIssuerUrl,
      backupAccountId: backupStorage.accountId,
      backupBlobEndpoint: backupStorage.primaryBlobEndpoint,
      backupContainerName: backupStorage.containerName,
      restoreSourceAccountId: primary?.backupAccountId,
      milvusAddress: dataLayer.milvusAddress,
      milvusToken: pulumi.secret(pulumi.interpolate`${BACKUP_MILVUS_USER}:${backupPassword}`),
      milvusCaConfigMapName: caCertificate ? milvusAccessDefaults().caConfigMapName : undefined,
      collections: cfg.backup.collections,
      databases: cfg.backup.databases,
      schedule: cfg.backup.schedule,
      retentionDays: cfg.backup.retentionDays,
      image: cfg.backup.image,
      namespace: DATA_NAMESPACE,
      tags,
    },
    // The Secret, ServiceAccount and CronJob go into the data namespace the data layer creates.
    { providers: { kubernetes: aks.provider }, dependsOn: [dataLayer] },
  );

  // The dr stack proves every week that the primary's backups restore here, and how long that takes.
  if (cfg.environment === "dr" && primary) {
    new TestRestoreComponent(
      `${name}-test-restore`,
      {
        image: worker.image,
        milvusAddress: dataLayer.milvusAddress,
        sourceBlobEndpoint: primary.backupSecondaryBlobEndpoint,
        sourceContainerName: primary.backupContainerName,
        milvusCaConfigMapName: caCertificate ? milvusAccessDefaults().caConfigMapName : undefined,
        config: testRestoreConfig(cfg.backup),
        namespace: DATA_NAMESPACE,
      },
      // Uses the worker's ServiceAccount and credentials Secret.
      { providers: { kubernetes: aks.provider }, dependsOn: [worker] },
    );
  }

  // Users and roles, applied by a Job with the root account once Milvus is up; root is used for
  // nothing else (the policy pack checks it).
  const access = new MilvusAccessComponent(
    `${name}-access`,
    {
      access: cfg.access,
      namespace: dataLayer.namespace,
      milvusAddress: dataLayer.milvusAddress,
      milvusRootPassword: dataLayer.milvusRootPassword,
      backupPassword,
      image: worker.image,
      caCertificate,
      dependsOn: [dataLayer],
    },
    { providers: { kubernetes: aks.provider } },
  );

  return {
    clusterName: aks.clusterName,
    oidcIssuerUrl: aks.oidcIssuerUrl,
    milvusAddress: dataLayer.milvusAddress,
    milvusRootPassword: dataLayer.milvusRootPassword,
    backupRegistryLoginServer: worker.registryLoginServer,
    backupRegistryName: worker.registryName,
    // Empty unless objectStore is azureBlob.
    milvusStorageAccountName: dataLayer.milvusStorageAccountName.apply((n) => n ?? ""),
    backupWorkerImage: worker.image,
    backupWorkerIdentityClientId: worker.identityClientId,
    milvusServiceName: dataLayer.milvusServiceName,
    milvusNamespace: dataLayer.namespace,
    grafanaService: pulumi.output(`${monitoring.namespace}/${monitoring.grafanaServiceName}`),
    grafanaAdminPassword: monitoring.grafanaAdminPassword,
    // Applications trust this CA to reach Milvus over TLS ("" when client TLS is off).
    milvusCaCertificate: caCertificate ?? pulumi.output(""),
    milvusUserSecrets: pulumi.output(access.userSecrets),
    milvusAccessJobName: access.job.metadata.name,
  };
}
