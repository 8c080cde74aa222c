import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import { StackResource } from "../policy/common";
import { enforcementFor, evaluate, PROD_LIKE_ENVIRONMENTS } from "../policy/policies";
import { kubernetesObjects, RenderResult, renderStack, revealSecrets, ROOT } from "../tools/offline-runtime";

/**
 * Every policy against every stack's offline render (the resources and inputs `pulumi up` would send),
 * the way the engine runs the pack: resource policies per resource, stack policies over all of them.
 * Stacks are discovered from the Pulumi.<stack>.yaml files, so a new stack file is covered at once.
 */

const stacks = fs
  .readdirSync(ROOT)
  .map((f) => /^Pulumi\.([A-Za-z0-9_.-]+)\.yaml$/.exec(f)?.[1])
  .filter((s): s is string => s !== undefined)
  .sort();

function asStack(result: RenderResult): StackResource[] {
  return result.resources.map((r) => ({ type: r.type, name: r.name, props: r.inputs }));
}

/** Advisory findings the dev stack is expected to have: it is single-zone by design (cost). */
const DEV_ADVISORY = [
  'aks-zone-redundancy: system pool "system" runs in zones [1], missing 2, 3; set availabilityZones to ["1", "2", "3"].',
  "aks-zone-redundancy: user node pools cover zones [1], missing 2, 3; add a zonal pool per missing zone.",
];

describe("policy pack against the offline render of every stack", () => {
  const renders = new Map<string, RenderResult>();
  before(async function () {
    this.timeout(240_000);
    for (const stack of stacks) renders.set(stack, await renderStack(stack));
  });

  it("discovers the stack files", () => {
    assert.ok(stacks.includes("dev") && stacks.includes("prod"), `stacks found: ${stacks.join(", ")}`);
  });

  for (const stack of stacks) {
    it(`${stack}: ${stack === "dev" ? "only the expected advisory findings" : "no violations when prod-like"}`, () => {
      const result = renders.get(stack)!;
      const environment = result.config.environment;
      const found = evaluate(asStack(result), environment).map((v) => `${v.policy}: ${v.message}`);
      // What the real pack sees (secrets already unwrapped) must not differ on a compliant render.
      const unwrapped = asStack(result).map((r) => ({
        ...r,
        props: revealSecrets(r.props) as Record<string, unknown>,
      }));
      const asInRealRun = evaluate(unwrapped, environment, { secretsObservable: false }).map(
        (v) => `${v.policy}: ${v.message}`,
      );
      assert.deepEqual(asInRealRun, found);
      if (PROD_LIKE_ENVIRONMENTS.includes(environment)) {
        assert.equal(enforcementFor(environment), "mandatory");
        assert.deepEqual(found, []);
      } else {
        assert.equal(environment, "dev");
        assert.equal(enforcementFor(environment), "advisory");
        if (found.length > 0)
          console.log(`      advisory findings for ${stack}:\n        ${found.join("\n        ")}`);
        assert.deepEqual(found, DEV_ADVISORY);
      }
    });
  }

  it("inspects the rendered shapes: breaking prod's render is caught by the matching policy", () => {
    const prod = asStack(renders.get("prod")!);
    const mutate = (type: string, change: (props: Record<string, unknown>) => Record<string, unknown>) =>
      prod.map((r) => (r.type === type ? { ...r, props: change(r.props) } : r));
    const policiesHit = (resources: StackResource[]) => [
      ...new Set(evaluate(resources, "prod").map((v) => v.policy)),
    ];

    assert.deepEqual(
      policiesHit(
        mutate("azure-native:storage:StorageAccount", (p) => ({ ...p, allowSharedKeyAccess: true })),
      ),
      ["storage-account-hardening"],
    );
    assert.deepEqual(
      policiesHit(
        mutate("azure-native:containerservice:ManagedCluster", (p) => ({
          ...p,
          sku: { name: "Base", tier: "Free" },
        })),
      ),
      ["aks-cluster-settings"],
    );
    assert.deepEqual(
      policiesHit(
        mutate("azure-native:containerservice:AgentPool", (p) => ({
          ...p,
          availabilityZones: ["1"],
          minCount: 9,
        })),
      ),
      ["aks-cluster-settings", "aks-zone-redundancy"],
    );
  });

  it("inspects the rendered Kubernetes objects: breaking them is caught by the matching policy", () => {
    const prod = asStack(renders.get("prod")!);
    const kinds = new Set(prod.map((r) => String(r.props.kind)));
    for (const kind of ["Secret", "Service", "PodDisruptionBudget", "StatefulSet"]) {
      assert.ok(kinds.has(kind), `prod renders no ${kind}`);
    }
    const first = (kind: string, where: (p: Record<string, unknown>) => boolean = () => true) =>
      prod.find((r) => r.props.kind === kind && where(r.props))!;
    const hit = (target: StackResource, props: Record<string, unknown>) =>
      evaluate(
        prod.map((r) => (r === target ? { ...r, props } : r)),
        "prod",
      ).map((v) => `${v.policy}: ${v.message}`);

    // A Secret whose payload is no longer a Pulumi secret.
    const secret = first("Secret");
    const plain = { ...secret.props, stringData: { password: "hunter2" } };
    assert.deepEqual(hit(secret, plain), [
      `no-plaintext-secrets: Secret ${String((secret.props.metadata as Record<string, unknown>).namespace)}/${String((secret.props.metadata as Record<string, unknown>).name)}: stringData.password is not a Pulumi secret; wrap it with pulumi.secret() or generate it with @pulumi/random so the state stores it encrypted.`,
    ]);
    // The internal load balancer without its annotation.
    const lb = first("Service", (p) => (p.spec as Record<string, unknown>).type === "LoadBalancer");
    const publicLb = {
      ...lb.props,
      metadata: { ...(lb.props.metadata as Record<string, unknown>), annotations: {} },
    };
    assert.equal(hit(lb, publicLb).length, 1);
    assert.match(hit(lb, publicLb)[0], /^no-public-load-balancer: /);
    // Every PDB with maxUnavailable 0.
    for (const pdb of prod.filter((r) => r.props.kind === "PodDisruptionBudget")) {
      const blocking = {
        ...pdb.props,
        spec: { ...(pdb.props.spec as Record<string, unknown>), maxUnavailable: 0 },
      };
      assert.deepEqual(
        hit(pdb, blocking).map((m) => m.replace(/: PodDisruptionBudget .*?: /, ": ")),
        ["pdb-allows-disruption: maxUnavailable 0 allows no disruption; use maxUnavailable: 1."],
      );
    }
  });

  it("recognises dev's standalone Milvus: a second replica is reported", () => {
    const dev = asStack(renders.get("dev")!);
    const standalone = dev.filter((r) =>
      evaluate(
        [
          {
            ...r,
            props: { ...r.props, spec: { ...(r.props.spec as Record<string, unknown>), replicas: 2 } },
          },
        ],
        "dev",
      ).some((v) => v.policy === "milvus-standalone-single-replica"),
    );
    assert.deepEqual(
      standalone.map(
        (r) => `${String(r.props.kind)} ${String((r.props.metadata as Record<string, unknown>).name)}`,
      ),
      ["StatefulSet milvus-standalone"],
    );
  });

  it("checks every rendered Kubernetes workload (when the data layer is present)", () => {
    for (const stack of stacks) {
      const result = renders.get(stack)!;
      const workloads = kubernetesObjects(result).filter((o) =>
        ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"].includes(String(o.inputs.kind)),
      );
      for (const w of workloads) {
        // Strip one container's limits: container-hygiene must notice on every workload it can see.
        const broken = JSON.parse(JSON.stringify(w.inputs)) as Record<string, unknown>;
        const text = JSON.stringify(broken).replace(/"limits":\{[^{}]*\}/, '"limits":{}');
        const found = evaluate(
          [{ type: w.type, name: w.name, props: JSON.parse(text) as Record<string, unknown> }],
          "prod",
        );
        assert.ok(
          found.some(
            (v) =>
              v.policy === "container-hygiene" && /resources\.limits missing cpu and memory/.test(v.message),
          ),
          `${stack}: ${w.name} limits removal not detected`,
        );
      }
    }
  });
});
