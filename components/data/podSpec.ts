/**
 * Pod-spec fragments shared by the data-layer components, so every workload gets the same zone spreading
 * and the same Pod Security "restricted" settings.
 */
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";

export const ZONE_TOPOLOGY_KEY = "topology.kubernetes.io/zone";
export const HOST_TOPOLOGY_KEY = "kubernetes.io/hostname";

/**
 * Zone spreading for a multi-replica workload: at most one replica more in any zone than in another.
 *
 * `DoNotSchedule` on zones, not `ScheduleAnyway`: with one autoscaled data pool per zone, a pod that
 * cannot be placed in the zone it needs stays Pending and the cluster autoscaler adds a node in exactly
 * that zone, instead of the scheduler quietly stacking replicas in one zone, which would only surface
 * as an outage when that zone fails. `nodeTaintsPolicy: Honor` keeps that strictness from turning a
 * zone outage into a scheduling deadlock: the lost zone's nodes turn unreachable (tainted), drop out of
 * the skew computation, and the replacements land in the surviving zones. (No `minDomains` for the
 * same reason: it would count the lost zone as an empty domain and block them.) Spreading over nodes
 * inside a zone is a preference.
 */
export function zoneSpread(selector: Record<string, string>) {
  return [
    {
      maxSkew: 1,
      topologyKey: ZONE_TOPOLOGY_KEY,
      whenUnsatisfiable: "DoNotSchedule",
      nodeTaintsPolicy: "Honor",
      labelSelector: { matchLabels: selector },
    },
    {
      maxSkew: 1,
      topologyKey: HOST_TOPOLOGY_KEY,
      whenUnsatisfiable: "ScheduleAnyway",
      nodeTaintsPolicy: "Honor",
      labelSelector: { matchLabels: selector },
    },
  ];
}

/**
 * PodDisruptionBudget spec for a multi-replica workload: one pod may be evicted at a time. Pods that are
 * not Ready are always evictable: a crash-looping pod serves nothing, and guarding it would block node
 * drains and AKS upgrades indefinitely.
 */
export function disruptionBudget(selector: Record<string, string>) {
  return {
    maxUnavailable: 1,
    unhealthyPodEvictionPolicy: "AlwaysAllow",
    selector: { matchLabels: selector },
  };
}

/** Declares the {@link disruptionBudget} of a multi-replica workload as a child of its component. */
export function newDisruptionBudget(
  resourceName: string,
  metadata: { name: string; namespace: pulumi.Input<string>; labels: Record<string, string> },
  selector: Record<string, string>,
  parent: pulumi.Resource,
): k8s.policy.v1.PodDisruptionBudget {
  return new k8s.policy.v1.PodDisruptionBudget(
    resourceName,
    { metadata, spec: disruptionBudget(selector) },
    { parent },
  );
}

/**
 * Resource options of a StatefulSet whose volumes hold data (etcd, MinIO, standalone Milvus).
 * pulumi-kubernetes replaces a StatefulSet when `spec.volumeClaimTemplates` changes (provider/pkg/
 * provider/diff.go lists it as replace-triggering) and, the object name being fixed, deletes the old
 * one first: raising a `diskSizeGi` would stop every member at once. So the template is ignored after
 * creation (volumes grow in place: docs/operations.md "Growing a volume"), the workload is protected against
 * `pulumi destroy` and deletes, and CI fails on any planned replace (scripts/check-preview.ts).
 */
export function statefulOptions(parent: pulumi.Resource): pulumi.CustomResourceOptions {
  return { parent, protect: true, ignoreChanges: ["spec.volumeClaimTemplates"] };
}

/** The single `data` volume claim of a StatefulSet's pods (Premium SSD, one per pod). */
export function dataVolumeClaim(
  labels: Record<string, string>,
  storageClassName: pulumi.Input<string>,
  sizeGi: number,
) {
  return {
    metadata: { name: "data", labels },
    spec: {
      accessModes: ["ReadWriteOnce"],
      storageClassName,
      resources: { requests: { storage: `${sizeGi}Gi` } },
    },
  };
}

/**
 * Pod-spec fields every pod of this project carries. No service links: by default the kubelet injects
 * `<SERVICE>_PORT=tcp://<ip>:<port>` and friends for every Service in the pod's namespace
 * (kubernetes pkg/kubelet/envvars/envvars.go). Milvus reads environment variables before its yaml
 * files, lower-cased with `_`, `.` and `/` removed (milvus pkg/util/paramtable/base_table.go and
 * pkg/config/config.go formatKey), so the `minio` Service's `MINIO_PORT` overrides `minio.port` and
 * every role fails with "Endpoint url cannot have fully qualified paths" (zilliztech/milvus-operator
 * #504 and #505, milvus-io/milvus-helm #400). Nothing here uses those variables; DNS names are used.
 */
export const POD_DEFAULTS = { enableServiceLinks: false } as const;

/** Pod-level security context satisfying Pod Security "restricted". */
export function podSecurityContext(runAsUser: number, runAsGroup: number = runAsUser) {
  return {
    runAsNonRoot: true,
    runAsUser,
    runAsGroup,
    fsGroup: runAsUser,
    // Large volumes: only re-own files when the volume root does not already match.
    fsGroupChangePolicy: "OnRootMismatch",
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/** Container-level security context satisfying Pod Security "restricted". */
export function restrictedContainerSecurity(runAsUser: number, readOnlyRootFilesystem = true) {
  return {
    runAsNonRoot: true,
    runAsUser,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem,
    capabilities: { drop: ["ALL"] },
  };
}
