import { kubernetesObjects, RenderResult } from "./offline-runtime";

type Obj = Record<string, unknown>;
const get = (o: unknown, ...path: string[]): unknown =>
  path.reduce<unknown>(
    (cur, k) => (typeof cur === "object" && cur !== null ? (cur as Obj)[k] : undefined),
    o,
  );

// An unset `replicas` means Kubernetes' default of one.
const replicasOf = (w: unknown) => {
  const r = get(w, "spec", "replicas");
  return typeof r === "number" ? r : 1;
};

/**
 * One line per workload (Deployment, StatefulSet): replicas or the HPA's range, its PDB and whether it
 * spreads over zones. This is what a reviewer checks first in a render: the Milvus topology.
 */
export function topology(result: RenderResult): string[] {
  const objects = kubernetesObjects(result).map((r) => r.inputs);
  const ofKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const name = (o: unknown) => String(get(o, "metadata", "name"));
  const matches = (selector: unknown, labels: unknown) =>
    Object.entries((selector ?? {}) as Record<string, string>).every(
      ([k, v]) => (labels as Record<string, string> | undefined)?.[k] === v,
    );
  return ofKind("Deployment")
    .concat(ofKind("StatefulSet"))
    .map((w) => {
      const labels = get(w, "spec", "template", "metadata", "labels");
      const hpa = ofKind("HorizontalPodAutoscaler").find(
        (h) => get(h, "spec", "scaleTargetRef", "name") === name(w),
      );
      const pdb = ofKind("PodDisruptionBudget").find((p) =>
        matches(get(p, "spec", "selector", "matchLabels"), labels),
      );
      const spread = ((get(w, "spec", "template", "spec", "topologySpreadConstraints") ?? []) as Obj[]).some(
        (c) => c.topologyKey === "topology.kubernetes.io/zone",
      );
      const replicas = hpa
        ? `HPA ${String(get(hpa, "spec", "minReplicas"))}..${String(get(hpa, "spec", "maxReplicas"))}` +
          (get(hpa, "spec", "behavior", "scaleDown", "selectPolicy") === "Disabled"
            ? " (never scales in)"
            : "")
        : `${replicasOf(w)} replica(s)`;
      const pdbText = pdb ? `PDB maxUnavailable ${String(get(pdb, "spec", "maxUnavailable"))}` : "no PDB";
      return `${String(w.kind)} ${String(get(w, "metadata", "namespace"))}/${name(w)}: ${replicas}, ${pdbText}${spread ? ", zone-spread" : ""}`;
    })
    .sort();
}
