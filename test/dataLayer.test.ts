/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return --
 * Rendered objects are untyped JSON (schemaProblems validates their shape against the OpenAPI schemas);
 * walking them through `any` keeps the invariants below readable. */
import * as assert from "node:assert/strict";
import * as yaml from "js-yaml";
import { APP, appLabels, DATA_NAMESPACE, MONITORING_NAMESPACE } from "../components/common/naming";
import { schemaProblems } from "../tools/k8s-schema";
import { isSecretValue, kubernetesObjects, RenderResult, renderStack } from "../tools/offline-runtime";
import {
  effectiveReplicas,
  inNamespace,
  Obj,
  objectsOf,
  ofKind,
  podTemplates,
  WORKLOAD_KINDS,
} from "../tools/k8s-objects";

/**
 * The data layer's invariants, checked on what `pulumi up` would send for prod, dev and an Azure Blob
 * stack, and shown to fail on deliberately broken copies of those objects.
 */

type Labels = Record<string, string>;

const inNs = (objs: Obj[]) => inNamespace(objs, DATA_NAMESPACE);
const named = (objs: Obj[], kind: string, name: string): Obj => {
  const found = objs.filter((o) => o.kind === kind && o.metadata.name === name);
  assert.equal(found.length, 1, `expected one ${kind} ${name}, found ${found.length}`);
  return found[0];
};
const matches = (selector: Labels | undefined, labels: Labels | undefined) =>
  Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);

const PINNED =
  /^[^:@\s]+(:(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[a-f0-9]{64})$|^[^@\s]+:[^:@\s/]+@sha256:[a-f0-9]{64}$/;

/** Every broken invariant of the data namespace, as readable sentences (empty when all hold). */
function dataLayerProblems(all: Obj[]): string[] {
  const objs = inNs(all);
  const problems: string[] = [];
  const workloads = objs.filter((o) => WORKLOAD_KINDS.includes(o.kind));
  const templates = podTemplates(objs);
  const podLabels = templates.map((t) => t.template.metadata?.labels as Labels);
  // The backup worker's pods (wired into the stack separately) are a legitimate NetworkPolicy peer.
  const knownPeers = [...podLabels, appLabels(APP.backup, "worker")];
  const id = (o: Obj) => `${o.kind} ${o.metadata.name}`;

  for (const w of workloads) {
    if (!matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels)) {
      problems.push(`${id(w)}: selector does not match its own pod labels`);
    }
  }
  for (const s of ofKind(objs, "Service")) {
    if (s.spec.selector && !podLabels.some((l) => matches(s.spec.selector, l))) {
      problems.push(`${id(s)}: selector matches no pods`);
    }
  }

  // PDBs: maxUnavailable 1, on one workload of at least 2 replicas; every multi-replica workload has one.
  const pdbs = ofKind(objs, "PodDisruptionBudget");
  for (const p of pdbs) {
    const targets = workloads.filter((w) =>
      matches(p.spec.selector.matchLabels, w.spec.template.metadata.labels),
    );
    if (targets.length !== 1) problems.push(`${id(p)}: selects ${targets.length} workloads, expected 1`);
    if (p.spec.minAvailable !== undefined)
      problems.push(`${id(p)}: uses minAvailable; use maxUnavailable: 1`);
    if (p.spec.maxUnavailable !== 1)
      problems.push(`${id(p)}: maxUnavailable ${p.spec.maxUnavailable}, expected 1`);
    if (p.spec.unhealthyPodEvictionPolicy !== "AlwaysAllow") {
      problems.push(`${id(p)}: a pod that is not Ready would block node drains`);
    }
    for (const t of targets) {
      const n = effectiveReplicas(objs, t);
      if (n < 2) problems.push(`${id(p)}: guards ${id(t)} with ${n} replica(s): it would block every drain`);
      if (n - (p.spec.maxUnavailable ?? 0) >= n) problems.push(`${id(p)}: allows no disruption at all`);
    }
  }
  for (const w of workloads) {
    const n = effectiveReplicas(objs, w);
    const hasPdb = pdbs.some((p) => matches(p.spec.selector.matchLabels, w.spec.template.metadata.labels));
    if (n >= 2 && !hasPdb) problems.push(`${id(w)}: ${n} replicas without a PodDisruptionBudget`);
    if (n >= 2) {
      const zone = (w.spec.template.spec.topologySpreadConstraints ?? []).find(
        (c: Obj) => c.topologyKey === "topology.kubernetes.io/zone",
      );
      if (!zone) problems.push(`${id(w)}: ${n} replicas without zone spreading`);
      else if (
        zone.maxSkew !== 1 ||
        zone.whenUnsatisfiable !== "DoNotSchedule" ||
        !matches(zone.labelSelector.matchLabels, w.spec.template.metadata.labels)
      ) {
        problems.push(
          `${id(w)}: zone spreading that is not strict (maxSkew 1, DoNotSchedule) or misses its pods`,
        );
      }
    }
  }

  // HPAs: target exists, floor >= 2, max >= min, query nodes never scale in automatically.
  for (const h of ofKind(objs, "HorizontalPodAutoscaler")) {
    const ref = h.spec.scaleTargetRef;
    const target = workloads.find((w) => w.kind === ref.kind && w.metadata.name === ref.name);
    if (!target) problems.push(`${id(h)}: scaleTargetRef ${ref.kind}/${ref.name} does not exist`);
    if (h.spec.minReplicas < 2 || h.spec.maxReplicas < h.spec.minReplicas) {
      problems.push(`${id(h)}: replicas ${h.spec.minReplicas}..${h.spec.maxReplicas}`);
    }
    if (target?.spec.template.metadata.labels["app.kubernetes.io/component"] === "querynode") {
      if (h.spec.behavior?.scaleDown?.selectPolicy !== "Disabled") {
        problems.push(`${id(h)}: query nodes may be scaled in automatically`);
      }
    }
    if (target?.spec.replicas !== undefined) {
      problems.push(`${id(h)}: ${id(target)} also sets replicas; every pulumi up would reset the autoscaler`);
    }
  }

  // Standalone Milvus is one pod: never more, never autoscaled, never behind a PDB (milvus#28063).
  for (const w of workloads.filter(
    (x) => x.spec.template.metadata.labels["app.kubernetes.io/component"] === "standalone",
  )) {
    const n = effectiveReplicas(objs, w);
    if (w.spec.replicas !== 1 || n !== 1) problems.push(`${id(w)}: standalone Milvus with ${n} replicas`);
  }

  // Containers: pinned image, requests and limits; long-running ones also probes; all non-root.
  for (const { owner, template } of templates) {
    const spec = template.spec;
    if (spec.securityContext?.runAsNonRoot !== true) problems.push(`${id(owner)}: pod may run as root`);
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      const where = `${id(owner)} container ${c.name}`;
      if (!PINNED.test(c.image)) problems.push(`${where}: image ${c.image} is not pinned`);
      for (const r of ["cpu", "memory"]) {
        if (!c.resources?.requests?.[r]) problems.push(`${where}: no ${r} request`);
        if (!c.resources?.limits?.[r]) problems.push(`${where}: no ${r} limit`);
      }
      if (WORKLOAD_KINDS.includes(owner.kind) && (!c.livenessProbe || !c.readinessProbe)) {
        problems.push(`${where}: missing liveness or readiness probe`);
      }
      if (c.securityContext?.allowPrivilegeEscalation !== false)
        problems.push(`${where}: privilege escalation`);
      if (!(c.securityContext?.capabilities?.drop ?? []).includes("ALL"))
        problems.push(`${where}: capabilities kept`);
    }
  }

  // NetworkPolicies: every pod selector and same-namespace peer selects real pods.
  for (const np of ofKind(objs, "NetworkPolicy")) {
    const sel = np.spec.podSelector.matchLabels;
    if (sel && !podLabels.some((l) => matches(sel, l)))
      problems.push(`${id(np)}: podSelector matches no pods`);
    const peers = [
      ...(np.spec.ingress ?? []).flatMap((r: Obj) => r.from ?? []),
      ...(np.spec.egress ?? []).flatMap((r: Obj) => r.to ?? []),
    ];
    for (const peer of peers) {
      if (
        peer.podSelector &&
        !peer.namespaceSelector &&
        !knownPeers.some((l) => matches(peer.podSelector.matchLabels, l))
      ) {
        problems.push(`${id(np)}: peer ${JSON.stringify(peer.podSelector.matchLabels)} matches no pods`);
      }
    }
  }

  // The client Service: an internal load balancer only.
  for (const s of ofKind(objs, "Service").filter((x) => x.spec.type === "LoadBalancer")) {
    if (s.metadata.annotations?.["service.beta.kubernetes.io/azure-load-balancer-internal"] !== "true") {
      problems.push(`${id(s)}: public load balancer`);
    }
    // Milvus 2.6 serves unauthenticated /management/* on 9091 (milvus-io/milvus #49588, #50763).
    for (const port of s.spec.ports ?? []) {
      if (port.port === 9091 || port.targetPort === 9091 || port.targetPort === "metrics") {
        problems.push(`${id(s)}: exposes the management port ${String(port.port)} on a load balancer`);
      }
    }
  }
  return problems;
}

/** Strings of generated secrets that appear outside a Pulumi secret anywhere in the render. */
function plaintextSecrets(r: RenderResult): string[] {
  const leaks: string[] = [];
  const walk = (v: unknown, path: string): void => {
    if (isSecretValue(v)) return;
    if (typeof v === "string") {
      if (v.includes("mock-secret-")) leaks.push(`${path}: ${v.slice(0, 60)}`);
    } else if (Array.isArray(v)) {
      v.forEach((x, i) => {
        walk(x, `${path}[${i}]`);
      });
    } else if (typeof v === "object" && v !== null) {
      for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
    }
  };
  for (const res of r.resources) {
    // The generator's own result is the one place the value legitimately lives (encrypted in state).
    if (res.type.startsWith("random:")) continue;
    walk(res.inputs, `${res.type} ${res.name}`);
  }
  walk(r.outputs, "stack outputs");
  return leaks;
}

/** Minimal NetworkPolicy semantics over the rendered policies (pods selected by labels in one namespace). */
interface Endpoint {
  namespace: string;
  labels: Labels;
}
function peerMatches(peer: Obj, from: Endpoint, policyNs: string): boolean {
  if (peer.ipBlock) return false;
  const nsOk = peer.namespaceSelector
    ? matches(peer.namespaceSelector.matchLabels, { "kubernetes.io/metadata.name": from.namespace })
    : from.namespace === policyNs;
  const podOk = peer.podSelector ? matches(peer.podSelector.matchLabels, from.labels) : true;
  return nsOk && podOk;
}
function allowed(
  objs: Obj[],
  direction: "ingress" | "egress",
  self: Endpoint,
  other: Endpoint,
  port: number,
) {
  const policies = ofKind(objs, "NetworkPolicy").filter(
    (p) =>
      p.metadata.namespace === self.namespace &&
      matches(p.spec.podSelector.matchLabels, self.labels) &&
      p.spec.policyTypes.includes(direction === "ingress" ? "Ingress" : "Egress"),
  );
  if (policies.length === 0) return true;
  return policies.some((p) =>
    (p.spec[direction] ?? []).some((rule: Obj) => {
      const peers = rule[direction === "ingress" ? "from" : "to"];
      const peerOk =
        peers === undefined || peers.some((peer: Obj) => peerMatches(peer, other, self.namespace));
      // `endPort` makes a rule cover a range (NetworkPolicyPort, Kubernetes 1.25+).
      const portOk =
        rule.ports === undefined ||
        rule.ports.some(
          (p2: Obj) =>
            p2.port === port || (p2.endPort !== undefined && p2.port <= port && port <= p2.endPort),
        );
      return peerOk && portOk;
    }),
  );
}
const flow = (objs: Obj[], from: Endpoint, to: Endpoint, port: number) =>
  allowed(objs, "egress", from, to, port) && allowed(objs, "ingress", to, from, port);

const pod = (name: string, component: string, namespace = DATA_NAMESPACE): Endpoint => ({
  namespace,
  labels: appLabels(name, component),
});
const prometheus: Endpoint = {
  namespace: MONITORING_NAMESPACE,
  labels: { "app.kubernetes.io/name": "prometheus" },
};

describe("data layer", () => {
  let prod: RenderResult;
  let dev: RenderResult;
  let blob: RenderResult;
  let prodObjs: Obj[];
  let devObjs: Obj[];
  let blobObjs: Obj[];
  before(async () => {
    prod = await renderStack("prod");
    dev = await renderStack("dev");
    blob = await renderStack("prod", { overrides: { "milvus-aks:objectStore": "azureBlob" } });
    [prodObjs, devObjs, blobObjs] = [prod, dev, blob].map(objectsOf) as [Obj[], Obj[], Obj[]];
  });

  it("holds every invariant in prod, dev and azureBlob renders", () => {
    assert.deepEqual(dataLayerProblems(prodObjs), []);
    assert.deepEqual(dataLayerProblems(devObjs), []);
    assert.deepEqual(dataLayerProblems(blobObjs), []);
  });

  it("renders every object of the azureBlob variant valid against its OpenAPI schema", () => {
    assert.deepEqual(
      kubernetesObjects(blob).flatMap((o) => schemaProblems(o.inputs)),
      [],
    );
  });

  it("runs the prod cluster topology with exact replica counts", () => {
    const ns = inNs(prodObjs);
    const replicas = (kind: string, name: string) => named(ns, kind, name).spec.replicas;
    const hpa = (name: string) => {
      const h = named(ns, "HorizontalPodAutoscaler", name).spec;
      return [h.scaleTargetRef.kind, h.minReplicas, h.maxReplicas];
    };
    assert.equal(replicas("Deployment", "milvus-mixcoord"), 2);
    assert.equal(replicas("Deployment", "milvus-datanode"), 2);
    assert.equal(replicas("StatefulSet", "milvus-streamingnode"), 2);
    assert.equal(replicas("Deployment", "milvus-proxy"), undefined);
    assert.equal(replicas("StatefulSet", "milvus-querynode"), undefined);
    assert.deepEqual(hpa("milvus-proxy"), ["Deployment", 3, 10]);
    assert.deepEqual(hpa("milvus-querynode"), ["StatefulSet", 3, 6]);
    assert.equal(replicas("StatefulSet", "etcd"), 3);
    // Two per zone: EC:3 keeps write quorum when a zone's two drives are gone (components/data/erasure.ts).
    assert.equal(replicas("StatefulSet", "minio"), 6);
    assert.deepEqual(
      ofKind(ns, "PodDisruptionBudget")
        .map((p) => p.metadata.name)
        .sort(),
      [
        "etcd",
        "milvus-datanode",
        "milvus-mixcoord",
        "milvus-proxy",
        "milvus-querynode",
        "milvus-streamingnode",
        "minio",
      ],
    );
    assert.equal(
      ns.filter((o) => o.metadata.labels?.["app.kubernetes.io/component"] === "standalone").length,
      0,
    );
    const roles = ns
      .filter(
        (o) => WORKLOAD_KINDS.includes(o.kind) && o.metadata.labels["app.kubernetes.io/name"] === APP.milvus,
      )
      .map((o) => o.spec.template.spec.containers[0].args.join(" "))
      .sort();
    assert.deepEqual(roles, [
      "milvus run datanode",
      "milvus run mixcoord",
      "milvus run proxy",
      "milvus run querynode",
      "milvus run streamingnode",
    ]);
  });

  it("runs dev as one standalone pod with single etcd and MinIO, and no PDB or HPA", () => {
    const ns = inNs(devObjs);
    const sts = named(ns, "StatefulSet", "milvus-standalone");
    assert.equal(sts.spec.replicas, 1);
    assert.deepEqual(sts.spec.template.spec.containers[0].args, ["milvus", "run", "standalone"]);
    assert.equal(sts.spec.volumeClaimTemplates[0].spec.storageClassName, "milvus-premium-retain");
    assert.equal(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage, "100Gi");
    assert.equal(named(ns, "StatefulSet", "etcd").spec.replicas, 1);
    assert.equal(named(ns, "StatefulSet", "minio").spec.replicas, 1);
    assert.deepEqual(ofKind(ns, "PodDisruptionBudget"), []);
    assert.deepEqual(ofKind(ns, "HorizontalPodAutoscaler"), []);
    assert.deepEqual(
      ns
        .filter((o) => WORKLOAD_KINDS.includes(o.kind))
        .map((o) => o.metadata.name)
        .sort(),
      ["etcd", "milvus-standalone", "minio"],
    );
    assert.deepEqual(named(ns, "Service", "milvus").spec.selector, {
      "app.kubernetes.io/name": "milvus",
      "app.kubernetes.io/component": "standalone",
    });
  });

  it("fails when a replicated standalone Milvus is reintroduced", () => {
    const broken = structuredClone(devObjs);
    named(inNs(broken), "StatefulSet", "milvus-standalone").spec.replicas = 3;
    assert.ok(
      dataLayerProblems(broken).includes("StatefulSet milvus-standalone: standalone Milvus with 3 replicas"),
      dataLayerProblems(broken).join("\n"),
    );
    const autoscaled = structuredClone(devObjs);
    const sts = named(inNs(autoscaled), "StatefulSet", "milvus-standalone");
    delete sts.spec.replicas;
    autoscaled.push({
      apiVersion: "autoscaling/v2",
      kind: "HorizontalPodAutoscaler",
      metadata: { name: "milvus-standalone", namespace: DATA_NAMESPACE },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "StatefulSet", name: "milvus-standalone" },
        minReplicas: 3,
        maxReplicas: 10,
      },
    });
    assert.ok(dataLayerProblems(autoscaled).some((p) => /standalone Milvus with 3 replicas/.test(p)));
  });

  it("fails on broken selectors, PDB arithmetic, zone spreading, probes and images", () => {
    const cases: [string, (objs: Obj[]) => void, RegExp][] = [
      [
        "PDB selector",
        (o) =>
          (named(o, "PodDisruptionBudget", "milvus-proxy").spec.selector.matchLabels[
            "app.kubernetes.io/component"
          ] = "prox"),
        /PodDisruptionBudget milvus-proxy: selects 0 workloads/,
      ],
      [
        "PDB minAvailable",
        (o) =>
          (named(o, "PodDisruptionBudget", "etcd").spec = {
            minAvailable: 3,
            selector: named(o, "PodDisruptionBudget", "etcd").spec.selector,
          }),
        /uses minAvailable/,
      ],
      [
        "PDB guarding unhealthy pods",
        (o) => delete named(o, "PodDisruptionBudget", "minio").spec.unhealthyPodEvictionPolicy,
        /PodDisruptionBudget minio: a pod that is not Ready would block node drains/,
      ],
      [
        "PDB on a singleton",
        (o) => (named(o, "Deployment", "milvus-mixcoord").spec.replicas = 1),
        /guards Deployment milvus-mixcoord with 1 replica/,
      ],
      [
        "Service selector",
        (o) => (named(o, "Service", "milvus").spec.selector["app.kubernetes.io/component"] = "proxies"),
        /Service milvus: selector matches no pods/,
      ],
      [
        "HPA target",
        (o) => (named(o, "HorizontalPodAutoscaler", "milvus-proxy").spec.scaleTargetRef.name = "proxy"),
        /scaleTargetRef Deployment\/proxy does not exist/,
      ],
      [
        "query node scale-in",
        (o) =>
          delete named(o, "HorizontalPodAutoscaler", "milvus-querynode").spec.behavior.scaleDown.selectPolicy,
        /query nodes may be scaled in automatically/,
      ],
      [
        "zone spreading",
        (o) => (named(o, "StatefulSet", "etcd").spec.template.spec.topologySpreadConstraints = []),
        /StatefulSet etcd: 3 replicas without zone spreading/,
      ],
      [
        "soft zone spreading",
        (o) =>
          (named(
            o,
            "StatefulSet",
            "milvus-querynode",
          ).spec.template.spec.topologySpreadConstraints[0].whenUnsatisfiable = "ScheduleAnyway"),
        /StatefulSet milvus-querynode: zone spreading that is not strict/,
      ],
      [
        "probe",
        (o) =>
          delete named(o, "Deployment", "milvus-datanode").spec.template.spec.containers[0].readinessProbe,
        /milvus-datanode container datanode: missing liveness or readiness probe/,
      ],
      [
        "image",
        (o) =>
          (named(o, "StatefulSet", "minio").spec.template.spec.containers[0].image =
            "quay.io/minio/minio:latest"),
        /image quay.io\/minio\/minio:latest is not pinned/,
      ],
      [
        "limits",
        (o) =>
          delete named(o, "CronJob", "etcd-defrag").spec.jobTemplate.spec.template.spec.containers[0]
            .resources.limits,
        /CronJob etcd-defrag container defrag: no cpu limit/,
      ],
      [
        "network policy peer",
        (o) =>
          (named(o, "NetworkPolicy", "etcd").spec.ingress[0].from[0].podSelector.matchLabels[
            "app.kubernetes.io/name"
          ] = "milvu"),
        /NetworkPolicy etcd: peer .* matches no pods/,
      ],
      [
        "public load balancer",
        (o) => delete named(o, "Service", "milvus").metadata.annotations,
        /Service milvus: public load balancer/,
      ],
      [
        "management port on the load balancer",
        (o) =>
          named(o, "Service", "milvus").spec.ports.push({
            name: "metrics",
            port: 9091,
            targetPort: "metrics",
          }),
        /Service milvus: exposes the management port 9091 on a load balancer/,
      ],
    ];
    for (const [what, mutate, expected] of cases) {
      const broken = structuredClone(inNs(prodObjs));
      mutate(broken);
      const problems = dataLayerProblems(broken);
      assert.ok(
        problems.some((p) => expected.test(p)),
        `${what}: ${problems.join("; ") || "no problem found"}`,
      );
    }
  });

  it("keeps every generated secret inside Pulumi secrets (Secrets, config, outputs)", () => {
    for (const r of [prod, dev, blob]) assert.deepEqual(plaintextSecrets(r), []);
    // The check itself finds a leak when a password lands in a ConfigMap.
    const leaky = structuredClone(prod);
    leaky.resources.push({
      type: "kubernetes:core/v1:ConfigMap",
      name: "leak",
      inputs: { data: { p: "mock-secret-x" } },
      options: leaky.resources[0].options,
    });
    assert.deepEqual(plaintextSecrets(leaky), ["kubernetes:core/v1:ConfigMap leak.data.p: mock-secret-x"]);
    for (const res of prod.resources.filter((x) => x.type === "kubernetes:core/v1:Secret")) {
      const payload = res.inputs.stringData ?? res.inputs.data;
      assert.ok(isSecretValue(payload), `Secret ${res.name} carries its data in plain text`);
    }
    assert.ok(isSecretValue(prod.outputs.milvusRootPassword));
    assert.equal(prod.outputs.milvusAddress, "milvus.milvus.svc.cluster.local:19530");
    assert.equal(prod.outputs.milvusServiceName, "milvus");
    assert.equal(prod.outputs.milvusNamespace, "milvus");
  });

  it("renders milvus.yaml for cluster mode: etcd members, MinIO, Woodpecker, auth, active-standby", () => {
    const secret = named(inNs(prodObjs), "Secret", "milvus-config");
    const conf = yaml.load(secret.stringData["user.yaml"]) as Obj;
    assert.deepEqual(
      conf.etcd.endpoints,
      [0, 1, 2].map((i) => `etcd-${i}.etcd-headless.milvus.svc.cluster.local:2379`),
    );
    assert.deepEqual(conf.mq, { type: "woodpecker" });
    assert.deepEqual(conf.woodpecker, { storage: { type: "minio" } });
    assert.equal(conf.common.security.authorizationEnabled, true);
    assert.equal(
      conf.common.security.defaultRootPassword,
      "mock-secret-milvus-prod-data-milvus-root-password",
    );
    assert.equal(conf.common.gracefulStopTimeout, 1740);
    for (const coord of ["rootCoord", "dataCoord", "queryCoord"])
      assert.equal(conf[coord].enableActiveStandby, true);
    assert.equal(conf.minio.address, "minio.milvus.svc.cluster.local");
    assert.equal(conf.minio.bucketName, "milvus");
    assert.equal(conf.minio.useIAM, false);
    assert.match(conf.minio.secretAccessKey, /^mock-secret-milvus-prod-data-minio-secret-key/);
    // The Job creates exactly the bucket Milvus is configured with.
    const job = named(inNs(prodObjs), "Job", "minio-create-bucket");
    assert.deepEqual(job.spec.template.spec.containers[0].args, ["mb", "--ignore-existing", "milvus/milvus"]);
  });

  it("gives query nodes guaranteed memory, an emptyDir cache counted as ephemeral storage, and the required HPA", () => {
    const ns = inNs(prodObjs);
    const qn = named(ns, "StatefulSet", "milvus-querynode");
    const c = qn.spec.template.spec.containers[0];
    assert.equal(c.resources.requests.memory, c.resources.limits.memory);
    // A cache on a zonal disk could never leave a lost zone: an emptyDir on the node's OS disk instead,
    // with the cache, /tmp (1Gi) and 2Gi of logs and writable layer requested and limited.
    assert.equal(qn.spec.volumeClaimTemplates, undefined);
    assert.deepEqual(
      qn.spec.template.spec.volumes.find((v: Obj) => v.name === "data"),
      { name: "data", emptyDir: { sizeLimit: "100Gi" } },
    );
    assert.equal(c.resources.requests["ephemeral-storage"], "103Gi");
    assert.equal(c.resources.limits["ephemeral-storage"], "103Gi");
    const proxyHpa = named(ns, "HorizontalPodAutoscaler", "milvus-proxy").spec;
    assert.deepEqual(
      proxyHpa.metrics.map((m: Obj) => [m.resource.name, m.resource.target.averageUtilization]),
      [
        ["cpu", 70],
        ["memory", 80],
      ],
    );
    assert.deepEqual(proxyHpa.behavior, {
      scaleUp: {
        stabilizationWindowSeconds: 60,
        policies: [{ type: "Percent", value: 100, periodSeconds: 30 }],
      },
      scaleDown: {
        stabilizationWindowSeconds: 300,
        policies: [{ type: "Percent", value: 50, periodSeconds: 60 }],
      },
    });
    const qnHpa = named(ns, "HorizontalPodAutoscaler", "milvus-querynode").spec;
    assert.deepEqual(qnHpa.behavior.scaleDown, { selectPolicy: "Disabled" });
    assert.deepEqual(qnHpa.behavior.scaleUp, proxyHpa.behavior.scaleUp);
  });

  it("probes 9091 (TCP alive, /healthz ready) with the required timings and fits graceful stop inside the drain timeout", () => {
    const ns = inNs(prodObjs);
    const milvus = ns.filter(
      (o) => WORKLOAD_KINDS.includes(o.kind) && o.metadata.labels["app.kubernetes.io/name"] === "milvus",
    );
    assert.equal(milvus.length, 5);
    for (const w of milvus) {
      const spec = w.spec.template.spec;
      const c = spec.containers[0];
      const metricsPort = c.ports.find((p: Obj) => p.name === c.livenessProbe.tcpSocket.port);
      assert.equal(metricsPort.containerPort, 9091);
      // Alive is a TCP connect (milvus-operator, milvus-helm); /healthz answers 500 until every
      // component is Healthy or StandBy, so it only gates readiness.
      assert.deepEqual(c.startupProbe.tcpSocket, { port: "metrics" });
      assert.equal(c.livenessProbe.httpGet, undefined);
      assert.deepEqual(c.readinessProbe.httpGet, { path: "/healthz", port: "metrics" });
      assert.deepEqual(
        [
          c.livenessProbe.initialDelaySeconds,
          c.livenessProbe.periodSeconds,
          c.livenessProbe.timeoutSeconds,
          c.livenessProbe.failureThreshold,
        ],
        [30, 10, 5, 3],
      );
      assert.deepEqual(
        [
          c.readinessProbe.initialDelaySeconds,
          c.readinessProbe.periodSeconds,
          c.readinessProbe.timeoutSeconds,
          c.readinessProbe.failureThreshold,
        ],
        [15, 5, 3, 2],
      );
      assert.equal(spec.terminationGracePeriodSeconds, 1800);
      assert.ok(spec.terminationGracePeriodSeconds < prod.config.drainTimeoutMinutes * 60);
      assert.equal(c.image, "milvusdb/milvus:v2.6.24");
      assert.deepEqual(spec.nodeSelector, { "milvus-aks/pool": "data" });
      assert.deepEqual(w.spec.template.metadata.labels, {
        "app.kubernetes.io/name": "milvus",
        "app.kubernetes.io/component": c.name,
        "app.kubernetes.io/part-of": "milvus-aks",
      });
    }
  });

  it("runs etcd with revision compaction, a 4 GiB quota and Milvus's timing, and defragments one member at a time", () => {
    const ns = inNs(prodObjs);
    const args: string[] = named(ns, "StatefulSet", "etcd").spec.template.spec.containers[0].args;
    for (const flag of [
      "--auto-compaction-mode=revision",
      "--auto-compaction-retention=1000",
      `--quota-backend-bytes=${4 * 1024 ** 3}`,
      "--heartbeat-interval=500",
      "--election-timeout=2500",
      "--listen-metrics-urls=http://0.0.0.0:2381",
    ]) {
      assert.ok(args.includes(flag), flag);
    }
    const cron = named(ns, "CronJob", "etcd-defrag").spec;
    assert.equal(cron.concurrencyPolicy, "Forbid");
    assert.deepEqual(cron.jobTemplate.spec.template.spec.containers[0].args, [
      "defrag",
      "--endpoints=" +
        [0, 1, 2].map((i) => `etcd-${i}.etcd-headless.milvus.svc.cluster.local:2379`).join(","),
      "--command-timeout=120s",
    ]);
  });

  it("lets exactly the intended flows through the data namespace's policies", () => {
    const objs = inNs(prodObjs);
    const proxy = pod("milvus", "proxy");
    const queryNode = pod("milvus", "querynode");
    const etcd = pod("etcd", "server");
    const minio = pod("minio", "server");
    const backup = pod(APP.backup, "worker");
    const app = pod("client-app", "api", "apps");
    assert.equal(flow(objs, queryNode, etcd, 2379), true);
    assert.equal(flow(objs, queryNode, minio, 9000), true);
    assert.equal(flow(objs, queryNode, proxy, 19529), true);
    assert.equal(flow(objs, etcd, etcd, 2380), true);
    assert.equal(flow(objs, minio, minio, 9000), true);
    assert.equal(flow(objs, pod("minio", "create-bucket"), minio, 9000), true);
    assert.equal(flow(objs, pod("etcd", "defrag"), etcd, 2379), true);
    assert.equal(allowed(objs, "ingress", proxy, backup, 19530), true);
    assert.equal(allowed(objs, "ingress", proxy, app, 19530), true);
    for (const [target, port] of [
      [proxy, 9091],
      [etcd, 2381],
      [minio, 9000],
    ] as const) {
      assert.equal(allowed(objs, "ingress", target, prometheus, port), true, `prometheus -> ${port}`);
    }
    // The management port 9091 (unauthenticated /management/* in Milvus 2.6, milvus-io/milvus #49588):
    // Prometheus only, not clients, not the worker, not other Milvus pods.
    assert.equal(flow(objs, queryNode, proxy, 9091), false);
    assert.equal(allowed(objs, "ingress", proxy, app, 9091), false);
    assert.equal(allowed(objs, "ingress", proxy, backup, 9091), false);
    assert.equal(allowed(objs, "ingress", proxy, { namespace: "x", labels: {} }, 9091), false);
    assert.equal(flow(objs, queryNode, proxy, 9092), true);
    // Denied: clients to internal ports and dependencies, dependencies to Milvus, Milvus to the internet.
    assert.equal(allowed(objs, "ingress", queryNode, app, 21123), false);
    assert.equal(allowed(objs, "ingress", etcd, app, 2379), false);
    assert.equal(allowed(objs, "ingress", etcd, backup, 2379), false);
    assert.equal(allowed(objs, "ingress", minio, backup, 9000), false);
    assert.equal(flow(objs, minio, etcd, 2379), false);
    assert.equal(allowed(objs, "ingress", proxy, prometheus, 2379), false);
    assert.equal(allowed(objs, "egress", proxy, { namespace: "x", labels: {} }, 443), false);
    // The worker's egress comes from its own policy (components/backupDeployment/backupWorker.ts): Milvus and nothing else inside.
    assert.equal(allowed(objs, "egress", backup, proxy, 19530), true);
    assert.equal(allowed(objs, "egress", backup, etcd, 2379), false);
    assert.equal(allowed(objs, "egress", backup, minio, 9000), false);
  });

  it("uses Azure Blob through workload identity when objectStore is azureBlob, and no MinIO", () => {
    const ns = inNs(blobObjs);
    assert.equal(ns.filter((o) => o.metadata.labels?.["app.kubernetes.io/name"] === "minio").length, 0);
    assert.equal(ofKind(ns, "NetworkPolicy").filter((p) => p.metadata.name.startsWith("minio")).length, 0);
    const conf = yaml.load(named(ns, "Secret", "milvus-config").stringData["user.yaml"]) as Obj;
    assert.deepEqual(conf.minio, {
      address: "core.windows.net",
      port: 443,
      accessKeyID: "milvusdataprod3cd4f0",
      secretAccessKey: "",
      useSSL: true,
      bucketName: "milvus",
      rootPath: "files",
      useIAM: true,
      cloudProvider: "azure",
      useVirtualHost: false,
    });
    // The mock names a user-assigned identity's client and principal ids after its Pulumi resource.
    const sa = named(ns, "ServiceAccount", "milvus");
    assert.equal(
      sa.metadata.annotations["azure.workload.identity/client-id"],
      "client-milvus-prod-data-blob-identity",
    );
    for (const w of ns.filter(
      (o) => WORKLOAD_KINDS.includes(o.kind) && o.metadata.labels["app.kubernetes.io/name"] === "milvus",
    )) {
      assert.equal(w.spec.template.metadata.labels["azure.workload.identity/use"], "true", w.metadata.name);
      assert.equal(w.spec.template.spec.serviceAccountName, "milvus");
    }
    const azure = (type: string) => blob.resources.filter((r) => r.type === `azure-native:${type}`);
    const accounts = azure("storage:StorageAccount").map((r) => r.inputs);
    const data = accounts.find((a) => a.accountName === "milvusdataprod3cd4f0")!;
    assert.equal((data.sku as Obj).name, "Standard_ZRS");
    assert.equal(data.allowSharedKeyAccess, false);
    assert.equal(data.allowBlobPublicAccess, false);
    const fed = azure("managedidentity:FederatedIdentityCredential").find((r) =>
      r.name.includes("-data-blob-"),
    )!;
    assert.equal(fed.inputs.subject, "system:serviceaccount:milvus:milvus");
    assert.deepEqual(fed.inputs.audiences, ["api://AzureADTokenExchange"]);
    const role = azure("authorization:RoleAssignment").find((r) => r.name.includes("-data-blob-"))!;
    // Scoped to the id of Milvus's own account resource (mock ids are `<resource name>-id`), not the backup account.
    assert.equal(role.inputs.scope, "milvus-prod-data-blob-account-id");
    assert.match(String(role.inputs.roleDefinitionId), /ba92f5b4-2d11-453d-a403-e96b0029c9fe$/);
    assert.equal(role.inputs.principalId, "principal-milvus-prod-data-blob-identity");
    // Milvus reaches Blob and Entra ID on public HTTPS only.
    const egress = named(ns, "NetworkPolicy", "milvus").spec.egress;
    assert.deepEqual(egress[2].ports, [{ protocol: "TCP", port: 443 }]);
    assert.equal(egress[2].to[0].ipBlock.cidr, "0.0.0.0/0");
  });
});
