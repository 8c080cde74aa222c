import * as assert from "node:assert/strict";
import { specialSecretSig, specialSigKey } from "@pulumi/pulumi/runtime/rpc";
import { aksClusterSettings, aksZoneRedundancy, AGENT_POOL, MANAGED_CLUSTER } from "../policy/aks";
import { Props, StackResource } from "../policy/common";
import { milvusStandaloneSingleReplica } from "../policy/milvus";
import { noPublicLoadBalancer } from "../policy/network";
import { pdbAllowsDisruption } from "../policy/pdb";
import { enforcementFor, environmentOfStack, evaluate, policyDefinitions } from "../policy/policies";
import { noPlaintextSecrets } from "../policy/secrets";
import { STORAGE_ACCOUNT, storageAccountHardening } from "../policy/storage";
import { containerHygiene, imagePinProblem } from "../policy/workloads";
import { ROOT } from "../tools/offline-runtime";

/** A secret as the engine receives it under mocks (and as the render records it). */
const sealed = (value: unknown) => ({ [specialSigKey]: specialSecretSig, value });

const DEPLOYMENT = "kubernetes:apps/v1:Deployment";
const STATEFUL_SET = "kubernetes:apps/v1:StatefulSet";
const HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler";
const PDB = "kubernetes:policy/v1:PodDisruptionBudget";

function goodContainer(name = "app", overrides: Props = {}): Props {
  return {
    name,
    image: "milvusdb/milvus:v2.6.24",
    resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { cpu: "1", memory: "1Gi" } },
    livenessProbe: { httpGet: { path: "/healthz", port: 9091 } },
    readinessProbe: { httpGet: { path: "/healthz", port: 9091 } },
    ...overrides,
  };
}

function workload(
  kind: string,
  name: string,
  opts: { replicas?: number; labels?: Props; containers?: Props[]; spec?: Props } = {},
): Props {
  const labels = opts.labels ?? { "app.kubernetes.io/name": name };
  return {
    apiVersion: "apps/v1",
    kind,
    metadata: { name, namespace: "milvus", labels },
    spec: {
      ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}),
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: opts.containers ?? [goodContainer()] } },
      ...opts.spec,
    },
  };
}

const res = (type: string, name: string, props: Props): StackResource => ({ type, name, props });

describe("policy: aks-cluster-settings", () => {
  const pool = {
    name: "system",
    mode: "System",
    enableAutoScaling: true,
    minCount: 3,
    maxCount: 5,
    availabilityZones: ["1", "2", "3"],
  };

  it("accepts a Standard-tier cluster with autoscaled pools", () => {
    assert.deepEqual(
      aksClusterSettings(MANAGED_CLUSTER, {
        sku: { name: "Base", tier: "Standard" },
        agentPoolProfiles: [pool],
      }),
      [],
    );
    assert.deepEqual(
      aksClusterSettings(AGENT_POOL, {
        agentPoolName: "data1",
        enableAutoScaling: true,
        minCount: 0,
        maxCount: 3,
      }),
      [],
    );
  });

  it("rejects the Free tier and a pool without autoscaling", () => {
    assert.deepEqual(
      aksClusterSettings(MANAGED_CLUSTER, {
        sku: { name: "Base", tier: "Free" },
        agentPoolProfiles: [{ ...pool, enableAutoScaling: false }],
      }),
      [
        'ManagedCluster sku.tier is "Free"; production clusters need "Standard" (uptime SLA, more API server capacity).',
        'node pool "system": cluster autoscaler is off; set enableAutoScaling: true with minCount and maxCount.',
      ],
    );
  });

  it("rejects inverted and missing autoscaler bounds on user pools", () => {
    assert.deepEqual(
      aksClusterSettings(AGENT_POOL, {
        agentPoolName: "data2",
        enableAutoScaling: true,
        minCount: 4,
        maxCount: 2,
      }),
      [
        'node pool "data2": autoscaler bounds minCount 4 / maxCount 2 are invalid; need 0 <= minCount <= maxCount and maxCount >= 1.',
      ],
    );
    assert.deepEqual(
      aksClusterSettings(AGENT_POOL, { agentPoolName: "data3", enableAutoScaling: true, minCount: 1 }),
      ['node pool "data3": autoscaler bounds missing (minCount 1, maxCount undefined); set both.'],
    );
  });
});

describe("policy: aks-zone-redundancy", () => {
  const cluster = (zones: string[]) =>
    res(MANAGED_CLUSTER, "aks", {
      agentPoolProfiles: [{ name: "system", mode: "System", availabilityZones: zones }],
    });
  const userPool = (zone: string) =>
    res(AGENT_POOL, `data${zone}`, { agentPoolName: `data${zone}`, mode: "User", availabilityZones: [zone] });

  it("accepts a 3-zone system pool with one user pool per zone", () => {
    assert.deepEqual(
      aksZoneRedundancy([cluster(["1", "2", "3"]), userPool("1"), userPool("2"), userPool("3")]),
      [],
    );
  });

  it("reports a single-zone system pool and missing user-pool zones", () => {
    assert.deepEqual(aksZoneRedundancy([cluster(["1"]), userPool("1"), userPool("3")]), [
      {
        resource: "aks",
        message:
          'system pool "system" runs in zones [1], missing 2, 3; set availabilityZones to ["1", "2", "3"].',
      },
      {
        resource: "aks",
        message: "user node pools cover zones [1, 3], missing 2; add a zonal pool per missing zone.",
      },
    ]);
  });

  it("reports a cluster without user pools", () => {
    assert.deepEqual(aksZoneRedundancy([cluster(["1", "2", "3"])]), [
      {
        resource: "aks",
        message: "no User-mode node pool: workloads would land on the tainted system pool.",
      },
    ]);
  });
});

describe("policy: pdb-allows-disruption", () => {
  const pdb = (name: string, spec: Props) =>
    res(PDB, name, {
      apiVersion: "policy/v1",
      kind: "PodDisruptionBudget",
      metadata: { name, namespace: "milvus" },
      spec,
    });
  const sel = (app: string) => ({ matchLabels: { "app.kubernetes.io/name": app } });
  const etcd = res(STATEFUL_SET, "etcd", workload("StatefulSet", "etcd", { replicas: 3 }));

  it("accepts maxUnavailable 1 and minAvailable below the replica count", () => {
    assert.deepEqual(
      pdbAllowsDisruption([etcd, pdb("etcd", { maxUnavailable: 1, selector: sel("etcd") })]),
      [],
    );
    assert.deepEqual(
      pdbAllowsDisruption([etcd, pdb("etcd", { minAvailable: 2, selector: sel("etcd") })]),
      [],
    );
    assert.deepEqual(
      pdbAllowsDisruption([etcd, pdb("etcd", { minAvailable: "60%", selector: sel("etcd") })]),
      [],
    );
  });

  it("rejects budgets that allow no disruption", () => {
    assert.deepEqual(pdbAllowsDisruption([etcd, pdb("etcd", { maxUnavailable: 0, selector: sel("etcd") })]), [
      {
        resource: "etcd",
        message:
          "PodDisruptionBudget milvus/etcd: maxUnavailable 0 allows no disruption; use maxUnavailable: 1.",
      },
    ]);
    // 67% of 3 rounds up to 3 (Kubernetes rounds PDB percentages up).
    assert.deepEqual(
      pdbAllowsDisruption([etcd, pdb("etcd", { minAvailable: "67%", selector: sel("etcd") })]),
      [
        {
          resource: "etcd",
          message:
            'PodDisruptionBudget milvus/etcd: minAvailable "67%" with StatefulSet etcd at 3 replicas allows no disruption; use maxUnavailable: 1.',
        },
      ],
    );
  });

  it("uses the HPA's minReplicas as the replica count of an autoscaled workload", () => {
    const proxy = res(DEPLOYMENT, "proxy", workload("Deployment", "proxy"));
    const hpa = res(HPA, "proxy-hpa", {
      kind: "HorizontalPodAutoscaler",
      metadata: { name: "proxy", namespace: "milvus" },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "proxy" },
        minReplicas: 3,
        maxReplicas: 10,
      },
    });
    assert.deepEqual(
      pdbAllowsDisruption([proxy, hpa, pdb("proxy", { minAvailable: 2, selector: sel("proxy") })]),
      [],
    );
    assert.equal(
      pdbAllowsDisruption([proxy, hpa, pdb("proxy", { minAvailable: 3, selector: sel("proxy") })]).length,
      1,
    );
  });

  it("rejects a budget on a singleton and an unverifiable minAvailable", () => {
    const standalone = res(STATEFUL_SET, "milvus", workload("StatefulSet", "milvus", { replicas: 1 }));
    assert.deepEqual(
      pdbAllowsDisruption([standalone, pdb("milvus", { maxUnavailable: 1, selector: sel("milvus") })]),
      [
        {
          resource: "milvus",
          message:
            "PodDisruptionBudget milvus/milvus: covers StatefulSet milvus, which runs 1 replica; a PDB on a singleton either blocks every drain or protects nothing. Remove it (or run more replicas).",
        },
      ],
    );
    assert.deepEqual(pdbAllowsDisruption([pdb("orphan", { minAvailable: 1, selector: sel("nothing") })]), [
      {
        resource: "orphan",
        message:
          "PodDisruptionBudget milvus/orphan: minAvailable 1 selects no Deployment or StatefulSet of this stack, so it cannot be checked against a replica count; use maxUnavailable: 1.",
      },
    ]);
  });
});

describe("policy: container-hygiene", () => {
  it("accepts pinned, sized and probed containers", () => {
    assert.deepEqual(containerHygiene(DEPLOYMENT, workload("Deployment", "proxy", { replicas: 2 })), []);
  });

  it("reports every problem of every container, init containers included", () => {
    const props = workload("StatefulSet", "etcd", {
      containers: [goodContainer("etcd", { image: "quay.io/coreos/etcd:latest", readinessProbe: undefined })],
    });
    (props.spec as Props).template = {
      metadata: { labels: { app: "etcd" } },
      spec: {
        initContainers: [
          {
            name: "init",
            image: "registry.local:5000/tools/busybox",
            resources: { requests: { cpu: "100m" } },
          },
        ],
        containers: [
          goodContainer("etcd", { image: "quay.io/coreos/etcd:latest", readinessProbe: undefined }),
        ],
      },
    };
    assert.deepEqual(containerHygiene(STATEFUL_SET, props), [
      'StatefulSet milvus/etcd initContainer "init": image "registry.local:5000/tools/busybox" has no tag; pin a version tag or a digest.',
      'StatefulSet milvus/etcd initContainer "init": resources.requests missing memory.',
      'StatefulSet milvus/etcd initContainer "init": resources.limits missing cpu and memory.',
      'StatefulSet milvus/etcd container "etcd": image "quay.io/coreos/etcd:latest" uses the floating tag "latest"; pin a version tag or a digest.',
      'StatefulSet milvus/etcd container "etcd": no readinessProbe.',
    ]);
  });

  it("does not ask batch jobs for probes but for a deadline", () => {
    const cronJob = (deadline?: number) => ({
      kind: "CronJob",
      metadata: { name: "backup", namespace: "milvus" },
      spec: {
        schedule: "0 2 * * *",
        jobTemplate: {
          spec: {
            ...(deadline ? { activeDeadlineSeconds: deadline } : {}),
            template: {
              spec: {
                containers: [
                  goodContainer("backup", { livenessProbe: undefined, readinessProbe: undefined }),
                ],
              },
            },
          },
        },
      },
    });
    assert.deepEqual(containerHygiene("kubernetes:batch/v1:CronJob", cronJob(3600)), []);
    assert.deepEqual(containerHygiene("kubernetes:batch/v1:CronJob", cronJob()), [
      "CronJob milvus/backup: no activeDeadlineSeconds; a batch pod has no probes, so a deadline is what stops a hung run.",
    ]);
  });

  it("checks bare Pods and PodTemplates too", () => {
    const template = (container: Props) => ({
      kind: "PodTemplate",
      metadata: { name: "restore", namespace: "milvus" },
      template: { spec: { restartPolicy: "Never", containers: [container] } },
    });
    assert.deepEqual(
      containerHygiene(
        "kubernetes:core/v1:PodTemplate",
        template(goodContainer("restore", { livenessProbe: undefined, readinessProbe: undefined })),
      ),
      [],
    );
    assert.deepEqual(
      containerHygiene(
        "kubernetes:core/v1:PodTemplate",
        template(goodContainer("restore", { image: "milvus-backup" })),
      ),
      [
        'PodTemplate milvus/restore container "restore": image "milvus-backup" has no tag; pin a version tag or a digest.',
      ],
    );
    assert.deepEqual(
      containerHygiene("kubernetes:core/v1:Pod", {
        kind: "Pod",
        metadata: { name: "debug", namespace: "milvus" },
        spec: { containers: [goodContainer("debug", { resources: {} })] },
      }),
      [
        'Pod milvus/debug container "debug": resources.requests missing cpu and memory.',
        'Pod milvus/debug container "debug": resources.limits missing cpu and memory.',
      ],
    );
  });

  it("parses image references: registry ports, digests, tags", () => {
    assert.equal(imagePinProblem("host:5000/milvus:v2.6.24"), undefined);
    assert.equal(imagePinProblem(`milvusdb/milvus@sha256:${"a".repeat(64)}`), undefined);
    assert.equal(imagePinProblem("milvusdb/milvus"), 'image "milvusdb/milvus" has no tag');
    assert.equal(imagePinProblem(undefined), "has no image");
  });

  it("ignores non-workload kinds", () => {
    assert.deepEqual(containerHygiene("kubernetes:core/v1:ConfigMap", { kind: "ConfigMap", data: {} }), []);
  });
});

describe("policy: no-public-load-balancer", () => {
  const svc = (annotations: Props) => ({
    kind: "Service",
    metadata: { name: "milvus", namespace: "milvus", annotations },
    spec: { type: "LoadBalancer", ports: [{ port: 19530 }] },
  });
  it("accepts an internal load balancer", () => {
    assert.deepEqual(
      noPublicLoadBalancer(
        "kubernetes:core/v1:Service",
        svc({ "service.beta.kubernetes.io/azure-load-balancer-internal": "true" }),
      ),
      [],
    );
  });
  it("rejects a public one", () => {
    assert.deepEqual(noPublicLoadBalancer("kubernetes:core/v1:Service", svc({})), [
      'Service milvus/milvus: type LoadBalancer without annotation service.beta.kubernetes.io/azure-load-balancer-internal: "true" gets a public IP; add the annotation (or use ClusterIP).',
    ]);
  });
});

describe("policy: storage-account-hardening", () => {
  const hardened: Props = {
    accountName: "milvusbkprod",
    sku: { name: "Standard_RAGZRS" },
    enableHttpsTrafficOnly: true,
    minimumTlsVersion: "TLS1_2",
    allowBlobPublicAccess: false,
    allowSharedKeyAccess: false,
    networkRuleSet: { defaultAction: "Deny" },
  };
  it("accepts the hardened backup account", () => {
    assert.deepEqual(storageAccountHardening(STORAGE_ACCOUNT, hardened), []);
  });
  it("reports each weakened setting", () => {
    assert.deepEqual(
      storageAccountHardening(STORAGE_ACCOUNT, {
        ...hardened,
        sku: { name: "Standard_LRS" },
        enableHttpsTrafficOnly: false,
        minimumTlsVersion: "TLS1_0",
        allowBlobPublicAccess: true,
        allowSharedKeyAccess: undefined,
        networkRuleSet: { defaultAction: "Allow" },
      }),
      [
        "storage account milvusbkprod: enableHttpsTrafficOnly is false; set it to true (no plain HTTP).",
        'storage account milvusbkprod: minimumTlsVersion is "TLS1_0"; set it to "TLS1_2".',
        "storage account milvusbkprod: allowBlobPublicAccess is true; set it to false (no anonymous reads).",
        "storage account milvusbkprod: allowSharedKeyAccess is null; set it to false (Entra ID identities only, no account keys).",
        'storage account milvusbkprod: networkRuleSet.defaultAction is "Allow"; set it to "Deny" (only the allowed subnets get through).',
        'storage account milvusbkprod: sku "Standard_LRS" is not "Standard_RAGZRS"; the backup account must be zone- and geo-redundant with a readable secondary for the dr stack.',
      ],
    );
  });
  it("requires RA-GZRS only of the backup account", () => {
    assert.deepEqual(
      storageAccountHardening(STORAGE_ACCOUNT, {
        ...hardened,
        accountName: "milvusdataprod",
        sku: { name: "Standard_ZRS" },
      }),
      [],
    );
  });
});

describe("policy: no-plaintext-secrets", () => {
  const SECRET = "kubernetes:core/v1:Secret";
  const secret = (stringData: Props) => ({
    kind: "Secret",
    metadata: { name: "creds", namespace: "milvus" },
    stringData,
  });

  it("accepts Secret values held as Pulumi secrets and env vars from secretKeyRef", () => {
    assert.deepEqual(noPlaintextSecrets(SECRET, secret({ MILVUS_TOKEN: sealed("root:pw") })), []);
    assert.deepEqual(
      noPlaintextSecrets(SECRET, {
        kind: "Secret",
        metadata: { name: "all" },
        stringData: sealed({ a: "b" }),
      }),
      [],
    );
    const env = [
      { name: "MILVUS_TOKEN", valueFrom: { secretKeyRef: { name: "creds", key: "MILVUS_TOKEN" } } },
      { name: "AZURE_FEDERATED_TOKEN_FILE", value: "/var/run/secrets/token" },
      { name: "MILVUS_ADDRESS", value: "milvus:19530" },
    ];
    assert.deepEqual(
      noPlaintextSecrets(
        DEPLOYMENT,
        workload("Deployment", "w", { containers: [goodContainer("w", { env })] }),
      ),
      [],
    );
  });

  it("rejects a plain Secret value when secretness is observable, and only then", () => {
    const props = secret({ MILVUS_TOKEN: "root:Milvus" });
    assert.deepEqual(noPlaintextSecrets(SECRET, props), [
      "Secret milvus/creds: stringData.MILVUS_TOKEN is not a Pulumi secret; wrap it with pulumi.secret() or generate it with @pulumi/random so the state stores it encrypted.",
    ]);
    assert.deepEqual(noPlaintextSecrets(SECRET, props, { secretsObservable: false }), []);
  });

  it("rejects credential-named env vars with literal values, even when the value is a Pulumi secret", () => {
    const env = [
      { name: "MINIO_ROOT_PASSWORD", value: sealed("hunter2") },
      { name: "AZURE_STORAGE_KEY", value: "abc" },
    ];
    assert.deepEqual(
      noPlaintextSecrets(
        DEPLOYMENT,
        workload("Deployment", "minio", { containers: [goodContainer("minio", { env })] }),
      ),
      [
        'Deployment milvus/minio container "minio": env MINIO_ROOT_PASSWORD has a literal value; use valueFrom.secretKeyRef (a literal is stored in plain text in the pod spec).',
        'Deployment milvus/minio container "minio": env AZURE_STORAGE_KEY has a literal value; use valueFrom.secretKeyRef (a literal is stored in plain text in the pod spec).',
      ],
    );
  });

  it("finds account keys and SAS signatures in any resource, and credential keys in ConfigMaps", () => {
    const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    assert.deepEqual(
      noPlaintextSecrets("kubernetes:helm.sh/v3:Release", {
        name: "app",
        values: {
          storage: {
            conn: `DefaultEndpointsProtocol=https;AccountName=a;AccountKey=${key};EndpointSuffix=core.windows.net`,
          },
        },
      }),
      [
        "Release app: values.storage.conn contains a storage account key (connection string) in plain text; use a managed identity or a Pulumi secret in a Kubernetes Secret.",
      ],
    );
    assert.deepEqual(
      noPlaintextSecrets("kubernetes:core/v1:ConfigMap", {
        kind: "ConfigMap",
        metadata: { name: "cfg", namespace: "milvus" },
        data: {
          "minio.secretAccessKey": "minioadmin",
          url: "https://a.blob.core.windows.net/c?sv=2024&sig=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789%2B",
        },
      }),
      [
        "ConfigMap milvus/cfg: data.url contains a SAS token signature in plain text; use a managed identity or a Pulumi secret in a Kubernetes Secret.",
        "ConfigMap milvus/cfg: key minio.secretAccessKey looks like a credential; ConfigMaps are plain text, put it in a Secret.",
      ],
    );
  });
});

describe("policy: milvus-standalone-single-replica", () => {
  const standaloneLabels = {
    "app.kubernetes.io/name": "milvus",
    "app.kubernetes.io/component": "standalone",
  };

  it("accepts a single-replica standalone StatefulSet and a replicated cluster-mode proxy", () => {
    assert.deepEqual(
      milvusStandaloneSingleReplica([
        res(
          STATEFUL_SET,
          "standalone",
          workload("StatefulSet", "milvus-standalone", { replicas: 1, labels: standaloneLabels }),
        ),
        res(
          DEPLOYMENT,
          "proxy",
          workload("Deployment", "milvus-proxy", {
            replicas: 3,
            labels: { "app.kubernetes.io/name": "milvus", "app.kubernetes.io/component": "proxy" },
          }),
        ),
      ]),
      [],
    );
  });

  it("rejects replicas, an HPA and a rolling Deployment for standalone, found by label or by command", () => {
    const byCommand = workload("Deployment", "vectordb", {
      replicas: 3,
      labels: { app: "vectordb" },
      containers: [goodContainer("milvus", { command: ["/milvus/bin/milvus", "run", "standalone"] })],
    });
    const hpa = res(HPA, "vectordb-hpa", {
      kind: "HorizontalPodAutoscaler",
      metadata: { name: "vectordb", namespace: "milvus" },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "vectordb" },
        minReplicas: 1,
        maxReplicas: 3,
      },
    });
    assert.deepEqual(milvusStandaloneSingleReplica([res(DEPLOYMENT, "vectordb", byCommand), hpa]), [
      {
        resource: "vectordb",
        message:
          "Deployment milvus/vectordb (standalone Milvus): replicas 3; standalone must run exactly 1 (use cluster mode to scale).",
      },
      {
        resource: "vectordb-hpa",
        message:
          "Deployment milvus/vectordb (standalone Milvus): targeted by HorizontalPodAutoscaler vectordb (maxReplicas 3); remove it, standalone cannot scale out.",
      },
      {
        resource: "vectordb",
        message:
          'Deployment milvus/vectordb (standalone Milvus): rollout strategy "RollingUpdate" starts the new pod before the old one stops; use strategy.type "Recreate".',
      },
    ]);
    const labelled = workload("StatefulSet", "milvus-standalone", { replicas: 2, labels: standaloneLabels });
    assert.deepEqual(milvusStandaloneSingleReplica([res(STATEFUL_SET, "s", labelled)]), [
      {
        resource: "s",
        message:
          "StatefulSet milvus/milvus-standalone (standalone Milvus): replicas 2; standalone must run exactly 1 (use cluster mode to scale).",
      },
    ]);
  });
});

describe("policy pack wiring", () => {
  it("enforces mandatory for prod-like and unknown environments, advisory for dev", () => {
    assert.deepEqual(["dev", "staging", "prod", "dr", undefined].map(enforcementFor), [
      "advisory",
      "mandatory",
      "mandatory",
      "mandatory",
      "mandatory",
    ]);
  });

  it("finds the environment of the stack named by MILVUS_AKS_STACK from its stack file", () => {
    assert.deepEqual(environmentOfStack("prod", ROOT), { environment: "prod" });
    assert.deepEqual(environmentOfStack("acme/milvus-aks/dev", ROOT), { environment: "dev" });
    assert.deepEqual(environmentOfStack(undefined, ROOT), { reason: "MILVUS_AKS_STACK is not set" });
    assert.match(JSON.stringify(environmentOfStack("nosuch", ROOT)), /Pulumi\.nosuch\.yaml does not exist/);
  });

  it("has unique policy names, none reserved by @pulumi/policy", () => {
    const names = policyDefinitions(false).map((p) => p.name);
    assert.equal(new Set(names).size, names.length);
    assert.ok(!names.includes("all"));
    assert.equal(names.length, 8);
  });

  it("evaluate() tags violations with the policy and the enforcement of the environment", () => {
    const v = evaluate(
      [
        res("kubernetes:core/v1:Service", "svc", {
          kind: "Service",
          metadata: { name: "m" },
          spec: { type: "LoadBalancer" },
        }),
      ],
      "dev",
    );
    assert.deepEqual(
      v.map((x) => [x.policy, x.enforcement, x.resource]),
      [["no-public-load-balancer", "advisory", "svc"]],
    );
  });
});
