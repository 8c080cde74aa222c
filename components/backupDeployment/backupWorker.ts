import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { POD_DEFAULTS, restrictedContainerSecurity } from "../data/podSpec";
import * as containerregistry from "@pulumi/azure-native/containerregistry";
import * as managedidentity from "@pulumi/azure-native/managedidentity";
import { WorkerImage } from "../common/config";
import {
  APP,
  appLabels,
  DATA_NAMESPACE,
  DATA_POOL_LABEL,
  DATA_POOL_VALUE,
  MILVUS_GRPC_PORT,
} from "../common/naming";
import { grantRole } from "../azure/roles";

export interface BackupWorkerArgs {
  /** Resource group for the registry and the worker identity. */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region. */
  location: pulumi.Input<string>;
  /** Globally unique registry name (5-50 alphanumerics). */
  registryName: pulumi.Input<string>;
  /** Object id of the AKS kubelet identity, granted AcrPull on the registry. */
  kubeletObjectId: pulumi.Input<string>;
  /** The cluster's OIDC issuer URL (federated credential issuer). */
  oidcIssuerUrl: pulumi.Input<string>;
  /** Resource id of the backup storage account: the only scope the worker's identity gets. */
  backupAccountId: pulumi.Input<string>;
  /** Blob endpoint of the backup account, e.g. https://acct.blob.core.windows.net/. */
  backupBlobEndpoint: pulumi.Input<string>;
  /** Container holding the backups. */
  backupContainerName: pulumi.Input<string>;
  /**
   * Another backup account the worker may read (never write): on a dr stack, the primary's account,
   * whose geo-replicated secondary endpoint the restore Job reads from. @default none
   */
  restoreSourceAccountId?: pulumi.Input<string>;
  /** Milvus gRPC address reachable in-cluster, host:port. */
  milvusAddress: pulumi.Input<string>;
  /**
   * The worker's own `user:password` token (a Pulumi secret, components/backupDeployment/milvusAccess.ts); it receives it
   * as `MILVUS_TOKEN` from a Secret. Never root's: root belongs to the access Job alone.
   */
  milvusToken: pulumi.Input<string>;
  /**
   * ConfigMap (in the worker's namespace) with the CA bundle `ca.crt` Milvus's certificate chains to;
   * the worker verifies Milvus against it. Empty: Milvus serves plaintext, and the worker says so.
   * @default ""
   */
  milvusCaConfigMapName?: string;
  /** Collections to back up on schedule. @default none: taken from `backup.collections` */
  collections: string[];
  /** Databases to back up on schedule (`["*"]`: every database). @default []: `collections` of "default" */
  databases?: string[];
  /** Cron schedule (UTC). @default none: `backup.schedule`, itself defaulting to "0 2 * * *" */
  schedule: string;
  /** Retention applied by `prune` after each backup. @default none: `backup.retentionDays` (30) */
  retentionDays: number;
  /** Worker image; an empty registry means the registry created here. @default none: `backup.image` */
  image: WorkerImage;
  /** Namespace of the worker (Milvus's namespace, inside its NetworkPolicy boundary). @default "milvus" */
  namespace?: string;
  /** Tags for Azure resources. @default {} */
  tags?: Record<string, string>;
}

/** The Kubernetes names and limits the worker uses, as one pure function (unit-tested). */
export function backupWorkerDefaults() {
  return {
    name: "milvus-backup",
    serviceAccountName: "milvus-backup",
    credentialsSecretName: "milvus-backup-credentials",
    // A backup must never overlap the next one (two snapshots racing on the same blobs) or a restore.
    concurrencyPolicy: "Forbid",
    backoffLimit: 2,
    // Six hours covers a full backup of a large collection; a hung job is killed before the next run.
    activeDeadlineSeconds: 6 * 3600,
    // A run missed by more than an hour (controller down) is skipped rather than run late at peak time.
    startingDeadlineSeconds: 3600,
    successfulJobsHistoryLimit: 3,
    failedJobsHistoryLimit: 5,
    ttlSecondsAfterFinished: 7 * 24 * 3600,
    resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { cpu: "2", memory: "2Gi" } },
    runAsUser: 10001,
    keepLast: 3,
  };
}

/** Renders a pinned image reference; a digest wins over a tag. */
export function imageReference(image: WorkerImage, defaultRegistry: string): string {
  const registry = image.registry || defaultRegistry;
  return image.digest
    ? `${registry}/${image.repository}@${image.digest}`
    : `${registry}/${image.repository}:${image.tag}`;
}

/** Federated credential subject for a Kubernetes service account. */
export function serviceAccountSubject(namespace: string, serviceAccount: string): string {
  return `system:serviceaccount:${namespace}:${serviceAccount}`;
}

/**
 * Arguments of the scheduled backup and RBAC backup (init containers, in that order) and prune (main
 * container) steps. `databases`
 * (backup.databases) names databases for the worker's --database, or is ["*"] for --all-databases.
 */
export function scheduledCommands(
  collections: string[],
  retentionDays: number,
  keepLast: number,
  databases: string[] = [],
) {
  const all = databases.length === 1 && databases[0] === "*";
  return {
    backup: all
      ? ["backup", "--all-databases"]
      : [
          "backup",
          ...databases.flatMap((d) => ["--database", d]),
          ...collections.flatMap((c) => ["--collection", c]),
        ],
    rbac: ["backup-rbac"],
    prune: ["prune", "--retention-days", String(retentionDays), "--keep-last", String(keepLast)],
  };
}

/**
 * Deploys the backup/restore worker: a registry for its image, a keyless identity (workload identity
 * with Storage Blob Data Contributor on the backup account only), a CronJob that backs up and then
 * prunes, and a NetworkPolicy that lets it reach only Milvus, DNS and Azure over HTTPS.
 * The restore Job (`npm run restore-job`) is built from this CronJob's pod template.
 */
/** Where the worker's pods mount the Milvus CA bundle. */
export const WORKER_CA_DIR = "/etc/milvus-ca";

/** Pod grace period of backup and restore Jobs, seconds (see the CronJob's pod spec). */
export const WORKER_GRACE_SECONDS = 180;

export class BackupWorkerComponent extends pulumi.ComponentResource {
  public readonly registryLoginServer: pulumi.Output<string>;
  /** The registry's global name (naming.ts, globalName). */
  public readonly registryName: pulumi.Output<string>;
  public readonly image: pulumi.Output<string>;
  public readonly identityClientId: pulumi.Output<string>;
  public readonly cronJobName: string;
  public readonly namespace: string;

  constructor(name: string, args: BackupWorkerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:backup:BackupWorker", name, {}, opts);
    const d = backupWorkerDefaults();
    const namespace = args.namespace ?? DATA_NAMESPACE;
    const labels = appLabels(APP.backup, "worker");
    const azureOpts = { parent: this };

    const registry = new containerregistry.Registry(
      `${name}-acr`,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        registryName: args.registryName,
        // Premium for zone redundancy: image pulls must survive a zone loss like the workloads do.
        sku: { name: "Premium" },
        zoneRedundancy: "Enabled",
        adminUserEnabled: false,
        anonymousPullEnabled: false,
        tags: args.tags,
      },
      azureOpts,
    );
    grantRole(
      `${name}-acr-pull`,
      {
        scope: registry.id,
        principalId: args.kubeletObjectId,
        principalType: "ServicePrincipal",
        role: "acrPull",
      },
      azureOpts,
    );

    const identity = new managedidentity.UserAssignedIdentity(
      `${name}-identity`,
      { resourceGroupName: args.resourceGroupName, location: args.location, tags: args.tags },
      azureOpts,
    );
    grantRole(
      `${name}-blob-contributor`,
      {
        scope: args.backupAccountId,
        principalId: identity.principalId,
        principalType: "ServicePrincipal",
        role: "storageBlobDataContributor",
      },
      azureOpts,
    );
    if (args.restoreSourceAccountId !== undefined) {
      // Reader, not Contributor: a failover must never be able to delete or overwrite the primary's backups.
      grantRole(
        `${name}-restore-source-reader`,
        {
          scope: args.restoreSourceAccountId,
          principalId: identity.principalId,
          principalType: "ServicePrincipal",
          role: "storageBlobDataReader",
        },
        azureOpts,
      );
    }
    new managedidentity.FederatedIdentityCredential(
      `${name}-federation`,
      {
        resourceGroupName: args.resourceGroupName,
        resourceName: identity.name,
        federatedIdentityCredentialResourceName: `${d.serviceAccountName}-${namespace}`,
        issuer: args.oidcIssuerUrl,
        subject: serviceAccountSubject(namespace, d.serviceAccountName),
        audiences: ["api://AzureADTokenExchange"],
      },
      azureOpts,
    );

    const serviceAccount = new k8s.core.v1.ServiceAccount(
      `${name}-sa`,
      {
        metadata: {
          name: d.serviceAccountName,
          namespace,
          labels,
          annotations: { "azure.workload.identity/client-id": identity.clientId },
        },
        // The worker talks to Azure with a projected federated token, not the Kubernetes API.
        automountServiceAccountToken: false,
      },
      { parent: this },
    );

    const credentials = new k8s.core.v1.Secret(
      `${name}-credentials`,
      {
        metadata: { name: d.credentialsSecretName, namespace, labels },
        type: "Opaque",
        stringData: { MILVUS_TOKEN: pulumi.secret(args.milvusToken) },
      },
      { parent: this },
    );

    const image = registry.loginServer.apply((server) => imageReference(args.image, server));
    const commands = scheduledCommands(args.collections, args.retentionDays, d.keepLast, args.databases);
    const env = [
      { name: "MILVUS_ADDRESS", value: args.milvusAddress },
      { name: "BACKUP_CONTAINER", value: args.backupContainerName },
      { name: "AZURE_STORAGE_ACCOUNT_URL", value: args.backupBlobEndpoint },
      {
        name: "MILVUS_TOKEN",
        valueFrom: { secretKeyRef: { name: credentials.metadata.name, key: "MILVUS_TOKEN" } },
      },
      ...(args.milvusCaConfigMapName ? [{ name: "MILVUS_CA_FILE", value: `${WORKER_CA_DIR}/ca.crt` }] : []),
    ];
    const container = (containerName: string, argv: string[]) => ({
      name: containerName,
      image,
      imagePullPolicy: "IfNotPresent",
      args: argv,
      env,
      resources: d.resources,
      securityContext: restrictedContainerSecurity(d.runAsUser),
      volumeMounts: [
        { name: "tmp", mountPath: "/tmp" },
        ...(args.milvusCaConfigMapName
          ? [{ name: "milvus-ca", mountPath: WORKER_CA_DIR, readOnly: true }]
          : []),
      ],
    });

    this.cronJobName = d.name;
    new k8s.batch.v1.CronJob(
      `${name}-cronjob`,
      {
        metadata: { name: d.name, namespace, labels },
        spec: {
          schedule: args.schedule,
          timeZone: "Etc/UTC",
          concurrencyPolicy: d.concurrencyPolicy,
          startingDeadlineSeconds: d.startingDeadlineSeconds,
          successfulJobsHistoryLimit: d.successfulJobsHistoryLimit,
          failedJobsHistoryLimit: d.failedJobsHistoryLimit,
          jobTemplate: {
            metadata: { labels },
            spec: {
              backoffLimit: d.backoffLimit,
              activeDeadlineSeconds: d.activeDeadlineSeconds,
              ttlSecondsAfterFinished: d.ttlSecondsAfterFinished,
              template: {
                metadata: { labels: { ...labels, "azure.workload.identity/use": "true" } },
                spec: {
                  serviceAccountName: serviceAccount.metadata.name,
                  restartPolicy: "Never",
                  ...POD_DEFAULTS,
                  // On SIGTERM the worker stops after the current batch and drops what it created (or
                  // leaves no manifest); a batch, its insert retries (at most about 15 s of backoff) and
                  // the cleanup fit in 3 minutes, Kubernetes' default 30 s would cut them short.
                  terminationGracePeriodSeconds: WORKER_GRACE_SECONDS,
                  nodeSelector: { [DATA_POOL_LABEL]: DATA_POOL_VALUE },
                  securityContext: {
                    runAsNonRoot: true,
                    fsGroup: d.runAsUser,
                    seccompProfile: { type: "RuntimeDefault" },
                  },
                  // Init containers run one at a time, in order, each only after the previous one succeeded
                  // (Kubernetes docs, "Init Containers"): the users and roles are saved after the
                  // collections, and prune (which also keeps RBAC backups by the same retention) runs only
                  // after both succeeded: never trim retention on a failed night. backup-rbac runs on every
                  // stack: authorization is always on (components/data/milvusConfig.ts sets
                  // common.security.authorizationEnabled: true, with no setting to turn it off), and the
                  // worker's user has the built-in admin role (milvusAccess.ts accessDeclaration), which
                  // may read users, roles and grants (test/rbac.test.ts: backup-rbac as an admin user on
                  // Milvus 2.3.5).
                  initContainers: [
                    container("backup", commands.backup),
                    container("backup-rbac", commands.rbac),
                  ],
                  containers: [container("prune", commands.prune)],
                  volumes: [
                    { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
                    ...(args.milvusCaConfigMapName
                      ? [{ name: "milvus-ca", configMap: { name: args.milvusCaConfigMapName } }]
                      : []),
                  ],
                },
              },
            },
          },
        },
      },
      { parent: this },
    );

    new k8s.networking.v1.NetworkPolicy(
      `${name}-egress`,
      {
        metadata: { name: `${d.name}-egress`, namespace, labels },
        spec: {
          podSelector: { matchLabels: { "app.kubernetes.io/name": APP.backup } },
          policyTypes: ["Ingress", "Egress"],
          ingress: [],
          egress: [
            {
              to: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": APP.milvus } } }],
              ports: [{ protocol: "TCP", port: MILVUS_GRPC_PORT }],
            },
            {
              to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } } }],
              ports: [
                { protocol: "UDP", port: 53 },
                { protocol: "TCP", port: 53 },
              ],
            },
            {
              // Blob storage and Entra ID have no fixed addresses a NetworkPolicy could name, so allow
              // HTTPS to public addresses only: the worker still cannot reach anything else in the VNet.
              to: [
                {
                  ipBlock: {
                    cidr: "0.0.0.0/0",
                    except: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"],
                  },
                },
              ],
              ports: [{ protocol: "TCP", port: 443 }],
            },
          ],
        },
      },
      { parent: this },
    );

    this.namespace = namespace;
    this.registryLoginServer = registry.loginServer;
    this.registryName = registry.name;
    this.image = image;
    this.identityClientId = identity.clientId;
    this.registerOutputs({
      registryLoginServer: this.registryLoginServer,
      image: this.image,
      identityClientId: this.identityClientId,
    });
  }
}
