import * as assert from "node:assert/strict";
import {
  parseRestoreArgs,
  RestoreRequest,
  restoreArgs,
  restoreEnv,
  restoreJobFromCronJob,
  listedDocument,
  workerArgs,
} from "../tools/restore-job";

const cronJob = {
  apiVersion: "batch/v1",
  kind: "CronJob",
  metadata: { name: "milvus-backup", namespace: "milvus" },
  spec: {
    jobTemplate: {
      spec: {
        template: {
          metadata: {
            labels: { "app.kubernetes.io/name": "milvus-backup", "azure.workload.identity/use": "true" },
          },
          spec: {
            serviceAccountName: "milvus-backup",
            restartPolicy: "Never",
            initContainers: [
              {
                name: "backup",
                image: "acr.azurecr.io/milvus-backup:0.1.0",
                args: ["backup", "--collection", "docs"],
                env: [{ name: "MILVUS_ADDRESS", value: "milvus:19530" }],
              },
            ],
            containers: [
              {
                name: "prune",
                image: "acr.azurecr.io/milvus-backup:0.1.0",
                args: ["prune", "--retention-days", "30"],
                env: [{ name: "MILVUS_ADDRESS", value: "milvus:19530" }],
              },
            ],
          },
        },
      },
    },
  },
};

describe("restore-job", () => {
  it("parses a full command line", () => {
    const req = parseRestoreArgs([
      "--stack",
      "dr",
      "--backup",
      "docs-20261125T020000Z-ab12",
      "--target",
      "docs_restored",
      "--drop-existing",
      "--index-fallback",
      "HNSW",
      "--dry-run",
    ]);
    assert.ok(!("problems" in req));
    assert.equal(req.stack, "dr");
    assert.equal(req.namespace, "milvus");
    assert.equal(req.cronJob, "milvus-backup");
    assert.equal(req.dropExisting, true);
    assert.equal(req.dryRun, true);
    assert.equal(req.timeoutSeconds, 21600);
    assert.deepEqual(restoreArgs(req), [
      "restore",
      "--backup",
      "docs-20261125T020000Z-ab12",
      "--target",
      "docs_restored",
      "--drop-existing",
      "--index-fallback",
      "HNSW",
    ]);
  });

  it("reports every problem of a bad command line at once", () => {
    const res = parseRestoreArgs(["--target", "1bad-name", "--bogus", "--timeout", "5"]);
    assert.ok("problems" in res);
    assert.deepEqual(res.problems, [
      'unknown argument "--bogus"',
      "--stack is required (the Pulumi stack whose cluster runs the Job, e.g. prod or dr)",
      "--backup is required (a backup id from `npm run -s restore-job -- --command list`)",
      '--target "1bad-name" is not a valid Milvus collection name',
      "--timeout must be an integer number of seconds >= 60",
    ]);
  });

  it("builds the Job from the CronJob's pod template with one restore container", () => {
    const req = parseRestoreArgs(["--stack", "prod", "--backup", "b1"]) as RestoreRequest;
    const job = restoreJobFromCronJob(cronJob, req, new Date("2026-11-25T10:20:30Z")) as {
      metadata: { name: string; namespace: string; labels: Record<string, string> };
      spec: {
        backoffLimit: number;
        template: {
          metadata: unknown;
          spec: {
            serviceAccountName: string;
            initContainers?: unknown;
            containers: { name: string; image: string; args: string[]; env: unknown }[];
          };
        };
      };
    };
    assert.equal(job.metadata.name, "milvus-restore-20261125102030");
    assert.equal(job.metadata.namespace, "milvus");
    assert.equal(job.metadata.labels["milvus-aks/restore"], "true");
    assert.equal(job.spec.backoffLimit, 0);
    assert.deepEqual(job.spec.template.metadata, cronJob.spec.jobTemplate.spec.template.metadata);
    assert.equal(job.spec.template.spec.serviceAccountName, "milvus-backup");
    assert.equal(job.spec.template.spec.initContainers, undefined);
    assert.deepEqual(
      job.spec.template.spec.containers.map((c) => [c.name, c.image, c.args]),
      [["restore", "acr.azurecr.io/milvus-backup:0.1.0", ["restore", "--backup", "b1"]]],
    );
    assert.deepEqual(job.spec.template.spec.containers[0].env, [
      { name: "MILVUS_ADDRESS", value: "milvus:19530" },
    ]);
  });

  it("restores from another account (a dr stack reading the primary's secondary) when asked", () => {
    const req = parseRestoreArgs([
      "--stack",
      "dr",
      "--backup",
      "b1",
      "--storage-account-url",
      "https://milvusbkprod-secondary.blob.core.windows.net/",
      "--container",
      "milvus-backups",
    ]) as RestoreRequest;
    const withAccount = {
      name: "prune",
      env: [
        { name: "MILVUS_ADDRESS", value: "milvus:19530" },
        { name: "AZURE_STORAGE_ACCOUNT_URL", value: "https://milvusbkdr.blob.core.windows.net/" },
        { name: "BACKUP_CONTAINER", value: "milvus-backups" },
      ],
    };
    assert.deepEqual(restoreEnv(withAccount, req), [
      { name: "MILVUS_ADDRESS", value: "milvus:19530" },
      { name: "AZURE_STORAGE_ACCOUNT_URL", value: "https://milvusbkprod-secondary.blob.core.windows.net/" },
      { name: "BACKUP_CONTAINER", value: "milvus-backups" },
    ]);
    const bad = parseRestoreArgs([
      "--stack",
      "dr",
      "--backup",
      "b1",
      "--storage-account-url",
      "http://x",
      "--container",
      "A",
    ]);
    assert.ok("problems" in bad);
    assert.deepEqual(bad.problems, [
      '--storage-account-url "http://x" is not an https blob endpoint such as https://milvusbkprod-secondary.blob.core.windows.net/',
      '--container "A" is not a valid blob container name',
    ]);
  });

  it("fails clearly when the CronJob has no pod template", () => {
    const req = parseRestoreArgs(["--stack", "prod", "--backup", "b1"]) as RestoreRequest;
    assert.throws(
      () => restoreJobFromCronJob({ spec: {} }, req, new Date()),
      /CronJob milvus\/milvus-backup has no pod template to copy; is the backup worker deployed to stack prod\?/,
    );
  });
  it("runs list and verify as in-cluster Jobs too, and finds the list document among log lines", () => {
    const list = parseRestoreArgs(["--stack", "dr", "--command", "list"]);
    assert.ok(!("problems" in list));
    assert.deepEqual(workerArgs(list), ["list", "--json"]);
    const verify = parseRestoreArgs(["--stack", "dr", "--command", "verify", "--backup", "b1"]);
    assert.ok(!("problems" in verify));
    assert.deepEqual(workerArgs(verify), ["verify", "--backup", "b1"]);
    assert.deepEqual(parseRestoreArgs(["--stack", "dr", "--command", "drop"]), {
      problems: [
        '--command "drop" is not one of restore, verify, list',
        "--backup is required (a backup id from `npm run -s restore-job -- --command list`)",
      ],
    });
    const logs = '{"level":"info","msg":"listing"}\n{"backups":[{"backupId":"b1"}]}\n';
    assert.equal(listedDocument(logs), '{"backups":[{"backupId":"b1"}]}');
    assert.equal(listedDocument('{"level":"error"}\n'), undefined);
  });
});
