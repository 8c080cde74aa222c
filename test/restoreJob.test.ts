import * as assert from "node:assert/strict";
import * as yaml from "js-yaml";
import { stackResourceGroupName } from "../components/common/naming";
import { kubernetesObjects, renderStack, type RenderResult } from "../tools/offline-runtime";
import {
  clusterContext,
  clusterResourceGroup,
  type Kubectl,
  main,
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
      'unknown flag "--bogus"',
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

  describe("the stack's cluster and the offline dry run", () => {
    let prod: RenderResult;
    before(async () => {
      prod = await renderStack("prod");
    });

    /** A stand-in kubectl: knows the contexts given, records every call, and runs a Job to success. */
    function fakeKubectl(contexts: string[]) {
      const calls: string[][] = [];
      const kubectl: Kubectl = (args) => {
        calls.push(args);
        const ok = (stdout: string) => ({ status: 0, stdout, stderr: "" });
        if (args[0] === "config") {
          const ctx = args[2] ?? "";
          return contexts.includes(ctx)
            ? ok(`${ctx}\n`)
            : { status: 1, stdout: "", stderr: `error: context ${ctx} not found` };
        }
        const verb = args[4];
        if (verb === "get" && args[5] === "cronjob") return ok(JSON.stringify(cronJob));
        if (verb === "create") return ok("job.batch/x created");
        if (verb === "get" && args[5] === "job") return ok("1/");
        if (verb === "logs") return ok('{"event":"restore.done"}\n');
        return { status: 1, stdout: "", stderr: `unexpected kubectl ${args.join(" ")}` };
      };
      return { kubectl, calls };
    }

    async function run(argv: string[], kubectl: Kubectl) {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(argv, {
        out: (l) => out.push(l),
        err: (l) => err.push(l),
        kubectl,
        now: () => new Date("2026-11-25T10:20:30Z"),
        sleep: () => Promise.resolve(),
      });
      return { code, out: out.join("\n"), err: err.join("\n") };
    }

    it("derives the cluster's context and resource group from the stack as the program names them", () => {
      for (const stack of ["prod", "dr", "staging", "dev"]) {
        assert.equal(clusterResourceGroup(stack), stackResourceGroupName(stack));
      }
      const cluster = prod.resources.find((r) => r.type === "azure-native:containerservice:ManagedCluster");
      assert.equal(cluster?.inputs.resourceName, clusterContext("prod"));
      assert.equal(clusterContext("prod"), "milvus-prod-aks");
    });

    it("--stack runs every kubectl call in the stack's cluster, never kubectl's current context", async () => {
      const { kubectl, calls } = fakeKubectl(["milvus-prod-aks", "milvus-dr-aks"]);
      const r = await run(["--stack", "prod", "--backup", "b1"], kubectl);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, "restore-job: Job milvus-restore-20261125102030 succeeded: backup b1 restored");
      assert.deepEqual(calls[0], ["config", "get-contexts", "milvus-prod-aks", "-o", "name"]);
      assert.ok(calls.length >= 5);
      for (const c of calls.slice(1))
        assert.deepEqual(c.slice(0, 4), ["--context", "milvus-prod-aks", "-n", "milvus"]);
      // --context overrides the derived one.
      const other = fakeKubectl(["my-prod"]);
      assert.equal(
        (await run(["--stack", "prod", "--backup", "b1", "--context", "my-prod"], other.kubectl)).code,
        0,
      );
      assert.deepEqual(other.calls[1]?.slice(0, 2), ["--context", "my-prod"]);
    });

    it("refuses a stack whose context is not in the kubeconfig and says how to get it", async () => {
      const { kubectl, calls } = fakeKubectl(["milvus-dev-aks"]);
      const r = await run(["--stack", "prod", "--backup", "b1"], kubectl);
      assert.equal(r.code, 1);
      assert.equal(
        r.err,
        "restore-job: no kube context milvus-prod-aks for stack prod in the kubeconfig; run " +
          "`az aks get-credentials -g milvus-prod-rg -n milvus-prod-aks` and `kubelogin convert-kubeconfig -l azurecli` " +
          "(user credentials, never --admin), or pass --context",
      );
      assert.equal(calls.length, 1, "nothing is created anywhere");
    });

    it("--dry-run builds the Job from the offline render of the stack without any cluster", async () => {
      const noCluster: Kubectl = (args) => {
        throw new Error(`a dry run ran kubectl ${args.join(" ")}`);
      };
      const r = await run(
        ["--stack", "prod", "--backup", "b1", "--target", "docs_check", "--dry-run"],
        noCluster,
      );
      assert.equal(r.code, 0, r.err);
      assert.match(
        r.err,
        /dry run: Job built from the offline render of stack prod .*kube context milvus-prod-aks/,
      );
      const job = yaml.load(r.out) as {
        kind: string;
        metadata: { name: string; namespace: string };
        spec: {
          template: { spec: { serviceAccountName: string; containers: { image: string; args: string[] }[] } };
        };
      };
      const rendered = kubernetesObjects(prod).find(
        (o) =>
          o.inputs.kind === "CronJob" && (o.inputs.metadata as { name: string }).name === "milvus-backup",
      );
      assert.ok(rendered);
      const expected = restoreJobFromCronJob(
        rendered.inputs,
        parseRestoreArgs(["--stack", "prod", "--backup", "b1", "--target", "docs_check"]) as RestoreRequest,
        new Date("2026-11-25T10:20:30Z"),
      );
      assert.deepEqual(job, JSON.parse(JSON.stringify(expected)));
      assert.equal(job.kind, "Job");
      assert.equal(job.metadata.namespace, "milvus");
      assert.equal(job.spec.template.spec.serviceAccountName, "milvus-backup");
      assert.deepEqual(job.spec.template.spec.containers[0]?.args, [
        "restore",
        "--backup",
        "b1",
        "--target",
        "docs_check",
      ]);
      const missing = await run(["--stack", "nosuch", "--backup", "b1", "--dry-run"], noCluster);
      assert.deepEqual(missing, {
        code: 1,
        out: "",
        err: "restore-job: no stack file Pulumi.nosuch.yaml to render stack nosuch from",
      });
    });

    it("prints one usage line naming every problem, exit code 2", async () => {
      const { kubectl, calls } = fakeKubectl([]);
      assert.deepEqual(await run(["--stack", "prod", "--bogus=x"], kubectl), {
        code: 2,
        out: "",
        err:
          'restore-job: unknown flag "--bogus" (its value is not shown); --backup is required (a backup id from ' +
          "`npm run -s restore-job -- --command list`) (see `npm run -s restore-job -- --help`)",
      });
      assert.deepEqual(calls, []);
    });
  });
});
