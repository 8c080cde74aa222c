import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import * as random from "@pulumi/random";
import { MILVUS_TERMINATION_GRACE_SECONDS, MilvusConfig, RoleSizing } from "../common/config";
import {
  MILVUS_INTERNAL_TLS_PATH,
  MILVUS_LOCAL_STORAGE_PATH,
  MILVUS_TLS_PATH,
  MilvusObjectStore,
  renderMilvusUserConfig,
} from "./milvusConfig";
import { MILVUS_INTERNAL_TLS_SECRET, MILVUS_TLS_SECRET } from "./milvusCertificates";
import {
  APP,
  appLabels,
  clusterDns,
  DATA_POOL_SELECTOR,
  MILVUS_GRPC_PORT,
  MILVUS_METRICS_PORT,
  MILVUS_ROLES,
  MilvusRole,
  PORT_NAMES,
  selectorLabels,
} from "../common/naming";
import {
  dataVolumeClaim,
  newDisruptionBudget,
  podSecurityContext,
  statefulOptions,
  restrictedContainerSecurity,
  zoneSpread,
  POD_DEFAULTS,
} from "./podSpec";

/** Object store as the component receives it: secrets stay Pulumi outputs until rendered. */
export type MilvusObjectStoreArgs =
  | {
      kind: "minio";
      host: string;
      port: number;
      bucketName: string;
      accessKey: pulumi.Output<string>;
      secretKey: pulumi.Output<string>;
    }
  | {
      kind: "azureBlob";
      accountName: pulumi.Output<string>;
      containerName: pulumi.Output<string>;
      /** Client id of the identity federated with Milvus's service account. */
      identityClientId: pulumi.Output<string>;
    };

export interface MilvusArgs {
  /** Namespace to run in. @default none */
  namespace: pulumi.Input<string>;
  /** Namespace name as plain text (for the in-cluster address). @default none */
  namespaceName: string;
  /** Mode, image and per-role sizing. @default none: the stack's `milvus.*` config */
  milvus: MilvusConfig;
  /** `host:port` of every etcd member. @default none */
  etcdEndpoints: string[];
  /** Object store (MinIO or Azure Blob). @default none */
  objectStore: MilvusObjectStoreArgs;
  /** StorageClass for the standalone pod's data (Retain). @default none */
  retainStorageClassName: pulumi.Input<string>;
  /** Pod termination grace period, seconds; must stay under the node drain timeout. @default 1800 */
  terminationGraceSeconds?: number;
  /**
   * What Milvus needs before it starts: the etcd members, the object store's servers and its bucket.
   * Every Milvus workload waits for them (Pulumi awaits StatefulSets until Ready, Jobs until complete).
   * @default []
   */
  dependsOn?: pulumi.Resource[];
  /**
   * TLS: `client` serves the proxy's gRPC port from the `milvus-tls` Secret, `internal` the components'
   * internal ports from `milvus-internal-tls` (both written by cert-manager, components/data/milvusCertificates.ts).
   * @default { client: false, internal: false }
   */
  tls?: { client: boolean; internal: boolean };
  /** Proxy access log on stdout. @default false */
  accessLog?: boolean;
}

/**
 * The order roles are created and updated in, as milvus-operator rolls Milvus 2.6 with streaming nodes
 * (pkg/controllers/dependency_graph.go: MixCoord, StreamingNode, QueryNode, DataNode, Proxy); each role
 * waits until the previous one has finished its rollout.
 */
export const ROLLOUT_ORDER: readonly MilvusRole[] = [
  MILVUS_ROLES.standalone,
  MILVUS_ROLES.mixCoord,
  MILVUS_ROLES.streamingNode,
  MILVUS_ROLES.queryNode,
  MILVUS_ROLES.dataNode,
  MILVUS_ROLES.proxy,
];

/** A pod must stay Ready this long before the rollout moves on (milvus-operator sets 30). */
export const MIN_READY_SECONDS = 30;
/** Headroom per pod for scheduling, a node scale-out and the image pull. */
const POD_START_HEADROOM_SECONDS = 600;

/**
 * How long Pulumi waits for a role's rollout, minutes. Pods roll one at a time, each taking at most its
 * predecessor's graceful stop, a new node and image pull, the startup probe's budget, readiness and
 * `minReadySeconds`; an autoscaled role may be at its maximum. Pulumi's default of 10 minutes
 * (pulumi-kubernetes await) would fail `pulumi up` in the middle of a healthy rollout.
 */
export function rolloutTimeoutMinutes(w: MilvusWorkloadPlan, graceSeconds: number): number {
  const pods = w.hpa?.maxReplicas ?? w.replicas ?? 1;
  const perPod =
    graceSeconds + POD_START_HEADROOM_SECONDS + w.startupFailureThreshold * 10 + 15 + MIN_READY_SECONDS;
  return Math.ceil((pods * perPod) / 60);
}

/**
 * Probes on the management port 9091, as both upstream deployers set them: startup and liveness open a
 * TCP connection, readiness asks `/healthz` (zilliztech/milvus-operator pkg/controllers/components.go
 * GetDefault*Probe; milvus-helm templates: liveness tcpSocket, readiness httpGet /healthz). `/healthz`
 * answers 500 until every component is Healthy or StandBy (milvus internal/http/healthz/healthz_handler.go),
 * so as a liveness probe it kills a node that is alive but still loading segments or waiting for etcd,
 * and the restart makes it worse. The timings are the production targets this project sets: liveness
 * 30/10/5/3 and readiness 15/5/3/2 (initial delay s / period s / timeout s / failure threshold).
 */
export function milvusProbes(startupFailureThreshold: number) {
  const tcp = { port: PORT_NAMES.milvusMetrics };
  return {
    // Segment loading can take minutes after a restart; liveness only starts once this has passed.
    startupProbe: {
      tcpSocket: tcp,
      periodSeconds: 10,
      timeoutSeconds: 3,
      failureThreshold: startupFailureThreshold,
    },
    livenessProbe: {
      tcpSocket: tcp,
      initialDelaySeconds: 30,
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 3,
    },
    readinessProbe: {
      httpGet: { path: "/healthz", port: PORT_NAMES.milvusMetrics },
      initialDelaySeconds: 15,
      periodSeconds: 5,
      timeoutSeconds: 3,
      failureThreshold: 2,
    },
  };
}

/** One direction of an HPA's `behavior`. */
export interface ScalingRules {
  stabilizationWindowSeconds?: number;
  selectPolicy?: "Max" | "Min" | "Disabled";
  policies?: { type: "Percent" | "Pods"; value: number; periodSeconds: number }[];
}

/**
 * The HPA targets and scaling behaviour this project sets for Milvus: CPU 70% and memory 80%; scale up by at
 * most 100% per 30 s (60 s window), down by at most 50% per 60 s (300 s window; query nodes never scale in).
 */
export const REQUIRED_HPA: {
  cpuUtilization: number;
  memoryUtilization: number;
  scaleUp: ScalingRules;
  scaleDown: ScalingRules;
} = {
  cpuUtilization: 70,
  memoryUtilization: 80,
  scaleUp: {
    stabilizationWindowSeconds: 60,
    policies: [{ type: "Percent", value: 100, periodSeconds: 30 }],
  },
  scaleDown: {
    stabilizationWindowSeconds: 300,
    policies: [{ type: "Percent", value: 50, periodSeconds: 60 }],
  },
};

/** One workload of the Milvus topology. */
export interface MilvusWorkloadPlan {
  role: MilvusRole;
  kind: "Deployment" | "StatefulSet";
  sizing: RoleSizing;
  /** Replicas Pulumi sets; undefined when an HPA owns the count (its minReplicas is `sizing.replicas`). */
  replicas: number | undefined;
  hpa?: { minReplicas: number; maxReplicas: number; scaleDown: ScalingRules };
  pdb: boolean;
  /** Per-pod volume: a PVC that holds data (standalone) or an emptyDir for caches and scratch files. */
  volume: { kind: "pvc"; sizeGi: number } | { kind: "emptyDir"; sizeGi: number };
  /** Serves client gRPC on 19530 (the LoadBalancer's backends). */
  clientFacing: boolean;
  startupFailureThreshold: number;
  preStopSleepSeconds?: number;
}

/**
 * The workloads of a mode (docs/architecture.md "Topology"), as one pure function (unit-tested). Standalone is exactly one
 * pod: it embeds the coordinators and the WAL writer, so a second replica either crash-loops on its
 * etcd session (milvus-io/milvus#28063) or acknowledges writes nobody else sees (#30355).
 */
export function milvusTopology(m: MilvusConfig): MilvusWorkloadPlan[] {
  if (m.mode === "standalone") {
    if (m.standalone.replicas !== 1) {
      throw new Error(
        `milvus.standalone.replicas = ${m.standalone.replicas}: standalone Milvus must run exactly 1 replica (milvus-io/milvus#28063); use milvus.mode "cluster" to scale.`,
      );
    }
    return [
      {
        role: MILVUS_ROLES.standalone,
        kind: "StatefulSet",
        sizing: m.standalone,
        replicas: 1,
        pdb: false,
        volume: { kind: "pvc", sizeGi: m.standalone.diskSizeGi },
        clientFacing: true,
        startupFailureThreshold: 60,
      },
    ];
  }
  const neverScaleIn: ScalingRules = { selectPolicy: "Disabled" };
  return [
    {
      role: MILVUS_ROLES.mixCoord,
      kind: "Deployment",
      // Surge rollouts work with active-standby: a standby mixcoord answers /healthz with 200 (the
      // healthz handler accepts Healthy and StandBy), becomes Ready, and takes over when the old pod stops.
      sizing: m.mixCoord,
      replicas: m.mixCoord.replicas,
      pdb: true,
      volume: { kind: "emptyDir", sizeGi: 1 },
      clientFacing: false,
      startupFailureThreshold: 30,
    },
    {
      role: MILVUS_ROLES.proxy,
      kind: "Deployment",
      sizing: m.proxy,
      replicas: undefined,
      hpa: {
        minReplicas: m.proxy.replicas,
        maxReplicas: m.proxy.maxReplicas,
        scaleDown: REQUIRED_HPA.scaleDown,
      },
      pdb: true,
      volume: { kind: "emptyDir", sizeGi: 1 },
      clientFacing: true,
      startupFailureThreshold: 30,
      // Lets the load balancer and kube-proxy drop the endpoint before the proxy stops accepting calls.
      preStopSleepSeconds: 15,
    },
    {
      role: MILVUS_ROLES.queryNode,
      kind: "StatefulSet",
      sizing: m.queryNode,
      replicas: undefined,
      // Scale-in moves or drops loaded segments (milvus-io/milvus#23504, #30982): grow only, shrink by hand.
      hpa: {
        minReplicas: m.queryNode.replicas,
        maxReplicas: m.queryNode.maxReplicas,
        scaleDown: neverScaleIn,
      },
      pdb: true,
      // Caches only (mmap and DiskANN files of sealed segments, reloaded from the object store): an emptyDir
      // on the node's ephemeral OS disk, so a pod can move to any zone. A zonal Premium disk would pin it
      // to its zone and it could never be rescheduled while that zone is down.
      volume: { kind: "emptyDir", sizeGi: m.queryNode.diskSizeGi },
      clientFacing: false,
      startupFailureThreshold: 60,
    },
    {
      role: MILVUS_ROLES.dataNode,
      kind: "Deployment",
      sizing: m.dataNode,
      replicas: m.dataNode.replicas,
      pdb: true,
      // Index builds and compactions stage files locally before uploading them.
      volume: { kind: "emptyDir", sizeGi: 32 },
      clientFacing: false,
      startupFailureThreshold: 30,
    },
    {
      role: MILVUS_ROLES.streamingNode,
      kind: "StatefulSet",
      sizing: m.streamingNode,
      replicas: m.streamingNode.replicas,
      pdb: true,
      // The WAL lives in the object store (Woodpecker on MinIO); locally only caches, as for query nodes.
      volume: { kind: "emptyDir", sizeGi: m.streamingNode.diskSizeGi },
      clientFacing: false,
      startupFailureThreshold: 60,
    },
  ];
}

/** Container logs and the writable layer, on top of the emptyDir volumes (`data` and 1 GiB `/tmp`). */
export const EPHEMERAL_OVERHEAD_GI = 2;

/** The ephemeral-storage a Milvus pod requests and is limited to, GiB (emptyDirs plus overhead). */
export function ephemeralStorageGi(w: Pick<MilvusWorkloadPlan, "volume">): number {
  return (w.volume.kind === "emptyDir" ? w.volume.sizeGi : 0) + 1 + EPHEMERAL_OVERHEAD_GI;
}

/** Names and security settings of the Milvus workloads, as one pure function (unit-tested). */
export function milvusDefaults(imageTag: string) {
  return {
    image: `milvusdb/milvus:${imageTag}`,
    serviceName: "milvus",
    serviceAccountName: "milvus",
    configSecretName: "milvus-config",
    // Images built after milvus-io/milvus commit 7cb7651 (Nov 2025) run as the `milvus` user (uid 999);
    // earlier 2.6 images ship root:root files with group rwx (0774). uid 999 with gid 0 (the root *group*,
    // no root privileges) runs both layouts, the approach OpenShift takes (milvus-io/milvus#46897).
    runAsUser: 999,
    runAsGroup: 0,
    rootPasswordLength: 32,
  };
}

/**
 * Milvus 2.6 on Kubernetes: a single standalone pod (dev) or the cluster roles (mixCoord active-standby,
 * proxy and query node with HPAs, data and streaming nodes), with a generated root password, the
 * rendered milvus.yaml in a Secret, PDBs, zone spreading, probes and an internal LoadBalancer.
 */
export class MilvusComponent extends pulumi.ComponentResource {
  /** In-cluster gRPC address, `host:port`. */
  public readonly address: string;
  public readonly serviceName: string;
  public readonly namespace: string;
  /** The root user's password (a Pulumi secret). */
  public readonly rootPassword: pulumi.Output<string>;
  public readonly serviceAccountName: string;

  constructor(name: string, args: MilvusArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:k8s:Milvus", name, {}, opts);
    const d = milvusDefaults(args.milvus.imageTag);
    const grace = args.terminationGraceSeconds ?? MILVUS_TERMINATION_GRACE_SECONDS;
    const plan = milvusTopology(args.milvus);
    const ns = args.namespace;
    const store = args.objectStore;
    const baseLabels = appLabels(APP.milvus);

    // Alphanumeric: the password also travels in `root:<password>` tokens.
    const password = new random.RandomPassword(
      `${name}-root-password`,
      { length: d.rootPasswordLength, special: false },
      { parent: this },
    );
    this.rootPassword = pulumi.secret(password.result);

    const serviceAccount = new k8s.core.v1.ServiceAccount(
      `${name}-sa`,
      {
        metadata: {
          name: d.serviceAccountName,
          namespace: ns,
          labels: baseLabels,
          annotations:
            store.kind === "azureBlob"
              ? { "azure.workload.identity/client-id": store.identityClientId }
              : undefined,
        },
        // Milvus never calls the Kubernetes API; the workload identity webhook mounts its own token.
        automountServiceAccountToken: false,
      },
      { parent: this },
    );

    const objectStore: pulumi.Output<MilvusObjectStore> =
      store.kind === "minio"
        ? pulumi.all([store.accessKey, store.secretKey]).apply(([accessKey, secretKey]) => ({
            kind: "minio" as const,
            host: store.host,
            port: store.port,
            bucketName: store.bucketName,
            accessKey,
            secretKey,
          }))
        : pulumi.all([store.accountName, store.containerName]).apply(([accountName, containerName]) => ({
            kind: "azureBlob" as const,
            accountName,
            containerName,
          }));
    const userYaml = pulumi.secret(
      pulumi.all([objectStore, this.rootPassword]).apply(([objStore, rootPassword]) =>
        renderMilvusUserConfig({
          mode: args.milvus.mode,
          etcdEndpoints: args.etcdEndpoints,
          objectStore: objStore,
          rootPassword,
          terminationGraceSeconds: grace,
          tls: args.tls?.client ?? false,
          internalTls: args.tls?.internal ?? false,
          accessLog: args.accessLog ?? false,
        }),
      ),
    );
    // Pods roll when the configuration changes (a subPath mount never sees Secret updates). A SHA-256
    // of a text containing 190 bits of generated secret reveals nothing, so it may be shown in diffs.
    const configHash = pulumi.unsecret(
      userYaml.apply((text) => crypto.createHash("sha256").update(text).digest("hex")),
    );
    const configSecret = new k8s.core.v1.Secret(
      `${name}-config`,
      {
        metadata: { name: d.configSecretName, namespace: ns, labels: baseLabels },
        type: "Opaque",
        stringData: { "user.yaml": userYaml },
      },
      { parent: this },
    );

    let previous: pulumi.Resource | undefined;
    for (const w of [...plan].sort((a, b) => ROLLOUT_ORDER.indexOf(a.role) - ROLLOUT_ORDER.indexOf(b.role))) {
      const deps = [...(args.dependsOn ?? []), ...(previous ? [previous] : [])];
      previous = this.workload(name, args, w, d, grace, configSecret, configHash, serviceAccount, deps);
    }

    const clientRole = plan.find((w) => w.clientFacing)?.role ?? MILVUS_ROLES.proxy;
    const service = new k8s.core.v1.Service(
      `${name}-service`,
      {
        metadata: {
          name: d.serviceName,
          namespace: ns,
          labels: appLabels(APP.milvus, clientRole),
          // A private VNet address only: clients reach Milvus from the VNet or peered networks, never the internet.
          annotations: { "service.beta.kubernetes.io/azure-load-balancer-internal": "true" },
        },
        spec: {
          type: "LoadBalancer",
          selector: selectorLabels(APP.milvus, clientRole),
          // gRPC only: the management port 9091 (unauthenticated `/management/*` in 2.6, milvus-io/milvus
          // #49588) is never behind the load balancer; Prometheus scrapes it pod by pod.
          ports: [
            {
              name: PORT_NAMES.milvusGrpc,
              port: MILVUS_GRPC_PORT,
              targetPort: PORT_NAMES.milvusGrpc,
              protocol: "TCP",
            },
          ],
        },
      },
      { parent: this },
    );

    this.namespace = args.namespaceName;
    this.serviceName = d.serviceName;
    this.serviceAccountName = d.serviceAccountName;
    this.address = `${clusterDns(d.serviceName, args.namespaceName)}:${MILVUS_GRPC_PORT}`;
    this.registerOutputs({
      address: this.address,
      serviceName: service.metadata.name,
      rootPassword: this.rootPassword,
    });
  }

  private workload(
    name: string,
    args: MilvusArgs,
    w: MilvusWorkloadPlan,
    d: ReturnType<typeof milvusDefaults>,
    grace: number,
    configSecret: k8s.core.v1.Secret,
    configHash: pulumi.Output<string>,
    serviceAccount: k8s.core.v1.ServiceAccount,
    dependsOn: pulumi.Resource[],
  ): pulumi.Resource {
    const timeout = `${rolloutTimeoutMinutes(w, grace)}m`;
    const options: pulumi.CustomResourceOptions = {
      parent: this,
      dependsOn,
      customTimeouts: { create: timeout, update: timeout },
    };
    const ns = args.namespace;
    const resourceName = `${name}-${w.role}`;
    const objectName = `${d.serviceName}-${w.role}`;
    const labels = appLabels(APP.milvus, w.role);
    const selector = selectorLabels(APP.milvus, w.role);
    const podLabels =
      args.objectStore.kind === "azureBlob" ? { ...labels, "azure.workload.identity/use": "true" } : labels;
    const multiReplica = (w.hpa?.minReplicas ?? w.replicas ?? 1) > 1;

    const ports = [
      ...(w.clientFacing
        ? [{ name: PORT_NAMES.milvusGrpc, containerPort: MILVUS_GRPC_PORT, protocol: "TCP" }]
        : []),
      { name: PORT_NAMES.milvusMetrics, containerPort: MILVUS_METRICS_PORT, protocol: "TCP" },
    ];
    // Whole-directory mounts (no subPath), so a renewed certificate reaches the files; Milvus reads them
    // when a process starts (milvusConfig.ts).
    const tlsVolumes = [
      // On every role, not only the proxy: user.yaml is shared and names these files for all of them.
      ...(args.tls?.client
        ? [{ name: "tls", secretName: MILVUS_TLS_SECRET, mountPath: MILVUS_TLS_PATH }]
        : []),
      ...(args.tls?.internal
        ? [
            {
              name: "internal-tls",
              secretName: MILVUS_INTERNAL_TLS_SECRET,
              mountPath: MILVUS_INTERNAL_TLS_PATH,
            },
          ]
        : []),
    ];
    // The kubelet counts emptyDir volumes, logs and the writable layer against ephemeral-storage and
    // evicts a pod over its limit ("Local ephemeral storage", Kubernetes docs): the scheduler then only
    // places the pod on a node whose OS disk holds it.
    const ephemeral = `${ephemeralStorageGi(w)}Gi`;
    const container = {
      name: w.role,
      image: d.image,
      imagePullPolicy: "IfNotPresent",
      // `args`, not `command`: the image's tini entrypoint stays PID 1 and forwards SIGTERM to Milvus.
      args: ["milvus", "run", w.role],
      ports,
      ...milvusProbes(w.startupFailureThreshold),
      resources: {
        requests: {
          cpu: w.sizing.requests.cpu,
          memory: w.sizing.requests.memory,
          "ephemeral-storage": ephemeral,
        },
        limits: { cpu: w.sizing.limits.cpu, memory: w.sizing.limits.memory, "ephemeral-storage": ephemeral },
      },
      lifecycle:
        w.preStopSleepSeconds !== undefined
          ? { preStop: { exec: { command: ["sleep", String(w.preStopSleepSeconds)] } } }
          : undefined,
      // Not read-only: Milvus writes scratch files outside the mounted volumes in some code paths.
      securityContext: restrictedContainerSecurity(d.runAsUser, false),
      volumeMounts: [
        { name: "config", mountPath: "/milvus/configs/user.yaml", subPath: "user.yaml", readOnly: true },
        { name: "data", mountPath: MILVUS_LOCAL_STORAGE_PATH },
        { name: "tmp", mountPath: "/tmp" },
        ...tlsVolumes.map((v) => ({ name: v.name, mountPath: v.mountPath, readOnly: true })),
      ],
    };
    const volumes = [
      { name: "config", secret: { secretName: configSecret.metadata.name, defaultMode: 0o440 } },
      ...tlsVolumes.map((v) => ({ name: v.name, secret: { secretName: v.secretName, defaultMode: 0o440 } })),
      { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
      ...(w.volume.kind === "emptyDir"
        ? [{ name: "data", emptyDir: { sizeLimit: `${w.volume.sizeGi}Gi` } }]
        : []),
    ];
    const podTemplate = {
      metadata: { labels: podLabels, annotations: { "milvus-aks/config-sha256": configHash } },
      spec: {
        serviceAccountName: serviceAccount.metadata.name,
        ...POD_DEFAULTS,
        nodeSelector: DATA_POOL_SELECTOR,
        topologySpreadConstraints: multiReplica ? zoneSpread(selector) : undefined,
        securityContext: podSecurityContext(d.runAsUser, d.runAsGroup),
        // Milvus's graceful stop (segment hand-off, flush) takes up to 1800 s; the node pools' drain
        // timeout (drainTimeoutMinutes, 40) is longer, so upgrades never cut it short.
        terminationGracePeriodSeconds: grace,
        containers: [container],
        volumes,
      },
    };

    let target: k8s.apps.v1.Deployment | k8s.apps.v1.StatefulSet;
    if (w.kind === "Deployment") {
      target = new k8s.apps.v1.Deployment(
        resourceName,
        {
          metadata: { name: objectName, namespace: ns, labels },
          spec: {
            // Omitted when an HPA owns the count, so `pulumi up` never resets what the autoscaler chose.
            replicas: w.replicas,
            minReadySeconds: MIN_READY_SECONDS,
            selector: { matchLabels: selector },
            // Surge first: capacity never drops below the current replica count during a rollout.
            strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
            template: podTemplate,
          },
        },
        options,
      );
    } else {
      const headless = new k8s.core.v1.Service(
        `${resourceName}-headless`,
        {
          metadata: { name: `${objectName}-headless`, namespace: ns, labels },
          spec: {
            clusterIP: "None",
            selector,
            ports: [
              {
                name: PORT_NAMES.milvusMetrics,
                port: MILVUS_METRICS_PORT,
                targetPort: PORT_NAMES.milvusMetrics,
              },
            ],
          },
        },
        { parent: this },
      );
      const pvc = w.volume.kind === "pvc" ? w.volume : undefined;
      target = new k8s.apps.v1.StatefulSet(
        resourceName,
        {
          metadata: { name: objectName, namespace: ns, labels },
          spec: {
            serviceName: headless.metadata.name,
            replicas: w.replicas,
            minReadySeconds: MIN_READY_SECONDS,
            // Nodes of one role are independent peers: start and replace them in parallel.
            podManagementPolicy: w.role === MILVUS_ROLES.standalone ? "OrderedReady" : "Parallel",
            selector: { matchLabels: selector },
            updateStrategy: { type: "RollingUpdate" },
            // The standalone pod's volume holds data and stays when the StatefulSet goes.
            persistentVolumeClaimRetentionPolicy: pvc
              ? { whenDeleted: "Retain", whenScaled: "Retain" }
              : undefined,
            template: podTemplate,
            volumeClaimTemplates: pvc
              ? [dataVolumeClaim(labels, args.retainStorageClassName, pvc.sizeGi)]
              : undefined,
          },
        },
        // The standalone pod's volume holds data: protected, template ignored (podSpec.ts statefulOptions).
        pvc ? { ...options, ...statefulOptions(this) } : options,
      );
    }

    if (w.pdb) {
      newDisruptionBudget(`${resourceName}-pdb`, { name: objectName, namespace: ns, labels }, selector, this);
    }

    if (w.hpa) {
      new k8s.autoscaling.v2.HorizontalPodAutoscaler(
        `${resourceName}-hpa`,
        {
          metadata: { name: objectName, namespace: ns, labels },
          spec: {
            scaleTargetRef: { apiVersion: "apps/v1", kind: w.kind, name: target.metadata.name },
            minReplicas: w.hpa.minReplicas,
            maxReplicas: w.hpa.maxReplicas,
            metrics: [
              {
                type: "Resource",
                resource: {
                  name: "cpu",
                  target: { type: "Utilization", averageUtilization: REQUIRED_HPA.cpuUtilization },
                },
              },
              {
                type: "Resource",
                resource: {
                  name: "memory",
                  target: { type: "Utilization", averageUtilization: REQUIRED_HPA.memoryUtilization },
                },
              },
            ],
            behavior: { scaleUp: REQUIRED_HPA.scaleUp, scaleDown: w.hpa.scaleDown },
          },
        },
        { parent: this },
      );
    }
    return target;
  }
}
