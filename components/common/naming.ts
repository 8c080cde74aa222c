import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as authorization from "@pulumi/azure-native/authorization";

/**
 * Shared Kubernetes naming and labelling conventions, so selectors written by one component (network
 * policies, monitors, PDBs) match the pods another component creates.
 */

/** Namespace holding Milvus, etcd, MinIO and the backup worker (one NetworkPolicy boundary). */
export const DATA_NAMESPACE = "milvus";
/** Namespace holding kube-prometheus-stack. */
export const MONITORING_NAMESPACE = "monitoring";

export const PART_OF = "milvus-aks";

/** Standard recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/). */
export function appLabels(name: string, component?: string): Record<string, string> {
  return {
    "app.kubernetes.io/name": name,
    ...(component ? { "app.kubernetes.io/component": component } : {}),
    "app.kubernetes.io/part-of": PART_OF,
  };
}

/** Node label on the per-zone user pools that run Milvus, etcd and MinIO. */
export const DATA_POOL_LABEL = "milvus-aks/pool";
export const DATA_POOL_VALUE = "data";

/** Hex characters of the per-deployer suffix of global names (16^6: collisions need ~4,000 deployers). */
export const GLOBAL_NAME_SUFFIX_LENGTH = 6;

/**
 * A globally unique Azure name: prefix, stack and a short hash of the subscription and stack. Storage
 * account names (3-24 lower-case letters and digits) and registry names (5-50 letters and digits) are
 * DNS names shared by every Azure customer ("Naming rules and restrictions for Azure resources"); a
 * name from the stack alone is taken by the first organisation that deploys these stack files, and
 * every other one fails with StorageAccountAlreadyTaken ("Resolve errors for storage account names").
 * The hash keeps the name stable for one deployer and distinct between deployers; the stack part is
 * shortened first so the suffix always fits.
 */
export function globalName(prefix: string, stack: string, subscriptionId: string, maxLength = 24): string {
  const suffix = createHash("sha256")
    .update(`${subscriptionId.toLowerCase()}/${stack}`)
    .digest("hex")
    .slice(0, GLOBAL_NAME_SUFFIX_LENGTH);
  const room = maxLength - prefix.length - GLOBAL_NAME_SUFFIX_LENGTH;
  if (room < 1)
    throw new Error(`global name prefix "${prefix}" leaves no room within ${maxLength} characters`);
  const stackPart = stack
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "")
    .slice(0, room);
  return `${prefix}${stackPart}${suffix}`;
}

/** {@link globalName} in the subscription `pulumi up` deploys to. */
export function globalNameOutput(prefix: string, stack: string, maxLength = 24): pulumi.Output<string> {
  return authorization
    .getClientConfigOutput()
    .subscriptionId.apply((subscriptionId) => globalName(prefix, stack, subscriptionId, maxLength));
}

/**
 * Fixed Azure names of a stack's resource group, VNet and node subnet. They are fixed (not Pulumi
 * autonames) so the primary stack can compute where its dr stack's nodes live and admit that subnet
 * through its backup firewall before any disaster, without the dr stack having to be deployed first.
 * Resource group names are unique per subscription (1-90 characters) and VNet names per resource group
 * (2-64): "Naming rules and restrictions for Azure resources".
 */
export function stackResourceGroupName(stack: string): string {
  return `milvus-${stack}-rg`;
}
export function stackVnetName(stack: string): string {
  return `milvus-${stack}-vnet`;
}
export const NODE_SUBNET_NAME = "nodes";
export const ENDPOINT_SUBNET_NAME = "endpoints";

/** Resource id of a stack's node subnet in a subscription (the shape ARM returns, `Subnet.id`). */
export function nodeSubnetResourceId(subscriptionId: string, stack: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${stackResourceGroupName(stack)}/providers/Microsoft.Network/virtualNetworks/${stackVnetName(stack)}/subnets/${NODE_SUBNET_NAME}`;
}

/**
 * Metrics port names the monitoring layer selects on (PodMonitor `port`); the data layer names its
 * container ports accordingly. Milvus serves /metrics on 9091, etcd on its metrics listener, MinIO on
 * its API port under /minio/v2/metrics/cluster.
 */
export const METRICS_PORT_NAME = "metrics";
export const MILVUS_METRICS_PORT = 9091;
export const MILVUS_GRPC_PORT = 19530;
export const ETCD_CLIENT_PORT = 2379;
export const ETCD_METRICS_PORT = 2381;
export const MINIO_API_PORT = 9000;
/** etcd's raft peer port (member to member only). */
export const ETCD_PEER_PORT = 2380;
/** Streaming node gRPC port (Milvus 2.6 default `streamingNode.port`). */
export const MILVUS_STREAMING_PORT = 22222;

/** Container port names: Services target these, PodMonitors select `metrics`. */
export const PORT_NAMES = {
  milvusGrpc: "grpc",
  milvusMetrics: METRICS_PORT_NAME,
  etcdClient: "client",
  etcdPeer: "peer",
  etcdMetrics: METRICS_PORT_NAME,
  // MinIO serves its metrics on the API port, so that one port carries the name PodMonitors select.
  minioApi: METRICS_PORT_NAME,
} as const;

/** `app.kubernetes.io/component` values of the Milvus pods (one per `milvus run <role>`). */
export const MILVUS_ROLES = {
  standalone: "standalone",
  mixCoord: "mixcoord",
  proxy: "proxy",
  queryNode: "querynode",
  dataNode: "datanode",
  streamingNode: "streamingnode",
} as const;
export type MilvusRole = (typeof MILVUS_ROLES)[keyof typeof MILVUS_ROLES];

/** The labels a workload's selector uses: name and component only, so adding labels later never orphans pods. */
export function selectorLabels(name: string, component: string): Record<string, string> {
  return { "app.kubernetes.io/name": name, "app.kubernetes.io/component": component };
}

/** Node selector for the per-zone data pools. */
export const DATA_POOL_SELECTOR: Readonly<Record<string, string>> = { [DATA_POOL_LABEL]: DATA_POOL_VALUE };

/** Label Kubernetes sets on every namespace; NetworkPolicies select namespaces by it. */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

/** In-cluster DNS name of a Service or headless pod name. */
export function clusterDns(host: string, namespace: string): string {
  return `${host}.${namespace}.svc.cluster.local`;
}

/** `app.kubernetes.io/name` values of the workloads. */
export const APP = {
  milvus: "milvus",
  etcd: "etcd",
  minio: "minio",
  backup: "milvus-backup",
} as const;
