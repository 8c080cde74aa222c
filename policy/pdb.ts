import {
  k8sKind,
  k8sSubject,
  num,
  podTemplate,
  Props,
  record,
  selectorMatches,
  StackResource,
  str,
  Violation,
} from "./common";

/**
 * PodDisruptionBudgets must leave room for at least one voluntary disruption, or node drains, AKS
 * upgrades and the cluster autoscaler stall forever on the pods they cover.
 */

const REPLICATED_KINDS = ["Deployment", "StatefulSet", "ReplicaSet"];

export interface Workload {
  resource: StackResource;
  kind: string;
  namespace: string;
  name: string;
  podLabels: Props;
  /** The lowest replica count the workload may run at: its HPA's minReplicas if one targets it. */
  minReplicas: number;
  hpa?: StackResource;
}

function namespaceOf(props: Props): string {
  return str(record(props.metadata).namespace) ?? "default";
}

/** Replicated workloads of a stack, with the HorizontalPodAutoscaler that targets each (if any). */
export function replicatedWorkloads(resources: StackResource[]): Workload[] {
  const hpas = resources.filter((r) => k8sKind(r.type) === "HorizontalPodAutoscaler");
  const out: Workload[] = [];
  for (const r of resources) {
    const kind = k8sKind(r.type);
    if (kind === undefined || !REPLICATED_KINDS.includes(kind)) continue;
    const namespace = namespaceOf(r.props);
    const name = str(record(r.props.metadata).name) ?? "";
    const hpa = hpas.find((h) => {
      const ref = record(record(h.props.spec).scaleTargetRef);
      return namespaceOf(h.props) === namespace && ref.kind === kind && ref.name === name;
    });
    const replicas = num(record(r.props.spec).replicas) ?? 1;
    const minReplicas = hpa ? (num(record(hpa.props.spec).minReplicas) ?? 1) : replicas;
    out.push({
      resource: r,
      kind,
      namespace,
      name,
      podLabels: podTemplate(kind, r.props)?.labels ?? {},
      minReplicas,
      hpa,
    });
  }
  return out;
}

/** Kubernetes rounds PDB percentages up (pkg/controller/disruption: GetScaledValueFromIntOrPercent). */
function scaled(value: unknown, replicas: number): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "string") {
    const pct = /^(\d+)%$/.exec(value);
    if (pct) return Math.ceil((Number(pct[1]) * replicas) / 100);
    return num(value);
  }
  return undefined;
}

export function pdbAllowsDisruption(resources: StackResource[]): Violation[] {
  const workloads = replicatedWorkloads(resources);
  const violations: Violation[] = [];
  for (const r of resources) {
    if (k8sKind(r.type) !== "PodDisruptionBudget") continue;
    const subject = k8sSubject(r.type, r.props);
    const spec = record(r.props.spec);
    const report = (message: string) =>
      violations.push({ resource: r.name, message: `${subject}: ${message}` });
    const targets = workloads.filter(
      (w) => w.namespace === namespaceOf(r.props) && selectorMatches(record(spec.selector), w.podLabels),
    );
    for (const w of targets.filter((t) => t.minReplicas <= 1)) {
      report(
        `covers ${w.kind} ${w.name}, which runs ${w.minReplicas} replica${w.minReplicas === 1 ? "" : "s"}; a PDB on a singleton either blocks every drain or protects nothing. Remove it (or run more replicas).`,
      );
    }
    if (spec.maxUnavailable !== undefined) {
      const max = scaled(spec.maxUnavailable, Math.max(1, ...targets.map((t) => t.minReplicas)));
      if (max === undefined || max < 1) {
        report(
          `maxUnavailable ${JSON.stringify(spec.maxUnavailable)} allows no disruption; use maxUnavailable: 1.`,
        );
      }
      continue;
    }
    if (spec.minAvailable === undefined) {
      report("sets neither maxUnavailable nor minAvailable; use maxUnavailable: 1.");
      continue;
    }
    if (targets.length === 0) {
      report(
        `minAvailable ${JSON.stringify(spec.minAvailable)} selects no Deployment or StatefulSet of this stack, so it cannot be checked against a replica count; use maxUnavailable: 1.`,
      );
      continue;
    }
    for (const w of targets.filter((t) => t.minReplicas > 1)) {
      const min = scaled(spec.minAvailable, w.minReplicas);
      if (min === undefined || min >= w.minReplicas) {
        report(
          `minAvailable ${JSON.stringify(spec.minAvailable)} with ${w.kind} ${w.name} at ${w.minReplicas} replicas allows no disruption; use maxUnavailable: 1.`,
        );
      }
    }
  }
  return violations;
}
