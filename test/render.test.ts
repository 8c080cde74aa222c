import * as assert from "node:assert/strict";
import { kubernetesObjects, renderStack } from "../tools/offline-runtime";
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
});
