import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import * as random from "@pulumi/random";
import { alertRuleGroups, BackupAlertTarget, backupStaleAfterSeconds, RuleGroup } from "./alertRules";
import { dashboards } from "./dashboards";
import {
  APP,
  appLabels,
  DATA_NAMESPACE,
  DATA_POOL_LABEL,
  DATA_POOL_VALUE,
  METRICS_PORT_NAME,
  MILVUS_ROLES,
  MilvusRole,
  MONITORING_NAMESPACE,
  PART_OF,
  selectorLabels,
} from "../common/naming";

/** Upstream chart (prometheus-community). */
export const KPS_CHART = "kube-prometheus-stack";
export const KPS_REPO = "https://prometheus-community.github.io/helm-charts";
/**
 * Fixed Helm release name. The chart labels its own ServiceMonitors `release: <release name>` and our
 * monitors carry the same label, so the Prometheus selector below matches both; a generated
 * (suffixed) name would silently orphan every monitor.
 */
export const KPS_RELEASE = "kube-prometheus-stack";
/** The label (key and value) Prometheus selects ServiceMonitors, PodMonitors and PrometheusRules by. */
export const PROMETHEUS_SELECTOR_LABELS: Readonly<Record<string, string>> = { release: KPS_RELEASE };
/** Label Grafana's dashboard sidecar watches ConfigMaps for. */
export const GRAFANA_DASHBOARD_LABEL = { key: "grafana_dashboard", value: "1" } as const;
/**
 * AKS's built-in Premium SSD class (Premium_LRS, WaitForFirstConsumer, expandable). It exists before
 * anything we deploy, and a Delete reclaim policy suits metrics, which are not the system of record.
 */
export const PROMETHEUS_STORAGE_CLASS = "managed-csi-premium";
/**
 * MinIO's cluster metrics path. The data layer sets MINIO_PROMETHEUS_AUTH_TYPE=public, so Prometheus
 * scrapes it without a bearer token (a token would be a JWT signed with the root credentials that has
 * to be regenerated on every rotation); the data namespace's NetworkPolicy limits who reaches port 9000.
 */
export const MINIO_METRICS_PATH = "/minio/v2/metrics/cluster";

export interface MonitoringArgs {
  /** Pinned kube-prometheus-stack chart version. @default none: `monitoring.chartVersion` (88.5.3) */
  chartVersion: string;
  /** Prometheus retention in days. @default none: `monitoring.retentionDays` (15 prod, 7 otherwise) */
  retentionDays: number;
  /** Prometheus volume size per replica, GiB. @default none: `monitoring.storageGi` (100 prod, 20 otherwise) */
  storageGi: number;
  /** Production sizing (two Prometheus and Alertmanager replicas in different zones). @default none */
  production: boolean;
  /** Milvus mode: decides which roles are scraped. @default none: `milvus.mode` */
  milvusMode: "standalone" | "cluster";
  /** Whether MinIO runs in this stack (objectStore = minio). @default none */
  minio: boolean;
  /** etcd backend quota in bytes, quoted by the etcd alert. @default none: `etcd.quotaBackendBytes` */
  etcdQuotaBytes: number;
  /** Backup CronJob to alert on; undefined leaves the backup alerts and panels out. @default undefined */
  backup?: BackupAlertTarget;
  /** Namespace of the monitoring stack. @default "monitoring" */
  namespace?: string;
  /** Namespace of Milvus, etcd and MinIO. @default "milvus" */
  dataNamespace?: string;
}

/** Sizing and placement that the stack config does not expose, as one pure function (unit-tested). */
export function monitoringDefaults(production: boolean) {
  return {
    prometheusReplicas: production ? 2 : 1,
    alertmanagerReplicas: production ? 2 : 1,
    // Retention by size too, below the volume size, so a burst of series never fills the disk.
    retentionSizeFraction: 0.85,
    scrapeInterval: "30s",
    resources: {
      prometheus: production
        ? { requests: { cpu: "1", memory: "4Gi" }, limits: { memory: "8Gi" } }
        : { requests: { cpu: "250m", memory: "1Gi" }, limits: { memory: "2Gi" } },
      alertmanager: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
      grafana: { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "512Mi" } },
      operator: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } },
      kubeStateMetrics: { requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "512Mi" } },
      nodeExporter: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "128Mi" } },
    },
  };
}

/** Milvus roles that run in a mode (docs/architecture.md "Topology"). */
export function milvusRolesFor(mode: "standalone" | "cluster"): MilvusRole[] {
  return mode === "standalone"
    ? [MILVUS_ROLES.standalone]
    : [
        MILVUS_ROLES.mixCoord,
        MILVUS_ROLES.proxy,
        MILVUS_ROLES.queryNode,
        MILVUS_ROLES.dataNode,
        MILVUS_ROLES.streamingNode,
      ];
}

/** The kube-prometheus-stack values we set (a typed subset of the chart's values.yaml). */
export interface KubePrometheusStackValues {
  crds: { enabled: boolean };
  defaultRules: { create: boolean; rules: Record<string, boolean> };
  kubeEtcd: { enabled: boolean };
  kubeControllerManager: { enabled: boolean };
  kubeScheduler: { enabled: boolean };
  kubeProxy: { enabled: boolean };
  prometheus: { prometheusSpec: Record<string, unknown> };
  alertmanager: { alertmanagerSpec: Record<string, unknown> };
  grafana: Record<string, unknown>;
  prometheusOperator: Record<string, unknown>;
  "kube-state-metrics": Record<string, unknown>;
  "prometheus-node-exporter": Record<string, unknown>;
}

/** Helm values for kube-prometheus-stack, pure so tests can assert them without a cluster. */
export function kubePrometheusStackValues(opts: {
  production: boolean;
  retentionDays: number;
  storageGi: number;
  grafanaAdminSecretName: string;
  monitoringNamespace: string;
}): KubePrometheusStackValues {
  const d = monitoringDefaults(opts.production);
  const nodeSelector = { [DATA_POOL_LABEL]: DATA_POOL_VALUE };
  const selector = { matchLabels: { ...PROMETHEUS_SELECTOR_LABELS } };
  // Replicas in different zones, so losing a zone keeps alerting alive.
  const zoneSpread =
    d.prometheusReplicas > 1
      ? { podAntiAffinity: "hard", podAntiAffinityTopologyKey: "topology.kubernetes.io/zone" }
      : {};
  return {
    crds: { enabled: true },
    defaultRules: {
      create: true,
      // AKS runs etcd, the controller manager and the scheduler out of reach, and Cilium replaces
      // kube-proxy: rules for them would only report missing targets.
      rules: {
        etcd: false,
        kubeControllerManager: false,
        kubeSchedulerAlerting: false,
        kubeSchedulerRecording: false,
        kubeProxy: false,
        windows: false,
      },
    },
    kubeEtcd: { enabled: false },
    kubeControllerManager: { enabled: false },
    kubeScheduler: { enabled: false },
    kubeProxy: { enabled: false },
    prometheus: {
      prometheusSpec: {
        replicas: d.prometheusReplicas,
        retention: `${opts.retentionDays}d`,
        retentionSize: `${Math.floor(opts.storageGi * d.retentionSizeFraction)}GiB`,
        scrapeInterval: d.scrapeInterval,
        resources: d.resources.prometheus,
        // The per-zone data pools (not the tainted system pool): a zonal Premium disk pins Prometheus
        // to its zone, and only per-zone pools let the autoscaler add a node in that zone.
        nodeSelector,
        ...zoneSpread,
        storageSpec: {
          volumeClaimTemplate: {
            spec: {
              storageClassName: PROMETHEUS_STORAGE_CLASS,
              accessModes: ["ReadWriteOnce"],
              resources: { requests: { storage: `${opts.storageGi}Gi` } },
            },
          },
        },
        // Explicit selectors instead of the chart's *NilUsesHelmValues switch: the label our monitors
        // must carry is visible here and asserted by the tests.
        serviceMonitorSelectorNilUsesHelmValues: false,
        podMonitorSelectorNilUsesHelmValues: false,
        ruleSelectorNilUsesHelmValues: false,
        serviceMonitorSelector: selector,
        podMonitorSelector: selector,
        ruleSelector: selector,
        serviceMonitorNamespaceSelector: {},
        podMonitorNamespaceSelector: {},
        ruleNamespaceSelector: {},
      },
    },
    alertmanager: {
      alertmanagerSpec: {
        replicas: d.alertmanagerReplicas,
        resources: d.resources.alertmanager,
        nodeSelector,
        ...(d.alertmanagerReplicas > 1
          ? { podAntiAffinity: "hard", podAntiAffinityTopologyKey: "topology.kubernetes.io/zone" }
          : {}),
      },
    },
    grafana: {
      // The admin password lives in a Secret created from a Pulumi secret, never in Helm values
      // (which Helm stores in its release Secret and Pulumi would show in diffs).
      admin: {
        existingSecret: opts.grafanaAdminSecretName,
        userKey: "admin-user",
        passwordKey: "admin-password",
      },
      defaultDashboardsTimezone: "utc",
      resources: d.resources.grafana,
      nodeSelector,
      sidecar: {
        dashboards: {
          enabled: true,
          label: GRAFANA_DASHBOARD_LABEL.key,
          labelValue: GRAFANA_DASHBOARD_LABEL.value,
          searchNamespace: opts.monitoringNamespace,
        },
      },
    },
    prometheusOperator: {
      resources: d.resources.operator,
      nodeSelector,
      admissionWebhooks: { patch: { nodeSelector } },
    },
    "kube-state-metrics": {
      resources: d.resources.kubeStateMetrics,
      nodeSelector,
      // Dashboards select Milvus roles through kube_pod_labels; labels are not exported unless allowed.
      metricLabelsAllowlist: ["pods=[app.kubernetes.io/name,app.kubernetes.io/component]"],
    },
    "prometheus-node-exporter": {
      resources: d.resources.nodeExporter,
      // Node metrics from every node, including the system pool tainted CriticalAddonsOnly.
      tolerations: [{ operator: "Exists" }],
    },
  };
}

/** A PodMonitor manifest (pure, so tests can match its selector against workloads). */
export function podMonitorSpec(opts: {
  name: string;
  namespace: string;
  dataNamespace: string;
  matchLabels: Record<string, string>;
  path: string;
  interval: string;
}) {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PodMonitor",
    metadata: {
      name: opts.name,
      namespace: opts.namespace,
      labels: { "app.kubernetes.io/part-of": PART_OF, ...PROMETHEUS_SELECTOR_LABELS },
    },
    spec: {
      namespaceSelector: { matchNames: [opts.dataNamespace] },
      selector: { matchLabels: opts.matchLabels },
      // Keeps the Milvus role on every series, so queries can tell a proxy from a query node.
      podTargetLabels: ["app.kubernetes.io/component"],
      podMetricsEndpoints: [
        { port: METRICS_PORT_NAME, path: opts.path, interval: opts.interval, scheme: "http" },
      ],
    },
  };
}

/**
 * kube-prometheus-stack (Prometheus, Alertmanager, Grafana, kube-state-metrics, node-exporter) with
 * PodMonitors for every Milvus role, etcd and MinIO, the platform's alert rules and its dashboards.
 *
 * Installed with `helm.v3.Release`, not `helm.v4.Chart`: a Release is one resource that Helm installs
 * with its own ordering (the chart's `crds/` first, then hooks such as the admission-webhook
 * certificate Jobs), and `dependsOn` the Release therefore means "the CRDs exist". `helm.v4.Chart`
 * expands the chart on the machine running Pulumi, which needs the chart archive at preview time and
 * turns ~150 chart objects into individual resources; the Release keeps previews to a reviewable
 * values diff and renders offline under mocks. Helm never upgrades CRDs: on a chart major bump, apply
 * the new CRDs first (docs/operations.md "Upgrading the chart").
 */
export class MonitoringComponent extends pulumi.ComponentResource {
  public readonly namespace: string;
  public readonly releaseName: string;
  public readonly grafanaServiceName: string;
  /** Grafana admin password (a Pulumi secret): `pulumi stack output --show-secrets grafanaAdminPassword`. */
  public readonly grafanaAdminPassword: pulumi.Output<string>;
  /** The alert groups deployed in the PrometheusRule (rendered to a rule file by the tests). */
  public readonly ruleGroups: RuleGroup[];

  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:monitoring:Monitoring", name, {}, opts);
    const namespace = args.namespace ?? MONITORING_NAMESPACE;
    const dataNamespace = args.dataNamespace ?? DATA_NAMESPACE;
    const d = monitoringDefaults(args.production);
    this.namespace = namespace;
    this.releaseName = KPS_RELEASE;
    this.grafanaServiceName = `${KPS_RELEASE}-grafana`;

    const ns = new k8s.core.v1.Namespace(
      `${name}-ns`,
      {
        metadata: {
          name: namespace,
          labels: {
            "app.kubernetes.io/part-of": PART_OF,
            // node-exporter needs the host's network, PID namespace and filesystem, which only the
            // privileged Pod Security level allows; everything else here is warned about above baseline.
            "pod-security.kubernetes.io/enforce": "privileged",
            "pod-security.kubernetes.io/warn": "baseline",
            "pod-security.kubernetes.io/audit": "baseline",
          },
        },
      },
      { parent: this },
    );

    const password = new random.RandomPassword(
      `${name}-grafana-admin`,
      // Alphanumeric only: the password is typed into a login form and pasted into shells.
      { length: 32, special: false },
      { parent: this },
    );
    this.grafanaAdminPassword = pulumi.secret(password.result);
    const grafanaSecretName = "grafana-admin";
    const adminSecret = new k8s.core.v1.Secret(
      `${name}-grafana-admin`,
      {
        metadata: { name: grafanaSecretName, namespace, labels: appLabels("grafana", "credentials") },
        type: "Opaque",
        stringData: {
          "admin-user": "admin",
          "admin-password": this.grafanaAdminPassword,
        },
      },
      { parent: this, dependsOn: [ns] },
    );

    const values = kubePrometheusStackValues({
      production: args.production,
      retentionDays: args.retentionDays,
      storageGi: args.storageGi,
      grafanaAdminSecretName: grafanaSecretName,
      monitoringNamespace: namespace,
    });
    const release = new k8s.helm.v3.Release(
      `${name}-kps`,
      {
        name: KPS_RELEASE,
        chart: KPS_CHART,
        version: args.chartVersion,
        repositoryOpts: { repo: KPS_REPO },
        namespace,
        values,
        // A failed upgrade rolls back instead of leaving a half-applied monitoring stack.
        atomic: true,
        cleanupOnFail: true,
        timeout: 900,
        maxHistory: 10,
      },
      { parent: this, dependsOn: [ns, adminSecret] },
    );

    // Monitors and rules are custom resources: they wait for the release that installs their CRDs.
    const crOpts = { parent: this, dependsOn: [release] };
    const monitor = (suffix: string, matchLabels: Record<string, string>, path: string) =>
      new k8s.apiextensions.CustomResource(
        `${name}-${suffix}`,
        podMonitorSpec({
          name: suffix,
          namespace,
          dataNamespace,
          matchLabels,
          path,
          interval: d.scrapeInterval,
        }),
        crOpts,
      );
    for (const role of milvusRolesFor(args.milvusMode)) {
      monitor(`milvus-${role}`, selectorLabels(APP.milvus, role), "/metrics");
    }
    // Only the server pods: the defrag CronJob and bucket Job carry the same app name but no metrics port.
    monitor("etcd", selectorLabels(APP.etcd, "server"), "/metrics");
    if (args.minio) monitor("minio", selectorLabels(APP.minio, "server"), MINIO_METRICS_PATH);

    this.ruleGroups = alertRuleGroups({
      dataNamespace,
      monitoringNamespace: namespace,
      etcdQuotaBytes: args.etcdQuotaBytes,
      minio: args.minio,
      backup: args.backup,
    });
    new k8s.apiextensions.CustomResource(
      `${name}-rules`,
      {
        apiVersion: "monitoring.coreos.com/v1",
        kind: "PrometheusRule",
        metadata: {
          name: "milvus-aks",
          namespace,
          labels: { ...appLabels("milvus-aks", "alerts"), ...PROMETHEUS_SELECTOR_LABELS },
        },
        spec: { groups: this.ruleGroups },
      },
      crOpts,
    );

    const boards = dashboards({
      dataNamespace,
      minio: args.minio,
      backup: args.backup && {
        namespace: args.backup.namespace,
        cronJobName: args.backup.cronJobName,
        staleAfterSeconds: backupStaleAfterSeconds(args.backup),
      },
    });
    for (const [file, board] of Object.entries(boards)) {
      const base = file.replace(/\.json$/, "");
      new k8s.core.v1.ConfigMap(
        `${name}-dashboard-${base}`,
        {
          metadata: {
            name: `dashboard-${base}`,
            namespace,
            labels: {
              ...appLabels("grafana", "dashboard"),
              [GRAFANA_DASHBOARD_LABEL.key]: GRAFANA_DASHBOARD_LABEL.value,
            },
          },
          data: { [file]: JSON.stringify(board, null, 2) },
        },
        { parent: this, dependsOn: [ns] },
      );
    }

    this.registerOutputs({
      namespace: this.namespace,
      releaseName: this.releaseName,
      grafanaServiceName: this.grafanaServiceName,
      grafanaAdminPassword: this.grafanaAdminPassword,
    });
  }
}
