import { kubernetesObjects, RenderResult, revealSecrets } from "./offline-runtime";

/**
 * Walking rendered Kubernetes objects: the render holds untyped JSON, validated elsewhere against the
 * OpenAPI schemas (tools/k8s-schema.ts). Shared by the render reports and the tests.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

export const WORKLOAD_KINDS = ["Deployment", "StatefulSet"];

/** Every Kubernetes object of a render, secrets revealed. */
export const objectsOf = (r: RenderResult): Obj[] =>
  kubernetesObjects(r).map((o) => revealSecrets(o.inputs) as Obj);
export const inNamespace = (objs: Obj[], namespace: string) =>
  objs.filter((o) => (o.metadata as Obj | undefined)?.namespace === namespace);
export const ofKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);

/** Pod templates of workloads, CronJobs and Jobs: [owner, template]. */
export function podTemplates(objs: Obj[]): { owner: Obj; template: Obj }[] {
  return objs.flatMap((o) => {
    const spec = o.spec as Obj | undefined;
    if (!spec) return [];
    if (WORKLOAD_KINDS.includes(String(o.kind)) || o.kind === "Job")
      return [{ owner: o, template: spec.template as Obj }];
    if (o.kind === "CronJob")
      return [{ owner: o, template: ((spec.jobTemplate as Obj).spec as Obj).template as Obj }];
    return [];
  });
}

/** Replicas a workload runs with: its own count, or its HPA's floor when an HPA owns the count. */
export function effectiveReplicas(objs: Obj[], w: Obj): number {
  const meta = w.metadata as Obj;
  const hpa = ofKind(objs, "HorizontalPodAutoscaler").find((h) => {
    const target = (h.spec as Obj).scaleTargetRef as Obj;
    return target.kind === w.kind && target.name === meta.name;
  });
  if (hpa) return Number((hpa.spec as Obj).minReplicas);
  const replicas = (w.spec as Obj).replicas as unknown;
  return typeof replicas === "number" ? replicas : 1;
}

/** A Deployment's or StatefulSet's pod template labels and pod spec. */
export const podLabelsOf = (w: Obj) =>
  (((w.spec as Obj).template as Obj).metadata as Obj).labels as Record<string, string>;
export const podSpecOf = (w: Obj) => ((w.spec as Obj).template as Obj).spec as Obj;
