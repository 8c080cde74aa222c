import { READ_FUNCTIONS, THRESHOLDS } from "./alertRules";

/**
 * Grafana dashboards for Milvus and its dependencies (etcd, storage, backups), as Grafana dashboard
 * JSON models built from small panel helpers. The monitoring component ships each one as a
 * ConfigMap that Grafana's dashboard sidecar loads. Expressions use the same metric names and
 * thresholds as the alert rules, and the tests run every expression through promtool.
 */

export interface DashboardTarget {
  expr: string;
  legendFormat: string;
  refId: string;
}

export interface Panel {
  id: number;
  type: "timeseries" | "stat" | "row";
  title: string;
  description?: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: "prometheus"; uid: "${datasource}" };
  targets?: DashboardTarget[];
  fieldConfig?: {
    defaults: {
      unit: string;
      min?: number;
      max?: number;
      thresholds?: { mode: "absolute"; steps: { color: string; value: number | null }[] };
    };
    overrides: unknown[];
  };
  options?: Record<string, unknown>;
}

export interface Dashboard {
  uid: string;
  title: string;
  tags: string[];
  timezone: "utc";
  schemaVersion: number;
  version: number;
  editable: boolean;
  refresh: string;
  time: { from: string; to: string };
  templating: { list: unknown[] };
  panels: Panel[];
}

export interface DashboardOptions {
  dataNamespace: string;
  /** Adds the MinIO row when the stack runs MinIO. */
  minio: boolean;
  /** Backup CronJob to chart; undefined leaves the backup row out. */
  backup?: { namespace: string; cronJobName: string; staleAfterSeconds: number };
}

/** Grafana's range variable; the tests substitute it before handing expressions to promtool. */
export const RATE_INTERVAL = "$__rate_interval";

class Layout {
  private nextId = 1;
  private y = 0;
  private x = 0;
  readonly panels: Panel[] = [];

  row(title: string): void {
    if (this.x > 0) this.newLine();
    this.panels.push({ id: this.nextId++, type: "row", title, gridPos: { x: 0, y: this.y, w: 24, h: 1 } });
    this.y += 1;
  }

  panel(
    title: string,
    unit: string,
    targets: { expr: string; legend: string }[],
    extra: { type?: "timeseries" | "stat"; w?: number; description?: string; threshold?: number } = {},
  ): void {
    const w = extra.w ?? 12;
    if (this.x + w > 24) this.newLine();
    const panel: Panel = {
      id: this.nextId++,
      type: extra.type ?? "timeseries",
      title,
      gridPos: { x: this.x, y: this.y, w, h: 8 },
      datasource: { type: "prometheus", uid: "${datasource}" },
      targets: targets.map((t, i) => ({
        expr: t.expr,
        legendFormat: t.legend,
        refId: String.fromCharCode(65 + i),
      })),
      fieldConfig: {
        defaults: {
          unit,
          ...(extra.threshold !== undefined
            ? {
                thresholds: {
                  mode: "absolute",
                  steps: [
                    { color: "green", value: null },
                    { color: "red", value: extra.threshold },
                  ],
                },
              }
            : {}),
        },
        overrides: [],
      },
      options:
        extra.type === "stat"
          ? { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, colorMode: "background" }
          : { legend: { displayMode: "table", placement: "bottom", calcs: ["lastNotNull", "max"] } },
    };
    if (extra.description) panel.description = extra.description;
    this.panels.push(panel);
    this.x += w;
    if (this.x >= 24) this.newLine();
  }

  private newLine(): void {
    this.x = 0;
    this.y += 8;
  }
}

function dashboard(uid: string, title: string, panels: Panel[]): Dashboard {
  return {
    uid,
    title,
    tags: ["milvus", "milvus-aks"],
    timezone: "utc",
    schemaVersion: 39,
    version: 1,
    editable: false,
    refresh: "30s",
    time: { from: "now-6h", to: "now" },
    templating: {
      list: [
        {
          name: "datasource",
          label: "Data source",
          type: "datasource",
          query: "prometheus",
          current: { text: "Prometheus", value: "prometheus" },
          hide: 0,
        },
      ],
    },
    panels,
  };
}

/** Milvus service dashboard: latency percentiles, QPS, errors, query-node memory, index tasks. */
export function milvusDashboard(opts: DashboardOptions): Dashboard {
  const ns = `namespace="${opts.dataNamespace}"`;
  const reads = `function_name=~"${READ_FUNCTIONS.join("|")}"`;
  const l = new Layout();
  const quantile = (q: number) =>
    `histogram_quantile(${q}, sum by (le) (rate(milvus_proxy_req_latency_bucket{${ns}, ${reads}}[${RATE_INTERVAL}])))`;
  // kube-state-metrics exports the component label because the monitoring values allow-list it.
  const role = (r: string) =>
    `* on (namespace, pod) group_left () max by (namespace, pod) (kube_pod_labels{${ns}, label_app_kubernetes_io_component=~"${r}"})`;

  l.row("Requests");
  l.panel(
    "Search / query latency (P50, P95, P99)",
    "ms",
    [
      { expr: quantile(0.5), legend: "p50" },
      { expr: quantile(0.95), legend: "p95" },
      { expr: quantile(0.99), legend: "p99" },
    ],
    {
      threshold: THRESHOLDS.searchP95Ms,
      description: `Alert MilvusSearchLatencyHigh fires when P95 stays above ${THRESHOLDS.searchP95Ms} ms for 5 minutes.`,
    },
  );
  l.panel("Requests per second by type", "reqps", [
    {
      expr: `sum by (function_name) (rate(milvus_proxy_req_count{${ns}, status="total"}[${RATE_INTERVAL}]))`,
      legend: "{{function_name}}",
    },
  ]);
  l.panel("Failed requests per second by type", "reqps", [
    {
      expr: `sum by (function_name) (rate(milvus_proxy_req_count{${ns}, status="fail"}[${RATE_INTERVAL}]))`,
      legend: "{{function_name}}",
    },
  ]);
  l.panel("Error ratio", "percentunit", [
    {
      expr: `sum(rate(milvus_proxy_req_count{${ns}, status="fail"}[${RATE_INTERVAL}])) / sum(rate(milvus_proxy_req_count{${ns}, status="total"}[${RATE_INTERVAL}]))`,
      legend: "errors / requests",
    },
  ]);

  l.row("Query nodes");
  l.panel("Query node memory (working set vs limit)", "bytes", [
    {
      expr: `sum by (pod) (container_memory_working_set_bytes{${ns}, container!="", container!="POD"} ${role("querynode|standalone")})`,
      legend: "{{pod}} working set",
    },
    {
      expr: `sum by (pod) (kube_pod_container_resource_limits{${ns}, resource="memory"} ${role("querynode|standalone")})`,
      legend: "{{pod}} limit",
    },
  ]);
  l.panel("Query node CPU (cores vs limit)", "short", [
    {
      expr: `sum by (pod) (rate(container_cpu_usage_seconds_total{${ns}, container!="", container!="POD"}[${RATE_INTERVAL}]) ${role("querynode|standalone")})`,
      legend: "{{pod}} used",
    },
    {
      expr: `sum by (pod) (kube_pod_container_resource_limits{${ns}, resource="cpu"} ${role("querynode|standalone")})`,
      legend: "{{pod}} limit",
    },
  ]);

  l.row("Indexing and pods");
  l.panel("Index build tasks by state", "short", [
    {
      expr: `sum by (task_state) (milvus_datacoord_task_count{${ns}, task_type="JobTypeIndexJob"})`,
      legend: "{{task_state}}",
    },
  ]);
  l.panel("Container restarts (1h)", "short", [
    {
      expr: `sum by (pod) (increase(kube_pod_container_status_restarts_total{${ns}}[1h]))`,
      legend: "{{pod}}",
    },
  ]);
  return dashboard("milvus-aks-milvus", "Milvus", l.panels);
}

/** etcd, object store, volumes and backups: what Milvus depends on to keep its data. */
export function dependenciesDashboard(opts: DashboardOptions): Dashboard {
  const ns = `namespace="${opts.dataNamespace}"`;
  const l = new Layout();

  l.row("etcd");
  l.panel(
    "WAL fsync latency (P99)",
    "s",
    [
      {
        expr: `histogram_quantile(0.99, sum by (pod, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket{${ns}}[${RATE_INTERVAL}])))`,
        legend: "{{pod}}",
      },
    ],
    { threshold: THRESHOLDS.etcdFsyncP99Seconds },
  );
  l.panel(
    "Database size / quota",
    "percentunit",
    [
      {
        expr: `etcd_mvcc_db_total_size_in_bytes{${ns}} / etcd_server_quota_backend_bytes{${ns}}`,
        legend: "{{pod}}",
      },
    ],
    { threshold: THRESHOLDS.etcdDbOfQuota },
  );
  l.panel("Leader changes (1h)", "short", [
    { expr: `sum(increase(etcd_server_leader_changes_seen_total{${ns}}[1h]))`, legend: "leader changes" },
  ]);
  l.panel("Members with a leader", "short", [
    { expr: `sum(etcd_server_has_leader{${ns}})`, legend: "members with leader" },
  ]);

  l.row("Storage");
  if (opts.minio) {
    l.panel(
      "MinIO usable capacity used",
      "percentunit",
      [
        {
          expr: `1 - max(minio_cluster_capacity_usable_free_bytes{${ns}}) / max(minio_cluster_capacity_usable_total_bytes{${ns}})`,
          legend: "used",
        },
      ],
      { threshold: THRESHOLDS.capacityUsed },
    );
  }
  l.panel(
    "Persistent volumes used",
    "percentunit",
    [
      {
        expr: `1 - kubelet_volume_stats_available_bytes{${ns}} / kubelet_volume_stats_capacity_bytes{${ns}}`,
        legend: "{{persistentvolumeclaim}}",
      },
    ],
    { threshold: THRESHOLDS.capacityUsed },
  );

  if (opts.backup) {
    const b = opts.backup;
    const cron = `namespace="${b.namespace}", cronjob="${b.cronJobName}"`;
    const jobs = `* on (namespace, job_name) group_left () max by (namespace, job_name) (kube_job_owner{namespace="${b.namespace}", owner_kind="CronJob", owner_name="${b.cronJobName}"})`;
    l.row("Backups");
    l.panel(
      "Time since last successful backup",
      "s",
      [{ expr: `time() - max(kube_cronjob_status_last_successful_time{${cron}})`, legend: "age" }],
      {
        type: "stat",
        w: 8,
        threshold: b.staleAfterSeconds,
        description: "Alert MilvusBackupStale fires above the red threshold.",
      },
    );
    l.panel(
      "Failed backup jobs (in history)",
      "short",
      [
        {
          expr: `sum(max by (namespace, job_name) (kube_job_failed{namespace="${b.namespace}", condition="true"}) ${jobs})`,
          legend: "failed",
        },
      ],
      { type: "stat", w: 8, threshold: 1 },
    );
    l.panel(
      "Backup job duration",
      "s",
      [
        {
          expr: `max by (job_name) ((kube_job_status_completion_time{namespace="${b.namespace}"} - kube_job_status_start_time{namespace="${b.namespace}"}) ${jobs})`,
          legend: "{{job_name}}",
        },
      ],
      { w: 8 },
    );
  }
  return dashboard("milvus-aks-dependencies", "Milvus dependencies: etcd, storage, backups", l.panels);
}

/** Dashboards keyed by the file name the sidecar writes them to. */
export function dashboards(opts: DashboardOptions): Record<string, Dashboard> {
  return {
    "milvus.json": milvusDashboard(opts),
    "milvus-dependencies.json": dependenciesDashboard(opts),
  };
}

/** Every PromQL expression on a dashboard (for validation). */
export function dashboardExpressions(d: Dashboard): string[] {
  return d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
}
