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
    assert.deepEqual(wf.on, { push: { branches: ["main"] }, workflow_dispatch: null });
    const preprod = wf.jobs.preprod;
    const production = wf.jobs.production;
    assert.deepEqual(production.environment, { name: "production" });
    assert.deepEqual(production.needs, ["plan", "preprod"]);
    for (const job of [preprod, production]) {
      assert.equal((job.strategy as Obj)["max-parallel"], 1);
      const up = job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"))!;
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
