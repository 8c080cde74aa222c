import { k8sKind, k8sSubject, Props, record } from "./common";

/** Milvus, etcd and MinIO are reached from inside the VNet only: no Service gets a public address. */

export const AZURE_INTERNAL_LB_ANNOTATION = "service.beta.kubernetes.io/azure-load-balancer-internal";

export function noPublicLoadBalancer(type: string, props: Props): string[] {
  if (k8sKind(type) !== "Service" || record(props.spec).type !== "LoadBalancer") return [];
  const annotations = record(record(props.metadata).annotations);
  if (annotations[AZURE_INTERNAL_LB_ANNOTATION] === "true") return [];
  return [
    `${k8sSubject(type, props)}: type LoadBalancer without annotation ${AZURE_INTERNAL_LB_ANNOTATION}: "true" gets a public IP; add the annotation (or use ClusterIP).`,
  ];
}
