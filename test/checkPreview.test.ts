import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  checkPreview,
  DESTRUCTIVE_OPS,
  parsePreview,
  PreviewDigest,
  PreviewStep,
  PROCEED,
  run,
  STATEFUL_TYPES,
  stepType,
  typeFromUrn,
  USAGE,
} from "../scripts/check-preview";

/**
 * scripts/check-preview.ts against `pulumi preview --json` documents (test/fixtures/preview, shaped as
 * pulumi/pulumi's `PreviewDigest` prints them): which steps it refuses, what it prints, its exit codes,
 * and the CLI run for real.
 */

const ROOT = path.resolve(__dirname, "..");
const fixture = (name: string) => path.join(__dirname, "fixtures", "preview", name);
const load = (name: string): PreviewDigest => parsePreview(fs.readFileSync(fixture(name), "utf8"));

const ETCD =
  "urn:pulumi:prod::milvus-aks::milvus-aks:k8s:DataLayer$milvus-aks:k8s:Etcd$kubernetes:apps/v1:StatefulSet::milvus-prod-data-etcd-statefulset";
const MINIO =
  "urn:pulumi:prod::milvus-aks::milvus-aks:k8s:DataLayer$milvus-aks:k8s:Minio$kubernetes:apps/v1:StatefulSet::milvus-prod-data-minio-statefulset";
const PVC =
  "urn:pulumi:dev::milvus-aks::milvus-aks:k8s:DataLayer$milvus-aks:k8s:Milvus$kubernetes:core/v1:PersistentVolumeClaim::milvus-dev-data-milvus-standalone-data";
const STATEFUL_SET = "kubernetes:apps/v1:StatefulSet";
const VOLUME_TEMPLATE = "spec.volumeClaimTemplates[0].spec.resources.requests.storage";
const LABEL_TEMPLATE = 'spec.volumeClaimTemplates[0].metadata.labels["milvus-aks/data-class"]';

/** Runs the command line in-process, capturing what it prints. */
function cli(argv: string[], stdin = ""): { code: number; out: string; err: string } {
  const out: string[] = [];
  const err: string[] = [];
  const code = run(argv, {
    readFile: (p) => fs.readFileSync(p, "utf8"),
    readStdin: () => stdin,
    out: (t) => out.push(t),
    err: (t) => err.push(t),
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** A step of the given op on a resource of the given type, as the digest would carry it. */
function step(op: string, type: string, name = "r"): PreviewStep {
  const urn = `urn:pulumi:prod::milvus-aks::${type}::${name}`;
  return { op, urn, oldState: { urn, custom: true, type }, detailedDiff: null };
}

describe("check-preview: the preview document", () => {
  // The JSON field names of PreviewDigest and PreviewStep (pulumi/pulumi sdk/pkg/display/json.go).
  const DIGEST_KEYS = ["config", "steps", "diagnostics", "duration", "changeSummary", "maybeCorrupt"];
  const STEP_KEYS = [
    "op",
    "urn",
    "provider",
    "oldState",
    "newState",
    "diffReasons",
    "replaceReasons",
    "detailedDiff",
  ];
  const files = fs
    .readdirSync(path.join(__dirname, "fixtures", "preview"))
    .filter((f) => f.endsWith(".json"));

  it("the fixtures have the fields `pulumi preview --json` prints, and only those", () => {
    assert.equal(files.length, 5);
    for (const f of files) {
      const raw = JSON.parse(fs.readFileSync(fixture(f), "utf8")) as Record<string, unknown>;
      assert.deepEqual(
        Object.keys(raw).filter((k) => !DIGEST_KEYS.includes(k)),
        [],
        f,
      );
      assert.equal(typeof raw.duration, "number", f);
      const doc = load(f);
      assert.ok(doc.steps.length >= 2, f);
      // Every preview lists the root stack, even unchanged.
      assert.deepEqual([doc.steps[0]?.op, stepType(doc.steps[0])], ["same", "pulumi:pulumi:Stack"], f);
      for (const s of doc.steps) {
        assert.deepEqual(
          Object.keys(s).filter((k) => !STEP_KEYS.includes(k)),
          [],
          `${f} ${s.urn}`,
        );
        // detailedDiff has no omitempty: always there, null without a detailed diff.
        assert.ok("detailedDiff" in s, `${f} ${s.urn}`);
        assert.equal(typeFromUrn(s.urn), stepType(s), `${f} ${s.urn}`);
      }
    }
  });

  it("takes the type from the new state, then the old state, then the URN", () => {
    const urn = `urn:pulumi:prod::milvus-aks::milvus-aks:k8s:Etcd$${STATEFUL_SET}::etcd`;
    assert.equal(typeFromUrn(urn), STATEFUL_SET);
    assert.equal(
      typeFromUrn("urn:pulumi:prod::milvus-aks::pulumi:pulumi:Stack::milvus-aks-prod"),
      "pulumi:pulumi:Stack",
    );
    // A name may itself contain "::".
    assert.equal(
      typeFromUrn("urn:pulumi:prod::milvus-aks::azure-native:storage:BlobContainer::a::b"),
      "azure-native:storage:BlobContainer",
    );
    assert.equal(typeFromUrn("milvus-prod-data-etcd-statefulset"), undefined);
    assert.equal(typeFromUrn("urn:pulumi:prod::milvus-aks"), undefined);
    const bare: PreviewStep = { op: "delete", urn, detailedDiff: null };
    assert.equal(stepType(bare), STATEFUL_SET);
    assert.equal(
      stepType({ ...bare, oldState: { type: "kubernetes:apps/v1:Deployment" } }),
      "kubernetes:apps/v1:Deployment",
    );
    assert.equal(
      stepType({
        ...bare,
        oldState: { type: "kubernetes:apps/v1:Deployment" },
        newState: { type: "kubernetes:core/v1:Namespace" },
      }),
      "kubernetes:core/v1:Namespace",
    );
  });
});

describe("check-preview: which steps it refuses", () => {
  it("refuses the etcd StatefulSet replace, naming its URN and the volume template that forces it", () => {
    assert.deepEqual(checkPreview(load("etcd-statefulset-replace.json")), {
      checked: 2,
      blocked: [
        {
          index: 1,
          op: "replace",
          urn: ETCD,
          type: STATEFUL_SET,
          replaceReasons: [VOLUME_TEMPLATE],
          diffReasons: ["spec"],
        },
      ],
      allowed: [],
      unusedAllows: [],
    });
  });

  it("refuses the delete of a PersistentVolumeClaim", () => {
    assert.deepEqual(checkPreview(load("pvc-delete.json")), {
      checked: 2,
      blocked: [
        {
          index: 1,
          op: "delete",
          urn: PVC,
          type: "kubernetes:core/v1:PersistentVolumeClaim",
          replaceReasons: [],
          diffReasons: [],
        },
      ],
      allowed: [],
      unusedAllows: [],
    });
  });

  it("lets a Deployment replace and an in-place StatefulSet update through", () => {
    const empty = { blocked: [], allowed: [], unusedAllows: [] };
    assert.deepEqual(checkPreview(load("deployment-replace.json")), { checked: 2, ...empty });
    assert.deepEqual(checkPreview(load("statefulset-update.json")), { checked: 2, ...empty });
  });

  it("--allow lets exactly the named resource through", () => {
    const doc = load("replacement-steps.json");
    const chain = ["delete-replaced", "replace", "create-replacement"];
    const ops = (urn: string, from: number) =>
      chain.map((op, i) => ({
        index: from + i,
        op,
        urn,
        type: STATEFUL_SET,
        replaceReasons: op === "delete-replaced" ? [] : [LABEL_TEMPLATE],
        diffReasons: op === "delete-replaced" ? [] : ["spec"],
      }));
    assert.deepEqual(checkPreview(doc), {
      checked: 7,
      blocked: [...ops(ETCD, 1), ...ops(MINIO, 4)],
      allowed: [],
      unusedAllows: [],
    });
    assert.deepEqual(checkPreview(doc, [ETCD]), {
      checked: 7,
      blocked: ops(MINIO, 4),
      allowed: ops(ETCD, 1),
      unusedAllows: [],
    });
    assert.deepEqual(checkPreview(doc, [ETCD, MINIO]).blocked, []);
    // Exact match only: the same resource in another stack, or a prefix, allows nothing.
    const devEtcd = ETCD.replace("urn:pulumi:prod::", "urn:pulumi:dev::");
    const prefix = ETCD.slice(0, -"-statefulset".length);
    const result = checkPreview(doc, [devEtcd, prefix]);
    assert.equal(result.blocked.length, 6);
    assert.deepEqual(result.unusedAllows, [devEtcd, prefix]);
  });

  it("counts the step ops that destroy the managed object, and any op it does not know", () => {
    // deploy.StepOps, in order (pulumi/pulumi pkg/resource/deploy/step.go).
    const stepOps = [
      "same",
      "create",
      "update",
      "delete",
      "replace",
      "create-replacement",
      "delete-replaced",
      "read",
      "read-replacement",
      "refresh",
      "discard",
      "discard-replaced",
      "remove-pending-replace",
      "import",
      "import-replacement",
    ];
    const doc = { steps: [...stepOps, "some-future-op"].map((op) => step(op, STATEFUL_SET, op)) };
    assert.deepEqual(
      checkPreview(doc).blocked.map((f) => f.op),
      [
        "delete",
        "replace",
        "create-replacement",
        "delete-replaced",
        "read-replacement",
        "import-replacement",
        "some-future-op",
      ],
    );
    assert.deepEqual([...DESTRUCTIVE_OPS.keys()].sort(), [
      "create-replacement",
      "delete",
      "delete-replaced",
      "import-replacement",
      "read-replacement",
      "replace",
    ]);
  });

  it("counts the stateful types, and a resource whose type it cannot tell", () => {
    const stateful = [
      "kubernetes:apps/v1:StatefulSet",
      "kubernetes:core/v1:PersistentVolumeClaim",
      "kubernetes:core/v1:PersistentVolume",
      "kubernetes:core/v1:Namespace",
      "azure-native:storage:StorageAccount",
      "azure-native:storage:BlobContainer",
      "azure-native:containerservice:ManagedCluster",
      "azure-native:containerservice:AgentPool",
      "azure-native:keyvault:Vault",
      "azure-native:keyvault:Key",
      "azure-native:compute:DiskEncryptionSet",
      "azure-native:operationalinsights:Workspace",
      "azure-native:resources:ResourceGroup",
    ];
    assert.deepEqual([...STATEFUL_TYPES.keys()], stateful);
    const stateless = [
      "kubernetes:apps/v1:Deployment",
      "kubernetes:core/v1:Service",
      "kubernetes:core/v1:ConfigMap",
      "kubernetes:storage.k8s.io/v1:StorageClass",
      "kubernetes:batch/v1:CronJob",
      "pulumi:providers:kubernetes",
      "azure-native:storage:BlobServiceProperties",
      "milvus-aks:k8s:Etcd",
    ];
    const doc = {
      steps: [
        ...[...stateful, ...stateless].map((t) => step("delete", t)),
        { op: "delete", urn: "not-a-urn", detailedDiff: null },
      ],
    };
    const blocked = checkPreview(doc).blocked;
    assert.deepEqual(
      blocked.map((f) => f.type),
      [...stateful, undefined],
    );
  });
});

describe("check-preview: command line", () => {
  it("exits 1 with every refused step, its reasons and how to proceed", () => {
    const res = cli([fixture("etcd-statefulset-replace.json")]);
    assert.equal(res.code, 1);
    assert.equal(res.out, "");
    assert.equal(
      res.err,
      [
        "check-preview: 1 step of 2 would replace or delete a stateful resource:",
        `  replace ${ETCD}`,
        `    ${STATEFUL_SET}: replaces the resource`,
        `    why it matters: ${STATEFUL_TYPES.get(STATEFUL_SET) ?? ""}`,
        `    replaceReasons: ${VOLUME_TEMPLATE}`,
        "    diffReasons: spec",
        PROCEED,
      ].join("\n"),
    );
    const pvc = cli([fixture("pvc-delete.json")]);
    assert.equal(pvc.code, 1);
    assert.equal(
      pvc.err.split("\n").slice(0, 4).join("\n"),
      [
        "check-preview: 1 step of 2 would replace or delete a stateful resource:",
        `  delete ${PVC}`,
        "    kubernetes:core/v1:PersistentVolumeClaim: deletes the resource",
        `    why it matters: ${STATEFUL_TYPES.get("kubernetes:core/v1:PersistentVolumeClaim") ?? ""}`,
      ].join("\n"),
    );
    assert.match(PROCEED, /--allow <urn>/);
    assert.match(PROCEED, /allow_stateful_changes/);
  });

  it("exits 0 with a one-line summary, listing what --allow let through", () => {
    assert.deepEqual(cli([fixture("deployment-replace.json")]), {
      code: 0,
      out: "check-preview: 2 steps checked, none replaces or deletes a stateful resource.",
      err: "",
    });
    assert.deepEqual(cli([fixture("etcd-statefulset-replace.json"), "--allow", ETCD]), {
      code: 0,
      out: `check-preview: 2 steps checked, none replaces or deletes a stateful resource (1 allowed by --allow):\n  replace ${ETCD}`,
      err: "",
    });
    // An --allow that matches nothing is reported, and changes nothing.
    assert.deepEqual(cli([fixture("statefulset-update.json"), `--allow=${ETCD}`]), {
      code: 0,
      out: "check-preview: 2 steps checked, none replaces or deletes a stateful resource.",
      err: `check-preview: --allow ${ETCD} matched no replace or delete (stale or mistyped URN)`,
    });
  });

  it('reads standard input for "-"', () => {
    const text = fs.readFileSync(fixture("pvc-delete.json"), "utf8");
    assert.equal(cli(["-"], text).code, 1);
    assert.equal(cli(["-", "--allow", PVC], text).code, 0);
  });

  it("exits 2 on input that is not a preview document", () => {
    const cases: [string, string][] = [
      ["", "the input is empty (did `pulumi preview --json` fail?)"],
      ["garbage", "the input is not JSON: Unexpected token 'g', \"garbage\" is not valid JSON"],
      ["[1]", "the input is not a JSON object"],
      [
        "{}",
        'the input has no "steps" array: not a `pulumi preview --json` document (every preview lists at least the stack)',
      ],
      ['{"steps":[{"op":"delete"}]}', 'steps[0] has no "urn"'],
      ['{"steps":[{"urn":"urn:pulumi:a::b::c:d:E::n"}]}', 'steps[0] has no "op"'],
      ['{"steps":[{"op":"delete","urn":"u","oldState":"x"}]}', "steps[0].oldState is not a resource state"],
      [
        '{"steps":[{"op":"replace","urn":"u","replaceReasons":"spec"}]}',
        "steps[0].replaceReasons is not a list of property paths",
      ],
      [
        '{"sequence":0,"timestamp":1764000000,"preludeEvent":{"config":{}}}\n{"sequence":1,"timestamp":1764000001}\n',
        "the input is a stream of engine events, not the preview document: unset PULUMI_ENABLE_STREAMING_JSON_PREVIEW",
      ],
    ];
    for (const [input, message] of cases) {
      assert.deepEqual(cli(["-"], input), {
        code: 2,
        out: "",
        err: `check-preview: cannot read standard input: ${message}`,
      });
    }
    const missing = cli([path.join(__dirname, "fixtures", "preview", "missing.json")]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /^check-preview: cannot read .*missing\.json: ENOENT/);
  });

  it("exits 2 with one line and the usage hint on bad arguments, 0 on --help", () => {
    const file = fixture("deployment-replace.json");
    const bad: [string[], string][] = [
      [[], 'expected one preview file (or "-"), got 0'],
      [[file, file], 'expected one preview file (or "-"), got 2'],
      [[file, "--allow"], "--allow needs a value"],
      [
        [file, "--allow", "milvus-prod-data-etcd-statefulset"],
        '--allow takes a full URN (urn:pulumi:<stack>::<project>::<type>::<name>), not "milvus-prod-data-etcd-statefulset"',
      ],
    ];
    for (const [argv, message] of bad) {
      assert.deepEqual(
        cli(argv),
        { code: 2, out: "", err: `check-preview: ${message} (see \`npm run -s check:preview -- --help\`)` },
        argv.join(" "),
      );
    }
    assert.deepEqual(cli([file, "--force"]), {
      code: 2,
      out: "",
      err: 'check-preview: unknown flag "--force" (see `npm run -s check:preview -- --help`)',
    });
    assert.match(
      USAGE,
      /^usage: npm run -s check:preview -- <preview\.json \| -> \[--allow <urn> \.\.\.\]\n/,
    );
    assert.match(
      USAGE,
      /\n {2}--allow <urn> +let this resource's replacement or deletion through \(exact URN\) \(repeatable\)\n/,
    );
    assert.deepEqual(cli(["--help"]), { code: 0, out: USAGE, err: "" });
    assert.deepEqual(cli(["-h"]), { code: 0, out: USAGE, err: "" });
  });

  it("runs as a program: exit codes and the printed line", () => {
    const exec = (args: string[], input?: string) =>
      spawnSync(
        process.execPath,
        [require.resolve("ts-node/dist/bin.js"), "--transpile-only", "scripts/check-preview.ts", ...args],
        { cwd: ROOT, encoding: "utf8", input },
      );
    const refused = exec([fixture("etcd-statefulset-replace.json")]);
    assert.equal(refused.status, 1);
    assert.equal(refused.stdout, "");
    assert.equal(
      refused.stderr.split("\n")[0],
      "check-preview: 1 step of 2 would replace or delete a stateful resource:",
    );
    assert.equal(refused.stderr.split("\n")[1], `  replace ${ETCD}`);
    const passed = exec([fixture("deployment-replace.json")]);
    assert.equal(passed.status, 0);
    assert.equal(
      passed.stdout,
      "check-preview: 2 steps checked, none replaces or deletes a stateful resource.\n",
    );
    assert.equal(passed.stderr, "");
    const garbage = exec(["-"], "garbage");
    assert.equal(garbage.status, 2);
    assert.match(garbage.stderr, /^check-preview: cannot read standard input: the input is not JSON/);
  });
});
