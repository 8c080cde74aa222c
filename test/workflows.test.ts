import * as assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { validateWorkflow } from "@action-validator/core";
import * as yaml from "js-yaml";
import { ROOT } from "../tools/offline-runtime";

/**
 * The GitHub Actions workflows: schema-valid (action-validator, GitHub's workflow schema), secure
 * (OIDC only, least-privilege permissions, actions pinned by commit, prod behind an approval
 * environment), and their shell logic (affected stacks, deploy order, render-diff comment size) run
 * here against real git repositories and files.
 */

const WORKFLOWS = path.join(ROOT, ".github", "workflows");
type Obj = Record<string, unknown>;
interface Step {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  with?: Obj;
  env?: Obj;
  if?: string;
}
interface Job {
  permissions?: Obj;
  environment?: string | Obj;
  steps: Step[];
  env?: Obj;
  strategy?: Obj;
  if?: string;
  needs?: string | string[];
}
interface Workflow {
  on: Obj;
  permissions?: Obj;
  jobs: Record<string, Job>;
}

const files = fs.readdirSync(WORKFLOWS).filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"));
const text = (f: string) => fs.readFileSync(path.join(WORKFLOWS, f), "utf8");
const load = (f: string) => yaml.load(text(f)) as Workflow;

function step(wf: Workflow, job: string, id: string): Step {
  const s = (wf.jobs[job] as Job | undefined)?.steps.find((x) => x.id === id);
  assert.ok(s?.run, `${job}.${id} has no run script`);
  return s;
}

/** Runs a step's script the way GitHub runs `shell: bash`, returning what it wrote to $GITHUB_OUTPUT. */
function runStep(
  s: Step,
  cwd: string,
  env: Record<string, string>,
): { outputs: Record<string, string>; stdout: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gha-step-"));
  const script = path.join(dir, "step.sh");
  const outputFile = path.join(dir, "output");
  fs.writeFileSync(script, s.run ?? "");
  fs.writeFileSync(outputFile, "");
  const result = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", script], {
    cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, GITHUB_OUTPUT: outputFile, ...env },
    encoding: "utf8",
  });
  if (result.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`step exited with ${String(result.status)}: ${result.stdout}${result.stderr}`);
  }
  const stdout = result.stdout;
  const outputs = Object.fromEntries(
    fs
      .readFileSync(outputFile, "utf8")
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  fs.rmSync(dir, { recursive: true, force: true });
  return { outputs, stdout };
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@example.invalid",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@example.invalid",
    },
  }).trim();
}

describe("workflow files", () => {
  it("has the three delivery workflows", () => {
    for (const f of ["preview.yml", "deploy.yml", "stack-export.yml"])
      assert.ok(files.includes(f), `${f} missing`);
  });

  for (const f of files) {
    it(`${f} is valid against the GitHub workflow schema`, () => {
      assert.deepEqual(validateWorkflow(text(f)).errors, []);
    });
  }

  it("the validator rejects what GitHub would reject", () => {
    const broken = text("preview.yml")
      .replace("id-token: write", "id-token: writable")
      .replace("runs-on: ubuntu-24.04", "run-on: ubuntu-24.04");
    const paths = validateWorkflow(broken).errors.map((e) => ("path" in e ? e.path : e.title));
    assert.ok(
      paths.some((p) => p.startsWith("/jobs/")),
      JSON.stringify(paths),
    );
  });
});

/**
 * Jobs that reach a cluster (they install kubelogin) must run kubelogin with workload identity and the
 * job's own client id: `--login azurecli` fails once the GitHub assertion handed to az expires
 * (AADSTS700024, azure-cli#28708, Azure/login#372); kubelogin's workloadidentity login fetches a fresh
 * GitHub OIDC token per request (Azure/kubelogin, githubactionscredential.go) and AAD_LOGIN_METHOD
 * overrides the kubeconfig's `--login` (kubelogin's environment override).
 */
function kubeloginProblems(wf: Workflow): string[] {
  const problems: string[] = [];
  for (const [name, job] of Object.entries(wf.jobs)) {
    if (!job.steps.some((s) => s.uses?.startsWith("Azure/use-kubelogin@"))) continue;
    const login = job.steps.find((s) => s.uses?.startsWith("Azure/login@"));
    const env = job.env ?? {};
    if (env.AAD_LOGIN_METHOD !== "workloadidentity")
      problems.push(`${name}: AAD_LOGIN_METHOD is not workloadidentity`);
    if (env.AZURE_CLIENT_ID === undefined || env.AZURE_CLIENT_ID !== login?.with?.["client-id"])
      problems.push(`${name}: AZURE_CLIENT_ID is not the client id the job logs in with`);
    if (env.AZURE_TENANT_ID !== "${{ vars.AZURE_TENANT_ID }}")
      problems.push(`${name}: AZURE_TENANT_ID is not set`);
    if (job.permissions?.["id-token"] !== "write")
      problems.push(`${name}: no id-token: write for the GitHub OIDC token`);
  }
  return problems;
}

describe("workflow security", () => {
  const all = files.map((f) => [f, load(f)] as const);

  it("runs kubelogin with workload identity in every job that reaches a cluster", () => {
    let jobs = 0;
    for (const [f, wf] of all) {
      assert.deepEqual(kubeloginProblems(wf), [], f);
      jobs += Object.values(wf.jobs).filter((j) =>
        j.steps.some((s) => s.uses?.startsWith("Azure/use-kubelogin@")),
      ).length;
    }
    assert.equal(jobs, 3, "preview, preprod and production reach a cluster");
    // The check fails on a job that leaves kubelogin on the az CLI login.
    const broken = load("deploy.yml");
    delete broken.jobs.production.env?.AAD_LOGIN_METHOD;
    assert.deepEqual(kubeloginProblems(broken), ["production: AAD_LOGIN_METHOD is not workloadidentity"]);
  });

  it("stores no Azure secret: OIDC login from repository/environment variables only", () => {
    for (const [f, wf] of all) {
      const raw = text(f);
      assert.doesNotMatch(raw, /secrets\.AZURE_/, `${f} reads an Azure secret`);
      assert.doesNotMatch(raw, /AZURE_CLIENT_SECRET|ARM_CLIENT_SECRET|creds:/, `${f} uses a client secret`);
      for (const [name, job] of Object.entries(wf.jobs)) {
        for (const s of job.steps.filter((x) => x.uses?.startsWith("Azure/login@"))) {
          assert.deepEqual(
            Object.keys(s.with ?? {}).sort(),
            ["client-id", "subscription-id", "tenant-id"],
            `${f} ${name}`,
          );
          for (const v of Object.values(s.with ?? {}))
            assert.match(String(v), /^\$\{\{ vars\.AZURE_[A-Z_]+ \}\}$/);
          assert.equal(
            job.permissions?.["id-token"],
            "write",
            `${f} ${name} logs in without id-token: write`,
          );
        }
      }
    }
  });

  it("grants nothing by default and only what each job needs", () => {
    for (const [f, wf] of all) {
      assert.deepEqual(wf.permissions, {}, `${f} top-level permissions`);
      for (const [name, job] of Object.entries(wf.jobs)) {
        assert.ok(job.permissions, `${f} ${name} has no explicit permissions`);
        const usesAzure = job.steps.some((s) => s.uses?.startsWith("Azure/login@"));
        if (!usesAzure)
          assert.equal(
            job.permissions["id-token"],
            undefined,
            `${f} ${name} asks for an OIDC token it does not use`,
          );
      }
    }
    const preview = load("preview.yml");
    assert.deepEqual(preview.jobs.preview.permissions, {
      "id-token": "write",
      contents: "read",
      "pull-requests": "write",
    });
    // The job that runs the PR's code for the render has a read-only token and no identity...
    assert.deepEqual(preview.jobs["render-diff"].permissions, { contents: "read" });
    // ...and the job that may write to the PR never runs PR code.
    const comment = preview.jobs["render-comment"];
    assert.deepEqual(comment.permissions, { "pull-requests": "write" });
    assert.ok(
      comment.steps.every((s) => !s.uses?.startsWith("actions/checkout@") && !/npm /.test(s.run ?? "")),
    );
  });

  it("pins every action to a full commit SHA, with the version in a comment", () => {
    for (const f of files) {
      const uses = [...text(f).matchAll(/uses:\s*(\S+)(.*)$/gm)];
      assert.ok(uses.length > 0);
      for (const [, ref, rest] of uses) {
        assert.match(ref, /^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/, `${f}: ${ref} is not pinned to a commit`);
        assert.match(rest, /^ # v\d+(\.\d+)*$/, `${f}: ${ref} has no version comment`);
      }
    }
  });

  it("never checks out with persisted credentials", () => {
    for (const [f, wf] of all) {
      for (const job of Object.values(wf.jobs)) {
        for (const s of job.steps.filter((x) => x.uses?.startsWith("actions/checkout@"))) {
          assert.equal(s.with?.["persist-credentials"], false, f);
        }
      }
    }
  });

  it("installs the Pulumi CLI release matching @pulumi/pulumi", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    for (const [f, wf] of all) {
      for (const job of Object.values(wf.jobs)) {
        for (const s of job.steps.filter((x) => x.uses?.startsWith("pulumi/actions@"))) {
          assert.equal(String(s.with?.["pulumi-version"]), pkg.dependencies["@pulumi/pulumi"], f);
        }
      }
    }
  });
});

describe("preview workflow", () => {
  const wf = load("preview.yml");

  it("previews each affected stack with the policy pack and comments on the PR within GitHub's limit", () => {
    assert.deepEqual(Object.keys(wf.on), ["pull_request"]);
    const job = wf.jobs.preview;
    assert.equal(
      job.strategy?.matrix && (job.strategy.matrix as Obj).stack,
      "${{ fromJSON(needs.stacks.outputs.live) }}",
    );
    assert.equal(job.env?.MILVUS_AKS_STACK, "${{ matrix.stack }}");
    assert.equal(job.env.ARM_USE_OIDC, "true");
    const pulumi = job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"))!;
    assert.equal(pulumi.with?.command, "preview");
    assert.equal(pulumi.with.policyPacks, "policy");
    assert.equal(pulumi.with["comment-on-pr"], true);
    assert.equal(pulumi.with["edit-pr-comment"], true);
    assert.equal(pulumi.with["always-include-summary"], true);
    // No continue-on-error anywhere: a mandatory policy violation fails `pulumi preview`, and so the job.
    assert.ok(job.steps.every((s) => !("continue-on-error" in s)));
  });

  it("previews production stacks only offline: a pull request never reaches prod or dr", () => {
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), "live-"));
    try {
      git(repo, "init", "-q", "-b", "main");
      const stackFile = (env: string) => `config:\n  milvus-aks:environment: ${env}\n`;
      for (const s of ["dev", "staging", "prod", "dr"])
        fs.writeFileSync(path.join(repo, `Pulumi.${s}.yaml`), stackFile(s));
      fs.writeFileSync(path.join(repo, "index.ts"), "1\n");
      git(repo, "add", "-A");
      git(repo, "commit", "-q", "-m", "base");
      const base = git(repo, "rev-parse", "HEAD");
      fs.writeFileSync(path.join(repo, "index.ts"), "2\n");
      git(repo, "commit", "-q", "-am", "program");
      const head = git(repo, "rev-parse", "HEAD");
      const { outputs } = runStep(step(wf, "stacks", "affected"), repo, { BASE_SHA: base, HEAD_SHA: head });
      assert.deepEqual(JSON.parse(outputs.stacks), ["dev", "dr", "prod", "staging"]);
      assert.deepEqual(JSON.parse(outputs.live), ["dev", "staging"]);
    } finally {
      fs.rmSync(repo, { recursive: true, force: true });
    }
    assert.equal(
      (wf.jobs.preview.strategy?.matrix as Obj).stack,
      "${{ fromJSON(needs.stacks.outputs.live) }}",
    );
    // The offline render diff still covers every stack, production included.
    assert.match(JSON.stringify(wf.jobs["render-diff"]), /needs\.stacks\.outputs\.all/);
  });

  describe("affected stacks", () => {
    let repo: string;
    const affected = step(wf, "stacks", "affected");
    const change = (files: Record<string, string | null>, message: string) => {
      for (const [f, content] of Object.entries(files)) {
        if (content === null) fs.rmSync(path.join(repo, f));
        else {
          fs.mkdirSync(path.dirname(path.join(repo, f)), { recursive: true });
          fs.writeFileSync(path.join(repo, f), content);
        }
      }
      git(repo, "add", "-A");
      git(repo, "commit", "-q", "-m", message);
      return git(repo, "rev-parse", "HEAD");
    };
    const stacksBetween = (base: string, head: string) => {
      git(repo, "checkout", "-q", head);
      const { outputs } = runStep(affected, repo, { BASE_SHA: base, HEAD_SHA: head });
      return {
        stacks: JSON.parse(outputs.stacks) as string[],
        all: JSON.parse(outputs.all) as string[],
      };
    };

    before(() => {
      repo = fs.mkdtempSync(path.join(os.tmpdir(), "affected-"));
      git(repo, "init", "-q", "-b", "main");
    });
    after(() => {
      fs.rmSync(repo, { recursive: true, force: true });
    });

    it("selects stacks by what the change touches", () => {
      const base = change(
        {
          "Pulumi.yaml": "name: x\n",
          "Pulumi.dev.yaml": "a: 1\n",
          "Pulumi.prod.yaml": "a: 1\n",
          "index.ts": "1\n",
          "README.md": "r\n",
        },
        "base",
      );
      const docs = change(
        { "README.md": "r2\n", "backup/worker.ts": "2\n", "test/a.test.ts": "t\n" },
        "docs and worker",
      );
      assert.deepEqual(stacksBetween(base, docs), { stacks: [], all: ["dev", "prod"] });
      const devOnly = change({ "Pulumi.dev.yaml": "a: 2\n" }, "dev config");
      assert.deepEqual(stacksBetween(docs, devOnly).stacks, ["dev"]);
      const newStack = change({ "Pulumi.staging.yaml": "a: 1\n" }, "staging");
      assert.deepEqual(stacksBetween(devOnly, newStack), {
        stacks: ["staging"],
        all: ["dev", "prod", "staging"],
      });
      const program = change({ "components/aks.ts": "x\n", "Pulumi.dev.yaml": "a: 3\n" }, "program");
      assert.deepEqual(stacksBetween(newStack, program).stacks, ["dev", "prod", "staging"]);
      const policy = change({ "policy/aks.ts": "p\n" }, "policy");
      assert.deepEqual(stacksBetween(program, policy).stacks, ["dev", "prod", "staging"]);
      const removed = change({ "Pulumi.staging.yaml": null }, "drop staging");
      assert.deepEqual(stacksBetween(policy, removed), { stacks: [], all: ["dev", "prod"] });
      // Across several commits (the PR's merge base to its head), changes add up.
      assert.deepEqual(stacksBetween(base, removed).stacks, ["dev", "prod"]);
    });
  });

  describe("render diff comment", () => {
    const diffStep = step(wf, "render-diff", "diff");
    let work: string;
    const writeObjects = (tree: string, stack: string, objects: Record<string, string>) => {
      const dir = path.join(work, tree, "out", stack, "kubernetes");
      fs.mkdirSync(dir, { recursive: true });
      for (const [f, c] of Object.entries(objects)) fs.writeFileSync(path.join(dir, f), c);
    };
    beforeEach(() => {
      work = fs.mkdtempSync(path.join(os.tmpdir(), "render-diff-"));
    });
    afterEach(() => {
      fs.rmSync(work, { recursive: true, force: true });
    });

    const runDiff = (stacks: string[]) =>
      runStep(diffStep, work, {
        STACKS: JSON.stringify(stacks),
        BASE_DIR: "base",
        HEAD_DIR: "head",
        OUT_DIR: "render-diff",
        RUN_URL: "https://github.example/run/1",
        MAX_COMMENT_CHARS: "60000",
      });

    it("summarises each stack and keeps the comment under GitHub's 65,536-character limit", () => {
      const big = (tag: string) =>
        Array.from({ length: 4000 }, (_, i) => `line ${i} ${tag} ${"x".repeat(40)}`).join("\n");
      writeObjects("base", "prod", {
        "000-statefulset-etcd.yaml": big("old"),
        "001-service-milvus.yaml": "type: LoadBalancer\n",
      });
      writeObjects("head", "prod", {
        "000-statefulset-etcd.yaml": big("new"),
        "001-service-milvus.yaml": "type: LoadBalancer\n",
      });
      writeObjects("base", "dev", { "000-configmap-a.yaml": "a: 1\n" });
      writeObjects("head", "dev", { "000-configmap-a.yaml": "a: 1\n" });
      // A stack new in this PR: no base render at all.
      writeObjects("head", "staging", { "000-namespace-milvus.yaml": "kind: Namespace\n" });
      runDiff(["dev", "prod", "staging"]);
      const comment = fs.readFileSync(path.join(work, "render-diff", "comment.md"), "utf8");
      assert.ok(comment.length <= 65_536, `comment is ${comment.length} characters`);
      assert.ok(comment.startsWith("<!-- milvus-aks:render-diff -->\n"));
      assert.match(comment, /#### dev: 0 object file\(s\) changed/);
      assert.match(comment, /#### prod: 1 object file\(s\) changed/);
      assert.match(comment, /#### staging: 1 object file\(s\) changed/);
      assert.match(comment, /_Truncated: \d+ bytes in total, see the artifact\._/);
      assert.match(comment, /\+kind: Namespace/);
      // The artifact keeps the whole diff.
      const full = fs.readFileSync(path.join(work, "render-diff", "prod.diff"), "utf8");
      assert.ok(full.length > 300_000);
      assert.match(full, /^\+line 3999 new/m);
      assert.equal(fs.readFileSync(path.join(work, "render-diff", "dev.diff"), "utf8"), "");
    });
  });
});

describe("deploy workflow", () => {
  const wf = load("deploy.yml");

  it("deploys main: pre-production first, production behind the approval environment", () => {
    assert.deepEqual(Object.keys(wf.on), ["push", "workflow_dispatch"]);
    assert.deepEqual(wf.on.push, { branches: ["main"] });
    // A manual run may name the stateful resources it deliberately replaces or deletes (see the guard).
    assert.deepEqual(wf.on.workflow_dispatch, {
      inputs: {
        allow_stateful_changes: {
          description:
            "URNs, separated by spaces, of stateful resources this run may replace or delete (take a backup first). Empty: a plan that replaces or deletes one fails before `pulumi up`. docs/delivery.md.",
          type: "string",
          required: false,
          default: "",
        },
      },
    });
    const preprod = wf.jobs.preprod;
    const production = wf.jobs.production;
    assert.deepEqual(production.environment, { name: "production" });
    assert.deepEqual(production.needs, ["plan", "preprod"]);
    for (const job of [preprod, production]) {
      assert.equal((job.strategy as Obj)["max-parallel"], 1);
      const up = job.steps.find(
        (s) => s.uses?.startsWith("pulumi/actions@") && s.with?.command !== undefined,
      )!;
      assert.equal(up.with?.command, "up");
      assert.equal(up.with.policyPacks, "policy");
      assert.equal(job.env?.MILVUS_AKS_STACK, "${{ matrix.stack }}");
    }
    assert.equal(preprod.environment, "${{ matrix.stack }}");
    assert.match(
      String((wf as unknown as Obj).concurrency && JSON.stringify((wf as unknown as Obj).concurrency)),
      /"cancel-in-progress":false/,
    );
  });

  it("orders the repository's stacks by environment: dev, staging, then prod, dr", () => {
    const { outputs } = runStep(step(wf, "plan", "plan"), ROOT, {});
    const stacks = fs.readdirSync(ROOT).filter((f) => /^Pulumi\.[^.]+\.yaml$/.test(f));
    const expected = (names: string[]) => names.filter((s) => stacks.includes(`Pulumi.${s}.yaml`));
    assert.deepEqual(JSON.parse(outputs.preprod), expected(["dev", "staging"]));
    assert.deepEqual(JSON.parse(outputs.production), expected(["prod", "dr"]));
  });

  it("refuses a stack file without an environment", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plan-"));
    fs.writeFileSync(path.join(dir, "Pulumi.prod.yaml"), "config:\n  milvus-aks:environment: prod\n");
    fs.writeFileSync(path.join(dir, "Pulumi.qa.yaml"), "config:\n  milvus-aks:location: westeurope\n");
    assert.throws(
      () => runStep(step(wf, "plan", "plan"), dir, {}),
      /Pulumi\.qa\.yaml has no milvus-aks:environment/,
    );
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

/**
 * The stateful-resource guard (scripts/check-preview.ts) in every job that runs `pulumi up` or
 * `pulumi preview` through pulumi/actions: present, run before `pulumi up`, never skippable, after the
 * CLI is installed, and previewing the same stack as JSON with the replacement steps shown.
 */
function guardProblems(wf: Workflow): string[] {
  const problems: string[] = [];
  for (const [name, job] of Object.entries(wf.jobs)) {
    const pulumiAt = job.steps.findIndex(
      (s) => s.uses?.startsWith("pulumi/actions@") && ["up", "preview"].includes(String(s.with?.command)),
    );
    if (pulumiAt < 0) continue;
    const pulumi = job.steps[pulumiAt];
    const command = String(pulumi.with?.command);
    const guardAt = job.steps.findIndex((s) => /\bnpm run -s check:preview -- "\$plan"/.test(s.run ?? ""));
    if (guardAt < 0) {
      problems.push(`${name}: no stateful-resource guard before pulumi ${command}`);
      continue;
    }
    const guard = job.steps[guardAt];
    if (command === "up" && guardAt > pulumiAt) problems.push(`${name}: the guard runs after pulumi up`);
    if (job.steps.findIndex((s) => s.uses?.startsWith("pulumi/actions@")) > guardAt)
      problems.push(`${name}: the Pulumi CLI is installed after the guard`);
    if (guard.env?.STACK !== pulumi.with?.["stack-name"])
      problems.push(`${name}: the guard previews another stack than pulumi ${command}`);
    if (
      !/^pulumi preview --stack "\$STACK" --json --show-replacement-steps .*> "\$plan"$/m.test(
        guard.run ?? "",
      )
    )
      problems.push(
        `${name}: the guard does not check a JSON preview of the stack with its replacement steps`,
      );
    if ("continue-on-error" in guard || guard.if !== undefined)
      problems.push(`${name}: the guard can be skipped`);
  }
  return problems;
}

describe("stateful-resource guard", () => {
  const deploy = load("deploy.yml");
  const preview = load("preview.yml");
  const guardAt = (wf: Workflow, job: string) =>
    wf.jobs[job].steps.findIndex((s) => s.id === "stateful-guard");

  it("every deploy job checks its stack's plan before pulumi up", () => {
    assert.deepEqual(guardProblems(deploy), []);
    for (const job of ["preprod", "production"]) {
      const steps = deploy.jobs[job].steps;
      const up = steps.findIndex((s) => s.with?.command === "up");
      assert.ok(guardAt(deploy, job) >= 0 && guardAt(deploy, job) < up, job);
      // The same script in both jobs.
      assert.equal(step(deploy, job, "stateful-guard").run, step(deploy, "preprod", "stateful-guard").run);
    }
    // Removing the guard, moving it after `pulumi up`, making it skippable or pointing it at another
    // stack are each caught.
    const without = load("deploy.yml");
    without.jobs.production.steps.splice(guardAt(without, "production"), 1);
    assert.deepEqual(guardProblems(without), ["production: no stateful-resource guard before pulumi up"]);
    const late = load("deploy.yml");
    const [moved] = late.jobs.preprod.steps.splice(guardAt(late, "preprod"), 1);
    late.jobs.preprod.steps.push(moved);
    assert.deepEqual(guardProblems(late), ["preprod: the guard runs after pulumi up"]);
    const skippable = load("deploy.yml");
    Object.assign(skippable.jobs.production.steps[guardAt(skippable, "production")], {
      "continue-on-error": true,
    });
    assert.deepEqual(guardProblems(skippable), ["production: the guard can be skipped"]);
    const other = load("deploy.yml");
    other.jobs.preprod.steps[guardAt(other, "preprod")].env!.STACK = "${{ matrix.stack }}";
    assert.deepEqual(guardProblems(other), ["preprod: the guard previews another stack than pulumi up"]);
  });

  it("the pull-request preview runs it for each previewed stack", () => {
    assert.deepEqual(guardProblems(preview), []);
    const without = load("preview.yml");
    without.jobs.preview.steps.splice(guardAt(without, "preview"), 1);
    assert.deepEqual(guardProblems(without), ["preview: no stateful-resource guard before pulumi preview"]);
  });

  describe("its script, run against a stand-in Pulumi CLI", () => {
    const ETCD =
      "urn:pulumi:prod::milvus-aks::milvus-aks:k8s:DataLayer$milvus-aks:k8s:Etcd$kubernetes:apps/v1:StatefulSet::milvus-prod-data-etcd-statefulset";
    const MINIO =
      "urn:pulumi:prod::milvus-aks::milvus-aks:k8s:DataLayer$milvus-aks:k8s:Minio$kubernetes:apps/v1:StatefulSet::milvus-prod-data-minio-statefulset";
    let dir: string;
    let log: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "guard-"));
      fs.mkdirSync(path.join(dir, "bin"));
      log = path.join(dir, "pulumi.log");
      // Logs its arguments and prints the fixture as `pulumi preview --json` would.
      fs.writeFileSync(
        path.join(dir, "bin", "pulumi"),
        `#!/usr/bin/env bash\necho "$*" >> ${JSON.stringify(log)}\ncase "$1" in\n  login) ;;\n  preview) cat "$FAKE_PREVIEW" ;;\n  *) exit 64 ;;\nesac\n`,
        { mode: 0o755 },
      );
    });
    beforeEach(() => {
      fs.rmSync(log, { force: true });
    });
    after(() => {
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const guard = (wf: Workflow, job: string, fixture: string, env: Record<string, string> = {}) =>
      runStep(step(wf, job, "stateful-guard"), ROOT, {
        PATH: `${path.join(dir, "bin")}:${process.env.PATH ?? ""}`,
        RUNNER_TEMP: dir,
        FAKE_PREVIEW: path.join(ROOT, "test", "fixtures", "preview", fixture),
        STACK: "prod",
        PULUMI_BACKEND_URL: "",
        ...env,
      }).stdout;
    const calls = () => fs.readFileSync(log, "utf8").trim().split("\n");

    it("fails the deploy job on a StatefulSet replace, before pulumi up", () => {
      assert.throws(
        () => guard(deploy, "production", "etcd-statefulset-replace.json"),
        (err: Error) => {
          assert.match(
            err.message,
            /^step exited with 1: check-preview: 1 step of 2 would replace or delete a stateful resource:\n {2}replace urn:pulumi:prod::milvus-aks::milvus-aks:k8s:DataLayer\$milvus-aks:k8s:Etcd\$kubernetes:apps\/v1:StatefulSet::milvus-prod-data-etcd-statefulset\n/,
          );
          return true;
        },
      );
      assert.deepEqual(calls(), ["preview --stack prod --json --show-replacement-steps --non-interactive"]);
      assert.ok(fs.existsSync(path.join(dir, "preview-prod.json")));
    });

    it("lets through exactly the URNs a manual run allows", () => {
      assert.equal(
        guard(deploy, "production", "etcd-statefulset-replace.json", { ALLOW_URNS: ETCD }),
        `check-preview: 2 steps checked, none replaces or deletes a stateful resource (1 allowed by --allow):\n  replace ${ETCD}\n`,
      );
      assert.throws(
        () => guard(deploy, "preprod", "replacement-steps.json", { ALLOW_URNS: ETCD }),
        /^Error: step exited with 1: check-preview: 3 steps of 7 would replace or delete a stateful resource:\n {2}delete-replaced urn:[^\n]*milvus-prod-data-minio-statefulset\n/,
      );
      assert.match(
        guard(deploy, "preprod", "replacement-steps.json", { ALLOW_URNS: ` ${ETCD}\n${MINIO} ` }),
        /^check-preview: 7 steps checked, none replaces or deletes a stateful resource \(6 allowed by --allow\):\n/,
      );
      // Split on whitespace, never glob-expanded: "*" reaches the check as it is, which refuses it.
      assert.throws(
        () => guard(deploy, "preprod", "replacement-steps.json", { ALLOW_URNS: "*" }),
        /^Error: step exited with 2: check-preview: --allow takes a full URN \(urn:pulumi:<stack>::<project>::<type>::<name>\), not "\*"/,
      );
    });

    it("logs in to a self-managed backend and previews the organisation's stack", () => {
      assert.equal(
        guard(deploy, "preprod", "statefulset-update.json", {
          STACK: "acme/milvus-aks/prod",
          PULUMI_BACKEND_URL: "azblob://pulumi-state",
        }),
        "check-preview: 2 steps checked, none replaces or deletes a stateful resource.\n",
      );
      assert.deepEqual(calls(), [
        "login azblob://pulumi-state",
        "preview --stack acme/milvus-aks/prod --json --show-replacement-steps --non-interactive",
      ]);
      assert.ok(fs.existsSync(path.join(dir, "preview-acme-milvus-aks-prod.json")));
    });

    it("fails the pull-request preview on a volume claim delete, passes a Deployment replace", () => {
      assert.throws(
        () => guard(preview, "preview", "pvc-delete.json", { STACK: "dev" }),
        /^Error: step exited with 1: check-preview: 1 step of 2 would replace or delete a stateful resource:\n {2}delete urn:pulumi:dev::/,
      );
      assert.equal(
        guard(preview, "preview", "deployment-replace.json", { STACK: "staging" }),
        "check-preview: 2 steps checked, none replaces or deletes a stateful resource.\n",
      );
    });
  });
});

describe("stack-export workflow", () => {
  const wf = load("stack-export.yml");
  it("runs on a schedule with an OIDC identity and exports every stack file", () => {
    assert.ok(Array.isArray(wf.on.schedule));
    const job = wf.jobs.export;
    assert.equal(job.environment, "state-export");
    const exportStep = job.steps.find((s) => s.name === "Export every stack")!;
    assert.match(exportStep.run ?? "", /npm run -s stack:export -- "\$\{args\[@\]\}"/);
    assert.match(exportStep.run ?? "", /for f in Pulumi\.\*\.yaml/);
    assert.equal(job.env?.STACK_EXPORT_ACCOUNT_URL, "${{ vars.STATE_EXPORT_ACCOUNT_URL }}");
  });
});
