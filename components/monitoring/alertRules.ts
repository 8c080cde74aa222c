import * as yaml from "js-yaml";
import { checkCron, cronEvaluator } from "../../backup/schedule";

/**
 * The platform's alerting rules as plain data. The monitoring component deploys exactly these groups
 * as a PrometheusRule, and the tests render the same objects to a Prometheus rule file for
 * `promtool check rules` / `promtool test rules`, so there is one copy of every expression.
 */

export type Severity = "warning" | "critical";

/** One alerting rule, in the shape of both a Prometheus rule file and the PrometheusRule CRD. */
export interface AlertRule {
  alert: string;
  expr: string;
  for: string;
  labels: { severity: Severity; component: string };
  annotations: { summary: string; description: string; runbook_url: string };
}

export interface RuleGroup {
  name: string;
  interval?: string;
  rules: AlertRule[];
}

/** Where the backup CronJob lives and how often it runs; drives the backup alerts. */
export interface BackupAlertTarget {
  namespace: string;
  cronJobName: string;
  /** Kubernetes CronJob schedule (UTC), already validated by config.ts (backup/schedule.ts). */
  schedule: string;
  /**
   * How late a scheduled backup may legitimately complete after its scheduled minute, in seconds:
   * the CronJob's startingDeadlineSeconds plus the Job's activeDeadlineSeconds.
   */
  graceSeconds: number;
}

export interface AlertRuleOptions {
  /** Namespace of Milvus, etcd and MinIO (and the backup worker). */
  dataNamespace: string;
  /** Namespace of the monitoring stack, whose volumes are watched too. */
  monitoringNamespace: string;
  /** etcd's backend quota, only quoted in the description (the rule reads the quota etcd reports). */
  etcdQuotaBytes: number;
  /** Whether MinIO runs in this stack (objectStore = minio); otherwise its rule is left out. */
  minio: boolean;
  /** The scheduled backup; undefined leaves the backup group out. */
  backup?: BackupAlertTarget;
}

/** Alert thresholds: the service targets (P95 latency, CPU, memory) and the etcd and capacity guards. */
export const THRESHOLDS = {
  searchP95Ms: 200,
  cpuOfLimit: 0.8,
  memoryOfLimit: 0.85,
  etcdFsyncP99Seconds: 0.01,
  etcdDbOfQuota: 0.8,
  capacityUsed: 0.7,
} as const;

/** Request types whose latency the P95 latency target covers (Milvus `function_name` values). */
export const READ_FUNCTIONS = ["Search", "HybridSearch", "Query"] as const;

/**
 * Where the alert runbooks live, relative to the repository root; `runbook_url` is the annotation
 * Prometheus-Operator runbooks and Alertmanager templates conventionally link from.
 */
export const RUNBOOK_DOC = "docs/operations.md";
const runbook = (alert: string) => `${RUNBOOK_DOC}#${runbookAnchor(alert)}`;

/** GitHub's heading anchor for the runbook entry `#### <AlertName>` in {@link RUNBOOK_DOC}. */
export function runbookAnchor(alert: string): string {
  return alert.toLowerCase();
}

const DAY_MS = 24 * 3600 * 1000;

/**
 * The longest gap between two consecutive runs of a schedule, in seconds, over eight years of UTC
 * calendar from 2027 (so monthly and leap-day schedules are covered). The schedule is read and
 * evaluated by backup/schedule.ts, the module the config validation and the worker's loop use, so the
 * threshold follows exactly the runs Kubernetes makes: `@daily` is `0 0 * * *`, `SUN` is 0, a
 * restricted day of month and day of week match either way (robfig/cron, see that module).
 *
 * Day by day rather than run by run (an every-minute schedule has four million runs in eight years):
 * the times of day come from cron-parser's fields, whether a day has runs from its `includesDate`.
 */
export function maxCronIntervalSeconds(schedule: string): number {
  const checked = checkCron(schedule);
  if (!checked.ok) throw new Error(`Not a Kubernetes cron schedule: "${schedule}": ${checked.reason}`);
  const startDay = Date.UTC(2027, 0, 1);
  const cron = cronEvaluator(checked.cron, new Date(startDay));
  const minutes = cron.fields.minute.values;
  const times = cron.fields.hour.values.flatMap((h) => minutes.map((m) => h * 60 + m));
  const first = times[0] ?? 0;
  const last = times[times.length - 1] ?? 0;
  let maxGap = 0;
  for (let i = 1; i < times.length; i++) maxGap = Math.max(maxGap, (times[i] ?? 0) - (times[i - 1] ?? 0));

  let previousDay: number | undefined;
  for (let day = startDay; day < startDay + 8 * 366 * DAY_MS; day += DAY_MS) {
    // The first run of the day exists exactly when the day has runs: hours and minutes do not depend on it.
    if (!cron.includesDate(new Date(day + first * 60_000))) continue;
    if (previousDay !== undefined) {
      maxGap = Math.max(maxGap, ((day - previousDay) / DAY_MS) * 24 * 60 + first - last);
    }
    previousDay = day;
  }
  if (previousDay === undefined) throw new Error(`Cron expression never fires: "${schedule}"`);
  return maxGap * 60;
}

/** Seconds after which the newest successful backup counts as stale: the longest schedule gap plus grace. */
export function backupStaleAfterSeconds(target: BackupAlertTarget): number {
  return maxCronIntervalSeconds(target.schedule) + target.graceSeconds;
}

function hours(seconds: number): string {
  const h = seconds / 3600;
  return Number.isInteger(h) ? `${h}h` : `${h.toFixed(1)}h`;
}

/** The platform's alert groups, in deployment order. */
export function alertRuleGroups(opts: AlertRuleOptions): RuleGroup[] {
  const ns = opts.dataNamespace;
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  const reads = READ_FUNCTIONS.join("|");

  const milvus: RuleGroup = {
    name: "milvus.rules",
    rules: [
      {
        alert: "MilvusSearchLatencyHigh",
        // Milvus histograms are in milliseconds (pkg/metrics buckets 1..131072 ms).
        expr: `histogram_quantile(0.95, sum by (namespace, le) (rate(milvus_proxy_req_latency_bucket{namespace="${ns}", function_name=~"${reads}"}[5m]))) > ${THRESHOLDS.searchP95Ms}`,
        for: "5m",
        labels: { severity: "warning", component: "milvus" },
        annotations: {
          summary: `Milvus search/query P95 latency above ${THRESHOLDS.searchP95Ms} ms`,
          description: `P95 latency of ${READ_FUNCTIONS.join(", ")} requests at the proxies in namespace {{ $labels.namespace }} has been {{ $value | printf "%.0f" }} ms for 5 minutes (target: ${THRESHOLDS.searchP95Ms} ms).`,
          runbook_url: runbook("MilvusSearchLatencyHigh"),
        },
      },
      {
        alert: "MilvusIndexBuildFailed",
        // milvus_datacoord_task_count is a gauge of tasks per state (Milvus >= 2.5.5).
        expr: `sum by (namespace) (milvus_datacoord_task_count{namespace="${ns}", task_type="JobTypeIndexJob", task_state="JobStateFailed"}) > 0`,
        for: "5m",
        labels: { severity: "warning", component: "milvus" },
        annotations: {
          summary: "Milvus index builds are failing",
          description:
            "{{ $value }} index build task(s) in namespace {{ $labels.namespace }} are in state JobStateFailed; segments without an index are searched by brute force and queries slow down.",
          runbook_url: runbook("MilvusIndexBuildFailed"),
        },
      },
      {
        alert: "MilvusMetricsTargetDown",
        expr: `up{namespace="${ns}"} == 0`,
        for: "10m",
        labels: { severity: "warning", component: "monitoring" },
        annotations: {
          summary: "Prometheus cannot scrape a Milvus, etcd or MinIO pod",
          description:
            "Target {{ $labels.pod }} ({{ $labels.job }}) in namespace {{ $labels.namespace }} has not answered scrapes for 10 minutes; every other alert for it is blind.",
          runbook_url: runbook("MilvusMetricsTargetDown"),
        },
      },
    ],
  };

  const containerKey = "namespace, pod, container";
  const resources: RuleGroup = {
    name: "milvus-resources.rules",
    rules: [
      {
        alert: "MilvusPodCpuNearLimit",
        // Batch Jobs (backups) are expected to run flat out; only long-running pods count.
        expr: `(sum by (${containerKey}) (rate(container_cpu_usage_seconds_total{namespace="${ns}", container!="", container!="POD"}[5m])) / sum by (${containerKey}) (kube_pod_container_resource_limits{namespace="${ns}", resource="cpu"}) > ${THRESHOLDS.cpuOfLimit}) unless on (namespace, pod) kube_pod_owner{namespace="${ns}", owner_kind="Job"}`,
        for: "15m",
        labels: { severity: "warning", component: "milvus" },
        annotations: {
          summary: `Container CPU above ${pct(THRESHOLDS.cpuOfLimit)} of its limit`,
          description: `{{ $labels.namespace }}/{{ $labels.pod }} container {{ $labels.container }} has used {{ $value | humanizePercentage }} of its CPU limit for 15 minutes; it is being throttled or about to be.`,
          runbook_url: runbook("MilvusPodCpuNearLimit"),
        },
      },
      {
        alert: "MilvusPodMemoryNearLimit",
        expr: `sum by (${containerKey}) (container_memory_working_set_bytes{namespace="${ns}", container!="", container!="POD"}) / sum by (${containerKey}) (kube_pod_container_resource_limits{namespace="${ns}", resource="memory"}) > ${THRESHOLDS.memoryOfLimit}`,
        for: "5m",
        labels: { severity: "warning", component: "milvus" },
        annotations: {
          summary: `Container memory above ${pct(THRESHOLDS.memoryOfLimit)} of its limit`,
          description: `{{ $labels.namespace }}/{{ $labels.pod }} container {{ $labels.container }} working set is {{ $value | humanizePercentage }} of its memory limit; the kernel OOM-kills it at 100%.`,
          runbook_url: runbook("MilvusPodMemoryNearLimit"),
        },
      },
      {
        alert: "MilvusPodRestarting",
        expr: `increase(kube_pod_container_status_restarts_total{namespace="${ns}"}[15m]) > 0`,
        for: "0m",
        labels: { severity: "warning", component: "milvus" },
        annotations: {
          summary: "A Milvus, etcd or MinIO container restarted",
          description:
            '{{ $labels.namespace }}/{{ $labels.pod }} container {{ $labels.container }} restarted {{ $value | printf "%.0f" }} time(s) in the last 15 minutes.',
          runbook_url: runbook("MilvusPodRestarting"),
        },
      },
      {
        alert: "PersistentVolumeUsageHigh",
        expr: `1 - kubelet_volume_stats_available_bytes{namespace=~"${ns}|${opts.monitoringNamespace}"} / kubelet_volume_stats_capacity_bytes{namespace=~"${ns}|${opts.monitoringNamespace}"} > ${THRESHOLDS.capacityUsed}`,
        for: "15m",
        labels: { severity: "warning", component: "storage" },
        annotations: {
          summary: `Persistent volume more than ${pct(THRESHOLDS.capacityUsed)} full`,
          description: `PVC {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is {{ $value | humanizePercentage }} full.`,
          runbook_url: runbook("PersistentVolumeUsageHigh"),
        },
      },
    ],
  };

  const dependencies: RuleGroup = {
    name: "milvus-dependencies.rules",
    rules: [
      {
        alert: "EtcdWalFsyncSlow",
        expr: `histogram_quantile(0.99, sum by (namespace, pod, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket{namespace="${ns}"}[5m]))) > ${THRESHOLDS.etcdFsyncP99Seconds}`,
        for: "10m",
        labels: { severity: "warning", component: "etcd" },
        annotations: {
          summary: `etcd WAL fsync p99 above ${THRESHOLDS.etcdFsyncP99Seconds * 1000} ms`,
          description: `etcd member {{ $labels.pod }} needs {{ $value | humanizeDuration }} (p99) to fsync its WAL; above 10 ms heartbeats miss and leader elections follow.`,
          runbook_url: runbook("EtcdWalFsyncSlow"),
        },
      },
      {
        alert: "EtcdDatabaseNearQuota",
        expr: `etcd_mvcc_db_total_size_in_bytes{namespace="${ns}"} / etcd_server_quota_backend_bytes{namespace="${ns}"} > ${THRESHOLDS.etcdDbOfQuota}`,
        for: "5m",
        labels: { severity: "warning", component: "etcd" },
        annotations: {
          summary: `etcd database above ${pct(THRESHOLDS.etcdDbOfQuota)} of its quota`,
          description: `etcd member {{ $labels.pod }} database is {{ $value | humanizePercentage }} of its ${opts.etcdQuotaBytes / 1024 ** 3} GiB quota; at 100% etcd raises NOSPACE and Milvus stops accepting writes.`,
          runbook_url: runbook("EtcdDatabaseNearQuota"),
        },
      },
    ],
  };
  if (opts.minio) {
    dependencies.rules.push({
      alert: "MinioCapacityHigh",
      // Every MinIO node reports the same cluster totals, hence max rather than sum.
      expr: `1 - max by (namespace) (minio_cluster_capacity_usable_free_bytes{namespace="${ns}"}) / max by (namespace) (minio_cluster_capacity_usable_total_bytes{namespace="${ns}"}) > ${THRESHOLDS.capacityUsed}`,
      for: "15m",
      labels: { severity: "warning", component: "minio" },
      annotations: {
        summary: `MinIO usable capacity more than ${pct(THRESHOLDS.capacityUsed)} used`,
        description: `MinIO in namespace {{ $labels.namespace }} has used {{ $value | humanizePercentage }} of its usable (erasure-coded) capacity.`,
        runbook_url: runbook("MinioCapacityHigh"),
      },
    });
  }

  const groups = [milvus, resources, dependencies];
  if (opts.backup) groups.push(backupGroup(opts.backup));
  return groups;
}

function backupGroup(b: BackupAlertTarget): RuleGroup {
  const staleAfter = backupStaleAfterSeconds(b);
  const cron = `namespace="${b.namespace}", cronjob="${b.cronJobName}"`;
  const lastSuccess = `max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{${cron}})`;
  const backupJobs = `kube_job_owner{namespace="${b.namespace}", owner_kind="CronJob", owner_name="${b.cronJobName}"}`;
  return {
    name: "milvus-backup.rules",
    rules: [
      {
        alert: "MilvusBackupJobFailed",
        // A failed Job stays in the CronJob's history; it stops alerting once a later run succeeds.
        expr: [
          `(max by (namespace, job_name) (kube_job_failed{namespace="${b.namespace}", condition="true"}) == 1)`,
          `* on (namespace, job_name) group_left (owner_name) max by (namespace, job_name, owner_name) (${backupJobs})`,
          `unless on (namespace, job_name) (kube_job_status_start_time{namespace="${b.namespace}"} <= on (namespace) group_left () max by (namespace) (kube_cronjob_status_last_successful_time{${cron}}))`,
        ].join("\n"),
        for: "0m",
        labels: { severity: "warning", component: "backup" },
        annotations: {
          summary: "A Milvus backup job failed",
          description: `Backup Job {{ $labels.namespace }}/{{ $labels.job_name }} (CronJob ${b.cronJobName}) failed and no backup has succeeded since.`,
          runbook_url: runbook("MilvusBackupJobFailed"),
        },
      },
      {
        alert: "MilvusBackupStale",
        // Three cases: the last success is too old; the CronJob never succeeded since it was
        // created long enough ago; the CronJob is gone (nothing would ever alert otherwise).
        expr: [
          `(time() - ${lastSuccess} > ${staleAfter})`,
          `or (time() - max by (namespace, cronjob) (kube_cronjob_created{${cron}}) > ${staleAfter} unless on (namespace, cronjob) ${lastSuccess})`,
          `or absent(kube_cronjob_created{${cron}})`,
        ].join("\n"),
        for: "5m",
        labels: { severity: "critical", component: "backup" },
        annotations: {
          summary: "No successful Milvus backup within its schedule",
          description: `CronJob ${b.namespace}/${b.cronJobName} ("${b.schedule}") has no successful backup in the last ${hours(staleAfter)} (longest schedule gap ${hours(maxCronIntervalSeconds(b.schedule))} + ${hours(b.graceSeconds)} for start and run deadlines), or the CronJob is missing.`,
          runbook_url: runbook("MilvusBackupStale"),
        },
      },
    ],
  };
}

/** The dr stack's weekly test restore CronJob (components/backupDeployment/testRestore.ts). */
export interface TestRestoreAlertTarget {
  namespace: string;
  cronJobName: string;
  /** Kubernetes CronJob schedule (UTC), validated by the config schema (backup/schedule.ts). */
  schedule: string;
  /** startingDeadlineSeconds + activeDeadlineSeconds of the CronJob, as for {@link BackupAlertTarget}. */
  graceSeconds: number;
  /** The restore time objective: a test restore Job running longer than this alerts. */
  rtoSeconds: number;
}

/**
 * Alerts on the test restore, from kube-state-metrics alone (its docs/cronjob-metrics.md and
 * docs/job-metrics.md: kube_cronjob_status_last_successful_time and kube_cronjob_created with labels
 * namespace, cronjob; kube_job_status_start_time, kube_job_status_completion_time,
 * kube_job_status_active, kube_job_failed{condition} with namespace, job_name; kube_job_owner with
 * owner_kind, owner_name). A Job's completion time is set only when it succeeds (Kubernetes API
 * reference, JobStatus.completionTime), so a Job counts as running while kube_job_status_active > 0.
 */
export function testRestoreGroup(t: TestRestoreAlertTarget): RuleGroup {
  const staleAfter = maxCronIntervalSeconds(t.schedule) + t.graceSeconds;
  const ns = `namespace="${t.namespace}"`;
  const cron = `${ns}, cronjob="${t.cronJobName}"`;
  const lastSuccess = `max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{${cron}})`;
  const owned = `and on (namespace, job_name) kube_job_owner{${ns}, owner_kind="CronJob", owner_name="${t.cronJobName}"}`;
  const start = `(max by (namespace, job_name) (kube_job_status_start_time{${ns}}) ${owned})`;
  // The newest Job of the CronJob: earlier ones stay in its history and must not alert again.
  const newest = `(${start} == on (namespace) group_left () max by (namespace) ${start})`;
  const duration = [
    `(max by (namespace, job_name) (kube_job_status_completion_time{${ns}}) - on (namespace, job_name) ${start})`,
    `or (time() - ${start} and on (namespace, job_name) (max by (namespace, job_name) (kube_job_status_active{${ns}}) > 0))`,
  ].join("\n");
  return {
    name: "milvus-test-restore.rules",
    rules: [
      {
        alert: "MilvusTestRestoreFailed",
        // A check failed (or the restore did): the backups may not restore. Stops once a later run passes.
        expr: [
          `(max by (namespace, job_name) (kube_job_failed{${ns}, condition="true"}) == 1) ${owned}`,
          `unless on (namespace, job_name) (kube_job_status_start_time{${ns}} <= on (namespace) group_left () max by (namespace) (kube_cronjob_status_last_successful_time{${cron}}))`,
        ].join("\n"),
        for: "0m",
        labels: { severity: "critical", component: "backup" },
        annotations: {
          summary: "A weekly test restore of the Milvus backups failed",
          description: `Test restore Job {{ $labels.namespace }}/{{ $labels.job_name }} (CronJob ${t.cronJobName}) failed and none has passed since: a backup may not restore. Its log names the collection and the failed check.`,
          runbook_url: runbook("MilvusTestRestoreFailed"),
        },
      },
      {
        alert: "MilvusTestRestoreStale",
        // As MilvusBackupStale: too old a success, never a success, or no CronJob at all.
        expr: [
          `(time() - ${lastSuccess} > ${staleAfter})`,
          `or (time() - max by (namespace, cronjob) (kube_cronjob_created{${cron}}) > ${staleAfter} unless on (namespace, cronjob) ${lastSuccess})`,
          `or absent(kube_cronjob_created{${cron}})`,
        ].join("\n"),
        for: "5m",
        labels: { severity: "warning", component: "backup" },
        annotations: {
          summary: "No successful Milvus test restore within its schedule",
          description: `CronJob ${t.namespace}/${t.cronJobName} ("${t.schedule}") has no successful test restore in the last ${hours(staleAfter)} (longest schedule gap ${hours(maxCronIntervalSeconds(t.schedule))} + ${hours(t.graceSeconds)} for start and run deadlines), or the CronJob is missing: restores of the backups are untested.`,
          runbook_url: runbook("MilvusTestRestoreStale"),
        },
      },
      {
        alert: "MilvusTestRestoreSlow",
        // The newest Job's duration: finished (completion - start) or still running (now - start).
        expr: `((${duration}) > ${t.rtoSeconds}) and on (namespace, job_name) ${newest}`,
        for: "0m",
        labels: { severity: "warning", component: "backup" },
        annotations: {
          summary: "The last Milvus test restore took longer than the RTO",
          description: `Test restore Job {{ $labels.namespace }}/{{ $labels.job_name }} has taken {{ $value | humanizeDuration }}, more than the ${hours(t.rtoSeconds)} restore time objective (backup.testRestore.rtoMinutes): a failover restore would take as long.`,
          runbook_url: runbook("MilvusTestRestoreSlow"),
        },
      },
    ],
  };
}

/** Every alert name, in order (README and tests cross-check against it). */
export function alertNames(groups: RuleGroup[]): string[] {
  return groups.flatMap((g) => g.rules.map((r) => r.alert));
}

/** Renders groups as a Prometheus rule file (the same content the PrometheusRule's spec carries). */
export function renderRuleFile(groups: RuleGroup[]): string {
  return yaml.dump({ groups }, { lineWidth: -1, noRefs: true });
}
