import { defaultParity, erasureQuorum } from "../components/data/erasure";
import { DATA_NAMESPACE, DATA_POOL_LABEL } from "../components/common/naming";
import { ZONE_TOPOLOGY_KEY } from "../components/data/podSpec";
import {
  effectiveReplicas,
  inNamespace,
  Obj,
  objectsOf,
  ofKind,
  podLabelsOf,
  podSpecOf,
  WORKLOAD_KINDS,
} from "./k8s-objects";
import { RenderResult } from "./offline-runtime";

/**
 * The failure-domain report of a render: for each zone, what losing it means for etcd, MinIO and each
 * Milvus role, and which pods cannot move; for each node pool, whether its PodDisruptionBudgets let a
 * drain proceed. Derived from the rendered objects (replicas, zone spreading, volume claims, PDBs,
 * MinIO's parity), not from the config, so it reports what `pulumi up` would really run.
 */

export interface ComponentVerdict {
  component: string;
  ok: boolean;
  detail: string;
}
export interface ZoneLoss {
  zone: string;
  /** `name: n` pods that ran in the zone. */
  podsLost: string[];
  verdicts: ComponentVerdict[];
  /** Pods bound to zonal disks in the lost zone: they stay Pending until the zone returns. */
  stuck: string[];
}
export interface PoolDrain {
  pool: string;
  ok: boolean;
  detail: string;
}
export interface FailureDomainReport {
  zones: ZoneLoss[];
  pools: PoolDrain[];
  /** What makes a production stack unable to survive one zone (empty when it can). */
  problems: string[];
}

interface Workload {
  name: string;
  app: string;
  role: string;
  replicas: number;
  spread: boolean;
  zonalDisks: boolean;
  obj: Obj;
}

/**
 * The most pods of a workload one zone can hold. With strict zone spreading (maxSkew 1,
 * DoNotSchedule) zones stay within one pod of each other, so any zone may hold ceil(replicas / zones);
 * without it nothing stops every pod landing in the zone that fails.
 */
export function podsPerZone(replicas: number, zones: string[], spread: boolean): Map<string, number> {
  const most = spread ? Math.ceil(replicas / Math.max(1, zones.length)) : replicas;
  return new Map(zones.map((z) => [z, most]));
}

function workloads(objs: Obj[]): Workload[] {
  return inNamespace(objs, DATA_NAMESPACE)
    .filter((o) => WORKLOAD_KINDS.includes(String(o.kind)))
    .map((o) => {
      const labels = podLabelsOf(o);
      const podSpec = podSpecOf(o);
      const constraints = (podSpec.topologySpreadConstraints ?? []) as Obj[];
      return {
        name: String((o.metadata as Obj).name),
        app: labels["app.kubernetes.io/name"] ?? "",
        role: labels["app.kubernetes.io/component"] ?? "",
        replicas: effectiveReplicas(objs, o),
        spread: constraints.some(
          (c) =>
            c.topologyKey === ZONE_TOPOLOGY_KEY && c.whenUnsatisfiable === "DoNotSchedule" && c.maxSkew === 1,
        ),
        zonalDisks: (((o.spec as Obj).volumeClaimTemplates ?? []) as unknown[]).length > 0,
        obj: o,
      };
    });
}

function minioParity(w: Workload): number {
  const container = (podSpecOf(w.obj).containers as Obj[])[0] ?? {};
  const env = (container.env ?? []) as Obj[];
  const value = env.find((e) => e.name === "MINIO_STORAGE_CLASS_STANDARD")?.value as string | undefined;
  const parity = /^EC:(\d+)$/.exec(value ?? "");
  return parity ? Number(parity[1]) : defaultParity(w.replicas);
}

function verdictsFor(ws: Workload[], zones: string[], zone: string): ComponentVerdict[] {
  const out: ComponentVerdict[] = [];
  for (const w of ws) {
    const lost = podsPerZone(w.replicas, zones, w.spread).get(zone) ?? 0;
    const left = w.replicas - lost;
    if (w.app === "etcd") {
      const quorum = Math.floor(w.replicas / 2) + 1;
      out.push({
        component: "etcd",
        ok: left >= quorum,
        detail: `${left} of ${w.replicas} members left, quorum ${quorum}`,
      });
    } else if (w.app === "minio" && w.role === "server") {
      if (w.replicas === 1) {
        out.push({
          component: "MinIO",
          ok: left === 1,
          detail: left === 1 ? "single pod elsewhere" : "single pod lost",
        });
        continue;
      }
      const q = erasureQuorum({ pods: w.replicas, drivesPerPod: 1, zones: 1, parity: minioParity(w) });
      const drivesLeft = q.drives - lost;
      out.push(
        {
          component: "MinIO reads",
          ok: drivesLeft >= q.readQuorum,
          detail: `${drivesLeft} of ${q.drives} drives left, read quorum ${q.readQuorum} (EC:${q.parity})`,
        },
        {
          component: "MinIO writes",
          ok: drivesLeft >= q.writeQuorum,
          detail: `${drivesLeft} of ${q.drives} drives left, write quorum ${q.writeQuorum} (EC:${q.parity})`,
        },
      );
    } else if (w.app === "milvus") {
      out.push({
        component: w.name,
        ok: left >= 1,
        detail:
          left >= 1
            ? `${left} of ${w.replicas} pods keep serving`
            : `all ${w.replicas} pod(s) lost until they reschedule${w.zonalDisks ? " (they cannot: zonal disk)" : ""}`,
      });
    }
  }
  return out;
}

/** Whether one node pool's PDBs let `kubectl drain` (and an AKS upgrade) evict the pods it runs. */
function drain(pool: string, pdbs: Obj[], ws: Workload[]): PoolDrain {
  const blockers: string[] = [];
  const unguarded: string[] = [];
  for (const w of ws) {
    const labels = podLabelsOf(w.obj);
    const pdb = pdbs.find((p) =>
      Object.entries(((p.spec as Obj).selector as Obj).matchLabels as Record<string, string>).every(
        ([k, v]) => labels[k] === v,
      ),
    );
    if (!pdb) {
      if (w.replicas === 1) unguarded.push(`${w.name} (1 pod, down while it moves)`);
      continue;
    }
    const spec = pdb.spec as Obj;
    // Disruptions a PDB allows with every pod healthy ("Specifying a Disruption Budget", Kubernetes docs).
    const allowed =
      typeof spec.maxUnavailable === "number"
        ? spec.maxUnavailable
        : typeof spec.minAvailable === "number"
          ? w.replicas - spec.minAvailable
          : 0;
    if (allowed < 1) blockers.push(`${w.name} (PDB allows ${String(allowed)} of ${w.replicas})`);
  }
  const detail =
    ws.length === 0
      ? "runs no data-layer pods"
      : blockers.length > 0
        ? `blocked by ${blockers.join(", ")}`
        : `proceeds, one pod per PDB at a time${unguarded.length > 0 ? `; ${unguarded.join(", ")}` : ""}`;
  return { pool, ok: blockers.length === 0, detail };
}

/** Each node pool of the render (the system pool and one data pool per zone) and its drain verdict. */
function poolDrains(r: RenderResult, objs: Obj[], ws: Workload[]): PoolDrain[] {
  const pdbs = ofKind(inNamespace(objs, DATA_NAMESPACE), "PodDisruptionBudget");
  const dataPods = ws.filter(
    (w) =>
      ((((w.obj.spec as Obj).template as Obj).spec as Obj).nodeSelector as Obj | undefined)?.[
        DATA_POOL_LABEL
      ],
  );
  const pools: PoolDrain[] = [
    drain(
      "system",
      pdbs,
      ws.filter((w) => !dataPods.includes(w)),
    ),
  ];
  for (const res of r.resources.filter((x) => x.type === "azure-native:containerservice:AgentPool")) {
    const zones = (res.inputs.availabilityZones ?? []) as string[];
    const name = String(res.inputs.agentPoolName);
    const here = dataPods.filter((w) =>
      zones.some((z) => (podsPerZone(w.replicas, r.config.zones, w.spread).get(z) ?? 0) > 0),
    );
    pools.push(drain(`${name} (zone ${zones.join(",")})`, pdbs, here));
  }
  return pools;
}

/** The report for a rendered stack. */
export function failureDomains(r: RenderResult): FailureDomainReport {
  const objs = objectsOf(r);
  const ws = workloads(objs);
  const zones = r.config.zones;
  const report: FailureDomainReport = { zones: [], pools: poolDrains(r, objs, ws), problems: [] };
  for (const zone of zones) {
    const podsLost = ws
      .map((w) => [w.name, podsPerZone(w.replicas, zones, w.spread).get(zone) ?? 0] as const)
      .filter(([, n]) => n > 0)
      .map(([name, n]) => `${name}: ${n}`);
    const stuck = ws
      .filter((w) => w.zonalDisks && (podsPerZone(w.replicas, zones, w.spread).get(zone) ?? 0) > 0)
      .map((w) => `${w.name}: ${podsPerZone(w.replicas, zones, w.spread).get(zone) ?? 0} (zonal disk)`);
    const verdicts = verdictsFor(ws, zones, zone);
    report.zones.push({ zone, podsLost, verdicts, stuck });
    if (r.config.production) {
      for (const v of verdicts.filter((x) => !x.ok)) {
        report.problems.push(`zone ${zone}: ${v.component} stops: ${v.detail}`);
      }
    }
  }
  if (r.config.production) {
    for (const p of report.pools.filter((x) => !x.ok)) report.problems.push(`${p.pool}: drain ${p.detail}`);
  }
  return report;
}

/** Lines for `npm run render`. */
export function formatFailureDomains(report: FailureDomainReport): string[] {
  const lines: string[] = [];
  for (const z of report.zones) {
    lines.push(`losing zone ${z.zone}: pods lost (at most) ${z.podsLost.join(", ") || "none"}`);
    for (const v of z.verdicts) lines.push(`  ${v.ok ? "ok  " : "DOWN"} ${v.component}: ${v.detail}`);
    lines.push(`  cannot reschedule until the zone returns: ${z.stuck.join(", ") || "none"}`);
  }
  for (const p of report.pools) lines.push(`drain of ${p.pool}: ${p.ok ? "" : "BLOCKED, "}${p.detail}`);
  for (const p of report.problems) lines.push(`PROBLEM: ${p}`);
  return lines;
}
