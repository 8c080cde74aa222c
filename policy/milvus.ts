import { containersOf, list, num, podTemplate, Props, record, StackResource, str, Violation } from "./common";
import { replicatedWorkloads } from "./pdb";

/**
 * Standalone Milvus embeds the coordinators and a local message queue: a second replica crash-loops
 * on etcd session registration or acknowledges writes the other never sees (milvus-io/milvus#28063,
 * #30355). One replica, no HPA, and no rolling surge that would briefly run two.
 */

function labelsOf(props: Props): Props {
  return record(record(props.metadata).labels);
}

function runsStandalone(podSpec: Props): boolean {
  return containersOf(podSpec).some((c) => {
    const argv = [...list(c.spec.command), ...list(c.spec.args)].map(String).join(" ");
    return /\bmilvus\s+run\s+standalone\b/.test(argv);
  });
}

/** True for a standalone Milvus workload, by its recommended labels or by the command it runs. */
export function isStandaloneMilvus(kind: string, props: Props): boolean {
  const pod = podTemplate(kind, props);
  if (pod === undefined) return false;
  const labelled = [labelsOf(props), pod.labels].some(
    (l) => l["app.kubernetes.io/name"] === "milvus" && l["app.kubernetes.io/component"] === "standalone",
  );
  return labelled || runsStandalone(pod.spec);
}

export function milvusStandaloneSingleReplica(resources: StackResource[]): Violation[] {
  const violations: Violation[] = [];
  for (const w of replicatedWorkloads(resources)) {
    if (!isStandaloneMilvus(w.kind, w.resource.props)) continue;
    const subject = `${w.kind} ${w.namespace}/${w.name} (standalone Milvus)`;
    const spec = record(w.resource.props.spec);
    const replicas = num(spec.replicas) ?? 1;
    if (replicas > 1) {
      violations.push({
        resource: w.resource.name,
        message: `${subject}: replicas ${replicas}; standalone must run exactly 1 (use cluster mode to scale).`,
      });
    }
    if (w.hpa) {
      const max = num(record(w.hpa.props.spec).maxReplicas);
      violations.push({
        resource: w.hpa.name,
        message: `${subject}: targeted by HorizontalPodAutoscaler ${str(record(w.hpa.props.metadata).name) ?? w.hpa.name} (maxReplicas ${max ?? "?"}); remove it, standalone cannot scale out.`,
      });
    }
    if (w.kind === "Deployment" && record(spec.strategy).type !== "Recreate") {
      violations.push({
        resource: w.resource.name,
        message: `${subject}: rollout strategy ${JSON.stringify(record(spec.strategy).type ?? "RollingUpdate")} starts the new pod before the old one stops; use strategy.type "Recreate".`,
      });
    }
  }
  return violations;
}
