/**
 * The weekly test restore as deployed: a CronJob on the dr stack only (warm, or cold once activated),
 * reading the primary's geo-secondary with the worker's identity, and its alerts, unit-tested with the
 * real `promtool test rules` on series shaped like kube-state-metrics output (docs/cronjob-metrics.md,
 * docs/job-metrics.md of kube-state-metrics: job_name/namespace on Job metrics, cronjob/namespace on
 * CronJob metrics, owner_kind/owner_name on kube_job_owner).
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";
import {
  testRestoreAlertTarget,
  testRestoreCommand,
  testRestoreConfig,
  testRestoreDefaults,
} from "../components/backupDeployment/testRestore";
import { backupWorkerDefaults } from "../components/backupDeployment/backupWorker";
import { TEST_RESTORE_DEFAULTS } from "../components/common/configSchema";
import {
  renderRuleFile,
  RUNBOOK_DOC,
  runbookAnchor,
  testRestoreGroup,
  type AlertRule,
  type RuleGroup,
} from "../components/monitoring/alertRules";
import { DEFAULT_SAMPLE_ROWS, DEFAULT_SEARCHES } from "../backup/testRestore";
import { ROOT, renderStack, type RenderResult } from "../tools/offline-runtime";
import { configErrors } from "./support/config";

const DR = {
  environment: "dr",
  location: "northeurope",
  adminGroupObjectIds: ["6f1c2a5e-8d3b-4b7e-9a41-2c5d8e7f9b10"],
  dr: { pairedLocation: "westeurope", primaryStack: "acme/milvus-aks/prod" },
};

const cronJobs = (r: RenderResult) => r.resources.filter((x) => x.type === "kubernetes:batch/v1:CronJob");
const testRestoreJob = (r: RenderResult) =>
  cronJobs(r).find((x) => (x.inputs.metadata as { name: string }).name === "milvus-test-restore");

describe("test restore: configuration and deployment", function () {
  this.timeout(120_000);

  it("defaults to a weekly schedule and a one-hour RTO; rejects a bad schedule and RTO by name", function () {
    assert.deepEqual(TEST_RESTORE_DEFAULTS, { schedule: "0 6 * * 3", rtoMinutes: 60 });
    const problems = configErrors(
      { ...DR, backup: { testRestore: { schedule: "0 25 * * 3", rtoMinutes: 0, extra: 1 } } },
      "dr",
    ).map((e) => `${e.propertyPath}: ${e.reason}`);
    assert.equal(problems.length, 3, problems.join("\n"));
    assert.match(problems.find((p) => p.startsWith("backup.testRestore.schedule")) ?? "", /hour 25/);
    assert.match(problems.find((p) => p.startsWith("backup.testRestore.rtoMinutes")) ?? "", /rtoMinutes = 0/);
    assert.match(problems.find((p) => p.startsWith("backup.testRestore.extra")) ?? "", /testRestore/);
    assert.deepEqual(testRestoreConfig({}), TEST_RESTORE_DEFAULTS);
    assert.deepEqual(testRestoreConfig({ testRestore: { rtoMinutes: 5 } }), {
      schedule: "0 6 * * 3",
      rtoMinutes: 5,
    });
  });

  it("runs the worker's own defaults unless told otherwise", function () {
    assert.deepEqual(testRestoreCommand(), ["test-restore"]);
    assert.deepEqual(testRestoreCommand(DEFAULT_SAMPLE_ROWS, DEFAULT_SEARCHES), [
      "test-restore",
      "--sample-rows",
      "100",
      "--searches",
      "5",
    ]);
  });

  describe("rendered stacks", function () {
    let dr: RenderResult;
    before(async function () {
      dr = await renderStack("dr", {
        overrides: { "milvus-aks:backup": { testRestore: { schedule: "30 7 * * 2", rtoMinutes: 90 } } },
      });
    });

    it("deploys the CronJob on a warm dr stack, reading the primary's read-only secondary", function () {
      const job = testRestoreJob(dr);
      assert.ok(job, "the dr stack has the test restore CronJob");
      const spec = job.inputs.spec as Record<string, unknown>;
      const d = testRestoreDefaults();
      assert.equal(spec.schedule, "30 7 * * 2");
      assert.equal(spec.timeZone, "Etc/UTC");
      assert.equal(spec.concurrencyPolicy, "Forbid");
      assert.equal(spec.successfulJobsHistoryLimit, 3);
      assert.equal(spec.failedJobsHistoryLimit, 3);
      const jobSpec = (spec.jobTemplate as { spec: Record<string, unknown> }).spec;
      assert.equal(jobSpec.backoffLimit, 0);
      assert.equal(jobSpec.activeDeadlineSeconds, 12 * 3600);
      const pod = (
        jobSpec.template as { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> }
      ).spec;
      const labels = (jobSpec.template as { metadata: { labels: Record<string, string> } }).metadata.labels;
      // Workload identity, and the backup app's label the worker's NetworkPolicy selects.
      assert.equal(labels["azure.workload.identity/use"], "true");
      assert.equal(labels["app.kubernetes.io/name"], "milvus-backup");
      assert.equal(pod.serviceAccountName, backupWorkerDefaults().serviceAccountName);
      const [c] = pod.containers as {
        args: string[];
        env: { name: string; value?: unknown; valueFrom?: unknown }[];
        securityContext: Record<string, unknown>;
      }[];
      assert.ok(c);
      assert.deepEqual(c.args, ["test-restore"]);
      const env = Object.fromEntries(c.env.map((e) => [e.name, e.value ?? e.valueFrom]));
      assert.equal(env.AZURE_STORAGE_ACCOUNT_URL, dr.outputs.restoreSourceBlobEndpoint);
      assert.match(String(env.AZURE_STORAGE_ACCOUNT_URL), /-secondary\.blob\.core\.windows\.net\/$/);
      assert.equal(env.BACKUP_CONTAINER, dr.outputs.restoreSourceContainerName);
      assert.deepEqual(env.MILVUS_TOKEN, {
        secretKeyRef: { name: d.credentialsSecretName, key: "MILVUS_TOKEN" },
      });
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      const component = dr.resources.find((r) => r.type === "milvus-aks:backup:TestRestore");
      assert.ok(component);
      assert.ok(
        job.options.urn.includes("milvus-aks:backup:TestRestore$kubernetes:batch/v1:CronJob"),
        job.options.urn,
      );
    });

    it("deploys the alerts, for the configured schedule and RTO, in their own PrometheusRule", function () {
      const rules = dr.resources.filter(
        (r) =>
          r.type === "kubernetes:monitoring.coreos.com/v1:PrometheusRule" &&
          (r.inputs.metadata as { name: string }).name === "milvus-test-restore",
      );
      assert.equal(rules.length, 1);
      const rule = rules[0];
      assert.ok(rule);
      assert.deepEqual(
        (rule.inputs.metadata as { labels: Record<string, string> }).labels.release,
        "kube-prometheus-stack",
      );
      assert.deepEqual((rule.inputs.spec as { groups: RuleGroup[] }).groups, [
        testRestoreGroup(testRestoreAlertTarget("milvus", { schedule: "30 7 * * 2", rtoMinutes: 90 })),
      ]);
    });

    it("is absent from prod and from a cold dr standby", async function () {
      const prod = await renderStack("prod");
      assert.equal(testRestoreJob(prod), undefined);
      assert.ok(cronJobs(prod).length > 0, "prod renders CronJobs (the check can fail)");
      const cold = await renderStack("dr", {
        overrides: { "milvus-aks:dr": { ...DR.dr, standby: "cold" } },
      });
      assert.equal(testRestoreJob(cold), undefined);
      const activated = await renderStack("dr", {
        overrides: { "milvus-aks:dr": { ...DR.dr, standby: "cold", activated: true } },
      });
      assert.ok(testRestoreJob(activated), "an activated cold standby runs it");
    });
  });
});

const LOCAL_PROMTOOL = path.join(ROOT, ".tmp", "promtool", "usr", "bin", "promtool");

function findPromtool(): string | undefined {
  for (const c of [process.env.PROMTOOL, LOCAL_PROMTOOL]) if (c && fs.existsSync(c)) return c;
  const which = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : undefined;
}

describe("test restore alerts under promtool", function () {
  const target = testRestoreAlertTarget("milvus", TEST_RESTORE_DEFAULTS);
  const group = testRestoreGroup(target);
  const rule = (name: string): AlertRule => {
    const r = group.rules.find((x) => x.alert === name);
    assert.ok(r, name);
    return r;
  };
  let bin = "";
  let dir = "";

  before(function () {
    const found = findPromtool();
    if (!found) {
      if (process.env.CI === "true") throw new Error("promtool not found (CI=true)");
      this.skip();
    }
    bin = found;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "test-restore-rules-"));
    fs.writeFileSync(path.join(dir, "rules.yaml"), renderRuleFile([group]));
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const run = (args: string[]) => {
    const r = spawnSync(bin, args, { cwd: dir, encoding: "utf8", timeout: 120_000 });
    return { code: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
  };

  it("every alert links its runbook entry in docs/operations.md", function () {
    const doc = fs.readFileSync(path.join(ROOT, RUNBOOK_DOC), "utf8");
    assert.deepEqual(
      group.rules.map((r) => r.alert),
      ["MilvusTestRestoreFailed", "MilvusTestRestoreStale", "MilvusTestRestoreSlow"],
    );
    for (const r of group.rules) {
      assert.equal(r.annotations.runbook_url, `${RUNBOOK_DOC}#${runbookAnchor(r.alert)}`);
      assert.match(doc, new RegExp(`^#### ${r.alert}$`, "m"), `runbook for ${r.alert}`);
    }
  });

  it("passes `promtool check rules`", function () {
    const r = run(["check", "rules", "rules.yaml"]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /SUCCESS: 3 rules found/);
  });

  it("fires exactly when kube-state-metrics series say so (`promtool test rules`)", function () {
    const ksm = 'job="kube-state-metrics", instance="10.0.0.9:8080"';
    const cj = `namespace="milvus", cronjob="milvus-test-restore", ${ksm}`;
    const owner = (job: string, cronjob = "milvus-test-restore") =>
      `kube_job_owner{namespace="milvus", job_name="${job}", owner_kind="CronJob", owner_name="${cronjob}", owner_is_controller="true", ${ksm}}`;
    const jobMetric = (metric: string, job: string, extra = "") =>
      `${metric}{namespace="milvus", job_name="${job}"${extra}, ${ksm}}`;
    const expect = (alert: string, labels: Record<string, string>, description: string) => {
      const r = rule(alert);
      return {
        exp_labels: { ...r.labels, ...labels },
        exp_annotations: {
          summary: r.annotations.summary,
          description,
          runbook_url: r.annotations.runbook_url,
        },
      };
    };
    // Weekly schedule (168 h between runs) + 1 h start deadline + 12 h run deadline.
    const staleDescription =
      'CronJob milvus/milvus-test-restore ("0 6 * * 3") has no successful test restore in the last 181h (longest schedule gap 168h + 13h for start and run deadlines), or the CronJob is missing: restores of the backups are untested.';
    const steps = (hours: number) => `0x${(hours * 3600) / 300}`;
    const tests = [
      {
        name: "stale: a success 180 h ago is fine, 182 h ago fires; never succeeding fires too",
        interval: "5m",
        input_series: [
          { series: `kube_cronjob_created{${cj}}`, values: steps(200) },
          { series: `kube_cronjob_status_last_successful_time{${cj}}`, values: steps(200) },
        ],
        alert_rule_test: [
          { eval_time: "180h", alertname: "MilvusTestRestoreStale", exp_alerts: [] },
          {
            eval_time: "182h",
            alertname: "MilvusTestRestoreStale",
            exp_alerts: [
              expect(
                "MilvusTestRestoreStale",
                { namespace: "milvus", cronjob: "milvus-test-restore" },
                staleDescription,
              ),
            ],
          },
        ],
      },
      {
        name: "stale: created long ago and never successful, or missing altogether",
        interval: "5m",
        input_series: [{ series: `kube_cronjob_created{${cj}}`, values: steps(200) }],
        alert_rule_test: [
          { eval_time: "170h", alertname: "MilvusTestRestoreStale", exp_alerts: [] },
          {
            eval_time: "182h",
            alertname: "MilvusTestRestoreStale",
            exp_alerts: [
              expect(
                "MilvusTestRestoreStale",
                { namespace: "milvus", cronjob: "milvus-test-restore" },
                staleDescription,
              ),
            ],
          },
        ],
      },
      {
        name: "stale: no CronJob at all",
        interval: "5m",
        input_series: [
          { series: 'kube_cronjob_created{namespace="milvus", cronjob="milvus-backup"}', values: steps(1) },
        ],
        alert_rule_test: [
          {
            eval_time: "10m",
            alertname: "MilvusTestRestoreStale",
            exp_alerts: [
              expect(
                "MilvusTestRestoreStale",
                { namespace: "milvus", cronjob: "milvus-test-restore" },
                staleDescription,
              ),
            ],
          },
        ],
      },
      {
        name: "slow: only the newest test restore Job counts; finished after 2h46m fires, a slow backup Job does not",
        interval: "1m",
        input_series: [
          // An older, slow run (history) and the newest run, 10,000 s long.
          { series: owner("milvus-test-restore-1"), values: "1x30" },
          { series: jobMetric("kube_job_status_start_time", "milvus-test-restore-1"), values: "1000x30" },
          {
            series: jobMetric("kube_job_status_completion_time", "milvus-test-restore-1"),
            values: "90000x30",
          },
          { series: owner("milvus-test-restore-2"), values: "1x30" },
          { series: jobMetric("kube_job_status_start_time", "milvus-test-restore-2"), values: "100000x30" },
          {
            series: jobMetric("kube_job_status_completion_time", "milvus-test-restore-2"),
            values: "110000x30",
          },
          { series: owner("milvus-backup-9", "milvus-backup"), values: "1x30" },
          { series: jobMetric("kube_job_status_start_time", "milvus-backup-9"), values: "200000x30" },
          { series: jobMetric("kube_job_status_completion_time", "milvus-backup-9"), values: "250000x30" },
        ],
        alert_rule_test: [
          {
            eval_time: "10m",
            alertname: "MilvusTestRestoreSlow",
            exp_alerts: [
              expect(
                "MilvusTestRestoreSlow",
                { namespace: "milvus", job_name: "milvus-test-restore-2" },
                "Test restore Job milvus/milvus-test-restore-2 has taken 2h 46m 40s, more than the 1h restore time objective (backup.testRestore.rtoMinutes): a failover restore would take as long.",
              ),
            ],
          },
        ],
      },
      {
        name: "slow: a newest run within the RTO does not fire, although an older one was slow",
        interval: "1m",
        input_series: [
          { series: owner("milvus-test-restore-1"), values: "1x30" },
          { series: jobMetric("kube_job_status_start_time", "milvus-test-restore-1"), values: "1000x30" },
          {
            series: jobMetric("kube_job_status_completion_time", "milvus-test-restore-1"),
            values: "90000x30",
          },
          { series: owner("milvus-test-restore-2"), values: "1x30" },
          { series: jobMetric("kube_job_status_start_time", "milvus-test-restore-2"), values: "100000x30" },
          {
            series: jobMetric("kube_job_status_completion_time", "milvus-test-restore-2"),
            values: "103000x30",
          },
        ],
        alert_rule_test: [{ eval_time: "10m", alertname: "MilvusTestRestoreSlow", exp_alerts: [] }],
      },
      {
        name: "slow: a run still going past the RTO fires; a failed run (no completion, not active) does not",
        interval: "1m",
        input_series: [
          { series: owner("milvus-test-restore-3"), values: "1x120" },
          { series: jobMetric("kube_job_status_start_time", "milvus-test-restore-3"), values: "0x120" },
          { series: jobMetric("kube_job_status_active", "milvus-test-restore-3"), values: "1x120" },
        ],
        alert_rule_test: [
          { eval_time: "50m", alertname: "MilvusTestRestoreSlow", exp_alerts: [] },
          {
            eval_time: "90m",
            alertname: "MilvusTestRestoreSlow",
            exp_alerts: [
              expect(
                "MilvusTestRestoreSlow",
                { namespace: "milvus", job_name: "milvus-test-restore-3" },
                "Test restore Job milvus/milvus-test-restore-3 has taken 1h 30m 0s, more than the 1h restore time objective (backup.testRestore.rtoMinutes): a failover restore would take as long.",
              ),
            ],
          },
        ],
      },
      {
        name: "slow: a failed run is not reported as running",
        interval: "1m",
        input_series: [
          { series: owner("milvus-test-restore-4"), values: "1x120" },
          { series: jobMetric("kube_job_status_start_time", "milvus-test-restore-4"), values: "0x120" },
          { series: jobMetric("kube_job_status_active", "milvus-test-restore-4"), values: "0x120" },
        ],
        alert_rule_test: [{ eval_time: "90m", alertname: "MilvusTestRestoreSlow", exp_alerts: [] }],
      },
      {
        name: "failed: a failed run fires until a later run succeeds; failed backup Jobs are not its business",
        interval: "1m",
        input_series: [
          { series: owner("milvus-test-restore-5"), values: "1x30" },
          { series: jobMetric("kube_job_status_start_time", "milvus-test-restore-5"), values: "1000x30" },
          {
            series: jobMetric("kube_job_failed", "milvus-test-restore-5", ', condition="true"'),
            values: "1x30",
          },
          // Succeeded before the failed run at first, after it from minute 20.
          { series: `kube_cronjob_status_last_successful_time{${cj}}`, values: "500x19 2000x10" },
          { series: owner("milvus-backup-7", "milvus-backup"), values: "1x30" },
          { series: jobMetric("kube_job_status_start_time", "milvus-backup-7"), values: "1000x30" },
          { series: jobMetric("kube_job_failed", "milvus-backup-7", ', condition="true"'), values: "1x30" },
        ],
        alert_rule_test: [
          {
            eval_time: "10m",
            alertname: "MilvusTestRestoreFailed",
            exp_alerts: [
              expect(
                "MilvusTestRestoreFailed",
                { namespace: "milvus", job_name: "milvus-test-restore-5" },
                "Test restore Job milvus/milvus-test-restore-5 (CronJob milvus-test-restore) failed and none has passed since: a backup may not restore. Its log names the collection and the failed check.",
              ),
            ],
          },
          { eval_time: "25m", alertname: "MilvusTestRestoreFailed", exp_alerts: [] },
        ],
      },
    ];
    fs.writeFileSync(
      path.join(dir, "tests.yaml"),
      yaml.dump(
        { rule_files: ["rules.yaml"], evaluation_interval: "1m", tests },
        { lineWidth: -1, noRefs: true },
      ),
    );
    const r = run(["test", "rules", "tests.yaml"]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /SUCCESS/);
    // The same tests against rules for a 6 h RTO and no run deadline fail: the fixtures decide.
    const loose = testRestoreGroup({ ...target, rtoSeconds: 6 * 3600, graceSeconds: 0 });
    fs.writeFileSync(path.join(dir, "rules.yaml"), renderRuleFile([loose]));
    const broken = run(["test", "rules", "tests.yaml"]);
    fs.writeFileSync(path.join(dir, "rules.yaml"), renderRuleFile([group]));
    assert.notEqual(broken.code, 0, broken.output);
    assert.match(broken.output, /alertname: MilvusTestRestoreSlow/);
    assert.match(broken.output, /alertname: MilvusTestRestoreStale/);
  });
});
