import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { failureDomains, formatFailureDomains, podsPerZone } from "../tools/failureDomains";
import { RenderResult, renderStack, ROOT } from "../tools/offline-runtime";

type Obj = Record<string, unknown>;

/** A copy of a render with one Kubernetes object's inputs changed. */
function mutate(r: RenderResult, kind: string, name: string, change: (inputs: Obj) => void): RenderResult {
  const copy = structuredClone(r);
  const target = copy.resources.find(
    (x) => x.inputs.kind === kind && (x.inputs.metadata as Obj | undefined)?.name === name,
  );
  assert.ok(target, `${kind} ${name}`);
  change(target.inputs);
  return copy;
}

describe("failure-domain report (npm run render)", () => {
  let prod: RenderResult;
  let dr: RenderResult;
  let staging: RenderResult;
  let dev: RenderResult;
  before(async () => {
    [prod, dr, staging, dev] = [
      await renderStack("prod"),
      await renderStack("dr"),
      await renderStack("staging"),
      await renderStack("dev"),
    ];
  });

  it("places at most ceil(replicas / zones) pods of a zone-spread workload in one zone, all of an unspread one", () => {
    assert.deepEqual([...podsPerZone(6, ["1", "2", "3"], true).values()], [2, 2, 2]);
    assert.deepEqual([...podsPerZone(4, ["1", "2", "3"], true).values()], [2, 2, 2]);
    assert.deepEqual([...podsPerZone(3, ["1", "2", "3"], false).values()], [3, 3, 3]);
  });

  it("prod-like stacks survive the loss of any one zone, and say what it costs", () => {
    for (const r of [prod, dr, staging]) {
      const report = failureDomains(r);
      assert.deepEqual(report.problems, [], r.stack);
      assert.deepEqual(
        report.zones.map((z) => z.zone),
        ["1", "2", "3"],
      );
      for (const z of report.zones) {
        assert.deepEqual(
          z.verdicts.filter((v) => !v.ok),
          [],
          `${r.stack} zone ${z.zone}`,
        );
      }
    }
    const zone1 = failureDomains(prod).zones[0];
    assert.deepEqual(zone1.verdicts.slice(0, 3), [
      { component: "etcd", ok: true, detail: "2 of 3 members left, quorum 2" },
      { component: "MinIO reads", ok: true, detail: "4 of 6 drives left, read quorum 3 (EC:3)" },
      { component: "MinIO writes", ok: true, detail: "4 of 6 drives left, write quorum 4 (EC:3)" },
    ]);
    // Zonal disks pin etcd and MinIO pods to their zone; Milvus's caches are emptyDirs and move.
    assert.deepEqual(zone1.stuck, ["etcd: 1 (zonal disk)", "minio: 2 (zonal disk)"]);
    assert.deepEqual(
      failureDomains(prod).pools.map((p) => `${p.pool}: ${p.detail}`),
      [
        "system: runs no data-layer pods",
        "data1 (zone 1): proceeds, one pod per PDB at a time",
        "data2 (zone 2): proceeds, one pod per PDB at a time",
        "data3 (zone 3): proceeds, one pod per PDB at a time",
      ],
    );
  });

  it("flags a 4-pod MinIO: writes stop in a zone holding two of its drives", async () => {
    // Staging is not validated for zone survival, so this layout renders; the report shows the outage.
    const four = await renderStack("staging", { overrides: { "milvus-aks:minio": { replicas: 4 } } });
    const writes = failureDomains(four).zones[0]?.verdicts.find((v) => v.component === "MinIO writes");
    assert.deepEqual(writes, {
      component: "MinIO writes",
      ok: false,
      detail: "2 of 4 drives left, write quorum 3 (EC:2)",
    });
  });

  it("lists a production stack's single-zone failures and blocking PDBs as problems", () => {
    const broken = mutate(prod, "StatefulSet", "etcd", (inputs) => {
      (inputs.spec as Obj).template = {
        ...((inputs.spec as Obj).template as Obj),
        spec: {
          ...(((inputs.spec as Obj).template as Obj).spec as Obj),
          topologySpreadConstraints: undefined,
        },
      };
    });
    assert.deepEqual(failureDomains(broken).problems.slice(0, 1), [
      "zone 1: etcd stops: 0 of 3 members left, quorum 2",
    ]);
    const blocked = mutate(prod, "PodDisruptionBudget", "minio", (inputs) => {
      (inputs.spec as Obj).maxUnavailable = 0;
    });
    assert.deepEqual(failureDomains(blocked).problems, [
      "data1 (zone 1): drain blocked by minio (PDB allows 0 of 6)",
      "data2 (zone 2): drain blocked by minio (PDB allows 0 of 6)",
      "data3 (zone 3): drain blocked by minio (PDB allows 0 of 6)",
    ]);
  });

  it("reports dev's single zone as an outage without calling it a problem (dev is not production)", () => {
    const report = failureDomains(dev);
    assert.deepEqual(report.problems, []);
    assert.deepEqual(
      report.zones[0]?.verdicts.filter((v) => !v.ok).map((v) => v.component),
      ["etcd", "MinIO", "milvus-standalone"],
    );
    assert.ok(
      formatFailureDomains(report).includes(
        "drain of data1 (zone 1): proceeds, one pod per PDB at a time; etcd (1 pod, down while it moves), minio (1 pod, down while it moves), milvus-standalone (1 pod, down while it moves)",
      ),
    );
  });

  it("is printed by npm run render", () => {
    const res = spawnSync(
      process.execPath,
      [require.resolve("ts-node/dist/bin.js"), "--transpile-only", "tools/render.ts", "prod"],
      { cwd: ROOT, encoding: "utf8" },
    );
    assert.equal(res.status, 0, res.stderr);
    assert.match(
      res.stdout,
      /^failure domains:\n {2}losing zone 1: pods lost \(at most\) etcd: 1, minio: 2,/m,
    );
    assert.match(res.stdout, /^ {4}ok {3}MinIO writes: 4 of 6 drives left, write quorum 4 \(EC:3\)$/m);
  });
});
