import * as assert from "node:assert/strict";
import {
  activationSteps,
  failover,
  FailoverRequest,
  firewallProblems,
  latestBackups,
  ListedBackup,
  listStep,
  parseFailoverArgs,
  restoreSteps,
  StackOutputs,
} from "../scripts/dr-failover";

const NOW = new Date("2026-11-25T12:00:00Z");
const subnet = (stack: string) =>
  `/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/milvus-${stack}-rg/providers/Microsoft.Network/virtualNetworks/milvus-${stack}-vnet/subnets/nodes`;
const DR_SUBNET = subnet("dr");
const PROD_SUBNET = subnet("prod");
const listed: ListedBackup[] = [
  {
    backupId: "documents-20261125T020000Z-a1",
    collection: "documents",
    time: "2026-11-25T02:00:00Z",
    rows: "1000000",
    bytes: 600_000_000,
  },
  {
    backupId: "documents-20261124T020000Z-b2",
    collection: "documents",
    time: "2026-11-24T02:00:00Z",
    rows: "990000",
    bytes: 590_000_000,
  },
  {
    backupId: "images-20261123T020000Z-c3",
    collection: "images",
    time: "2026-11-23T02:00:00Z",
    rows: 5000,
    bytes: 3_000_000,
  },
];
const drOutputs: StackOutputs = {
  resourceGroupName: "milvus-dr-rg",
  clusterName: "milvus-dr-aks",
  restoreSourceBlobEndpoint: "https://milvusbkprod-secondary.blob.core.windows.net/",
  restoreSourceContainerName: "milvus-backups",
  milvusImageTag: "v2.6.24",
  primaryMilvusImageTag: "v2.6.24",
  milvusAddress: "10.20.0.50:19530",
  nodeSubnetId: DR_SUBNET,
};
/** The primary as its last `pulumi up` left it: its firewall admits its own nodes and dr's. */
const prodOutputs: StackOutputs = {
  resourceGroupName: "milvus-prod-rg",
  clusterName: "milvus-prod-aks",
  restoreSourceBlobEndpoint: "https://milvusbkprod.blob.core.windows.net/",
  restoreSourceContainerName: "milvus-backups",
  milvusImageTag: "v2.6.24",
  nodeSubnetId: PROD_SUBNET,
  backupAllowedSubnetIds: [PROD_SUBNET, DR_SUBNET],
};

/** Answers like the Pulumi CLI and the worker would; `coldUntilUp` hides the cluster until `pulumi up`. */
function fakeRunner(failOn?: string, coldUntilUp = false, primary: StackOutputs = prodOutputs) {
  const calls: string[] = [];
  let up = false;
  const runner = (command: string[]) => {
    const line = command.join(" ");
    calls.push(line);
    if (failOn && line.includes(failOn)) return { status: 1, stdout: "", stderr: "boom" };
    if (line.startsWith("pulumi up")) up = true;
    if (line === "pulumi stack output --json --stack prod")
      return { status: 0, stdout: JSON.stringify(primary), stderr: "" };
    if (line.startsWith("pulumi stack output")) {
      const { clusterName: _none, milvusAddress: _neither, ...cold } = drOutputs;
      return { status: 0, stdout: JSON.stringify(coldUntilUp && !up ? cold : drOutputs), stderr: "" };
    }
    if (line.includes(" --command list"))
      return { status: 0, stdout: JSON.stringify({ backups: listed }), stderr: "" };
    return { status: 0, stdout: "", stderr: "" };
  };
  return { calls, runner };
}

/** Runs a failover from a command line against a stand-in CLI; returns the exit code and the log. */
function runFailover(argv: string[], runner: ReturnType<typeof fakeRunner>["runner"]) {
  const lines: string[] = [];
  const code = failover(parseFailoverArgs(argv) as FailoverRequest, runner, NOW, (l) => lines.push(l));
  return { code, log: lines.join("\n") };
}
const DOCUMENTS = ["--from", "prod", "--to", "dr", "--collection", "documents"];

describe("dr:failover", () => {
  it("parses its flags, dry-run by default, and reports every problem at once", () => {
    assert.deepEqual(parseFailoverArgs(["--from", "prod", "--to", "dr", "--collection", "documents"]), {
      from: "prod",
      to: "dr",
      collections: ["documents"],
      maxAgeHours: 30,
      dataMinCount: 2,
      execute: false,
    });
    assert.deepEqual(parseFailoverArgs(["--to", "--max-age-hours", "0", "--oops"]), {
      // Problems of the command line itself come first, in argument order, then those of the values.
      problems: [
        "--to needs a value",
        'unknown flag "--oops"',
        '--max-age-hours must be a whole number >= 1, got "0"',
        "--from is required (the primary stack, e.g. prod)",
        "--to is required (the dr stack, e.g. dr)",
      ],
    });
  });

  it("picks the newest complete backup per collection and refuses stale or missing ones", () => {
    const ok = latestBackups(listed, ["documents"], NOW, 30);
    assert.deepEqual(
      ok.chosen.map((b) => b.backupId),
      ["documents-20261125T020000Z-a1"],
    );
    assert.deepEqual(ok.problems, []);
    const bad = latestBackups(listed, ["documents", "images", "missing"], NOW, 30);
    assert.deepEqual(
      bad.chosen.map((b) => b.backupId),
      ["documents-20261125T020000Z-a1"],
    );
    assert.deepEqual(bad.problems, [
      "collection images: newest backup images-20261123T020000Z-c3 is 58.0 h old, over --max-age-hours 30; check geo-replication (Last Sync Time) or raise --max-age-hours to accept the data loss",
      "collection missing: no complete backup on the secondary endpoint",
    ]);
  });

  it("runs nothing but reads in a dry run, and prints the plan", () => {
    const { calls, runner } = fakeRunner();
    const { code, log: text } = runFailover(DOCUMENTS, runner);
    assert.equal(code, 0);
    assert.deepEqual(calls, [
      "pulumi stack output --json --stack dr",
      "pulumi stack output --json --stack prod",
    ]);
    assert.match(text, /dry run \(add --execute to run\)/);
    assert.match(
      text,
      /\[dr-cluster\] list the complete backups .*\n {5}\$ npm run -s restore-job -- --stack dr --command list --storage-account-url https:\/\/milvusbkprod-secondary\.blob\.core\.windows\.net\/ --container milvus-backups/,
    );
    assert.match(text, /\[operator\] commit Pulumi\.dr\.yaml/);
  });

  it("runs every data-plane step as a Job in the dr cluster, never on the operator's machine", () => {
    const req = parseFailoverArgs(DOCUMENTS) as FailoverRequest;
    const chosen = latestBackups(listed, ["documents"], NOW, 30).chosen;
    const plan = [...activationSteps(req), listStep(req), ...restoreSteps(req, chosen)];
    assert.deepEqual(
      plan.map((st) => [st.where, st.dataPlane]),
      [
        ["operator", false],
        ["operator", false],
        ["operator", false],
        ["operator", false],
        ["operator", false],
        ["operator", false],
        ["operator", false],
        ["dr-cluster", true],
        ["dr-cluster", true],
        ["dr-cluster", true],
      ],
    );
    for (const st of plan) {
      const line = st.command(drOutputs).join(" ");
      // The worker and az storage touch blobs directly: only an in-cluster Job may.
      if (st.dataPlane) assert.match(line, /^npm run -s restore-job -- --stack dr /);
      else assert.doesNotMatch(line, /\bworker\b|az storage|blob\.core/, st.title);
    }
  });

  it("commits the activating config before pulumi up, so CI's next deploy cannot undo it", () => {
    const req = parseFailoverArgs(DOCUMENTS) as FailoverRequest;
    const lines = activationSteps(req).map((st) => st.command(drOutputs).join(" "));
    const at = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
    assert.ok(at("pulumi config set --stack dr --path milvus-aks:dr.activated true") < at("git commit"));
    assert.equal(lines[at("git commit")], "git commit -m dr: fail over from prod to dr -- Pulumi.dr.yaml");
    assert.ok(at("git commit") < at("git push") && at("git push") < at("pulumi up"));
  });

  it("executes the steps in order and stops at the first failure", () => {
    const again = fakeRunner("pulumi up");
    const documents = runFailover([...DOCUMENTS, "--execute"], again.runner);
    assert.equal(documents.code, 1);
    assert.deepEqual(again.calls.slice(2), [
      "pulumi config set --stack dr --path milvus-aks:nodePools.data.minCount 2",
      "pulumi config set --stack dr --path milvus-aks:dr.activated true",
      "git commit -m dr: fail over from prod to dr -- Pulumi.dr.yaml",
      "git push origin HEAD:main",
      "pulumi up --stack dr --yes --skip-preview",
    ]);
    assert.match(documents.log, /step 5 failed \(bring up the dr stack\): boom/);
    // A failing list Job stops the failover before anything is verified or restored.
    const list = fakeRunner("--command list");
    const noList = runFailover([...DOCUMENTS, "--execute"], list.runner);
    assert.equal(noList.code, 1);
    assert.match(noList.log, /step 8 failed \(list the complete backups .*\): boom/);
    assert.ok(!list.calls.some((c) => c.includes("--command verify")));
  });

  it("refuses to start, dry run included, when the primary's backup firewall does not admit the dr subnet", () => {
    const closed = fakeRunner(undefined, false, { ...prodOutputs, backupAllowedSubnetIds: [PROD_SUBNET] });
    for (const argv of [DOCUMENTS, [...DOCUMENTS, "--execute"]]) {
      const { code, log } = runFailover(argv, closed.runner);
      assert.equal(code, 1);
      assert.match(
        log,
        new RegExp(
          `refusing to start:\n {2}- the prod stack's backup firewall does not admit the dr cluster's node subnet ${DR_SUBNET.replace(/[/.-]/g, "\\$&")} \\(it admits ${PROD_SUBNET.replace(/[/.-]/g, "\\$&")}\\)`,
        ),
      );
      assert.match(log, /pulumi config set --path milvus-aks:dr\.standbyStack dr --stack prod/);
    }
    // Nothing ran but the two reads: no config change, commit or Job.
    assert.deepEqual(
      [...new Set(closed.calls)],
      ["pulumi stack output --json --stack dr", "pulumi stack output --json --stack prod"],
    );
    // Resource ids are case-insensitive in ARM; a differently cased id is the same subnet.
    const req = parseFailoverArgs(DOCUMENTS) as FailoverRequest;
    assert.deepEqual(
      firewallProblems(req, { ...prodOutputs, backupAllowedSubnetIds: [DR_SUBNET.toUpperCase()] }, drOutputs),
      [],
    );
    assert.match(
      firewallProblems(req, prodOutputs, { ...drOutputs, nodeSubnetId: undefined }).join(),
      /the dr stack exports no nodeSubnetId: run `pulumi up --stack dr` first/,
    );
  });

  it("refuses to restore stale backups, after listing them from the dr cluster", () => {
    const { runner } = fakeRunner();
    const all = runFailover(["--from", "prod", "--to", "dr", "--execute"], runner);
    assert.equal(all.code, 1);
    // Without --collection every collection on the secondary is failed over; images is too old.
    assert.match(all.log, /refusing to restore:\n {2}- collection images: newest backup/);
  });

  it("reads the dr stack's outputs again after pulumi up, so a cold standby's new cluster is used", () => {
    const { calls, runner } = fakeRunner(undefined, true);
    const { code, log } = runFailover([...DOCUMENTS, "--execute"], runner);
    assert.equal(code, 0);
    assert.deepEqual(calls.slice(7), [
      "pulumi stack output --json --stack dr",
      "az aks get-credentials -g milvus-dr-rg -n milvus-dr-aks --overwrite-existing",
      "kubelogin convert-kubeconfig -l azurecli",
      "npm run -s restore-job -- --stack dr --command list --storage-account-url https://milvusbkprod-secondary.blob.core.windows.net/ --container milvus-backups",
      "npm run -s restore-job -- --stack dr --command verify --backup documents-20261125T020000Z-a1 --storage-account-url https://milvusbkprod-secondary.blob.core.windows.net/ --container milvus-backups",
      "npm run -s restore-job -- --stack dr --backup documents-20261125T020000Z-a1 --storage-account-url https://milvusbkprod-secondary.blob.core.windows.net/ --container milvus-backups",
    ]);
    assert.match(log, /point clients at 10\.20\.0\.50:19530/);
    assert.match(log, /documents as of 2026-11-25T02:00:00Z/);
  });
});
