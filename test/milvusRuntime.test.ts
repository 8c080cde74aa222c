import * as assert from "node:assert/strict";
import * as yaml from "js-yaml";
import { defaultParity, erasureQuorum, zoneSafeParity } from "../components/data/erasure";
import { MIN_READY_SECONDS, ROLLOUT_ORDER } from "../components/data/milvus";
import { milvusUserConfig } from "../components/data/milvusConfig";
import { configErrors, validProd } from "./support/config";
import { DATA_NAMESPACE } from "../components/common/naming";
import { Obj, objectsOf, ofKind, podTemplates } from "../tools/k8s-objects";
import { RenderedResource, RenderResult, renderStack } from "../tools/offline-runtime";

/**
 * Milvus, MinIO and etcd as they really run: each test encodes an upstream behaviour (cited) and checks
 * the rendered objects against it, then shows the check failing on a broken copy.
 */

// --- Service links -----------------------------------------------------------------------------------

/**
 * The variables the kubelet injects for one Service (kubernetes pkg/kubelet/envvars/envvars.go,
 * FromServices): names upper-cased with `-` as `_`; headless Services (no cluster IP) inject nothing.
 */
function serviceLinkVariables(service: Obj): string[] {
  const spec = service.spec as Obj;
  if (spec.clusterIP === "None") return [];
  const prefix = String((service.metadata as Obj).name)
    .toUpperCase()
    .replace(/-/g, "_");
  const ports = (spec.ports ?? []) as Obj[];
  const first = ports.at(0);
  if (!first) return [];
  const names = [`${prefix}_SERVICE_HOST`, `${prefix}_SERVICE_PORT`, `${prefix}_PORT`];
  for (const p of ports) {
    if (p.name) names.push(`${prefix}_SERVICE_PORT_${String(p.name).toUpperCase().replace(/-/g, "_")}`);
    const base = `${prefix}_PORT_${String(p.port)}_${String(p.protocol ?? "TCP")}`;
    names.push(base, `${base}_PROTO`, `${base}_PORT`, `${base}_ADDR`);
  }
  return names;
}

/**
 * Milvus's environment config source: lower-case, drop a `milvus.` prefix, remove `/`, `_` and `.`
 * (milvus pkg/util/paramtable/base_table.go); config keys are compared after the same removal
 * (pkg/config/config.go formatKey). The environment outranks user.yaml (pkg/config/source.go priorities).
 */
const milvusEnvKey = (name: string) =>
  name
    .toLowerCase()
    .replace(/^milvus\./, "")
    .replace(/[/_.]/g, "");

/** Top-level sections of Milvus 2.6's configs/milvus.yaml: any variable under one may shadow a key. */
const MILVUS_SECTIONS = [
  "etcd",
  "metastore",
  "tikv",
  "localStorage",
  "minio",
  "mq",
  "woodpecker",
  "pulsar",
  "kafka",
  "rocksmq",
  "mixCoord",
  "rootCoord",
  "proxy",
  "queryCoord",
  "queryNode",
  "indexNode",
  "dataCoord",
  "dataNode",
  "streamingNode",
  "streaming",
  "msgChannel",
  "log",
  "grpc",
  "tls",
  "internaltls",
  "common",
  "quotaAndLimits",
  "trace",
  "gpu",
  "knowhere",
  "function",
];

function flatKeys(o: unknown, prefix = ""): string[] {
  if (typeof o !== "object" || o === null || Array.isArray(o)) return [prefix];
  return Object.entries(o).flatMap(([k, v]) => flatKeys(v, prefix ? `${prefix}.${k}` : k));
}

/** Keys Milvus reads here: what user.yaml sets, and anything under a milvus.yaml section. */
const userKeys = new Set(
  flatKeys(
    milvusUserConfig({
      mode: "cluster",
      etcdEndpoints: ["etcd-0:2379"],
      objectStore: {
        kind: "minio",
        host: "minio",
        port: 9000,
        bucketName: "milvus",
        accessKey: "a",
        secretKey: "s",
      },
      rootPassword: "p",
      terminationGraceSeconds: 1800,
      tls: true,
      internalTls: true,
      accessLog: true,
    }),
  ).map(milvusEnvKey),
);
const shadowsMilvusKey = (variable: string) => {
  const key = milvusEnvKey(variable);
  return userKeys.has(key) || MILVUS_SECTIONS.some((s) => key.startsWith(s.toLowerCase()));
};

/** `pod: VARIABLE -> key` for every injected variable a Milvus container would read as configuration. */
function serviceLinkCollisions(objs: Obj[]): string[] {
  const found: string[] = [];
  // The `kubernetes` Service of the default namespace is injected into every pod, even without links.
  const masterVars = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_PORT"];
  for (const { owner, template } of podTemplates(objs)) {
    const ns = String((owner.metadata as Obj).namespace);
    const spec = template.spec as Obj;
    const containers = [...((spec.containers ?? []) as Obj[]), ...((spec.initContainers ?? []) as Obj[])];
    if (!containers.some((c) => String(c.image).startsWith("milvusdb/milvus:"))) continue;
    const linked =
      spec.enableServiceLinks === false
        ? []
        : ofKind(objs, "Service")
            .filter((s) => (s.metadata as Obj).namespace === ns)
            .flatMap(serviceLinkVariables);
    for (const v of [...masterVars, ...linked]) {
      if (shadowsMilvusKey(v))
        found.push(`${String((owner.metadata as Obj).name)}: ${v} -> ${milvusEnvKey(v)}`);
    }
  }
  return found;
}

// --- Graceful stop ------------------------------------------------------------------------------------

/**
 * Milvus 2.6's stop timeouts (milvus pkg/util/paramtable/component_param.go and configs/milvus.yaml):
 * each role reads its own key; only queryNode falls back to common.gracefulStopTimeout. mixcoord stops
 * with rootCoord's (cmd/components/mix_coord.go); the streaming node has no timeout of its own.
 */
const STOP_KEYS: Record<string, string[]> = {
  mixcoord: ["rootCoord"],
  proxy: ["proxy"],
  querynode: ["queryNode"],
  datanode: ["dataNode"],
  streamingnode: [],
  standalone: ["rootCoord", "proxy", "queryNode", "dataNode"],
};
const UPSTREAM_STOP_DEFAULTS: Partial<Record<string, number | "common">> = {
  common: 1800,
  rootCoord: 5,
  proxy: 30,
  dataNode: 1800,
  queryNode: "common",
};

/** Seconds each role may spend stopping under a rendered user.yaml. */
function stopTimeouts(userYaml: Obj, role: string): Record<string, number> {
  const get = (section: string): number | undefined => {
    const v = (userYaml[section] as Obj | undefined)?.gracefulStopTimeout as unknown;
    return typeof v === "number" ? v : undefined;
  };
  const common = get("common") ?? 1800;
  return Object.fromEntries(
    (STOP_KEYS[role] ?? []).map((section) => {
      const fallback = UPSTREAM_STOP_DEFAULTS[section];
      return [section, get(section) ?? (fallback === "common" || fallback === undefined ? common : fallback)];
    }),
  );
}

/** `role: key N s >= grace G s` for every role that the kubelet would kill mid-stop. */
function stopProblems(objs: Obj[]): string[] {
  const secret = objs.find((o) => o.kind === "Secret" && (o.metadata as Obj).name === "milvus-config");
  const userYaml = yaml.load(String((secret?.stringData as Obj)["user.yaml"])) as Obj;
  const problems: string[] = [];
  for (const { owner, template } of podTemplates(objs)) {
    const labels = (template.metadata as Obj).labels as Record<string, string>;
    if (labels["app.kubernetes.io/name"] !== "milvus") continue;
    const role = labels["app.kubernetes.io/component"] ?? "";
    const grace = Number((template.spec as Obj).terminationGracePeriodSeconds ?? 30);
    for (const [key, seconds] of Object.entries(stopTimeouts(userYaml, role))) {
      if (seconds >= grace)
        problems.push(`${String((owner.metadata as Obj).name)}: ${key} ${seconds} s >= grace ${grace} s`);
    }
  }
  return problems;
}

describe("Milvus, MinIO and etcd as they really run", () => {
  let prod: RenderResult;
  let dev: RenderResult;
  before(async () => {
    prod = await renderStack("prod");
    dev = await renderStack("dev");
  });

  describe("service links (milvus-operator #504/#505, milvus-helm #400)", () => {
    it("computes the kubelet's variables and Milvus's reading of them like upstream", () => {
      const minio = { metadata: { name: "minio" }, spec: { ports: [{ name: "metrics", port: 9000 }] } };
      assert.deepEqual(serviceLinkVariables(minio), [
        "MINIO_SERVICE_HOST",
        "MINIO_SERVICE_PORT",
        "MINIO_PORT",
        "MINIO_SERVICE_PORT_METRICS",
        "MINIO_PORT_9000_TCP",
        "MINIO_PORT_9000_TCP_PROTO",
        "MINIO_PORT_9000_TCP_PORT",
        "MINIO_PORT_9000_TCP_ADDR",
      ]);
      assert.deepEqual(
        serviceLinkVariables({ metadata: { name: "etcd-headless" }, spec: { clusterIP: "None" } }),
        [],
      );
      assert.equal(milvusEnvKey("MINIO_PORT"), "minioport");
      assert.ok(userKeys.has("minioport"), "user.yaml sets minio.port");
      assert.equal(shadowsMilvusKey("MINIO_PORT"), true);
      assert.equal(shadowsMilvusKey("KUBERNETES_SERVICE_HOST"), false);
    });

    it("no Milvus container can read a service-link variable as configuration", () => {
      for (const r of [prod, dev]) assert.deepEqual(serviceLinkCollisions(objectsOf(r)), [], r.stack);
    });

    it("every pod the data namespace runs has service links off", () => {
      // prod: five Milvus roles, etcd and its defrag CronJob, MinIO and its bucket Job, the backup CronJob,
      // the access Job.
      for (const [r, count] of [
        [prod, 11],
        [dev, 7],
      ] as const) {
        const pods = podTemplates(objectsOf(r)).filter(
          ({ owner }) => (owner.metadata as Obj).namespace === DATA_NAMESPACE,
        );
        assert.equal(pods.length, count, r.stack);
        for (const { owner, template } of pods) {
          assert.equal(
            (template.spec as Obj).enableServiceLinks,
            false,
            String((owner.metadata as Obj).name),
          );
        }
      }
    });

    it("fails on a render whose Milvus pods keep the default service links", () => {
      const broken = objectsOf(prod).map((o) => structuredClone(o));
      for (const { template } of podTemplates(broken)) delete (template.spec as Obj).enableServiceLinks;
      const collisions = serviceLinkCollisions(broken);
      assert.ok(collisions.includes("milvus-proxy: MINIO_PORT -> minioport"), collisions.join("\n"));
      assert.ok(collisions.includes("milvus-datanode: ETCD_PORT -> etcdport"), collisions.join("\n"));
    });
  });

  describe("graceful stop (component_param.go: dataNode ignores common.gracefulStopTimeout)", () => {
    it("every role's stop timeout ends before the kubelet's SIGKILL", () => {
      for (const r of [prod, dev]) assert.deepEqual(stopProblems(objectsOf(r)), [], r.stack);
      const secret = objectsOf(prod).find(
        (o) => o.kind === "Secret" && (o.metadata as Obj).name === "milvus-config",
      );
      const userYaml = yaml.load(String((secret?.stringData as Obj)["user.yaml"])) as Obj;
      assert.deepEqual(stopTimeouts(userYaml, "datanode"), { dataNode: 1740 });
      assert.deepEqual(stopTimeouts(userYaml, "mixcoord"), { rootCoord: 5 });
    });

    it("fails when only common.gracefulStopTimeout is set, as before", () => {
      const broken = objectsOf(prod).map((o) => structuredClone(o));
      const secret = broken.find((o) => o.kind === "Secret" && (o.metadata as Obj).name === "milvus-config");
      const stringData = secret?.stringData as Obj;
      const userYaml = yaml.load(String(stringData["user.yaml"])) as Obj;
      delete userYaml.dataNode;
      delete (userYaml.queryNode as Obj).gracefulStopTimeout;
      stringData["user.yaml"] = yaml.dump(userYaml);
      assert.deepEqual(stopProblems(broken), ["milvus-datanode: dataNode 1800 s >= grace 1800 s"]);
    });
  });

  describe("MinIO across a zone loss (minio storage-class.go, erasure-metadata.go)", () => {
    it("encodes MinIO's parity defaults and quorum rules", () => {
      assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 16].map(defaultParity), [0, 1, 1, 2, 2, 3, 3, 4, 4]);
      // 4 pods over 3 zones land 2/1/1: EC:2 writes with 3 drives, and losing the 2-pod zone leaves 2.
      const four = erasureQuorum({ pods: 4, drivesPerPod: 1, zones: 3 });
      assert.deepEqual(
        [four.parity, four.readQuorum, four.writeQuorum, four.drivesAfterZoneLoss],
        [2, 2, 3, 2],
      );
      assert.equal(four.writesSurviveZoneLoss, false);
      assert.equal(four.readsSurviveZoneLoss, true);
      // 6 pods, 2 per zone, EC:3: data equals parity, so writes need 4, and 4 remain.
      const six = erasureQuorum({ pods: 6, drivesPerPod: 1, zones: 3, parity: 3 });
      assert.deepEqual([six.readQuorum, six.writeQuorum, six.drivesAfterZoneLoss], [3, 4, 4]);
      assert.equal(six.writesSurviveZoneLoss, true);
      assert.equal(zoneSafeParity(6, 1, 3), 3);
      // 8 pods (3/3/2): EC:4 writes with 5 and 5 remain.
      assert.equal(zoneSafeParity(8, 1, 3), 4);
      assert.throws(
        () => erasureQuorum({ pods: 17, drivesPerPod: 1, zones: 3 }),
        /more than one erasure set/,
      );
    });

    it("rejects a production layout that stops writing when a zone is lost", () => {
      const errors = configErrors({ ...validProd(), minio: { replicas: 4 } });
      assert.deepEqual(
        errors.map((e) => e.reason),
        [
          "minio.replicas = 4 is invalid: expected a layout that keeps MinIO's write quorum with any one of 3 zones lost in prod, e.g. 6 (2 per zone, EC:3). 4 pods over 3 zones put 2 drives in one zone; EC:2 on 4 drives writes with 3, and 2 would remain, so Milvus's WAL and flushes would stop.",
        ],
      );
      assert.deepEqual(configErrors({ ...validProd(), minio: { replicas: 6 } }), []);
      assert.deepEqual(configErrors({ ...validProd(), minio: { replicas: 9 } }), []);
    });

    it("runs 6 MinIO pods with EC:3 spread over the zones, upgraded all at once", () => {
      const minio = objectsOf(prod).find(
        (o) => o.kind === "StatefulSet" && (o.metadata as Obj).name === "minio",
      );
      const spec = minio?.spec as Obj;
      assert.equal(spec.replicas, 6);
      const env = (((spec.template as Obj).spec as Obj).containers as Obj[])[0]?.env as Obj[];
      assert.deepEqual(
        env.find((e) => e.name === "MINIO_STORAGE_CLASS_STANDARD"),
        { name: "MINIO_STORAGE_CLASS_STANDARD", value: "EC:3" },
      );
      // MinIO restarts every server together ("Upgrade a MinIO Deployment", minio/minio #10324).
      assert.deepEqual(spec.updateStrategy, { type: "OnDelete" });
      assert.equal(
        (((spec.template as Obj).spec as Obj).topologySpreadConstraints as Obj[])[0]?.whenUnsatisfiable,
        "DoNotSchedule",
      );
    });
  });

  describe("disks that meet the workload", () => {
    it("gives etcd at least a P10 in production (etcd: 500 sequential IOPS; Azure: IOPS by disk tier)", () => {
      assert.deepEqual(
        configErrors({ ...validProd(), etcd: { diskSizeGi: 20 } }).map((e) => e.reason),
        [
          "etcd.diskSizeGi = 20 is invalid: expected at least 128 in prod. Azure Premium SSD IOPS follow the disk tier: below 128 GiB (P10, 500 IOPS) etcd misses its 500 sequential IOPS and 10 ms WAL fsync guidance under load.",
        ],
      );
    });

    it("keeps each cache emptyDir within the data nodes' ephemeral OS disk", () => {
      // 256 GiB OS disk: 90 % usable (kubelet nodefs eviction at 10 %), 40 GiB for images: 190, minus 3.
      assert.deepEqual(
        configErrors({ ...validProd(), milvus: { queryNode: { diskSizeGi: 188 } } }).map((e) => e.reason),
        [
          "milvus.queryNode.diskSizeGi = 188 is invalid: expected at most 187 with nodePools.data.osDiskSizeGB 256. The cache is an emptyDir on the node's OS disk (90 % usable, 40 GiB for images and system pods, 3 GiB for /tmp and logs): lower it or raise nodePools.data.osDiskSizeGB within the VM size's cache or temp disk.",
        ],
      );
      assert.deepEqual(configErrors({ ...validProd(), milvus: { queryNode: { diskSizeGi: 187 } } }), []);
    });
  });

  describe("stateful workloads and zonal disks", () => {
    const stateful = (r: RenderResult) =>
      r.resources.filter(
        (x) =>
          x.type === "kubernetes:apps/v1:StatefulSet" &&
          ((x.inputs.spec as Obj).volumeClaimTemplates as unknown[] | undefined)?.length,
      );
    /** StatefulSets whose volume claim template a config change would replace (pulumi-kubernetes diff.go). */
    const unguarded = (resources: RenderedResource[]) =>
      resources
        .filter((x) => !(x.options.protect && x.options.ignoreChanges.includes("spec.volumeClaimTemplates")))
        .map((x) => ((x.inputs.metadata as Obj).name as string | undefined) ?? x.name);

    it("only etcd, MinIO and standalone Milvus have disks; caches never sit on a zonal disk", () => {
      const names = (r: RenderResult) =>
        stateful(r)
          .map((x) => String((x.inputs.metadata as Obj).name))
          .sort();
      assert.deepEqual(names(prod), ["etcd", "minio"]);
      assert.deepEqual(names(dev), ["etcd", "milvus-standalone", "minio"]);
    });

    it("protects them and ignores their volume claim templates after creation", () => {
      for (const r of [prod, dev]) assert.deepEqual(unguarded(stateful(r)), [], r.stack);
      const broken = stateful(prod).map((x) => ({ ...x, options: { ...x.options, ignoreChanges: [] } }));
      assert.deepEqual(unguarded(broken), ["etcd", "minio"]);
    });
  });

  describe("rollouts and start order (milvus-operator dependency_graph.go)", () => {
    const urnOf = (r: RenderResult, type: string, objectName: string) => {
      const found = r.resources.find(
        (x) => x.type === type && (x.inputs.metadata as Obj | undefined)?.name === objectName,
      );
      assert.ok(found, objectName);
      return found;
    };
    const workload = (r: RenderResult, role: string) =>
      r.resources.find(
        (x) =>
          (x.type === "kubernetes:apps/v1:Deployment" || x.type === "kubernetes:apps/v1:StatefulSet") &&
          (x.inputs.metadata as Obj).name === `milvus-${role}`,
      );

    it("updates roles one after another in the operator's order, each with minReadySeconds", () => {
      const roles = ROLLOUT_ORDER.filter((role) => workload(prod, role));
      assert.deepEqual(roles, ["mixcoord", "streamingnode", "querynode", "datanode", "proxy"]);
      roles.forEach((role, i) => {
        const w = workload(prod, role);
        assert.equal((w?.inputs.spec as Obj).minReadySeconds, MIN_READY_SECONDS);
        const previous = i > 0 ? workload(prod, roles[i - 1] ?? "") : undefined;
        if (previous)
          assert.ok(w?.options.dependencies.includes(previous.options.urn), `${role} after ${roles[i - 1]}`);
      });
    });

    it("starts Milvus only after etcd, MinIO and the bucket Job", () => {
      const needs = [
        urnOf(prod, "kubernetes:apps/v1:StatefulSet", "etcd").options.urn,
        urnOf(prod, "kubernetes:apps/v1:StatefulSet", "minio").options.urn,
        urnOf(prod, "kubernetes:batch/v1:Job", "minio-create-bucket").options.urn,
      ];
      for (const role of ["mixcoord", "streamingnode", "querynode", "datanode", "proxy"]) {
        const deps = workload(prod, role)?.options.dependencies ?? [];
        assert.deepEqual(
          needs.filter((u) => !deps.includes(u)),
          [],
          role,
        );
      }
      const standalone = workload(dev, "standalone")?.options.dependencies ?? [];
      assert.ok(standalone.includes(urnOf(dev, "kubernetes:apps/v1:StatefulSet", "etcd").options.urn));
    });

    it("gives each rollout a timeout sized to it instead of Pulumi's 10 minutes", () => {
      const minutes = (role: string) => workload(prod, role)?.options.customTimeouts?.update;
      // Per pod: 1800 s grace + 600 s start headroom + the startup budget + 15 s + 30 s minReady.
      assert.equal(minutes("mixcoord"), `${Math.ceil((2 * (1800 + 600 + 300 + 45)) / 60)}m`);
      assert.equal(minutes("querynode"), `${Math.ceil((6 * (1800 + 600 + 600 + 45)) / 60)}m`);
      assert.equal(minutes("proxy"), `${Math.ceil((10 * (1800 + 600 + 300 + 45)) / 60)}m`);
      for (const role of ["mixcoord", "streamingnode", "querynode", "datanode", "proxy"]) {
        assert.equal(workload(prod, role)?.options.customTimeouts?.create, minutes(role), role);
      }
    });
  });
});
