import * as pulumi from "@pulumi/pulumi";
import Decimal from "decimal.js";
import * as ipaddr from "ipaddr.js";
import { checkCron, cronProblem, cronRuns } from "../../backup/schedule";
import {
  CONFIG_NAMESPACE,
  K8S_VERSION,
  MILVUS_NAME,
  REGION,
  schemaProblems,
  setHint,
  setPathHint,
  stackConfigSchema,
} from "./configSchema";
import { erasureQuorum, zoneSafeParity } from "../data/erasure";

/**
 * The one place where stack configuration is read and validated. Every other module receives the
 * typed {@link StackConfig}; none of them reads `pulumi.Config` itself, so a stack file is checked
 * completely before a single resource is declared.
 */

export type Environment = "dev" | "staging" | "prod" | "dr";
export type MilvusMode = "standalone" | "cluster";
export type ObjectStore = "minio" | "azureBlob";
export type DiskSku = "Premium_LRS" | "Premium_ZRS" | "PremiumV2_LRS";

export const ENVIRONMENTS: readonly Environment[] = ["dev", "staging", "prod", "dr"];
export const MILVUS_MODES: readonly MilvusMode[] = ["standalone", "cluster"];
export const OBJECT_STORES: readonly ObjectStore[] = ["minio", "azureBlob"];
export const DISK_SKUS: readonly DiskSku[] = ["Premium_LRS", "Premium_ZRS", "PremiumV2_LRS"];
export const WEEKDAYS = [
  "Sunday",
  "Monday",
  "Tuesday",
  "Wednesday",
  "Thursday",
  "Friday",
  "Saturday",
] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** Autoscaled node pool shape. */
export interface NodePoolConfig {
  /** Azure VM size, e.g. `Standard_D8ds_v5`. Must have a local temp/cache disk for ephemeral OS disks. */
  vmSize: string;
  /** Cluster-autoscaler lower bound, per pool (and so per zone for the zonal user pools). */
  minCount: number;
  /** Cluster-autoscaler upper bound. */
  maxCount: number;
  /** Ephemeral OS disk size in GiB; must fit the VM size's cache or temp disk. */
  osDiskSizeGB: number;
}

/** CPU/memory for one container, in Kubernetes quantity syntax. */
export interface Resources {
  cpu: string;
  memory: string;
}

/** One Milvus role's sizing. */
export interface RoleSizing {
  replicas: number;
  requests: Resources;
  limits: Resources;
}

export interface MilvusConfig {
  mode: MilvusMode;
  /** `milvusdb/milvus` image tag, pinned (never `latest`). */
  imageTag: string;
  /** Standalone pod sizing (standalone mode only). */
  standalone: RoleSizing & { diskSizeGi: number };
  /** Cluster role sizing (cluster mode only). */
  mixCoord: RoleSizing;
  proxy: RoleSizing & { maxReplicas: number };
  queryNode: RoleSizing & { maxReplicas: number; diskSizeGi: number };
  dataNode: RoleSizing;
  streamingNode: RoleSizing & { diskSizeGi: number };
}

export interface EtcdConfig {
  replicas: number;
  diskSizeGi: number;
  /** Backend quota in bytes: 4 GiB, milvus-operator's in-cluster etcd default (ETCD_QUOTA_BACKEND_BYTES). */
  quotaBackendBytes: number;
}

export interface MinioConfig {
  replicas: number;
  diskSizeGi: number;
  /**
   * MinIO server image, pinned to a frozen release (>= RELEASE.2024-12-18 for Woodpecker). MinIO stopped
   * publishing community images, so point this at a copy in your own registry.
   */
  image: string;
  /** MinIO client (`mc`) image for the bucket-creation Job, pinned likewise. */
  clientImage: string;
}

/** kube-prometheus-stack settings (components/monitoring/monitoring.ts). */
export interface MonitoringConfig {
  /** Pinned kube-prometheus-stack chart version (exact semver, never a range). */
  chartVersion: string;
  /** Prometheus retention in days. */
  retentionDays: number;
  /** Prometheus volume per replica, GiB (Premium SSD). */
  storageGi: number;
}

export interface BackupConfig {
  /** Cron expression (UTC) for the scheduled backup CronJob. */
  schedule: string;
  retentionDays: number;
  /** Time-based immutability on the backup container, in days; 0 disables it. */
  immutabilityDays: number;
  /** Collections the scheduled job backs up. */
  collections: string[];
  /** Databases the scheduled job backs up (`["*"]`: all); empty: `collections` of "default". */
  databases: string[];
  /** Worker image; `registry` empty means the registry this stack creates. */
  image: WorkerImage;
}

/** A pinned container image reference: a tag other than `latest`, or a digest (which wins). */
export interface WorkerImage {
  registry: string;
  repository: string;
  tag: string;
  digest: string;
}

export interface MaintenanceConfig {
  /** Day of the weekly window for Kubernetes and node-image upgrades. */
  day: Weekday;
  /** Start hour (UTC, 0-23). */
  startHourUtc: number;
  /** Window length in hours (AKS requires at least 4). */
  durationHours: number;
}

export interface NetworkConfig {
  vnetCidr: string;
  nodeSubnetCidr: string;
  endpointSubnetCidr: string;
  podCidr: string;
  serviceCidr: string;
  dnsServiceIp: string;
}

/** Disaster-recovery pairing. */
export interface DrConfig {
  /** The paired Azure region: RA-GZRS replicates the backup account there. */
  pairedLocation: string;
  /**
   * Fully qualified primary stack (`org/milvus-aks/prod`) a `dr` stack restores from; empty elsewhere.
   * The dr stack reads its outputs through a StackReference.
   */
  primaryStack: string;
  /** `warm`: the dr stack stays up, scaled down, and is scaled up at failover; `cold`: `pulumi up` at failover. */
  standby: "warm" | "cold";
  /**
   * Failover has started: a cold standby deploys its cluster. `npm run dr:failover` sets it; a warm
   * standby is deployed either way.
   */
  activated: boolean;
  /**
   * Subnets (resource ids) of the dr stack's nodes, allowed through this stack's backup-account firewall
   * so a DR cluster can read the geo-replicated secondary during a regional outage, when this stack
   * can no longer be changed.
   */
  standbySubnetIds: string[];
  /**
   * On a primary: the name of its dr stack in the same subscription (e.g. `dr`). Its node subnet has a
   * fixed resource id (naming.ts), which this stack admits through its backup firewall as soon as that
   * subnet exists. Empty: no dr stack in this subscription (name it in `standbySubnetIds` instead).
   */
  standbyStack: string;
}

/** Where the Milvus server certificates come from (components/data/certManager.ts). */
export interface TlsIssuer {
  /** `ClusterIssuer` or `Issuer` (an Issuer must live in the data namespace). */
  kind: "ClusterIssuer" | "Issuer";
  /** Empty: the stack's own in-cluster CA ClusterIssuer. */
  name: string;
}

export interface TlsConfig {
  /** Clients reach the Milvus proxy over TLS (`common.security.tlsMode: 1`). */
  enabled: boolean;
  /** Milvus components call each other over TLS (`internaltls.*`, Milvus 2.5.0 and later). */
  internal: boolean;
  /** Exact cert-manager Helm chart version (charts.jetstack.io). */
  certManagerChartVersion: string;
  issuer: TlsIssuer;
  /** PEM CA bundle of a user-supplied issuer (public data), published as the `milvusCaCertificate` output. */
  caBundle: string;
  /** Extra DNS names on the client certificate, e.g. a private DNS name for the internal load balancer. */
  dnsNames: string[];
}

export interface AuditConfig {
  /** A Log Analytics workspace receives the AKS audit log and the backup account's blob logs. */
  enabled: boolean;
  /** Workspace retention, days (Log Analytics allows 30-730 on the PerGB2018 tier). */
  retentionDays: number;
  /** Container Insights (Azure Monitor agent) collects container logs into the workspace. */
  containerInsights: boolean;
  /** Milvus proxy access log (one line per request, with the user), on the proxy's stdout. */
  milvusAccessLog: boolean;
}

export interface EncryptionConfig {
  /** Encryption at host on every node pool (temp disks, caches, ephemeral OS disks). */
  atHost: boolean;
  /** Infrastructure (double) encryption on the storage accounts; fixed when an account is created. */
  infrastructure: boolean;
  /** A customer-managed key in a Key Vault for managed disks and the storage accounts. */
  customerManagedKey: boolean;
}

export interface SecurityConfig {
  tls: TlsConfig;
  audit: AuditConfig;
  encryption: EncryptionConfig;
}

export type AccessLevel = "read" | "readWrite";
export const ACCESS_LEVELS: readonly AccessLevel[] = ["read", "readWrite"];

/** A Milvus role for applications, limited to named collections of one database. */
export interface AccessRole {
  database: string;
  /** Collection names, or ["*"] for every collection of the database. */
  collections: string[];
  access: AccessLevel;
}

/** A Milvus user for one application; its password is generated and delivered as a Kubernetes Secret. */
export interface AccessUser {
  roles: string[];
  /** Namespace of the user's Secret (`milvus-user-<name>`): the data namespace, or one that already exists. */
  secretNamespace: string;
}

/** Milvus users and roles per stack (applied by the access Job, components/backupDeployment/milvusAccess.ts). */
export interface AccessConfig {
  roles: Record<string, AccessRole>;
  users: Record<string, AccessUser>;
}

/** The backup worker's own Milvus user: backup and restore create, fill, rename and drop collections. */
export const BACKUP_MILVUS_USER = "backup_worker";
/** Names Milvus reserves (root user; built-in admin and public roles) or this program uses itself. */
export const RESERVED_MILVUS_USERS: readonly string[] = ["root", BACKUP_MILVUS_USER];
export const BUILTIN_MILVUS_ROLES: readonly string[] = ["admin", "public"];

export interface StackConfig {
  /** Stack name (`pulumi.getStack()`), used as a name suffix. */
  stack: string;
  environment: Environment;
  /** True for prod and dr: production rules (3 zones, cluster mode...) apply. */
  production: boolean;
  location: string;
  /** Availability zones, as Azure expects them ("1", "2", "3"). */
  zones: string[];
  kubernetesVersion: string;
  nodePools: {
    system: NodePoolConfig;
    /** Per-zone user pool for Milvus, etcd and MinIO (one pool per zone). */
    data: NodePoolConfig;
  };
  /** Node drain timeout for upgrades, minutes; must exceed the longest pod grace period. */
  drainTimeoutMinutes: number;
  maintenance: MaintenanceConfig;
  network: NetworkConfig;
  /** Entra ID group object ids granted "Azure Kubernetes Service RBAC Cluster Admin". */
  adminGroupObjectIds: string[];
  storage: { diskSku: DiskSku };
  milvus: MilvusConfig;
  objectStore: ObjectStore;
  etcd: EtcdConfig;
  minio: MinioConfig;
  backup: BackupConfig;
  monitoring: MonitoringConfig;
  dr: DrConfig;
  security: SecurityConfig;
  access: AccessConfig;
  tags: Record<string, string>;
}

/**
 * Milvus graceful stop can take up to 1800 s (`common.gracefulStopTimeout` in Milvus's configs/milvus.yaml);
 * the drain timeout must be longer.
 */
export const MILVUS_TERMINATION_GRACE_SECONDS = 1800;

/**
 * Azure's documented region pairs, for regions we expect users to deploy to. A `dr.pairedLocation`
 * outside this table is still accepted when it differs from `location`, but RA-GZRS only replicates
 * to the Azure-chosen pair, so a mismatch is reported.
 * https://learn.microsoft.com/azure/reliability/cross-region-replication-azure
 */
export const AZURE_REGION_PAIRS: Readonly<Partial<Record<string, string>>> = {
  eastus: "westus",
  westus: "eastus",
  eastus2: "centralus",
  centralus: "eastus2",
  westus2: "westcentralus",
  westus3: "eastus",
  northeurope: "westeurope",
  westeurope: "northeurope",
  uksouth: "ukwest",
  francecentral: "francesouth",
  germanywestcentral: "germanynorth",
  swedencentral: "swedensouth",
  australiaeast: "australiasoutheast",
  japaneast: "japanwest",
  southeastasia: "eastasia",
  canadacentral: "canadaeast",
};

/**
 * AKS Kubernetes release calendar: the minors AKS has shipped, when each became generally available
 * and when it reaches end of life. From "Supported Kubernetes versions in AKS", section "AKS Kubernetes
 * release calendar" (https://learn.microsoft.com/azure/aks/supported-kubernetes-versions), as of
 * {@link AKS_CALENDAR_AS_OF}. A month-only date is read as that month's last day. After end of life a
 * minor is in "platform support" until the fourth newer minor is GA, and the AKS FAQ is explicit that
 * "the creation of new clusters isn't possible during the platform support period": a stack on such a
 * minor fails at its first `pulumi up`. Update this table when AKS publishes a new row.
 */
export const AKS_CALENDAR_AS_OF = "2026-08-21";
export const AKS_KUBERNETES_VERSIONS: Readonly<Partial<Record<string, { ga: string; endOfLife: string }>>> = {
  "1.29": { ga: "2024-03-31", endOfLife: "2025-03-31" },
  "1.30": { ga: "2024-07-31", endOfLife: "2025-08-22" },
  "1.31": { ga: "2024-11-30", endOfLife: "2025-11-01" },
  "1.32": { ga: "2025-04-30", endOfLife: "2026-03-31" },
  "1.33": { ga: "2025-06-30", endOfLife: "2026-07-31" },
  "1.34": { ga: "2025-11-30", endOfLife: "2026-11-30" },
  "1.35": { ga: "2026-03-31", endOfLife: "2027-03-31" },
  "1.36": { ga: "2026-06-30", endOfLife: "2027-06-30" },
  "1.37": { ga: "2026-10-31", endOfLife: "2027-10-31" },
};
/** Days before end of life from which a stack on that minor gets a warning at every preview. */
export const KUBERNETES_EOL_WARNING_DAYS = 60;

const DAY_MS = 86_400_000;
const minorOf = (version: string) => /^(\d+\.\d+)/.exec(version)?.[1] ?? version;
/** The last millisecond of a minor's end-of-life day (the calendar gives whole days). */
const endOfLifeMs = (v: { endOfLife: string }) => Date.parse(v.endOfLife) + DAY_MS - 1;

/** The minors AKS creates clusters on at `today` (GA, not past end of life), oldest first. */
export function supportedKubernetesMinors(today: Date): string[] {
  return Object.entries(AKS_KUBERNETES_VERSIONS)
    .filter(
      ([, v]) => v !== undefined && Date.parse(v.ga) <= today.getTime() && today.getTime() <= endOfLifeMs(v),
    )
    .map(([minor]) => minor);
}

/**
 * Checks a `kubernetesVersion` against the calendar at `today`: an error past end of life (or before
 * GA, or for a minor the table does not know), a warning within {@link KUBERNETES_EOL_WARNING_DAYS}.
 */
export function checkKubernetesVersion(
  version: string,
  location: string,
  today: Date,
): { error?: { allowed: string; fix: string }; warning?: string } {
  const minor = minorOf(version);
  const entry = AKS_KUBERNETES_VERSIONS[minor];
  const supported = supportedKubernetesMinors(today);
  const pick =
    `Pick a minor AKS offers in ${location || "your region"}: \`az aks get-versions -l ${location || "<region>"} -o table\`` +
    ` (by the AKS calendar of ${AKS_CALENDAR_AS_OF}, supported on ${today.toISOString().slice(0, 10)}: ${supported.join(", ") || "none known: update AKS_KUBERNETES_VERSIONS"}).`;
  const allowed = `a Kubernetes minor AKS supports today (${supported.join(", ")})`;
  if (!entry) {
    return {
      error: {
        allowed,
        fix: `${minor} is not in the AKS release calendar this program carries (as of ${AKS_CALENDAR_AS_OF}). ${pick} If AKS now lists ${minor} as GA, add its row to AKS_KUBERNETES_VERSIONS in components/common/config.ts.`,
      },
    };
  }
  const endOfLife = endOfLifeMs(entry);
  if (today.getTime() > endOfLife) {
    return {
      error: {
        allowed,
        fix: `${minor} reached end of life on ${entry.endOfLife}; AKS creates no new clusters on it and existing ones get no fixes. ${pick} Upgrade one minor at a time (docs/operations.md "Upgrading Kubernetes".`,
      },
    };
  }
  if (today.getTime() < Date.parse(entry.ga)) {
    return {
      error: { allowed, fix: `${minor} is not generally available on AKS before ${entry.ga}. ${pick}` },
    };
  }
  const daysLeft = Math.floor((endOfLife - today.getTime()) / DAY_MS);
  if (daysLeft <= KUBERNETES_EOL_WARNING_DAYS) {
    return {
      warning: `kubernetesVersion ${version}: AKS ends support for ${minor} on ${entry.endOfLife} (${daysLeft} days from now). Plan the upgrade to a newer minor now: docs/operations.md "Upgrading Kubernetes". ${pick}`,
    };
  }
  return {};
}

/**
 * Regions where Azure Storage offers GZRS / RA-GZRS, which the backup account needs. From "Azure regions
 * that support geo-zone-redundant storage (GZRS)"
 * (https://learn.microsoft.com/azure/storage/common/redundancy-regions-gzrs). Elsewhere the account
 * create fails, so `location` is checked against this list before anything is deployed.
 */
export const GZRS_REGIONS: readonly string[] = [
  "southafricanorth",
  "australiaeast",
  "eastasia",
  "japaneast",
  "koreacentral",
  "southeastasia",
  "centralindia",
  "francecentral",
  "germanywestcentral",
  "northeurope",
  "norwayeast",
  "swedencentral",
  "switzerlandnorth",
  "uksouth",
  "westeurope",
  "uaenorth",
  "canadacentral",
  "centralus",
  "eastus",
  "eastus2",
  "southcentralus",
  "westus2",
  "westus3",
  "usgovvirginia",
  "brazilsouth",
];

/**
 * Upgrade settings the estimate below shares with components/azure/aksCluster.ts. Data pools surge one node:
 * a zonal pool's surge node lands in the zone whose disks its pods need.
 */
export const UPGRADE_SETTINGS = {
  systemPoolMaxSurgePercent: 33,
  dataPoolMaxSurgeNodes: 1,
  nodeSoakDurationInMinutes: 5,
  /**
   * Our planning figure for creating, booting and joining one surge node; AKS publishes no per-node
   * figure ("Upgrade duration varies", AKS "Upgrade options"), so this is an assumption, not a fact.
   */
  nodeProvisionMinutes: 10,
} as const;

/**
 * Worst-case minutes for AKS to upgrade every pool: pools one after another (AKS refuses concurrent
 * operations on one cluster's pools), each in batches of its surge size, each batch waiting for node
 * provisioning, a drain that may use the whole drain timeout (Milvus stops gracefully for up to 30 min)
 * and the soak time. Maintenance windows must be at least this long or an upgrade outlives its window.
 */
export function upgradeMinutesEstimate(
  pools: { system: NodePoolConfig; data: NodePoolConfig },
  zoneCount: number,
  drainTimeoutMinutes: number,
): number {
  const u = UPGRADE_SETTINGS;
  const batch = u.nodeProvisionMinutes + drainTimeoutMinutes + u.nodeSoakDurationInMinutes;
  const systemSurge = Math.max(1, Math.ceil((pools.system.maxCount * u.systemPoolMaxSurgePercent) / 100));
  const systemBatches = Math.ceil(pools.system.maxCount / systemSurge);
  const dataBatches = Math.ceil(pools.data.maxCount / u.dataPoolMaxSurgeNodes) * zoneCount;
  return (systemBatches + dataBatches) * batch;
}

/**
 * Weekly maintenance day per environment. AKS's planned-maintenance guide advises against the same
 * window for several clusters in one subscription (ARM throttling) and AKS's upgrade FAQ says to test
 * upgrades in lower environments first: dev and staging get their weekly patches days before prod,
 * and dr upgrades apart from prod so both regions are never upgrading at once.
 */
export const MAINTENANCE_DAYS: Readonly<Record<Environment, Weekday>> = {
  dev: "Monday",
  staging: "Tuesday",
  prod: "Thursday",
  dr: "Saturday",
};
/** Windows start at 04:00 UTC, two hours after the default 02:00 backup. */
export const MAINTENANCE_START_HOUR_UTC = 4;
/**
 * A scheduled backup must start at least this long before a maintenance window: node drains evict the
 * backup pod, and a 1,000,000-vector backup took 106 s here (README), so 2 h leaves room for
 * collections tens of times larger.
 */
export const BACKUP_LEAD_HOURS = 2;

const WEEK_MINUTES = 7 * 24 * 60;

/**
 * Scheduled backup starts (as "Weekday HH:MM" UTC) that fall inside the maintenance window or less
 * than {@link BACKUP_LEAD_HOURS} before it.
 */
export function backupsInMaintenance(schedule: string, m: MaintenanceConfig): string[] {
  return scheduledRuns(schedule)
    .filter((r) => r.clashes(m))
    .map((r) => r.label);
}

/**
 * The backups a maintenance window costs outright: runs on a day (UTC) whose every run clashes with the
 * window. A daily 02:00 backup inside a Sunday 01:00-05:00 window loses Sunday's backup; a six-hourly
 * schedule keeps a backup outside any window on every day, so its clashing runs only stretch the
 * recovery point that day.
 */
export function backupDaysLost(schedule: string, m: MaintenanceConfig): string[] {
  const runs = scheduledRuns(schedule);
  const lost: string[] = [];
  for (const day of WEEKDAYS) {
    const ofDay = runs.filter((r) => r.day === day);
    if (ofDay.length > 0 && ofDay.every((r) => r.clashes(m))) lost.push(...ofDay.map((r) => r.label));
  }
  return lost;
}

/** One week of runs, from the same evaluator as the worker's loop and the stale-backup alert. */
function scheduledRuns(
  schedule: string,
): { day: Weekday; label: string; clashes: (m: MaintenanceConfig) => boolean }[] {
  const checked = checkCron(schedule);
  if (!checked.ok) return [];
  const startOfWeek = Date.UTC(2026, 0, 4); // a Sunday
  const runs: ReturnType<typeof scheduledRuns> = [];
  const week = cronRuns(
    checked.cron,
    new Date(startOfWeek - 1),
    new Date(startOfWeek + WEEK_MINUTES * 60_000),
  );
  for (const d of week) {
    const minute = (d.getTime() - startOfWeek) / 60_000;
    const day = WEEKDAYS[d.getUTCDay()] ?? "Sunday";
    runs.push({
      day,
      label: `${day} ${d.toISOString().slice(11, 16)}`,
      clashes: (m) => {
        const windowStart = WEEKDAYS.indexOf(m.day) * 24 * 60 + m.startHourUtc * 60;
        const from = windowStart - BACKUP_LEAD_HOURS * 60;
        const to = windowStart + m.durationHours * 60;
        // The window may wrap past Saturday into Sunday: compare in the window's own week and the next.
        return [minute, minute + WEEK_MINUTES].some((x) => x > from && x < to);
      },
    });
  }
  return runs;
}

/** OS-disk space on a data node kept for images, system pods and the kubelet, GiB. */
export const EPHEMERAL_RESERVED_GI = 40;

/** Smallest etcd disk in production: a P10 (500 IOPS), see defaultsFor. */
export const ETCD_PRODUCTION_DISK_GI = 128;

/** Defaults that differ between a small dev stack and the production shape. */
export function defaultsFor(
  environment: Environment,
): Omit<StackConfig, "stack" | "environment" | "location" | "dr" | "access"> {
  const production = environment === "prod" || environment === "dr";
  const clusterRole = (replicas: number, cpu: string, memory: string): RoleSizing => ({
    replicas,
    requests: { cpu, memory },
    limits: { cpu, memory },
  });
  return {
    production,
    zones: production || environment === "staging" ? ["1", "2", "3"] : ["1"],
    // GA in June 2026, end of life June 2027 (AKS_KUBERNETES_VERSIONS).
    kubernetesVersion: "1.36",
    nodePools: {
      system: production
        ? { vmSize: "Standard_D4ds_v5", minCount: 3, maxCount: 5, osDiskSizeGB: 128 }
        : { vmSize: "Standard_D2ds_v5", minCount: 1, maxCount: 2, osDiskSizeGB: 64 },
      data: production
        ? { vmSize: "Standard_E16ds_v5", minCount: 2, maxCount: 6, osDiskSizeGB: 256 }
        : { vmSize: "Standard_D4ds_v5", minCount: 1, maxCount: 2, osDiskSizeGB: 128 },
    },
    // 1800 s Milvus grace period + 10 min for eviction retries and image pulls.
    drainTimeoutMinutes: 40,
    // durationHours 0 means "long enough for the pools" (upgradeMinutesEstimate), filled in by parseStackConfig.
    maintenance: {
      day: MAINTENANCE_DAYS[environment],
      startHourUtc: MAINTENANCE_START_HOUR_UTC,
      durationHours: 0,
    },
    network: {
      vnetCidr: "10.10.0.0/16",
      nodeSubnetCidr: "10.10.0.0/20",
      endpointSubnetCidr: "10.10.16.0/24",
      podCidr: "192.168.0.0/16",
      serviceCidr: "10.100.0.0/16",
      dnsServiceIp: "10.100.0.10",
    },
    adminGroupObjectIds: [],
    storage: { diskSku: "Premium_LRS" },
    milvus: {
      mode: production ? "cluster" : "standalone",
      imageTag: "v2.6.24",
      // The standalone pod size this project targets: 8Gi/2 CPU requests; requests = limits to avoid OOM kills
      // (#23262).
      standalone: { ...clusterRole(1, "2", "8Gi"), diskSizeGi: 100 },
      mixCoord: clusterRole(2, "1", "4Gi"),
      proxy: { ...clusterRole(3, "2", "4Gi"), maxReplicas: 10 },
      // Cache emptyDirs on the data nodes' OS disk: sized to fit it (parseStackConfig checks).
      queryNode: { ...clusterRole(3, "4", "32Gi"), maxReplicas: 6, diskSizeGi: production ? 100 : 50 },
      dataNode: clusterRole(2, "4", "16Gi"),
      streamingNode: { ...clusterRole(2, "2", "8Gi"), diskSizeGi: production ? 50 : 30 },
    },
    objectStore: "minio",
    // etcd wants 500 sequential IOPS under load and WAL fsync p99 under 10 ms (etcd docs "Hardware
    // recommendations", FAQ); Azure sizes Premium SSD IOPS by disk tier, rounding up: 20 GiB is a P4 with
    // 120 IOPS, 128 GiB a P10 with 500 ("Azure managed disk types").
    etcd: {
      replicas: production ? 3 : 1,
      diskSizeGi: production ? ETCD_PRODUCTION_DISK_GI : 20,
      quotaBackendBytes: 4 * 1024 ** 3,
    },
    minio: {
      // 2 pods per zone: EC:3 over 6 drives keeps write quorum (4) with any zone's 2 drives lost (erasure.ts).
      replicas: production ? 6 : 1,
      diskSizeGi: production ? 500 : 50,
      image: "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
      clientImage: "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
    },
    backup: {
      schedule: "0 2 * * *",
      retentionDays: 30,
      immutabilityDays: 0,
      collections: [],
      databases: [],
      image: { registry: "", repository: "milvus-backup", tag: "0.1.0", digest: "" },
    },
    monitoring: {
      chartVersion: "88.5.3",
      retentionDays: production ? 15 : 7,
      storageGi: production ? 100 : 20,
    },
    // Every environment gets the security controls: they cost little (Log Analytics ingestion aside,
    // docs/security.md and a dev stack that differs from prod hides problems until prod.
    security: {
      tls: {
        enabled: true,
        internal: true,
        // The newest release whose support table lists Kubernetes 1.36 (cert-manager.io "Supported
        // Releases": 1.21 supports 1.33-1.36; v1.21.1 released 2026-07-29).
        certManagerChartVersion: "v1.21.1",
        issuer: { kind: "ClusterIssuer", name: "" },
        caBundle: "",
        dnsNames: [],
      },
      audit: {
        enabled: true,
        retentionDays: production ? 365 : 30,
        containerInsights: true,
        milvusAccessLog: true,
      },
      encryption: { atHost: true, infrastructure: true, customerManagedKey: false },
    },
    tags: {},
  };
}

type Raw = Record<string, unknown>;

/** Collects every problem so a stack file is reported in one pass. */
class Problems {
  readonly errors: pulumi.InputPropertyErrorDetails[] = [];
  add(key: string, value: unknown, allowed: string, fix: string): void {
    this.errors.push(problemDetail(key, value, allowed, fix));
  }
}

/** `<key> = <value> is invalid: expected <allowed>. <fix>`, with the key as propertyPath. */
function problemDetail(
  key: string,
  value: unknown,
  allowed: string,
  fix: string,
): pulumi.InputPropertyErrorDetails {
  return { propertyPath: key, reason: `${key} = ${describe(value)} is invalid: expected ${allowed}. ${fix}` };
}

function describe(value: unknown): string {
  if (value === undefined) return "(missing)";
  return JSON.stringify(value);
}

function isObject(v: unknown): v is Raw {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A schedule a Kubernetes CronJob accepts and that runs: five fields (names such as SUN or JAN allowed)
 * or a macro such as @daily. backup/schedule.ts checks it the way the API server does (robfig/cron
 * v3.0.1) and is also what the worker's loop and the stale-backup alert evaluate it with.
 */
export function isValidCron(expr: string): boolean {
  return cronProblem(expr) === undefined;
}

/**
 * IPv4 CIDR arithmetic, with ipaddr.js (2.5.0, pinned): containment and overlap of the VNet, its
 * subnets and the pod and service ranges, and the DNS address in the service range. Only four-part
 * dotted decimals with a prefix of 0-32 are taken (not "10.1/16", leading zeros, octal or hex forms);
 * a block is identified by its network address, so "10.10.1.0/16" is 10.10.0.0/16 as before.
 */
interface Cidr {
  network: ipaddr.IPv4;
  bits: number;
}

const isIpv4Cidr = (s: string) => ipaddr.IPv4.isValidCIDRFourPartDecimal(s);
const isIpv4 = (s: string) => ipaddr.IPv4.isValidFourPartDecimal(s);

function cidrOf(cidr: string): Cidr | undefined {
  if (!isIpv4Cidr(cidr)) return undefined;
  return { network: ipaddr.IPv4.networkAddressFromCIDR(cidr), bits: ipaddr.IPv4.parseCIDR(cidr)[1] };
}

/** Every address of `inner` is in `outer`. */
const within = (inner: Cidr, outer: Cidr) =>
  inner.bits >= outer.bits && inner.network.match(outer.network, outer.bits);
/** The blocks share an address: two CIDR blocks are either nested or disjoint. */
const overlaps = (a: Cidr, b: Cidr) => within(a, b) || within(b, a);
/** `ip` (a valid address) is inside the block. */
const contains = (block: Cidr, ip: string) => ipaddr.IPv4.parse(ip).match(block.network, block.bits);

/**
 * Kubernetes resource quantities, as k8s.io/apimachinery reads them (pkg/api/resource quantity.go
 * grammar, suffix.go table): a decimal number, optionally signed and fractional ("0.5", "1.", ".5"),
 * then one suffix: decimal SI n u m k M G T P E, binary SI Ki Mi Gi Ti Pi Ei, or a decimal exponent
 * e<int>/E<int> ("1e3"; "E" alone is exa, as in suffix.go).
 *
 * The number grammar and the arithmetic are decimal.js's (10.6.0, pinned), exact, so "700m" equals
 * "0.7" (in floating point 700 * 0.001 is 0.7000000000000001, which would flag equal requests and
 * limits) and "0.5Gi" equals "512Mi". The suffixes are Kubernetes' table below. No quantity package
 * takes every form: @kubernetes/client-node 2.0.1's quantityToScalar throws on "0.5Gi" (BigInt of a
 * fraction), and the package is ESM-only with 16 dependencies; k8s-resource-parser 0.2.2 has no n or u
 * and computes in floating point; kubernetes-resource-parser 0.1.0 reads "0.5Gi" as 0.
 */
const QUANTITY_SUFFIXES: Readonly<Partial<Record<string, readonly [base: number, exponent: number]>>> = {
  Ki: [2, 10],
  Mi: [2, 20],
  Gi: [2, 30],
  Ti: [2, 40],
  Pi: [2, 50],
  Ei: [2, 60],
  n: [10, -9],
  u: [10, -6],
  m: [10, -3],
  k: [10, 3],
  M: [10, 6],
  G: [10, 9],
  T: [10, 12],
  P: [10, 15],
  E: [10, 18],
};
const SUFFIX_LIST = "n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, or an exponent such as e3";
/** Enough digits for 2^63 with nine fractional digits: nothing is ever rounded. */
const ExactDecimal = Decimal.clone({ precision: 64 });

export type QuantityCheck = { ok: true; value: Decimal } | { ok: false; reason: string };

/** The exact value of a Kubernetes quantity, or why it is not one. */
export function checkQuantity(q: string): QuantityCheck {
  const no = (reason: string): QuantityCheck => ({ ok: false, reason });
  // Binary suffixes first: "Mi" must not be read as "M" after a stray "i".
  const suffix = Object.keys(QUANTITY_SUFFIXES)
    .filter((s) => q.length > s.length && q.endsWith(s))
    .sort((a, b) => b.length - a.length)
    .at(0);
  const number = suffix === undefined ? q : q.slice(0, -suffix.length);
  // The leading sign, digits and point, and what follows them.
  const rest = q.replace(/^[0-9.+-]*/, "");
  if (!/\d/.test(q.slice(0, q.length - rest.length))) {
    return no(`${JSON.stringify(q)} does not start with a number`);
  }
  // An exponent is its own suffix: "1e3" is a quantity, "1e3k" is not (suffix.go interpret()).
  const numberOk = /^[0-9.+eE-]*$/.test(number) && !(suffix !== undefined && /[eE]/.test(number));
  let value: Decimal | undefined;
  try {
    value = numberOk ? new ExactDecimal(number) : undefined;
  } catch {
    value = undefined;
  }
  if (value === undefined || !value.isFinite()) {
    return no(
      rest !== "" && QUANTITY_SUFFIXES[rest] === undefined && !/[0-9.+-]/.test(rest)
        ? `the suffix ${JSON.stringify(rest)} of ${JSON.stringify(q)} is not one of Kubernetes' (${SUFFIX_LIST})`
        : `${JSON.stringify(q)} is not a number Kubernetes reads (digits, an optional sign and fraction, then ${SUFFIX_LIST})`,
    );
  }
  const [base, exponent] = suffix === undefined ? [10, 0] : (QUANTITY_SUFFIXES[suffix] ?? [10, 0]);
  return { ok: true, value: value.times(new ExactDecimal(base).pow(exponent)) };
}

/** Compares two valid quantities: negative, zero or positive as `a` is smaller, equal or larger. */
export function compareQuantities(a: string, b: string): number {
  const x = checkQuantity(a);
  const y = checkQuantity(b);
  if (!x.ok || !y.ok)
    throw new Error(`not Kubernetes quantities: ${JSON.stringify(a)}, ${JSON.stringify(b)}`);
  return x.value.comparedTo(y.value);
}

/**
 * Validates a stack's raw configuration (the `milvus-aks:*` keys as an object) and returns the typed
 * config. Throws one {@link pulumi.InputPropertiesError} listing every problem found.
 */
export interface ParseOptions {
  /** The date version lifecycles are judged at. @default the `MILVUS_AKS_TODAY` variable, else now */
  today?: Date;
  /** Where warnings go. @default pulumi.log.warn */
  warn?: (message: string) => void;
}

/**
 * "Today" for lifecycle checks: `MILVUS_AKS_TODAY` (YYYY-MM-DD) pins it, so renders and tests judge
 * the same calendar on any day; otherwise the clock.
 */
export function configToday(): Date {
  const pinned = process.env.MILVUS_AKS_TODAY;
  if (pinned === undefined || pinned === "") return new Date();
  const t = Date.parse(`${pinned}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(pinned) || Number.isNaN(t)) {
    throw new Error(
      `MILVUS_AKS_TODAY=${JSON.stringify(pinned)} is not a date: expected YYYY-MM-DD, or unset it`,
    );
  }
  return new Date(t);
}

export function parseStackConfig(stack: string, raw: Raw, options: ParseOptions = {}): StackConfig {
  const today = options.today ?? configToday();
  const warn = options.warn ?? ((m: string) => void pulumi.log.warn(m));
  const problems = new Problems();

  // The environment picks the defaults, so it is read first; a bad one is reported by the schema and
  // the checks go on with the dev defaults.
  const env = ENVIRONMENTS.find((e) => e === raw.environment) ?? "dev";
  const d = defaultsFor(env);
  // Shape, types, ranges, allowed values and defaults: the schema. `lenient` gives the values the
  // rules below check even where some are bad (a bad value takes its default), so one pass reports all.
  const c = stackConfigSchema(env, "lenient").parse(raw);
  const { environment, location, zones, kubernetesVersion, nodePools, drainTimeoutMinutes } = c;

  if (location && REGION.test(location) && !GZRS_REGIONS.includes(location)) {
    problems.add(
      "location",
      location,
      `a region with geo-zone-redundant storage (RA-GZRS), which the backup account needs: ${GZRS_REGIONS.join(", ")}`,
      "See https://learn.microsoft.com/azure/storage/common/redundancy-regions-gzrs; deploy to one of those regions.",
    );
  }

  const badZones = zones.filter((z) => !["1", "2", "3"].includes(z));
  if (badZones.length > 0 || zones.length === 0 || new Set(zones).size !== zones.length) {
    problems.add(
      "zones",
      zones,
      'distinct zones from "1", "2", "3" (Azure regions have at most three)',
      setHint("zones", '\'["1","2","3"]\''),
    );
  }

  if (K8S_VERSION.test(kubernetesVersion)) {
    const verdict = checkKubernetesVersion(kubernetesVersion, location, today);
    if (verdict.error) {
      problems.add("kubernetesVersion", kubernetesVersion, verdict.error.allowed, verdict.error.fix);
    }
    if (verdict.warning) warn(verdict.warning);
  }

  for (const name of ["system", "data"] as const) {
    const p = `nodePools.${name}`;
    const result = nodePools[name];
    if (result.minCount > result.maxCount) {
      problems.add(
        `${p}.minCount`,
        result.minCount,
        `a value no larger than ${p}.maxCount (${result.maxCount})`,
        `Lower ${p}.minCount or raise ${p}.maxCount.`,
      );
    }
  }

  if (drainTimeoutMinutes * 60 <= MILVUS_TERMINATION_GRACE_SECONDS) {
    problems.add(
      "drainTimeoutMinutes",
      drainTimeoutMinutes,
      `more than ${MILVUS_TERMINATION_GRACE_SECONDS / 60} minutes, Milvus's graceful-stop budget`,
      "A shorter drain would kill Milvus pods mid-shutdown during upgrades; raise it (default 40).",
    );
  }

  const upgradeMinutes = upgradeMinutesEstimate(nodePools, zones.length, drainTimeoutMinutes);
  // AKS takes windows of 4 to 24 hours (MaintenanceWindow.durationHours, API 2025-09-01).
  const neededHours = Math.max(4, Math.ceil(upgradeMinutes / 60));
  // durationHours 0: unset (or bad), so long enough for the pools.
  const maintenance: MaintenanceConfig = {
    ...c.maintenance,
    durationHours: c.maintenance.durationHours || Math.min(24, neededHours),
  };
  const upgradeShape =
    `${zones.length} data pool(s) of up to ${nodePools.data.maxCount} nodes and a system pool of up to ${nodePools.system.maxCount}, ` +
    `one surge batch at a time, each up to ${drainTimeoutMinutes} min drain + ${UPGRADE_SETTINGS.nodeSoakDurationInMinutes} min soak + ${UPGRADE_SETTINGS.nodeProvisionMinutes} min for the new node`;
  if (neededHours > 24) {
    problems.add(
      "nodePools.data.maxCount",
      nodePools.data.maxCount,
      `a pool shape AKS can upgrade inside one 24 h maintenance window (estimated ${(upgradeMinutes / 60).toFixed(1)} h: ${upgradeShape})`,
      'Lower nodePools.data.maxCount or drainTimeoutMinutes; docs/operations.md "Maintenance windows" shows the arithmetic.',
    );
  } else if (maintenance.durationHours < neededHours) {
    problems.add(
      "maintenance.durationHours",
      maintenance.durationHours,
      `at least ${neededHours} hours: an upgrade of this cluster can take ${(upgradeMinutes / 60).toFixed(1)} h (${upgradeShape})`,
      `Raise it (or unset it to get ${neededHours}), or lower nodePools.*.maxCount or drainTimeoutMinutes.`,
    );
  }

  const network: NetworkConfig = c.network;
  const ranges = {
    vnet: cidrOf(network.vnetCidr),
    node: cidrOf(network.nodeSubnetCidr),
    endpoint: cidrOf(network.endpointSubnetCidr),
    pod: cidrOf(network.podCidr),
    service: cidrOf(network.serviceCidr),
  };
  if (ranges.vnet && ranges.node && !within(ranges.node, ranges.vnet)) {
    problems.add(
      "network.nodeSubnetCidr",
      network.nodeSubnetCidr,
      `a range inside network.vnetCidr (${network.vnetCidr})`,
      "Pick a subnet of the VNet.",
    );
  }
  if (ranges.vnet && ranges.endpoint && !within(ranges.endpoint, ranges.vnet)) {
    problems.add(
      "network.endpointSubnetCidr",
      network.endpointSubnetCidr,
      `a range inside network.vnetCidr (${network.vnetCidr})`,
      "Pick a subnet of the VNet.",
    );
  }
  if (ranges.node && ranges.endpoint && overlaps(ranges.node, ranges.endpoint)) {
    problems.add(
      "network.endpointSubnetCidr",
      network.endpointSubnetCidr,
      `a range that does not overlap network.nodeSubnetCidr (${network.nodeSubnetCidr})`,
      "Move one of the subnets.",
    );
  }
  for (const key of ["pod", "service"] as const) {
    const rg = ranges[key];
    if (rg && ranges.vnet && overlaps(rg, ranges.vnet)) {
      problems.add(
        `network.${key}Cidr`,
        network[`${key}Cidr`],
        `a range outside network.vnetCidr (${network.vnetCidr})`,
        "Overlay pod and service ranges must not overlap the VNet.",
      );
    }
  }
  if (isIpv4(network.dnsServiceIp) && ranges.service && !contains(ranges.service, network.dnsServiceIp)) {
    problems.add(
      "network.dnsServiceIp",
      network.dnsServiceIp,
      `an address inside network.serviceCidr (${network.serviceCidr})`,
      "Use e.g. the .10 address of the service range.",
    );
  }

  const adminGroupObjectIds = c.adminGroupObjectIds;
  if (adminGroupObjectIds.length === 0) {
    problems.add(
      "adminGroupObjectIds",
      adminGroupObjectIds,
      "at least one Entra ID group holding the cluster admins and the identity that runs `pulumi up` (local accounts are disabled, so nobody could deploy or administer the cluster otherwise)",
      setPathHint("'adminGroupObjectIds[0]'", "<group-object-id>"),
    );
  }

  const milvus: MilvusConfig = c.milvus;
  const mode = milvus.mode;
  for (const role of ["standalone", "mixCoord", "proxy", "queryNode", "dataNode", "streamingNode"] as const) {
    const p = `milvus.${role}`;
    const s = milvus[role];
    for (const res of ["cpu", "memory"] as const) {
      const [request, limit] = [checkQuantity(s.requests[res]), checkQuantity(s.limits[res])];
      // Compared as exact values, across suffixes: "1Gi" is more than "1G", "500m" less than "1".
      if (request.ok && limit.ok && request.value.greaterThan(limit.value)) {
        problems.add(
          `${p}.requests.${res}`,
          s.requests[res],
          `no more than ${p}.limits.${res} (${s.limits[res]})`,
          "Kubernetes rejects requests above limits.",
        );
      }
    }
  }
  const imageMinor = /^v?2\.(\d+)\.(\d+)/.exec(milvus.imageTag);
  if (milvus.imageTag && (!imageMinor || Number(imageMinor[1]) !== 6 || Number(imageMinor[2]) < 10)) {
    problems.add(
      "milvus.imageTag",
      milvus.imageTag,
      "a Milvus 2.6 patch release >= v2.6.10 (Azure Blob fixes, CVE-2025-64513)",
      setPathHint("milvus.imageTag", "v2.6.24"),
    );
  }
  for (const role of ["proxy", "queryNode"] as const) {
    if (milvus[role].maxReplicas < milvus[role].replicas) {
      problems.add(
        `milvus.${role}.maxReplicas`,
        milvus[role].maxReplicas,
        `at least milvus.${role}.replicas (${milvus[role].replicas})`,
        "The autoscaler's maximum cannot be below its minimum.",
      );
    }
  }
  const qn = [checkQuantity(milvus.queryNode.requests.memory), checkQuantity(milvus.queryNode.limits.memory)];
  // Equal in value, whatever the suffixes ("32Gi" and "32768Mi" are the same request).
  if (qn[0]?.ok && qn[1]?.ok && !qn[0].value.equals(qn[1].value)) {
    problems.add(
      "milvus.queryNode.requests.memory",
      milvus.queryNode.requests.memory,
      `equal to milvus.queryNode.limits.memory (${milvus.queryNode.limits.memory})`,
      "Query nodes must not be overcommitted on memory (OOM kills, milvus#23262).",
    );
  }

  // Query and streaming node caches are emptyDirs on the data nodes' ephemeral OS disk (milvus.ts):
  // each must fit one node after the kubelet's 10 % nodefs eviction threshold (AKS default
  // `evictionHard: nodefs.available<10%`) and room for images and system pods.
  const cacheRoomGi = Math.floor(nodePools.data.osDiskSizeGB * 0.9) - EPHEMERAL_RESERVED_GI;
  if (mode === "cluster") {
    for (const role of ["queryNode", "streamingNode"] as const) {
      const needed = milvus[role].diskSizeGi + 3;
      if (needed > cacheRoomGi) {
        problems.add(
          `milvus.${role}.diskSizeGi`,
          milvus[role].diskSizeGi,
          `at most ${cacheRoomGi - 3} with nodePools.data.osDiskSizeGB ${nodePools.data.osDiskSizeGB}`,
          `The cache is an emptyDir on the node's OS disk (90 % usable, ${EPHEMERAL_RESERVED_GI} GiB for images and system pods, 3 GiB for /tmp and logs): lower it or raise nodePools.data.osDiskSizeGB within the VM size's cache or temp disk.`,
        );
      }
    }
  }

  const { objectStore, etcd, minio } = c;
  if (etcd.replicas % 2 === 0) {
    problems.add(
      "etcd.replicas",
      etcd.replicas,
      "an odd member count (1, 3, 5 or 7)",
      "An even etcd cluster tolerates no more failures than the odd one below it.",
    );
  }
  const minioRelease = /:RELEASE\.(\d{4})-(\d{2})-(\d{2})/.exec(minio.image);
  if (minioRelease && `${minioRelease[1]}${minioRelease[2]}${minioRelease[3]}` < "20241218") {
    problems.add(
      "minio.image",
      minio.image,
      "a MinIO release from RELEASE.2024-12-18 or later",
      "Woodpecker needs S3 conditional writes, which older MinIO releases lack.",
    );
  }
  if (minio.replicas !== 1 && (minio.replicas < 4 || minio.replicas > 16)) {
    problems.add(
      "minio.replicas",
      minio.replicas,
      "1 (single node) or 4 to 16 (distributed erasure coding, one erasure set)",
      "MinIO's distributed mode needs 4 or more drives; up to 16 form one erasure set (minio cmd/endpoint-ellipses.go).",
    );
  }

  const backup: BackupConfig = c.backup;
  if (checkCron(backup.schedule).ok) {
    const clashes = backupDaysLost(backup.schedule, maintenance);
    if (clashes.length > 0) {
      const end = (maintenance.startHourUtc + maintenance.durationHours) % 24;
      problems.add(
        "backup.schedule",
        backup.schedule,
        `a schedule that keeps at least one backup a day outside the maintenance window (${maintenance.day} ${String(maintenance.startHourUtc).padStart(2, "0")}:00-${String(end).padStart(2, "0")}:00 UTC) and the ${BACKUP_LEAD_HOURS} h before it; these runs are that day's only backups and clash: ${clashes.join(", ")}`,
        "Node drains during the window evict the backup pod. Move backup.schedule or maintenance.day/startHourUtc.",
      );
    }
  }
  if (backup.databases.includes("*") && (backup.databases.length > 1 || backup.collections.length > 0)) {
    problems.add(
      "backup.databases",
      backup.databases,
      '["*"] alone (every collection of every database), with backup.collections empty; or database names',
      "The worker's --all-databases takes no --database or --collection: list the databases instead.",
    );
  }
  if (backup.immutabilityDays > backup.retentionDays) {
    problems.add(
      "backup.immutabilityDays",
      backup.immutabilityDays,
      `at most backup.retentionDays (${backup.retentionDays})`,
      "Immutable blobs cannot be deleted by retention; lower it or raise the retention.",
    );
  }

  const monitoring: MonitoringConfig = c.monitoring;

  const pairedLocation = c.dr.pairedLocation;
  if (pairedLocation && pairedLocation === location) {
    problems.add(
      "dr.pairedLocation",
      pairedLocation,
      "a region different from location",
      "Failover needs a second region.",
    );
  } else if (
    location &&
    pairedLocation &&
    AZURE_REGION_PAIRS[location] !== undefined &&
    AZURE_REGION_PAIRS[location] !== pairedLocation
  ) {
    problems.add(
      "dr.pairedLocation",
      pairedLocation,
      `${AZURE_REGION_PAIRS[location]}, the Azure pair of ${location}`,
      "RA-GZRS replicates only to the Azure-chosen pair.",
    );
  }

  // primaryStack is read on dr stacks only.
  const dr: DrConfig = { ...c.dr, primaryStack: environment === "dr" ? c.dr.primaryStack : "" };
  if (dr.standbyStack && (environment === "dr" || dr.standbyStack === stack)) {
    problems.add(
      "dr.standbyStack",
      dr.standbyStack,
      "the name of another stack, on a primary (not a dr) stack",
      "Name the dr stack on the primary, e.g. `pulumi config set --path milvus-aks:dr.standbyStack dr --stack prod`; a dr stack has no standby of its own.",
    );
  }

  if (d.production) {
    if (zones.length < 3) {
      problems.add(
        "zones",
        zones,
        `all three zones ["1","2","3"] in ${environment}`,
        "Production must survive the loss of one zone.",
      );
    }
    if (mode !== "cluster") {
      problems.add(
        "milvus.mode",
        mode,
        `"cluster" in ${environment}`,
        "Standalone Milvus is a single pod: use it for dev only.",
      );
    }
    if (etcd.replicas < 3) {
      problems.add(
        "etcd.replicas",
        etcd.replicas,
        `at least 3 in ${environment}`,
        "A single etcd member is a single point of failure.",
      );
    }
    // With fewer than three zones the `zones` problem above already says what to fix.
    if (objectStore === "minio" && minio.replicas >= 4 && minio.replicas <= 16 && zones.length >= 3) {
      const q = erasureQuorum({
        pods: minio.replicas,
        drivesPerPod: 1,
        zones: zones.length,
        parity: zoneSafeParity(minio.replicas, 1, zones.length),
      });
      if (!q.writesSurviveZoneLoss) {
        problems.add(
          "minio.replicas",
          minio.replicas,
          `a layout that keeps MinIO's write quorum with any one of ${zones.length} zones lost in ${environment}, e.g. 6 (2 per zone, EC:3)`,
          `${minio.replicas} pods over ${zones.length} zones put ${q.worstZoneDrives} drives in one zone; EC:${q.parity} on ${q.drives} drives writes with ${q.writeQuorum}, and ${q.drivesAfterZoneLoss} would remain, so Milvus's WAL and flushes would stop.`,
        );
      }
    } else if (objectStore === "minio" && minio.replicas < 4) {
      problems.add(
        "minio.replicas",
        minio.replicas,
        `at least 4 in ${environment}`,
        "Single-node MinIO has no redundancy.",
      );
    }
    if (etcd.diskSizeGi < ETCD_PRODUCTION_DISK_GI) {
      problems.add(
        "etcd.diskSizeGi",
        etcd.diskSizeGi,
        `at least ${ETCD_PRODUCTION_DISK_GI} in ${environment}`,
        "Azure Premium SSD IOPS follow the disk tier: below 128 GiB (P10, 500 IOPS) etcd misses its 500 sequential IOPS and 10 ms WAL fsync guidance under load.",
      );
    }
  }
  if (mode === "cluster" && zones.length < 3 && environment !== "dev") {
    problems.add(
      "milvus.mode",
      mode,
      `"standalone", or cluster mode with 3 zones`,
      "Cluster mode's zone spreading needs three zones outside dev.",
    );
  }

  const security = checkSecurity(problems, c.security, raw);
  const { access, skipped } = checkAccess(problems, c.access, raw);

  // The schema's problems first (each key once), then the rules across keys; problems inside a role
  // or user whose name is already rejected are left out.
  const shapeProblems = schemaProblems(stackConfigSchema(env, "strict"), raw, {
    "maintenance.durationHours": String(Math.min(24, neededHours)),
  }).filter((p) => !skipped.some((s) => p.key.startsWith(`${s}.`)));
  const errors = [
    ...shapeProblems.map((p) => problemDetail(p.key, p.value, p.allowed, p.fix)),
    ...problems.errors,
  ];
  const unique = errors.filter((e, i) => errors.findIndex((x) => x.reason === e.reason) === i);

  if (unique.length > 0) {
    throw new pulumi.InputPropertiesError({
      message: `Stack "${stack}" has ${unique.length} configuration problem(s):\n${unique
        .map((e) => `  - ${e.reason}`)
        .join("\n")}`,
      errors: unique,
    });
  }

  return {
    stack,
    environment,
    production: d.production,
    location,
    zones,
    kubernetesVersion,
    nodePools,
    drainTimeoutMinutes,
    maintenance,
    network,
    adminGroupObjectIds,
    storage: c.storage,
    milvus,
    objectStore,
    etcd,
    minio,
    backup,
    monitoring,
    dr,
    security,
    access,
    tags: { environment, "managed-by": "pulumi", project: "milvus-aks", ...c.tags },
  };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** Kubernetes name of a Milvus user's Secret (DNS-1123: underscores become dashes, lower case). */
export function userSecretName(user: string): string {
  return `milvus-user-${user.toLowerCase().replace(/_/g, "-")}`;
}

function checkSecurity(problems: Problems, s: SecurityConfig, raw: Raw): SecurityConfig {
  const tls: TlsConfig = s.tls;
  if (tls.issuer.name && !PEM_CERTIFICATE.test(tls.caBundle)) {
    problems.add(
      "security.tls.caBundle",
      tls.caBundle ? "(not a PEM certificate)" : undefined,
      `the PEM CA certificate(s) of issuer ${tls.issuer.name} when security.tls.issuer.name is set`,
      "Clients and the backup worker verify Milvus against this bundle, and this stack cannot read it from a " +
        'user-supplied issuer: `pulumi config set --path milvus-aks:security.tls.caBundle -- "$(cat ca.pem)"`.',
    );
  } else if (!tls.issuer.name && tls.caBundle) {
    problems.add(
      "security.tls.caBundle",
      "(a PEM bundle)",
      "empty when the stack's own CA issues the certificates (security.tls.issuer.name unset)",
      "The stack publishes its own CA as the milvusCaCertificate output; remove caBundle or set issuer.name.",
    );
  }
  const audit: AuditConfig = { ...s.audit };
  const set = lookupRaw(raw, "security.audit.containerInsights");
  if (!audit.enabled && audit.containerInsights && (set === true || set === "true")) {
    problems.add(
      "security.audit.containerInsights",
      true,
      "false when security.audit.enabled is false",
      "Container Insights sends container logs to the stack's Log Analytics workspace, which only exists with security.audit.enabled.",
    );
  }
  if (!audit.enabled) audit.containerInsights = false;
  return { tls, audit, encryption: s.encryption };
}

function lookupRaw(raw: Raw, path: string): unknown {
  let cur: unknown = raw;
  for (const part of path.split(".")) {
    if (!isObject(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

/** Name rules of roles and users, and the roles users name; returns the entries left out. */
function checkAccess(
  problems: Problems,
  a: AccessConfig,
  raw: Raw,
): { access: AccessConfig; skipped: string[] } {
  const roles: Record<string, AccessRole> = {};
  const users: Record<string, AccessUser> = {};
  const skipped: string[] = [];
  const rawRoles = lookupRaw(raw, "access.roles");
  for (const name of Object.keys(a.roles)) {
    const key = `access.roles.${name}`;
    if (!MILVUS_NAME.test(name) || BUILTIN_MILVUS_ROLES.includes(name)) {
      problems.add(
        key,
        name,
        "a Milvus role name (a letter or _ first, then letters, digits, _; up to 32) other than the built-in admin and public",
        "Rename the role.",
      );
      skipped.push(key);
      continue;
    }
    // Not an object: the schema reports it.
    if (isObject(rawRoles) && !isObject(rawRoles[name])) continue;
    const role = a.roles[name];
    roles[name] = role;
    if (role.collections.length === 0) {
      problems.add(
        `${key}.collections`,
        role.collections,
        'at least one collection name, or ["*"]',
        setPathHint(`${key}.collections`, "'[\"documents\"]'"),
      );
    }
  }
  const secretNames = new Map<string, string>();
  for (const name of Object.keys(a.users)) {
    const key = `access.users.${name}`;
    if (!MILVUS_NAME.test(name) || RESERVED_MILVUS_USERS.includes(name)) {
      problems.add(
        key,
        name,
        `a Milvus user name (a letter or _ first, then letters, digits, _; up to 32) other than ${RESERVED_MILVUS_USERS.join(" and ")}`,
        "Rename the user: root is kept for the access Job alone and backup_worker is the backup worker's.",
      );
      skipped.push(key);
      continue;
    }
    const secretName = userSecretName(name);
    const clash = secretNames.get(secretName);
    if (clash !== undefined) {
      problems.add(
        key,
        name,
        `a name whose Secret name differs from ${clash}'s (${secretName})`,
        "Rename one of them.",
      );
    }
    secretNames.set(secretName, name);
    const user = a.users[name];
    const userRoles = user.roles;
    // Own keys only: `constructor` is "in" every object literal.
    const unknown = userRoles.filter((role) => !Object.hasOwn(roles, role));
    if (userRoles.length === 0 || unknown.length > 0) {
      problems.add(
        `${key}.roles`,
        userRoles,
        `one or more roles declared in access.roles (${Object.keys(roles).join(", ") || "none declared"})`,
        unknown.length > 0
          ? `Declare ${unknown.join(", ")} under access.roles or remove it from the user.`
          : "A user without a role can do nothing; give it a role or remove it.",
      );
    }
    users[name] = user;
  }
  return { access: { roles, users }, skipped };
}

/**
 * Reads every `milvus-aks:*` key of the current stack (pulumi.runtime.allConfig(), so a misspelt or
 * flat key is seen too; other namespaces such as azure-native are not ours) and validates them.
 */
export function loadStackConfig(options: ParseOptions = {}): StackConfig {
  const raw: Raw = {};
  for (const [fullKey, text] of Object.entries(pulumi.runtime.allConfig())) {
    if (!fullKey.startsWith(`${CONFIG_NAMESPACE}:`)) continue;
    // Old-style keys are `namespace:config:key`.
    const key = fullKey.slice(CONFIG_NAMESPACE.length + 1).replace(/^config:/, "");
    // Structured values arrive as JSON text; scalars stay strings so "1.33" is not read as a number.
    if (/^\s*[[{]/.test(text)) {
      try {
        raw[key] = JSON.parse(text);
      } catch {
        raw[key] = text;
      }
    } else {
      raw[key] = text;
    }
  }
  return parseStackConfig(pulumi.getStack(), raw, options);
}
