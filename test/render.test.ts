import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { kubernetesObjects, renderStack, ROOT } from "../tools/offline-runtime";
import { main, objectFileNames } from "../tools/render";
import { schemaProblems } from "../tools/k8s-schema";
import { topology } from "../tools/topology";

describe("offline render", () => {
  for (const stack of ["prod", "dev"]) {
    it(`renders ${stack} with every Kubernetes object valid against its OpenAPI schema`, async () => {
      const result = await renderStack(stack);
      assert.equal(result.config.environment, stack);
      assert.ok(result.resources.some((r) => r.type === "azure-native:containerservice:ManagedCluster"));
      const problems = kubernetesObjects(result).flatMap((o) => schemaProblems(o.inputs));
      assert.deepEqual(problems, []);
    });
  }

  it("schema validation rejects a malformed object", () => {
    const problems = schemaProblems({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "bad" },
      spec: { selector: {}, template: { spec: { containers: [{ name: "c", image: 5 }] } } },
    });
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? "", /image must be string/);
  });

  it("schema validation refuses kinds it has no schema for", () => {
    assert.deepEqual(
      schemaProblems({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } }),
      ["example.com/v1 Widget w: no OpenAPI schema known for example.com/v1/Widget"],
    );
  });

  it("summarises the Milvus topology of prod (cluster) and dev (standalone)", async () => {
    assert.deepEqual(topology(await renderStack("prod")), [
      "Deployment milvus/milvus-datanode: 2 replica(s), PDB maxUnavailable 1, zone-spread",
      "Deployment milvus/milvus-mixcoord: 2 replica(s), PDB maxUnavailable 1, zone-spread",
      "Deployment milvus/milvus-proxy: HPA 3..10, PDB maxUnavailable 1, zone-spread",
      "StatefulSet milvus/etcd: 3 replica(s), PDB maxUnavailable 1, zone-spread",
      "StatefulSet milvus/milvus-querynode: HPA 3..6 (never scales in), PDB maxUnavailable 1, zone-spread",
      "StatefulSet milvus/milvus-streamingnode: 2 replica(s), PDB maxUnavailable 1, zone-spread",
      "StatefulSet milvus/minio: 6 replica(s), PDB maxUnavailable 1, zone-spread",
    ]);
    assert.deepEqual(topology(await renderStack("dev")), [
      "StatefulSet milvus/etcd: 1 replica(s), no PDB",
      "StatefulSet milvus/milvus-standalone: 1 replica(s), no PDB",
      "StatefulSet milvus/minio: 1 replica(s), no PDB",
    ]);
  });

  describe("command line", () => {
    let dir = "";
    const run = async (argv: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), outRoot: dir });
      return { code, out: out.join("\n"), err: err.join("\n") };
    };
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "render-test-"));
    });
    afterEach(() => {
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it("renders a stack from another file with --file, the stack named by the positional or --stack", async () => {
      const file = path.join(dir, "elsewhere.yaml");
      fs.copyFileSync(path.join(ROOT, "Pulumi.dev.yaml"), file);
      for (const argv of [
        ["scratch", "--file", file],
        ["--file", file, "--stack", "scratch"],
      ]) {
        const r = await run(argv);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /^stack scratch: dev in westeurope/);
        // Before, `render -- --file X` took "--file" as the stack name and wrote out/--file/.
        assert.deepEqual(fs.readdirSync(dir), ["elsewhere.yaml", "scratch"]);
        const files = fs.readdirSync(path.join(dir, "scratch", "kubernetes"));
        assert.ok(files.includes("statefulset_milvus_etcd.yaml"), files.join(" "));
        assert.ok(files.includes("namespace_milvus.yaml"), files.join(" "));
        fs.rmSync(path.join(dir, "scratch"), { recursive: true });
      }
    });

    it("refuses --file without a stack, a missing --file value and a second stack, with exit code 2", async () => {
      const cases: [string[], string][] = [
        [
          ["--file", "Pulumi.dev.yaml"],
          "render: --file names the configuration, not the stack: give the stack name too (e.g. `prod --file <path>`) (see `npm run -s render -- --help`)",
        ],
        [["dev", "--file"], "render: --file needs a value (see `npm run -s render -- --help`)"],
        [["dev", "prod"], 'render: unexpected argument "prod" (see `npm run -s render -- --help`)'],
        [
          ["dev", "--stack", "prod"],
          'render: the stack is given twice ("dev" and --stack "prod") (see `npm run -s render -- --help`)',
        ],
        [
          [],
          "render: a stack is required (e.g. prod; stacks are the Pulumi.<stack>.yaml files at the repository root) (see `npm run -s render -- --help`)",
        ],
      ];
      for (const [argv, message] of cases) {
        assert.deepEqual(await run(argv), { code: 2, out: "", err: message }, argv.join(" "));
      }
      assert.deepEqual(fs.readdirSync(dir), [], "nothing rendered");
    });
  });
});

describe("render file names", () => {
  const obj = (apiVersion: string, kind: string, name: string, namespace?: string, resource = name) => ({
    name: resource,
    inputs: { apiVersion, kind, metadata: { name, ...(namespace ? { namespace } : {}) } },
  });

  it("names each object by kind, namespace and name, with no position in the list", () => {
    const objects = [
      obj("v1", "Namespace", "milvus"),
      obj("apps/v1", "StatefulSet", "etcd", "milvus"),
      obj("v1", "Service", "etcd", "milvus"),
      obj("policy/v1", "PodDisruptionBudget", "etcd", "milvus"),
    ];
    const names = objectFileNames(objects);
    assert.deepEqual(names, [
      "namespace_milvus.yaml",
      "statefulset_milvus_etcd.yaml",
      "service_milvus_etcd.yaml",
      "poddisruptionbudget_milvus_etcd.yaml",
    ]);
    // Adding an object in front renames nothing else: a render diff shows only what changed.
    assert.deepEqual(
      objectFileNames([obj("v1", "ConfigMap", "extra", "milvus"), ...objects]).slice(1),
      names,
    );
    assert.deepEqual(objectFileNames([...objects].reverse()), [...names].reverse());
  });

  it("keeps apart objects a plain separator would merge, and the same kind in two API groups", () => {
    // "-" is legal in names, "_" is not: (namespace a, name b-c) and (namespace a-b, name c) stay apart.
    assert.deepEqual(
      objectFileNames([obj("v1", "ConfigMap", "b-c", "a"), obj("v1", "ConfigMap", "c", "a-b")]),
      ["configmap_a_b-c.yaml", "configmap_a-b_c.yaml"],
    );
    assert.deepEqual(
      objectFileNames([
        obj("cert-manager.io/v1", "Certificate", "tls", "milvus"),
        obj("example.com/v1", "Certificate", "tls", "milvus"),
        obj("v1", "Secret", "tls", "milvus"),
      ]),
      [
        "certificate.cert-manager.io_milvus_tls.yaml",
        "certificate.example.com_milvus_tls.yaml",
        "secret_milvus_tls.yaml",
      ],
    );
    assert.throws(
      () =>
        objectFileNames([obj("v1", "Secret", "x", "m", "first"), obj("v1", "Secret", "x", "m", "second")]),
      /two Kubernetes objects would both be written to secret_m_x\.yaml \(Pulumi resources first and second\)/,
    );
  });

  for (const stack of ["prod", "dev", "staging", "dr"]) {
    it(`gives every object of ${stack} its own stable file name`, async () => {
      const objects = kubernetesObjects(await renderStack(stack));
      const names = objectFileNames(objects);
      assert.equal(new Set(names).size, objects.length);
      for (const n of names) assert.match(n, /^[a-z]+(_[a-z0-9.-]+){1,2}\.yaml$/);
    });
  }
});
