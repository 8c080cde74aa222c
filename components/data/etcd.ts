import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import {
  APP,
  appLabels,
  clusterDns,
  DATA_POOL_SELECTOR,
  ETCD_CLIENT_PORT,
  ETCD_METRICS_PORT,
  ETCD_PEER_PORT,
  PORT_NAMES,
  selectorLabels,
} from "../common/naming";
import {
  dataVolumeClaim,
  statefulOptions,
  newDisruptionBudget,
  podSecurityContext,
  restrictedContainerSecurity,
  zoneSpread,
  POD_DEFAULTS,
} from "./podSpec";

export interface EtcdArgs {
  /** Namespace to run in. @default none */
  namespace: pulumi.Input<string>;
  /** Namespace name as plain text (DNS names of the members are derived from it). @default none */
  namespaceName: string;
  /** Members: 1 (dev) or an odd number >= 3. @default none: `etcd.replicas` (prod 3, dev 1) */
  replicas: number;
  /** Premium SSD per member, GiB. @default none: `etcd.diskSizeGi` (20) */
  diskSizeGi: number;
  /** Backend quota in bytes. @default none: `etcd.quotaBackendBytes` (4 GiB) */
  quotaBackendBytes: number;
  /** StorageClass of the member volumes (Retain). @default none */
  storageClassName: pulumi.Input<string>;
}

/** Names, image, flags and sizing of the etcd cluster, as one pure function (unit-tested). */
export function etcdDefaults(namespace: string, replicas: number, quotaBackendBytes: number) {
  const name = "etcd";
  const headless = `${name}-headless`;
  const members = Array.from({ length: replicas }, (_, i) => `${name}-${i}`);
  const peerUrl = (member: string) =>
    `http://${clusterDns(`${member}.${headless}`, namespace)}:${ETCD_PEER_PORT}`;
  const clientEndpoints = members.map(
    (m) => `${clusterDns(`${m}.${headless}`, namespace)}:${ETCD_CLIENT_PORT}`,
  );
  const dataDir = "/bitnami/etcd/data";
  const memoryGi = Math.ceil(quotaBackendBytes / 1024 ** 3) + 2;
  return {
    name,
    headless,
    members,
    clientEndpoints,
    // The etcd image the Milvus Helm chart 5.0.x pins: etcd 3.5.25 (with /livez and /readyz, 3.5.11+),
    // non-root (uid 1001), with etcdctl for the defragmentation job.
    image: "milvusdb/etcd:3.5.25-r1",
    runAsUser: 1001,
    dataDir,
    mountPath: "/bitnami/etcd",
    args: [
      "--name=$(POD_NAME)",
      `--data-dir=${dataDir}`,
      `--listen-client-urls=http://0.0.0.0:${ETCD_CLIENT_PORT}`,
      `--advertise-client-urls=http://$(POD_NAME).${headless}.${namespace}.svc.cluster.local:${ETCD_CLIENT_PORT}`,
      `--listen-peer-urls=http://0.0.0.0:${ETCD_PEER_PORT}`,
      `--initial-advertise-peer-urls=http://$(POD_NAME).${headless}.${namespace}.svc.cluster.local:${ETCD_PEER_PORT}`,
      `--listen-metrics-urls=http://0.0.0.0:${ETCD_METRICS_PORT}`,
      `--initial-cluster=${members.map((m) => `${m}=${peerUrl(m)}`).join(",")}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=${name}-${namespace}`,
      // Milvus writes a revision per time tick: keep 1000 revisions and cap the backend, as milvus-operator's
      // in-cluster etcd defaults do (autoCompactionMode revision, retention 1000, ETCD_QUOTA_BACKEND_BYTES).
      "--auto-compaction-mode=revision",
      "--auto-compaction-retention=1000",
      `--quota-backend-bytes=${quotaBackendBytes}`,
      // Cross-zone round trips plus Azure disk latency spikes: 500 ms heartbeats and a 2.5 s election
      // timeout avoid leader churn that 100/1000 ms defaults cause across zones.
      "--heartbeat-interval=500",
      "--election-timeout=2500",
      "--snapshot-count=50000",
    ],
    // bbolt maps the whole backend into memory: a database at its quota must fit under the limit, with
    // room for raft logs and watch buffers. Requests equal limits on memory so etcd is never the pod a
    // node under memory pressure evicts first.
    resources: {
      requests: { cpu: "500m", memory: `${memoryGi}Gi` },
      limits: { cpu: "2", memory: `${memoryGi}Gi` },
    },
    // Defragmentation blocks the member it runs on; etcdctl visits the endpoints in order, one at a time.
    defrag: {
      schedule: "30 3 * * 0",
      args: ["defrag", `--endpoints=${clientEndpoints.join(",")}`, "--command-timeout=120s"],
      resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { cpu: "200m", memory: "128Mi" } },
    },
  };
}

/**
 * etcd for Milvus metadata: a StatefulSet of 1 (dev) or 3+ members, one per zone, on Premium SSD, with
 * revision compaction, a backend quota, cross-zone heartbeat timing, a headless Service for peers, a
 * client Service, a PDB (multi-member only) and a weekly defragmentation CronJob.
 */
export class EtcdComponent extends pulumi.ComponentResource {
  /** The members; Milvus waits for them to be Ready before it starts. */
  public readonly statefulSet: k8s.apps.v1.StatefulSet;
  /** `host:port` of every member, for Milvus's `etcd.endpoints`. */
  public readonly endpoints: string[];
  public readonly serviceName: pulumi.Output<string>;

  constructor(name: string, args: EtcdArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:k8s:Etcd", name, {}, opts);
    const d = etcdDefaults(args.namespaceName, args.replicas, args.quotaBackendBytes);
    const labels = appLabels(APP.etcd, "server");
    const selector = selectorLabels(APP.etcd, "server");
    const ports = [
      { name: PORT_NAMES.etcdClient, port: ETCD_CLIENT_PORT, targetPort: PORT_NAMES.etcdClient },
      { name: PORT_NAMES.etcdPeer, port: ETCD_PEER_PORT, targetPort: PORT_NAMES.etcdPeer },
    ];

    const headless = new k8s.core.v1.Service(
      `${name}-headless`,
      {
        metadata: { name: d.headless, namespace: args.namespace, labels },
        spec: {
          clusterIP: "None",
          // Members must resolve each other before any of them is ready, or the first election never happens.
          publishNotReadyAddresses: true,
          selector,
          ports,
        },
      },
      { parent: this },
    );
    const client = new k8s.core.v1.Service(
      `${name}-client`,
      {
        metadata: { name: d.name, namespace: args.namespace, labels },
        spec: { type: "ClusterIP", selector, ports: [ports[0] ?? { port: ETCD_CLIENT_PORT }] },
      },
      { parent: this },
    );

    const probe = (path: string, periodSeconds: number, failureThreshold: number) => ({
      httpGet: { path, port: PORT_NAMES.etcdMetrics },
      periodSeconds,
      timeoutSeconds: 5,
      failureThreshold,
    });
    this.statefulSet = new k8s.apps.v1.StatefulSet(
      `${name}-statefulset`,
      {
        metadata: { name: d.name, namespace: args.namespace, labels },
        spec: {
          serviceName: headless.metadata.name,
          replicas: args.replicas,
          // All members must start together to elect a leader; ordered start would wait forever on member 0.
          podManagementPolicy: "Parallel",
          selector: { matchLabels: selector },
          updateStrategy: { type: "RollingUpdate" },
          persistentVolumeClaimRetentionPolicy: { whenDeleted: "Retain", whenScaled: "Retain" },
          template: {
            metadata: { labels },
            spec: {
              nodeSelector: DATA_POOL_SELECTOR,
              topologySpreadConstraints: args.replicas > 1 ? zoneSpread(selector) : undefined,
              securityContext: podSecurityContext(d.runAsUser),
              terminationGracePeriodSeconds: 60,
              automountServiceAccountToken: false,
              ...POD_DEFAULTS,
              containers: [
                {
                  name: "etcd",
                  image: d.image,
                  imagePullPolicy: "IfNotPresent",
                  command: ["etcd"],
                  args: d.args,
                  env: [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
                  ports: [
                    { name: PORT_NAMES.etcdClient, containerPort: ETCD_CLIENT_PORT, protocol: "TCP" },
                    { name: PORT_NAMES.etcdPeer, containerPort: ETCD_PEER_PORT, protocol: "TCP" },
                    { name: PORT_NAMES.etcdMetrics, containerPort: ETCD_METRICS_PORT, protocol: "TCP" },
                  ],
                  // /livez checks only the local member (restarting cannot fix a lost quorum); /readyz
                  // also needs a linearizable read. Both since etcd 3.5.11 (etcd-io/etcd#17039).
                  startupProbe: probe("/readyz", 10, 30),
                  livenessProbe: probe("/livez", 10, 5),
                  readinessProbe: probe("/readyz", 5, 3),
                  resources: d.resources,
                  securityContext: restrictedContainerSecurity(d.runAsUser),
                  volumeMounts: [{ name: "data", mountPath: d.mountPath }],
                },
              ],
            },
          },
          volumeClaimTemplates: [dataVolumeClaim(labels, args.storageClassName, args.diskSizeGi)],
        },
      },
      statefulOptions(this),
    );

    if (args.replicas > 1) {
      newDisruptionBudget(`${name}-pdb`, { name: d.name, namespace: args.namespace, labels }, selector, this);
    }

    const defragLabels = appLabels(APP.etcd, "defrag");
    new k8s.batch.v1.CronJob(
      `${name}-defrag`,
      {
        metadata: { name: `${d.name}-defrag`, namespace: args.namespace, labels: defragLabels },
        spec: {
          schedule: d.defrag.schedule,
          timeZone: "Etc/UTC",
          concurrencyPolicy: "Forbid",
          startingDeadlineSeconds: 3600,
          successfulJobsHistoryLimit: 2,
          failedJobsHistoryLimit: 3,
          jobTemplate: {
            metadata: { labels: defragLabels },
            spec: {
              backoffLimit: 1,
              activeDeadlineSeconds: 1800,
              template: {
                metadata: { labels: defragLabels },
                spec: {
                  restartPolicy: "Never",
                  nodeSelector: DATA_POOL_SELECTOR,
                  securityContext: podSecurityContext(d.runAsUser),
                  automountServiceAccountToken: false,
                  ...POD_DEFAULTS,
                  containers: [
                    {
                      name: "defrag",
                      image: d.image,
                      imagePullPolicy: "IfNotPresent",
                      command: ["etcdctl"],
                      args: d.defrag.args,
                      resources: d.defrag.resources,
                      securityContext: restrictedContainerSecurity(d.runAsUser),
                    },
                  ],
                },
              },
            },
          },
        },
      },
      { parent: this },
    );

    this.endpoints = d.clientEndpoints;
    this.serviceName = client.metadata.name;
    this.registerOutputs({ endpoints: this.endpoints, serviceName: this.serviceName });
  }
}
