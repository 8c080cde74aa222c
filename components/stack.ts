import * as pulumi from "@pulumi/pulumi";
import * as resources from "@pulumi/azure-native/resources";
import { StackConfig } from "./config";
import { AksClusterComponent } from "./aksCluster";
import { BackupStorageComponent } from "./backupStorage";
import { NetworkComponent } from "./network";
import { PrimaryStackComponent } from "./primaryStack";
import { DataLayerComponent } from "./dataLayer";
import {
  DATA_NAMESPACE,
  NODE_SUBNET_NAME,
  globalNameOutput,
  stackResourceGroupName,
  stackVnetName,
} from "./naming";
import { liveSubnet } from "./network";
import { MonitoringComponent } from "./monitoring";
import { BackupWorkerComponent, backupWorkerDefaults } from "./backupWorker";

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

  const backupStorage = new BackupStorageComponent(`${name}-backup`, {
    resourceGroupName: rg.name,
    location: cfg.location,
    // Storage account names are global DNS names: unique per deployer and stack (naming.ts).
    accountName: globalNameOutput("milvusbk", cfg.stack),
    allowedSubnetId: net.nodeSubnetId,
    standbySubnetIds: standbySubnetIds(cfg, warn),
    retentionDays: cfg.backup.retentionDays,
    immutabilityDays: cfg.backup.immutabilityDays,
    tags,
  });

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
      : deployCluster(cfg, { name, tags, rg, net, backupStorage, primary });

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
}

/** AKS and everything running in it: data layer, monitoring and the backup worker. */
function deployCluster(cfg: StackConfig, { name, tags, rg, net, backupStorage, primary }: Foundation) {
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
    tags,
  });

  // [data-layer] Kubernetes data layer (etcd, object store, Milvus) is composed here.
  const dataLayer = new DataLayerComponent(
    `${name}-data`,
    {
      config: cfg,
      resourceGroupName: rg.name,
      nodeSubnetId: net.nodeSubnetId,
      oidcIssuerUrl: aks.oidcIssuerUrl,
    },
    { providers: { kubernetes: aks.provider } },
  );

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
      milvusRootPassword: dataLayer.milvusRootPassword,
      collections: cfg.backup.collections,
      schedule: cfg.backup.schedule,
      retentionDays: cfg.backup.retentionDays,
      image: cfg.backup.image,
      namespace: DATA_NAMESPACE,
      tags,
    },
    // The Secret, ServiceAccount and CronJob go into the data namespace the data layer creates.
    { providers: { kubernetes: aks.provider }, dependsOn: [dataLayer] },
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
  };
}
