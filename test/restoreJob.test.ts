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
  PASSWORDS_DIR,
  usersWithoutPassword,
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

/** The CronJob as backupWorker.ts declares its pod: fsGroup and the worker's user, a tmp volume. */
const cronJobWithSecurity = {
  ...cronJob,
  spec: {
    jobTemplate: {
      spec: {
        template: {
          metadata: cronJob.spec.jobTemplate.spec.template.metadata,
          spec: {
            ...cronJob.spec.jobTemplate.spec.template.spec,
            securityContext: { runAsNonRoot: true, fsGroup: 10001 },
            volumes: [{ name: "tmp", emptyDir: { sizeLimit: "1Gi" } }],
            initContainers: cronJob.spec.jobTemplate.spec.template.spec.initContainers.map((c) => ({
              ...c,
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            })),
            containers: cronJob.spec.jobTemplate.spec.template.spec.containers.map((c) => ({
              ...c,
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            })),
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
        '--command "drop" is not one of restore, verify, list, list-rbac, restore-rbac',
        "--backup is required (a backup id from `npm run -s restore-job -- --command list`)",
      ],
    });
    const logs = '{"level":"info","msg":"listing"}\n{"backups":[{"backupId":"b1"}]}\n';
    assert.equal(listedDocument(logs), '{"backups":[{"backupId":"b1"}]}');
    assert.equal(listedDocument('{"level":"error"}\n'), undefined);
  });

  it("passes --target-database and --resume through to restore, checked by the worker's rules", () => {
    const req = parseRestoreArgs([
      "--stack",
      "dr",
      "--backup",
      "sales.docs-20261125T020000Z-ab12",
      "--target-database",
      "sales_copy",
      "--resume",
    ]);
    assert.ok(!("problems" in req), JSON.stringify(req));
    assert.deepEqual(workerArgs(req), [
      "restore",
      "--backup",
      "sales.docs-20261125T020000Z-ab12",
      "--target-database",
      "sales_copy",
      "--resume",
    ]);
    // backup/databases.ts DATABASE_NAME: a letter or underscore first, at most 64 characters, no dot.
    for (const bad of ["1sales", "sales.copy", "a".repeat(65), ""]) {
      assert.deepEqual(parseRestoreArgs(["--stack", "dr", "--backup", "b1", "--target-database", bad]), {
        problems: [
          `--target-database ${JSON.stringify(bad)} is not a valid Milvus database name (a letter or underscore, then ` +
            "letters, digits and underscores, at most 64 characters), e.g. default",
        ],
      });
    }
    assert.ok(
      !(
        "problems" in
        parseRestoreArgs(["--stack", "dr", "--backup", "b1", "--target-database", "_" + "a".repeat(63)])
      ),
    );
  });

  it("refuses a flag of one worker command with another instead of dropping it", () => {
    assert.deepEqual(
      parseRestoreArgs([
        "--stack",
        "dr",
        "--command",
        "verify",
        "--backup",
        "b1",
        "--target-database",
        "x",
        "--resume",
        "--passwords-secret",
        "pw",
        "--plan",
      ]),
      {
        problems: [
          "--target-database is only for --command restore (the database a restore writes into), not verify",
          "--resume is only for --command restore (it continues an interrupted restore), not verify",
          "--passwords-secret is only for --command restore-rbac (it mounts the users' passwords for restore-rbac), not verify",
          "--plan is only for --command restore-rbac (it prints restore-rbac's plan; --dry-run prints the Job of any command), not verify",
        ],
      },
    );
    assert.deepEqual(parseRestoreArgs(["--stack", "dr", "--backup", "b1", "--passwords-secret", "pw"]), {
      problems: [
        "--passwords-secret is only for --command restore-rbac (it mounts the users' passwords for restore-rbac), not restore",
      ],
    });
    assert.deepEqual(
      parseRestoreArgs([
        "--stack",
        "dr",
        "--command",
        "restore-rbac",
        "--backup",
        "rbac-20261125T020000Z-ab12cd",
        "--resume",
      ]),
      {
        problems: [
          "--resume is only for --command restore (it continues an interrupted restore), not restore-rbac",
        ],
      },
    );
  });

  it("runs list-rbac and restore-rbac; a password Secret is a mounted directory, never an argument", () => {
    const listRbac = parseRestoreArgs(["--stack", "dr", "--command", "list-rbac"]);
    assert.ok(!("problems" in listRbac));
    assert.deepEqual(workerArgs(listRbac), ["list-rbac", "--json"]);
    const id = "rbac-20261125T020000Z-ab12cd";
    const plain = parseRestoreArgs(["--stack", "dr", "--command", "restore-rbac", "--backup", id]);
    assert.ok(!("problems" in plain));
    assert.deepEqual(workerArgs(plain), ["restore-rbac", "--backup", id]);
    const full = parseRestoreArgs([
      "--stack",
      "dr",
      "--command",
      "restore-rbac",
      "--backup",
      id,
      "--passwords-secret",
      "milvus-rbac-passwords",
      "--plan",
    ]);
    assert.ok(!("problems" in full));
    assert.deepEqual(workerArgs(full), [
      "restore-rbac",
      "--backup",
      id,
      "--passwords-dir",
      "/etc/milvus-rbac-passwords",
      "--dry-run",
    ]);
    assert.deepEqual(
      parseRestoreArgs([
        "--stack",
        "dr",
        "--command",
        "restore-rbac",
        "--backup",
        "docs-20261125T020000Z-ab12",
        "--passwords-secret",
        "Bad_Name",
      ]),
      {
        problems: [
          '--backup "docs-20261125T020000Z-ab12" is not an RBAC backup id (rbac-<yyyymmddThhmmssZ>-<6 hex>, from `--command list-rbac`)',
          "--passwords-secret \"Bad_Name\" is not a Kubernetes Secret name (lower-case letters, digits, '-' and '.', e.g. milvus-rbac-passwords)",
        ],
      },
    );
    assert.deepEqual(parseRestoreArgs(["--stack", "dr", "--command", "restore-rbac"]), {
      problems: [
        "--backup is required (an RBAC backup id from `npm run -s restore-job -- --command list-rbac`)",
      ],
    });
  });

  it("builds the restore-rbac Job with the Secret as a read-only 0400 volume readable through fsGroup", () => {
    const req = parseRestoreArgs([
      "--stack",
      "dr",
      "--command",
      "restore-rbac",
      "--backup",
      "rbac-20261125T020000Z-ab12cd",
      "--passwords-secret",
      "milvus-rbac-passwords",
    ]) as RestoreRequest;
    const job = restoreJobFromCronJob(cronJobWithSecurity, req, new Date("2026-11-25T10:20:30Z")) as {
      metadata: { name: string };
      spec: { template: { spec: { volumes: unknown[]; containers: Record<string, unknown>[] } } };
    };
    assert.equal(job.metadata.name, "milvus-restore-rbac-20261125102030");
    assert.deepEqual(job.spec.template.spec.volumes, [
      { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
      { name: "rbac-passwords", secret: { secretName: "milvus-rbac-passwords", defaultMode: 0o400 } },
    ]);
    assert.deepEqual(job.spec.template.spec.containers, [
      {
        name: "restore-rbac",
        image: "acr.azurecr.io/milvus-backup:0.1.0",
        args: ["restore-rbac", "--backup", "rbac-20261125T020000Z-ab12cd", "--passwords-dir", PASSWORDS_DIR],
        env: [{ name: "MILVUS_ADDRESS", value: "milvus:19530" }],
        volumeMounts: [
          { name: "tmp", mountPath: "/tmp" },
          { name: "rbac-passwords", mountPath: "/etc/milvus-rbac-passwords", readOnly: true },
        ],
      },
    ]);
    // Without --passwords-secret nothing is added.
    const plain = restoreJobFromCronJob(
      cronJobWithSecurity,
      { ...req, passwordsSecret: undefined },
      new Date("2026-11-25T10:20:30Z"),
    ) as typeof job;
    assert.deepEqual(plain.spec.template.spec.volumes, [{ name: "tmp", emptyDir: { sizeLimit: "1Gi" } }]);
    assert.deepEqual(plain.spec.template.spec.containers[0]?.volumeMounts, [
      { name: "tmp", mountPath: "/tmp" },
    ]);
    // Without an fsGroup the root-owned 0400 files would be unreadable by the worker: refused.
    assert.throws(() => restoreJobFromCronJob(cronJob, req, new Date()), {
      message:
        "CronJob milvus/milvus-backup's pod template sets no securityContext.fsGroup, so the worker's non-root user " +
        "could not read the files of Secret milvus-rbac-passwords (mode 0400, owned by root); deploy the backup worker " +
        "of this checkout (its pod sets fsGroup) and run again",
    });
  });

  it("finds the users restore-rbac left without a password in the worker's log", () => {
    const logs =
      '{"level":"info","msg":"rbac.restore.plan"}\ncreate role reader\nneeds a password\torphan\nneeds a password\tbob\n' +
      "error: restore-rbac: 2 user(s) not created, no password for them: orphan, bob. Everything else was restored. " +
      "Put each one's password in --passwords-dir as a file named like the user and run restore-rbac again\n";
    assert.deepEqual(usersWithoutPassword(logs), ["orphan", "bob"]);
    assert.equal(
      usersWithoutPassword('{"level":"error","msg":"restore-rbac: step 1 of 3 failed"}\n'),
      undefined,
    );
  });

  describe("the stack's cluster and the offline dry run", () => {
    let prod: RenderResult;
    before(async () => {
      prod = await renderStack("prod");
    });

    /**
     * A stand-in kubectl: knows the contexts given, records every call (and what was sent on stdin), and
     * runs a Job to success, or to the status and logs given.
     */
    function fakeKubectl(
      contexts: string[],
      job: { status?: string; logs?: string; secrets?: string[]; cronJob?: object } = {},
    ) {
      const calls: string[][] = [];
      const inputs: string[] = [];
      const kubectl: Kubectl = (args, input) => {
        calls.push(args);
        if (input !== undefined) inputs.push(input);
        const ok = (stdout: string) => ({ status: 0, stdout, stderr: "" });
        if (args[0] === "config") {
          const ctx = args[2] ?? "";
          return contexts.includes(ctx)
            ? ok(`${ctx}\n`)
            : { status: 1, stdout: "", stderr: `error: context ${ctx} not found` };
        }
        const verb = args[4];
        if (verb === "get" && args[5] === "cronjob") return ok(JSON.stringify(job.cronJob ?? cronJob));
        if (verb === "get" && args[5] === "secret") {
          const name = args[6] ?? "";
          return job.secrets?.includes(name)
            ? ok(name)
            : { status: 1, stdout: "", stderr: `Error from server (NotFound): secrets "${name}" not found` };
        }
        if (verb === "create") return ok("job.batch/x created");
        if (verb === "get" && args[5] === "job") return ok(job.status ?? "1/");
        if (verb === "logs") return ok(job.logs ?? '{"event":"restore.done"}\n');
        return { status: 1, stdout: "", stderr: `unexpected kubectl ${args.join(" ")}` };
      };
      return { kubectl, calls, inputs };
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

    const RBAC_ID = "rbac-20261125T020000Z-ab12cd";
    const WORKER_NEEDS_PASSWORD =
      "error: restore-rbac: 2 user(s) not created, no password for them: orphan, bob. Everything else was restored. " +
      "Put each one's password in --passwords-dir as a file named like the user and run restore-rbac again";

    it("restore-rbac with --passwords-secret: checks the Secret, mounts it, and reports users left without a password", async () => {
      const logs = `needs a password\torphan\nneeds a password\tbob\n${WORKER_NEEDS_PASSWORD}\n`;
      const { kubectl, calls, inputs } = fakeKubectl(["milvus-dr-aks"], {
        status: "/1",
        logs,
        secrets: ["milvus-rbac-passwords"],
        cronJob: cronJobWithSecurity,
      });
      const argv = [
        "--stack",
        "dr",
        "--command",
        "restore-rbac",
        "--backup",
        RBAC_ID,
        "--passwords-secret",
        "milvus-rbac-passwords",
      ];
      const r = await run(argv, kubectl);
      assert.equal(r.code, 1);
      assert.equal(r.out, "");
      assert.equal(
        r.err,
        [
          "restore-job: Job milvus/milvus-restore-rbac-20261125102030 in context milvus-dr-aks runs " +
            `\`restore-rbac --backup ${RBAC_ID} --passwords-dir /etc/milvus-rbac-passwords\`; waiting up to 21600s`,
          logs.trimEnd(),
          `restore-job: Job milvus-restore-rbac-20261125102030: restore-rbac restored everything of ${RBAC_ID} except 2 user(s) ` +
            "with no password: orphan, bob. Add a key named like each user (value: the password) to Secret " +
            "milvus-rbac-passwords in namespace milvus and run again with --passwords-secret milvus-rbac-passwords",
        ].join("\n"),
      );
      // The Secret is looked up by name only (its values are never fetched into output), before the Job exists.
      assert.deepEqual(calls[2], [
        "--context",
        "milvus-dr-aks",
        "-n",
        "milvus",
        "get",
        "secret",
        "milvus-rbac-passwords",
        "-o",
        "jsonpath={.metadata.name}",
      ]);
      assert.equal(calls[3]?.[4], "create");
      const created = JSON.parse(inputs[0] ?? "{}") as {
        spec: { template: { spec: { volumes: unknown[]; containers: { args: string[] }[] } } };
      };
      assert.deepEqual(created.spec.template.spec.containers[0]?.args, [
        "restore-rbac",
        "--backup",
        RBAC_ID,
        "--passwords-dir",
        PASSWORDS_DIR,
      ]);
      assert.deepEqual(created.spec.template.spec.volumes.at(-1), {
        name: "rbac-passwords",
        secret: { secretName: "milvus-rbac-passwords", defaultMode: 256 },
      });
      assert.doesNotMatch(inputs[0] ?? "", /stringData|"data"|password"/i);

      // A failure that is not about passwords is reported as a plain failure.
      const other = fakeKubectl(["milvus-dr-aks"], {
        status: "/1",
        logs: "error: restore-rbac: step 1 of 3 failed\n",
        secrets: ["milvus-rbac-passwords"],
        cronJob: cronJobWithSecurity,
      });
      const o = await run(argv, other.kubectl);
      assert.equal(o.code, 1);
      assert.match(
        o.err,
        /restore-job: Job milvus-restore-rbac-20261125102030 failed; see `kubectl --context milvus-dr-aks -n milvus logs job\/milvus-restore-rbac-20261125102030`$/,
      );
      assert.doesNotMatch(o.err, /with no password/);

      // Without --passwords-secret the report says which Secret to create.
      const bare = fakeKubectl(["milvus-dr-aks"], { status: "/1", logs, cronJob: cronJobWithSecurity });
      const b = await run(["--stack", "dr", "--command", "restore-rbac", "--backup", RBAC_ID], bare.kubectl);
      assert.equal(b.code, 1);
      assert.match(
        b.err,
        /except 2 user\(s\) with no password: orphan, bob\. .* to Secret <name> in namespace milvus and run again with --passwords-secret <name>$/,
      );
      assert.ok(
        !bare.calls.some((c) => c.includes("secret")),
        "no Secret is looked up without --passwords-secret",
      );
    });

    it("refuses a --passwords-secret that is not in the namespace before creating anything", async () => {
      const { kubectl, calls } = fakeKubectl(["milvus-dr-aks"], { cronJob: cronJobWithSecurity });
      const r = await run(
        ["--stack", "dr", "--command", "restore-rbac", "--backup", RBAC_ID, "--passwords-secret", "nosuch"],
        kubectl,
      );
      assert.deepEqual(r, {
        code: 1,
        out: "",
        err:
          "restore-job: --passwords-secret nosuch: cannot read Secret nosuch in namespace milvus (context milvus-dr-aks): " +
          'Error from server (NotFound): secrets "nosuch" not found; create it with one key per user (value: the password), ' +
          "e.g. `kubectl -n milvus create secret generic nosuch --from-file=<dir>`",
      });
      assert.ok(!calls.some((c) => c[4] === "create"), "no Job was created");
    });

    it("reports restore-rbac --plan and list-rbac like the other commands", async () => {
      const plan = fakeKubectl(["milvus-dr-aks"], {
        logs: "would create role reader\nneeds a password\torphan\n",
      });
      const p = await run(
        ["--stack", "dr", "--command", "restore-rbac", "--backup", RBAC_ID, "--plan"],
        plan.kubectl,
      );
      assert.equal(p.code, 0, p.err);
      assert.equal(
        p.out,
        `restore-job: Job milvus-restore-rbac-20261125102030 succeeded: planned the restore of RBAC backup ${RBAC_ID} ` +
          "(nothing was changed; the plan is in the log above)",
      );
      assert.match(p.err, /^would create role reader\nneeds a password\torphan$/m);
      const doc = '{"backups":[{"rbacId":"rbac-20261125T020000Z-ab12cd"}],"damaged":[]}';
      const list = fakeKubectl(["milvus-dr-aks"], { logs: `{"level":"info","msg":"x"}\n${doc}\n` });
      const l = await run(["--stack", "dr", "--command", "list-rbac"], list.kubectl);
      assert.equal(l.code, 0, l.err);
      assert.equal(l.out, doc);
      assert.deepEqual(
        list.calls.find((c) => c[4] === "logs"),
        ["--context", "milvus-dr-aks", "-n", "milvus", "logs", "job/milvus-list-rbac-20261125102030"],
      );
      const restore = fakeKubectl(["milvus-dr-aks"]);
      const t = await run(
        ["--stack", "dr", "--backup", "b1", "--target-database", "sales", "--resume"],
        restore.kubectl,
      );
      assert.equal(
        t.out,
        "restore-job: Job milvus-restore-20261125102030 succeeded: backup b1 restored (resumed) in database sales",
      );
    });

    it("--dry-run prints the restore-rbac Job from the render: the worker's user reads the Secret through fsGroup", async () => {
      const noCluster: Kubectl = (args) => {
        throw new Error(`a dry run ran kubectl ${args.join(" ")}`);
      };
      const r = await run(
        [
          "--stack",
          "prod",
          "--command",
          "restore-rbac",
          "--backup",
          RBAC_ID,
          "--passwords-secret",
          "milvus-rbac-passwords",
          "--dry-run",
        ],
        noCluster,
      );
      assert.equal(r.code, 0, r.err);
      const job = yaml.load(r.out) as {
        spec: {
          template: {
            spec: {
              securityContext: { fsGroup: number; runAsNonRoot: boolean };
              volumes: { name: string }[];
              containers: {
                name: string;
                args: string[];
                securityContext: { runAsUser: number };
                volumeMounts: { name: string }[];
              }[];
            };
          };
        };
      };
      const pod = job.spec.template.spec;
      const [container] = pod.containers;
      assert.ok(container);
      assert.equal(container.name, "restore-rbac");
      assert.deepEqual(container.args, [
        "restore-rbac",
        "--backup",
        RBAC_ID,
        "--passwords-dir",
        PASSWORDS_DIR,
      ]);
      assert.deepEqual(
        pod.volumes.find((v) => v.name === "rbac-passwords"),
        {
          name: "rbac-passwords",
          secret: { secretName: "milvus-rbac-passwords", defaultMode: 256 },
        },
      );
      assert.deepEqual(
        container.volumeMounts.find((m) => m.name === "rbac-passwords"),
        {
          name: "rbac-passwords",
          mountPath: PASSWORDS_DIR,
          readOnly: true,
        },
      );
      // The files become 0440 root:<fsGroup>; the worker runs as that same id, so it can read them.
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.securityContext.fsGroup, 10001);
      assert.equal(container.securityContext.runAsUser, 10001);
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
