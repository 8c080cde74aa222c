import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";
import {
  AlertRule,
  alertNames,
  backupStaleAfterSeconds,
  maxCronIntervalSeconds,
  renderRuleFile,
  RuleGroup,
  RUNBOOK_DOC,
  runbookAnchor,
} from "../components/monitoring/alertRules";
import { backupWorkerDefaults } from "../components/backupDeployment/backupWorker";
import { dashboardExpressions, dashboards, RATE_INTERVAL } from "../components/monitoring/dashboards";
import { ROOT, renderStack } from "../tools/offline-runtime";

/**
 * The deployed PrometheusRule, rendered to a rule file and run through the real `promtool`
 * (Debian's prometheus package; .ci/run installs it into .tmp/promtool). In CI a missing promtool
 * fails the suite; locally it skips with instructions.
 */

const LOCAL_PROMTOOL = path.join(ROOT, ".tmp", "promtool", "usr", "bin", "promtool");

function findPromtool(): string | undefined {
  const candidates = [process.env.PROMTOOL, LOCAL_PROMTOOL];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  const which = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
  const onPath = which.stdout.trim();
  return which.status === 0 && onPath ? onPath : undefined;
}

function promtool(bin: string, args: string[], cwd: string): { code: number; output: string } {
  const r = spawnSync(bin, args, { cwd, encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
}

/** One promtool unit-test group: input series, and the alerts expected at an evaluation time. */
interface PromtoolTest {
  name: string;
  interval: string;
  input_series: { series: string; values: string }[];
  alert_rule_test: {
    eval_time: string;
    alertname: string;
    exp_alerts: { exp_labels: Record<string, string>; exp_annotations: Record<string, string> }[];
  }[];
}

let prodGroups: Promise<RuleGroup[]> | undefined;
/** Rule groups of the rendered prod stack (cached: renders take seconds), or of prod with overrides. */
function deployedGroups(overrides?: Record<string, unknown>): Promise<RuleGroup[]> {
  if (overrides) return renderGroups(overrides);
  prodGroups ??= renderGroups();
  return prodGroups;
}

async function renderGroups(overrides?: Record<string, unknown>): Promise<RuleGroup[]> {
  const result = await renderStack("prod", overrides ? { overrides } : {});
  const rules = result.resources.filter(
    (r) => r.type === "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
  );
  assert.equal(rules.length, 1);
  return (rules[0].inputs.spec as { groups: RuleGroup[] }).groups;
}

function rule(groups: RuleGroup[], alert: string): AlertRule {
  const found = groups.flatMap((g) => g.rules).find((r) => r.alert === alert);
  assert.ok(found, `alert ${alert} is deployed`);
  return found;
}

describe("monitoring: alert rules under promtool", function () {
  let bin: string | undefined;
  let dir: string;
  let groups: RuleGroup[];

  before(async function () {
    bin = findPromtool();
    if (!bin) {
      const hint = "install it with `bash .ci/run` or set PROMTOOL=/path/to/promtool";
      if (process.env.CI === "true") throw new Error(`promtool not found (CI=true): ${hint}`);
      console.warn(`    promtool not found, skipping promtool checks: ${hint}`);
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "milvus-rules-"));
    groups = await deployedGroups();
    fs.writeFileSync(path.join(dir, "rules.yaml"), renderRuleFile(groups));
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the deployed PrometheusRule passes `promtool check rules`", () => {
    const r = promtool(bin!, ["check", "rules", "rules.yaml"], dir);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, new RegExp(`SUCCESS: ${alertNames(groups).length} rules found`));
  });

  it("promtool rejects a broken expression (the check can fail)", () => {
    const broken: RuleGroup[] = [
      {
        name: "broken",
        rules: [{ ...rule(groups, "MilvusSearchLatencyHigh"), expr: "sum by (le (rate(x[5m]))" }],
      },
    ];
    fs.writeFileSync(path.join(dir, "broken.yaml"), renderRuleFile(broken));
    const r = promtool(bin!, ["check", "rules", "broken.yaml"], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /FAILED|parse error/);
  });

  it("every dashboard expression parses under promtool", () => {
    const boards = dashboards({
      dataNamespace: "milvus",
      minio: true,
      backup: { namespace: "milvus", cronJobName: "milvus-backup", staleAfterSeconds: 111_600 },
    });
    const exprs = Object.values(boards).flatMap(dashboardExpressions);
    assert.ok(exprs.length >= 18, `expected the full panel set, got ${exprs.length} expressions`);
    const asRules = {
      groups: [
        {
          name: "dashboards",
          rules: exprs.map((e, i) => ({
            record: `dashboard:expr_${i}`,
            expr: e.split(RATE_INTERVAL).join("5m"),
          })),
        },
      ],
    };
    fs.writeFileSync(path.join(dir, "dashboards.yaml"), yaml.dump(asRules, { lineWidth: -1 }));
    const r = promtool(bin!, ["check", "rules", "dashboards.yaml"], dir);
    assert.equal(r.code, 0, r.output);
  });

  describe("promtool test rules: synthetic series decide which alerts fire", () => {
    const tests: PromtoolTest[] = [];
    const exp = (alert: string, labels: Record<string, string>, description: string) => {
      const r = rule(groups, alert);
      return {
        exp_labels: { ...r.labels, ...labels },
        exp_annotations: {
          summary: r.annotations.summary,
          description,
          runbook_url: r.annotations.runbook_url,
        },
      };
    };
    const hist = (metric: string, labels: string, perMinute: Record<string, number>) =>
      Object.entries(perMinute).map(([le, n]) => ({
        series: `${metric}{${labels}, le="${le}"}`,
        values: `0+${n}x40`,
      }));

    before(() => {
      const proxy = 'namespace="milvus", pod="milvus-proxy-0", node_id="7"';
      // Milvus buckets double from 1 ms; all requests in (128, 256] put P95 at 249.6 ms.
      tests.push({
        name: "P95 search latency near 250 ms fires",
        interval: "1m",
        input_series: hist("milvus_proxy_req_latency_bucket", `${proxy}, function_name="Search"`, {
          "128": 0,
          "256": 100,
          "512": 100,
          "+Inf": 100,
        }),
        alert_rule_test: [
          {
            eval_time: "15m",
            alertname: "MilvusSearchLatencyHigh",
            exp_alerts: [
              exp(
                "MilvusSearchLatencyHigh",
                { namespace: "milvus" },
                "P95 latency of Search, HybridSearch, Query requests at the proxies in namespace milvus has been 250 ms for 5 minutes (target: 200 ms).",
              ),
            ],
          },
        ],
      });
      // 94 of 100 requests at or below 128 ms puts P95 at 149.3 ms; slow inserts must not count.
      tests.push({
        name: "P95 search latency near 150 ms and slow inserts do not fire",
        interval: "1m",
        input_series: [
          ...hist("milvus_proxy_req_latency_bucket", `${proxy}, function_name="Search"`, {
            "128": 94,
            "256": 100,
            "512": 100,
            "+Inf": 100,
          }),
          ...hist("milvus_proxy_req_latency_bucket", `${proxy}, function_name="Insert"`, {
            "256": 0,
            "512": 100,
            "+Inf": 100,
          }),
        ],
        alert_rule_test: [{ eval_time: "15m", alertname: "MilvusSearchLatencyHigh", exp_alerts: [] }],
      });

      const qn = (pod: string) => `namespace="milvus", pod="${pod}", container="querynode"`;
      tests.push({
        name: "CPU at 85% of the limit fires, 60% and batch Jobs do not",
        interval: "1m",
        input_series: [
          // cAdvisor counters in CPU-seconds: 51 s per minute is 0.85 cores.
          { series: `container_cpu_usage_seconds_total{${qn("qn-hot")}, image="milvus"}`, values: "0+51x40" },
          {
            series: `kube_pod_container_resource_limits{${qn("qn-hot")}, resource="cpu", unit="core"}`,
            values: "1x40",
          },
          {
            series: `container_cpu_usage_seconds_total{${qn("qn-calm")}, image="milvus"}`,
            values: "0+36x40",
          },
          {
            series: `kube_pod_container_resource_limits{${qn("qn-calm")}, resource="cpu", unit="core"}`,
            values: "1x40",
          },
          {
            series:
              'container_cpu_usage_seconds_total{namespace="milvus", pod="milvus-backup-1", container="backup"}',
            values: "0+60x40",
          },
          {
            series:
              'kube_pod_container_resource_limits{namespace="milvus", pod="milvus-backup-1", container="backup", resource="cpu", unit="core"}',
            values: "1x40",
          },
          {
            series:
              'kube_pod_owner{namespace="milvus", pod="milvus-backup-1", owner_kind="Job", owner_name="milvus-backup-1"}',
            values: "1x40",
          },
        ],
        alert_rule_test: [
          { eval_time: "10m", alertname: "MilvusPodCpuNearLimit", exp_alerts: [] },
          {
            eval_time: "25m",
            alertname: "MilvusPodCpuNearLimit",
            exp_alerts: [
              exp(
                "MilvusPodCpuNearLimit",
                { namespace: "milvus", pod: "qn-hot", container: "querynode" },
                "milvus/qn-hot container querynode has used 85% of its CPU limit for 15 minutes; it is being throttled or about to be.",
              ),
            ],
          },
        ],
      });

      const gi = 1024 ** 3;
      tests.push({
        name: "memory at 90% of the limit fires, 50% does not",
        interval: "1m",
        input_series: [
          { series: `container_memory_working_set_bytes{${qn("qn-full")}}`, values: `${0.9 * 32 * gi}x20` },
          {
            series: `kube_pod_container_resource_limits{${qn("qn-full")}, resource="memory", unit="byte"}`,
            values: `${32 * gi}x20`,
          },
          { series: `container_memory_working_set_bytes{${qn("qn-half")}}`, values: `${0.5 * 32 * gi}x20` },
          {
            series: `kube_pod_container_resource_limits{${qn("qn-half")}, resource="memory", unit="byte"}`,
            values: `${32 * gi}x20`,
          },
        ],
        alert_rule_test: [
          {
            eval_time: "10m",
            alertname: "MilvusPodMemoryNearLimit",
            exp_alerts: [
              exp(
                "MilvusPodMemoryNearLimit",
                { namespace: "milvus", pod: "qn-full", container: "querynode" },
                "milvus/qn-full container querynode working set is 90% of its memory limit; the kernel OOM-kills it at 100%.",
              ),
            ],
          },
        ],
      });

      tests.push({
        name: "failed index builds fire, finished ones do not",
        interval: "1m",
        input_series: [
          {
            series:
              'milvus_datacoord_task_count{namespace="milvus", pod="mixcoord-0", task_type="JobTypeIndexJob", task_state="JobStateFailed"}',
            values: "2x20",
          },
          {
            series:
              'milvus_datacoord_task_count{namespace="milvus", pod="mixcoord-0", task_type="JobTypeIndexJob", task_state="JobStateFinished"}',
            values: "40x20",
          },
        ],
        alert_rule_test: [
          {
            eval_time: "10m",
            alertname: "MilvusIndexBuildFailed",
            exp_alerts: [
              exp(
                "MilvusIndexBuildFailed",
                { namespace: "milvus" },
                "2 index build task(s) in namespace milvus are in state JobStateFailed; segments without an index are searched by brute force and queries slow down.",
              ),
            ],
          },
        ],
      });

      tests.push({
        name: "etcd fsync p99 near 16 ms fires, near 4 ms does not",
        interval: "1m",
        input_series: [
          ...hist("etcd_disk_wal_fsync_duration_seconds_bucket", 'namespace="milvus", pod="etcd-0"', {
            "0.004": 0,
            "0.008": 0,
            "0.016": 100,
            "+Inf": 100,
          }),
          ...hist("etcd_disk_wal_fsync_duration_seconds_bucket", 'namespace="milvus", pod="etcd-1"', {
            "0.004": 100,
            "0.008": 100,
            "0.016": 100,
            "+Inf": 100,
          }),
        ],
        alert_rule_test: [
          {
            eval_time: "20m",
            alertname: "EtcdWalFsyncSlow",
            exp_alerts: [
              exp(
                "EtcdWalFsyncSlow",
                { namespace: "milvus", pod: "etcd-0" },
                "etcd member etcd-0 needs 15.92ms (p99) to fsync its WAL; above 10 ms heartbeats miss and leader elections follow.",
              ),
            ],
          },
        ],
      });

      const quota = 4 * gi;
      tests.push({
        name: "etcd database at 87.5% of its quota fires, 50% does not",
        interval: "1m",
        input_series: [
          {
            series: 'etcd_mvcc_db_total_size_in_bytes{namespace="milvus", pod="etcd-0"}',
            values: `${3.5 * gi}x20`,
          },
          {
            series: 'etcd_server_quota_backend_bytes{namespace="milvus", pod="etcd-0"}',
            values: `${quota}x20`,
          },
          {
            series: 'etcd_mvcc_db_total_size_in_bytes{namespace="milvus", pod="etcd-1"}',
            values: `${2 * gi}x20`,
          },
          {
            series: 'etcd_server_quota_backend_bytes{namespace="milvus", pod="etcd-1"}',
            values: `${quota}x20`,
          },
        ],
        alert_rule_test: [
          {
            eval_time: "10m",
            alertname: "EtcdDatabaseNearQuota",
            exp_alerts: [
              exp(
                "EtcdDatabaseNearQuota",
                { namespace: "milvus", pod: "etcd-0" },
                "etcd member etcd-0 database is 87.5% of its 4 GiB quota; at 100% etcd raises NOSPACE and Milvus stops accepting writes.",
              ),
            ],
          },
        ],
      });

      const tb = 1024 ** 4;
      tests.push({
        name: "MinIO at 80% fires (cluster totals counted once), volumes at 75% fire, 50% does not",
        interval: "1m",
        input_series: [
          // Every MinIO node reports the same cluster totals.
          ...["minio-0", "minio-1"].flatMap((pod) => [
            {
              series: `minio_cluster_capacity_usable_free_bytes{namespace="milvus", pod="${pod}"}`,
              values: `${0.2 * tb}x30`,
            },
            {
              series: `minio_cluster_capacity_usable_total_bytes{namespace="milvus", pod="${pod}"}`,
              values: `${tb}x30`,
            },
          ]),
          {
            series:
              'kubelet_volume_stats_available_bytes{namespace="milvus", persistentvolumeclaim="data-etcd-0"}',
            values: `${25 * gi}x30`,
          },
          {
            series:
              'kubelet_volume_stats_capacity_bytes{namespace="milvus", persistentvolumeclaim="data-etcd-0"}',
            values: `${100 * gi}x30`,
          },
          {
            series:
              'kubelet_volume_stats_available_bytes{namespace="monitoring", persistentvolumeclaim="prometheus-db-0"}',
            values: `${50 * gi}x30`,
          },
          {
            series:
              'kubelet_volume_stats_capacity_bytes{namespace="monitoring", persistentvolumeclaim="prometheus-db-0"}',
            values: `${100 * gi}x30`,
          },
        ],
        alert_rule_test: [
          {
            eval_time: "20m",
            alertname: "MinioCapacityHigh",
            exp_alerts: [
              exp(
                "MinioCapacityHigh",
                { namespace: "milvus" },
                "MinIO in namespace milvus has used 80% of its usable (erasure-coded) capacity.",
              ),
            ],
          },
          {
            eval_time: "20m",
            alertname: "PersistentVolumeUsageHigh",
            exp_alerts: [
              exp(
                "PersistentVolumeUsageHigh",
                { namespace: "milvus", persistentvolumeclaim: "data-etcd-0" },
                "PVC milvus/data-etcd-0 is 75% full.",
              ),
            ],
          },
        ],
      });

      tests.push({
        name: "a container restart fires; steady pods and unreachable targets are reported",
        interval: "1m",
        input_series: [
          {
            series:
              'kube_pod_container_status_restarts_total{namespace="milvus", pod="qn-0", container="querynode"}',
            values: "0x10 1x10",
          },
          {
            series:
              'kube_pod_container_status_restarts_total{namespace="milvus", pod="qn-1", container="querynode"}',
            values: "3x20",
          },
          {
            series: 'up{namespace="milvus", pod="milvus-proxy-0", job="monitoring/milvus-proxy"}',
            values: "1x5 0x20",
          },
        ],
        alert_rule_test: [
          {
            eval_time: "12m",
            alertname: "MilvusPodRestarting",
            exp_alerts: [
              exp(
                "MilvusPodRestarting",
                { namespace: "milvus", pod: "qn-0", container: "querynode" },
                "milvus/qn-0 container querynode restarted 1 time(s) in the last 15 minutes.",
              ),
            ],
          },
          { eval_time: "12m", alertname: "MilvusMetricsTargetDown", exp_alerts: [] },
          {
            eval_time: "20m",
            alertname: "MilvusMetricsTargetDown",
            exp_alerts: [
              exp(
                "MilvusMetricsTargetDown",
                { namespace: "milvus", pod: "milvus-proxy-0", job: "monitoring/milvus-proxy" },
                "Target milvus-proxy-0 (monitoring/milvus-proxy) in namespace milvus has not answered scrapes for 10 minutes; every other alert for it is blind.",
              ),
            ],
          },
        ],
      });

      // Backup series: kube-state-metrics timestamps are seconds since the epoch; promtool starts at 0.
      const cron = 'namespace="milvus", cronjob="milvus-backup"';
      const owner = (job: string) =>
        `kube_job_owner{namespace="milvus", job_name="${job}", owner_kind="CronJob", owner_name="milvus-backup", owner_is_controller="true"}`;
      tests.push({
        name: "a failed backup job fires until a later run succeeds",
        interval: "1m",
        input_series: [
          { series: `kube_cronjob_created{${cron}}`, values: "0x40" },
          // Run 1 (start 60 s) succeeded at 120 s; run 2 (start 600 s) failed; run 3 (start 1500 s) succeeded at 1560 s.
          { series: `kube_cronjob_status_last_successful_time{${cron}}`, values: "_x1 120x24 1560x14" },
          { series: owner("milvus-backup-2"), values: "1x40" },
          {
            series: 'kube_job_status_start_time{namespace="milvus", job_name="milvus-backup-2"}',
            values: "600x40",
          },
          {
            series: 'kube_job_failed{namespace="milvus", job_name="milvus-backup-2", condition="true"}',
            values: "0x14 1x26",
          },
          {
            series: 'kube_job_failed{namespace="milvus", job_name="milvus-backup-2", condition="false"}',
            values: "1x14 0x26",
          },
          // A restore Job that failed is not a backup: no CronJob owner.
          {
            series: 'kube_job_failed{namespace="milvus", job_name="milvus-restore-1", condition="true"}',
            values: "1x40",
          },
          {
            series: 'kube_job_status_start_time{namespace="milvus", job_name="milvus-restore-1"}',
            values: "900x40",
          },
        ],
        alert_rule_test: [
          {
            eval_time: "20m",
            alertname: "MilvusBackupJobFailed",
            exp_alerts: [
              exp(
                "MilvusBackupJobFailed",
                { namespace: "milvus", job_name: "milvus-backup-2", owner_name: "milvus-backup" },
                "Backup Job milvus/milvus-backup-2 (CronJob milvus-backup) failed and no backup has succeeded since.",
              ),
            ],
          },
          { eval_time: "30m", alertname: "MilvusBackupJobFailed", exp_alerts: [] },
        ],
      });

      const staleAfter = backupStaleAfterSeconds({
        namespace: "milvus",
        cronJobName: "milvus-backup",
        schedule: "0 2 * * *",
        graceSeconds:
          backupWorkerDefaults().startingDeadlineSeconds + backupWorkerDefaults().activeDeadlineSeconds,
      });
      const staleDescription =
        'CronJob milvus/milvus-backup ("0 2 * * *") has no successful backup in the last 31h (longest schedule gap 24h + 7h for start and run deadlines), or the CronJob is missing.';
      const stale = exp(
        "MilvusBackupStale",
        { namespace: "milvus", cronjob: "milvus-backup" },
        staleDescription,
      );
      // Evaluated every 10 minutes over 40 hours; the threshold for a daily schedule is 31 h.
      assert.equal(staleAfter, 31 * 3600);
      tests.push({
        name: "a last success older than schedule + grace fires, a younger one does not",
        interval: "10m",
        input_series: [
          { series: `kube_cronjob_created{${cron}}`, values: "0x240" },
          { series: `kube_cronjob_status_last_successful_time{${cron}}`, values: "3600x240" },
        ],
        alert_rule_test: [
          { eval_time: "31h", alertname: "MilvusBackupStale", exp_alerts: [] },
          { eval_time: "33h", alertname: "MilvusBackupStale", exp_alerts: [stale] },
        ],
      });
      tests.push({
        name: "a CronJob that never succeeded fires after schedule + grace",
        interval: "10m",
        input_series: [{ series: `kube_cronjob_created{${cron}}`, values: "0x240" }],
        alert_rule_test: [
          { eval_time: "30h", alertname: "MilvusBackupStale", exp_alerts: [] },
          { eval_time: "32h", alertname: "MilvusBackupStale", exp_alerts: [stale] },
        ],
      });
      tests.push({
        name: "a missing CronJob fires",
        interval: "10m",
        input_series: [
          { series: 'kube_cronjob_created{namespace="milvus", cronjob="something-else"}', values: "0x10" },
        ],
        alert_rule_test: [{ eval_time: "10m", alertname: "MilvusBackupStale", exp_alerts: [stale] }],
      });
    });

    it("every alert has a test case in which it fires", () => {
      const firing = new Set(
        tests.flatMap((t) =>
          t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname),
        ),
      );
      assert.deepEqual(
        alertNames(groups).filter((a) => !firing.has(a)),
        [],
      );
    });

    it("`promtool test rules` passes on the deployed rules", () => {
      // Day-long backup scenarios are evaluated every 10 minutes, the rest every minute (keeps it fast).
      for (const interval of ["1m", "10m"]) {
        const subset = tests.filter((t) => t.interval === interval);
        assert.ok(subset.length > 0);
        const file = { rule_files: ["rules.yaml"], evaluation_interval: interval, tests: subset };
        fs.writeFileSync(path.join(dir, `rules-${interval}.test.yaml`), yaml.dump(file, { lineWidth: -1 }));
        const r = promtool(bin!, ["test", "rules", `rules-${interval}.test.yaml`], dir);
        assert.equal(r.code, 0, r.output);
        assert.match(r.output, /SUCCESS/);
      }
    });

    it("`promtool test rules` fails when an expected alert does not fire (the harness can fail)", () => {
      const wrong = structuredClone(tests[1]);
      wrong.alert_rule_test[0].exp_alerts = [
        {
          exp_labels: { severity: "warning", component: "milvus", namespace: "milvus" },
          exp_annotations: {},
        },
      ];
      const file = { rule_files: ["rules.yaml"], evaluation_interval: "1m", tests: [wrong] };
      fs.writeFileSync(path.join(dir, "wrong.test.yaml"), yaml.dump(file, { lineWidth: -1 }));
      const r = promtool(bin!, ["test", "rules", "wrong.test.yaml"], dir);
      assert.notEqual(r.code, 0);
      assert.match(r.output, /FAILED/);
    });
  });
});

describe("monitoring: rule content", () => {
  it("derives the backup threshold from backup.schedule and the worker's deadlines", async () => {
    const grace =
      backupWorkerDefaults().startingDeadlineSeconds + backupWorkerDefaults().activeDeadlineSeconds;
    assert.equal(grace, 7 * 3600);
    const daily = rule(await deployedGroups(), "MilvusBackupStale");
    assert.match(
      daily.expr,
      /^\(time\(\) - max by \(namespace, cronjob\) \(kube_cronjob_status_last_successful_time\{namespace="milvus", cronjob="milvus-backup"\}\) > 111600\)$/m,
    );
    const sixHourly = rule(
      await deployedGroups({ "milvus-aks:backup": { schedule: "0 */6 * * *" } }),
      "MilvusBackupStale",
    );
    assert.match(sixHourly.expr, /> 46800\)$/m);
    assert.equal(sixHourly.for, "5m");
    assert.equal(sixHourly.labels.severity, "critical");
  });

  it("keeps the service-target thresholds and their PromQL", async () => {
    const groups = await deployedGroups();
    assert.equal(
      rule(groups, "MilvusSearchLatencyHigh").expr,
      'histogram_quantile(0.95, sum by (namespace, le) (rate(milvus_proxy_req_latency_bucket{namespace="milvus", function_name=~"Search|HybridSearch|Query"}[5m]))) > 200',
    );
    assert.equal(rule(groups, "MilvusSearchLatencyHigh").for, "5m");
    assert.match(
      rule(groups, "MilvusPodCpuNearLimit").expr,
      /kube_pod_container_resource_limits\{namespace="milvus", resource="cpu"\}\) > 0.8\)/,
    );
    assert.match(rule(groups, "MilvusPodMemoryNearLimit").expr, /resource="memory"\}\) > 0.85$/);
    assert.match(
      rule(groups, "MilvusIndexBuildFailed").expr,
      /task_type="JobTypeIndexJob", task_state="JobStateFailed"/,
    );
    assert.match(
      rule(groups, "EtcdWalFsyncSlow").expr,
      /histogram_quantile\(0.99, .*etcd_disk_wal_fsync_duration_seconds_bucket.*> 0.01$/,
    );
    assert.match(
      rule(groups, "EtcdDatabaseNearQuota").expr,
      /etcd_mvcc_db_total_size_in_bytes.* \/ etcd_server_quota_backend_bytes.* > 0.8$/,
    );
    assert.match(rule(groups, "MinioCapacityHigh").expr, /> 0.7$/);
    assert.match(rule(groups, "PersistentVolumeUsageHigh").expr, /> 0.7$/);
  });

  it("leaves the MinIO rule out of stacks that store objects in Azure Blob", async () => {
    const groups = await deployedGroups({ "milvus-aks:objectStore": "azureBlob" });
    assert.ok(!alertNames(groups).includes("MinioCapacityHigh"));
    assert.ok(alertNames(groups).includes("EtcdDatabaseNearQuota"));
  });

  it("gives every alert a severity, summary, description and a runbook_url to its runbook entry", async () => {
    const groups = await deployedGroups();
    const doc = fs.readFileSync(path.join(ROOT, RUNBOOK_DOC), "utf8");
    // The runbook entries sit under "## Monitoring", before the next top-level section.
    const section = /^## Monitoring$([\s\S]*?)(?=^## )/m.exec(doc)?.[1] ?? "";
    for (const r of groups.flatMap((g) => g.rules)) {
      assert.ok(["warning", "critical"].includes(r.labels.severity), r.alert);
      assert.ok(r.annotations.summary.length > 10 && r.annotations.description.length > 20, r.alert);
      assert.equal(r.annotations.runbook_url, `docs/operations.md#${runbookAnchor(r.alert)}`);
      assert.match(section, new RegExp(`^#### ${r.alert}$`, "m"), `runbook entry for ${r.alert}`);
    }
  });

  it("computes the longest gap of cron schedules", () => {
    assert.equal(maxCronIntervalSeconds("0 2 * * *"), 24 * 3600);
    assert.equal(maxCronIntervalSeconds("*/15 * * * *"), 15 * 60);
    assert.equal(maxCronIntervalSeconds("0 1,13 * * 1-5"), 60 * 3600); // Friday 13:00 to Monday 01:00
    assert.equal(maxCronIntervalSeconds("0 2 * * 0"), 7 * 24 * 3600);
    assert.equal(maxCronIntervalSeconds("0 2 1 * *"), 31 * 24 * 3600);
    assert.equal(maxCronIntervalSeconds("30 2 1 * 0"), 7 * 24 * 3600); // day-of-month OR day-of-week
    assert.equal(maxCronIntervalSeconds("0 3 29 2 *"), (365 * 4 + 1) * 24 * 3600);
    assert.equal(maxCronIntervalSeconds("5/20 0-2 * * *"), (21 * 60 + 20) * 60); // 02:45 to 00:05
    assert.throws(() => maxCronIntervalSeconds("0 2 * *"), /five-field/);
  });
});
