import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { ObjectStore } from "../common/config";
import {
  APP,
  appLabels,
  ETCD_CLIENT_PORT,
  ETCD_METRICS_PORT,
  ETCD_PEER_PORT,
  MILVUS_GRPC_PORT,
  MILVUS_METRICS_PORT,
  MINIO_API_PORT,
  MONITORING_NAMESPACE,
  NAMESPACE_NAME_LABEL,
  selectorLabels,
} from "../common/naming";

export interface DataNetworkPoliciesArgs {
  /** The data namespace. @default none */
  namespace: pulumi.Input<string>;
  /** `app.kubernetes.io/component` of the pods serving clients (`proxy` or `standalone`). @default none */
  clientRole: string;
  /** Object store: MinIO rules exist only when MinIO does; Azure Blob needs HTTPS egress. @default none */
  objectStore: ObjectStore;
  /** Namespace Prometheus runs in. @default "monitoring" */
  monitoringNamespace?: string;
}

type Peer = Record<string, unknown>;
type Port = { protocol: string; port: number; endPort?: number };
export interface PolicySpec {
  name: string;
  podSelector: { matchLabels?: Record<string, string> };
  policyTypes: string[];
  ingress?: { from?: Peer[]; ports?: Port[] }[];
  egress?: { to?: Peer[]; ports?: Port[] }[];
}

const tcp = (...ports: number[]): Port[] => ports.map((port) => ({ protocol: "TCP", port }));
/** Every TCP port but Milvus's management port 9091 (`endPort` ranges: NetworkPolicy, Kubernetes 1.25+). */
const ALL_BUT_MANAGEMENT: Port[] = [
  { protocol: "TCP", port: 1, endPort: MILVUS_METRICS_PORT - 1 },
  { protocol: "TCP", port: MILVUS_METRICS_PORT + 1, endPort: 65535 },
];
const pods = (labels: Record<string, string>): Peer => ({ podSelector: { matchLabels: labels } });
const namespace = (name: string): Peer => ({
  namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: name } },
});
// Private and link-local ranges: Azure Blob and Entra ID are reached on public addresses only.
const PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"];

/**
 * The data namespace's policies, as one pure function (unit-tested): deny everything, then allow
 * exactly the flows the data layer needs.
 */
export function dataNetworkPolicies(args: DataNetworkPoliciesArgs): PolicySpec[] {
  const monitoring = namespace(args.monitoringNamespace ?? MONITORING_NAMESPACE);
  const milvus = { "app.kubernetes.io/name": APP.milvus };
  const etcdServer = selectorLabels(APP.etcd, "server");
  const minioServer = selectorLabels(APP.minio, "server");
  const minioAny = { "app.kubernetes.io/name": APP.minio };
  const policies: PolicySpec[] = [
    { name: "default-deny", podSelector: {}, policyTypes: ["Ingress", "Egress"] },
    {
      name: "allow-dns",
      podSelector: {},
      policyTypes: ["Egress"],
      egress: [
        {
          to: [{ ...namespace("kube-system"), podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
          ports: [
            { protocol: "UDP", port: 53 },
            { protocol: "TCP", port: 53 },
          ],
        },
      ],
    },
    {
      name: "milvus",
      podSelector: { matchLabels: milvus },
      policyTypes: ["Ingress", "Egress"],
      ingress: [
        // Milvus roles call each other on their internal gRPC ports (sessions in etcd name them), never
        // on 9091: it serves `/management/*` (stop a component, change log levels) without authentication
        // in 2.6 (milvus-io/milvus #49588, #50763). `common.security.adminAuthEnabled`, which guards it,
        // exists only on master (milvus PR #52580), not in the 2.6 branch the pinned v2.6.24 comes from.
        // Only Prometheus reaches it; the kubelet's probes come from the node, which Cilium admits.
        { from: [pods(milvus)], ports: ALL_BUT_MANAGEMENT },
        { from: [monitoring], ports: tcp(MILVUS_METRICS_PORT) },
        { from: [pods({ "app.kubernetes.io/name": APP.backup })], ports: tcp(MILVUS_GRPC_PORT) },
      ],
      egress: [
        { to: [pods(milvus)], ports: ALL_BUT_MANAGEMENT },
        { to: [pods(etcdServer)], ports: tcp(ETCD_CLIENT_PORT) },
        args.objectStore === "minio"
          ? { to: [pods(minioServer)], ports: tcp(MINIO_API_PORT) }
          : { to: [{ ipBlock: { cidr: "0.0.0.0/0", except: PRIVATE_RANGES } }], ports: tcp(443) },
      ],
    },
    {
      // Clients arrive through the internal load balancer (any VNet or peered address) or from pods in
      // other namespaces; authorization is on, so the gRPC port is open to every source that can route
      // here. The management port is not: see the `milvus` policy.
      name: "milvus-clients",
      podSelector: { matchLabels: selectorLabels(APP.milvus, args.clientRole) },
      policyTypes: ["Ingress"],
      ingress: [{ ports: tcp(MILVUS_GRPC_PORT) }],
    },
    {
      name: "etcd",
      podSelector: { matchLabels: etcdServer },
      policyTypes: ["Ingress", "Egress"],
      ingress: [
        { from: [pods(milvus), pods(selectorLabels(APP.etcd, "defrag"))], ports: tcp(ETCD_CLIENT_PORT) },
        { from: [pods(etcdServer)], ports: tcp(ETCD_CLIENT_PORT, ETCD_PEER_PORT) },
        { from: [monitoring], ports: tcp(ETCD_METRICS_PORT) },
      ],
      egress: [{ to: [pods(etcdServer)], ports: tcp(ETCD_CLIENT_PORT, ETCD_PEER_PORT) }],
    },
    {
      name: "etcd-defrag",
      podSelector: { matchLabels: selectorLabels(APP.etcd, "defrag") },
      policyTypes: ["Egress"],
      egress: [{ to: [pods(etcdServer)], ports: tcp(ETCD_CLIENT_PORT) }],
    },
  ];
  if (args.objectStore === "minio") {
    policies.push(
      {
        name: "minio",
        podSelector: { matchLabels: minioServer },
        policyTypes: ["Ingress", "Egress"],
        ingress: [
          // MinIO peers talk over the API port too, and the bucket Job is an `mc` client.
          { from: [pods(milvus), pods(minioAny)], ports: tcp(MINIO_API_PORT) },
          { from: [monitoring], ports: tcp(MINIO_API_PORT) },
        ],
        egress: [{ to: [pods(minioServer)], ports: tcp(MINIO_API_PORT) }],
      },
      {
        name: "minio-create-bucket",
        podSelector: { matchLabels: selectorLabels(APP.minio, "create-bucket") },
        policyTypes: ["Egress"],
        egress: [{ to: [pods(minioServer)], ports: tcp(MINIO_API_PORT) }],
      },
    );
  }
  return policies;
}

/** Default-deny NetworkPolicies for the data namespace plus the allowed flows (Cilium enforces them). */
export class DataNetworkPoliciesComponent extends pulumi.ComponentResource {
  public readonly policyNames: string[];

  constructor(name: string, args: DataNetworkPoliciesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:k8s:DataNetworkPolicies", name, {}, opts);
    const specs = dataNetworkPolicies(args);
    for (const p of specs) {
      new k8s.networking.v1.NetworkPolicy(
        `${name}-${p.name}`,
        {
          metadata: { name: p.name, namespace: args.namespace, labels: appLabels("network-policy") },
          spec: {
            podSelector: p.podSelector,
            policyTypes: p.policyTypes,
            ingress: p.ingress,
            egress: p.egress,
          },
        },
        { parent: this },
      );
    }
    this.policyNames = specs.map((p) => p.name);
    this.registerOutputs({ policyNames: this.policyNames });
  }
}
