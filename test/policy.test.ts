import * as assert from "node:assert/strict";
import * as policySdk from "@pulumi/policy";
import { specialSecretSig, specialSigKey, unknownValue } from "@pulumi/pulumi/runtime/rpc";
import {
  AKS_AUDIT_CATEGORIES as PROGRAM_AKS_CATEGORIES,
  BLOB_AUDIT_CATEGORIES as PROGRAM_BLOB_CATEGORIES,
} from "../components/azure/auditDiagnostics";
import { milvusDefaults } from "../components/data/milvus";
import { milvusAccessDefaults } from "../components/backupDeployment/milvusAccess";
import { MILVUS_TLS_SECRET as PROGRAM_TLS_SECRET } from "../components/data/milvusCertificates";
import { APP, appLabels } from "../components/common/naming";
import { aksClusterSettings, aksZoneRedundancy, AGENT_POOL, MANAGED_CLUSTER } from "../policy/aks";
import { Props, StackResource } from "../policy/common";
import { milvusStandaloneSingleReplica } from "../policy/milvus";
import { noPublicLoadBalancer } from "../policy/network";
import { pdbAllowsDisruption } from "../policy/pdb";
import { enforcementFor, environmentOfStack, evaluate, policyDefinitions } from "../policy/policies";
import { noPlaintextSecrets } from "../policy/secrets";
import {
  ACCESS_JOB_LABELS,
  AKS_AUDIT_CATEGORIES,
  auditDiagnostics,
  BLOB_AUDIT_CATEGORIES,
  DIAGNOSTIC_SETTING,
  encryptionAtHost,
  MILVUS_CONFIG_SECRET,
  MILVUS_TLS_SECRET,
  milvusTls,
  noRootCredentials,
  ROOT_CREDENTIALS_SECRET,
} from "../policy/security";
import { STORAGE_ACCOUNT, storageAccountHardening } from "../policy/storage";
import { containerHygiene, imagePinProblem } from "../policy/workloads";
import { renderStack, revealSecrets, ROOT } from "../tools/offline-runtime";

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

/** Renders of the program, shared by the security policies' tests (each render runs the whole program). */
const renders = new Map<string, Promise<StackResource[]>>();
function rendered(stack: string, overrides: Record<string, unknown> = {}): Promise<StackResource[]> {
  const key = `${stack} ${JSON.stringify(overrides)}`;
  let r = renders.get(key);
  if (!r) {
    r = renderStack(stack, { overrides }).then((result) =>
      result.resources.map((x) => ({ type: x.type, name: x.name, props: x.inputs })),
    );
    renders.set(key, r);
  }
  return r;
}
/** What a real policy run sees: secrets already unwrapped (pulumi/pulumi-policy#241). */
const unwrapped = (rs: StackResource[]) => rs.map((r) => ({ ...r, props: revealSecrets(r.props) as Props }));
/** @pulumi/policy exports these, but its published proxy.d.ts declares nothing (internal), so type them here. */
const { unknownCheckingProxy, UnknownValueError } = policySdk as unknown as {
  unknownCheckingProxy: (props: unknown) => unknown;
  UnknownValueError: new (...args: never[]) => Error;
};
/** What a preview hands a stack policy: values not known yet throw on access, as in @pulumi/policy. */
const asInPreview = (rs: StackResource[]) =>
  rs.map((r) => ({ ...r, props: unknownCheckingProxy(r.props) as Props }));
const byName = (rs: StackResource[], name: string) => {
  const found = rs.find((r) => r.name === name);
  assert.ok(found, `no resource ${name}`);
  return found;
};
const copy = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
/** The resources with one resource's props replaced (or removed, with `undefined`). */
function withProps(rs: StackResource[], name: string, change: (props: Props) => Props | undefined) {
  byName(rs, name);
  return rs.flatMap((r) => {
    if (r.name !== name) return [r];
    const props = change(copy(r.props));
    return props === undefined ? [] : [{ ...r, props }];
  });
}
const podSpecOf = (props: Props): Props => ((props.spec as Props).template as Props).spec as Props;

describe("policy: the security policies name what the program deploys", () => {
  it("uses the program's Secret names, labels and log categories", () => {
    assert.equal(MILVUS_TLS_SECRET, PROGRAM_TLS_SECRET);
    assert.equal(MILVUS_CONFIG_SECRET, milvusDefaults("v2.6.24").configSecretName);
    assert.equal(ROOT_CREDENTIALS_SECRET, milvusAccessDefaults().rootSecretName);
    assert.deepEqual(AKS_AUDIT_CATEGORIES, [...PROGRAM_AKS_CATEGORIES]);
    assert.deepEqual(BLOB_AUDIT_CATEGORIES, [...PROGRAM_BLOB_CATEGORIES]);
    const accessLabels = appLabels(APP.backup, "access");
    for (const [k, v] of Object.entries(ACCESS_JOB_LABELS)) assert.equal(accessLabels[k], v);
  });
});

describe("policy: milvus-tls", () => {
  const TLS_FIX = "set security.tls.enabled: true in the stack's milvus-aks:security config.";
  const NO_CERT = `Milvus runs in namespace milvus (Deployment milvus/milvus-mixcoord) but no cert-manager Certificate there has spec.secretName "milvus-tls", so Milvus has no server certificate; ${TLS_FIX}`;
  const PROXY_UNMOUNTED = `Deployment milvus/milvus-proxy (client-facing Milvus proxy): no container mounts a volume of Secret "milvus-tls", so it cannot serve TLS; ${TLS_FIX}`;
  const tlsModeMessage = (shown: string) =>
    `Secret milvus/milvus-config: user.yaml has common.security.tlsMode ${shown}; Milvus then accepts clients in plain text (1 = TLS, 2 = mutual TLS); ${TLS_FIX}`;
  const PROXY = "milvus-prod-data-milvus-proxy";
  const CONFIG = "milvus-prod-data-milvus-config";
  let prod: StackResource[];
  let dev: StackResource[];
  before(async function () {
    this.timeout(120_000);
    [prod, dev] = await Promise.all([rendered("prod"), rendered("dev")]);
  });
  /** prod with user.yaml replaced (the rendered Secret keeps its payload as one Pulumi secret). */
  const withUserYaml = (edit: (text: string) => string) =>
    withProps(prod, CONFIG, (p) => {
      const payload = (p.stringData as Props).value as Props;
      return { ...p, stringData: sealed({ ...payload, "user.yaml": edit(String(payload["user.yaml"])) }) };
    });

  it("accepts the render of prod (cluster mode) and dev (standalone), sealed or unwrapped", () => {
    for (const rs of [prod, dev]) {
      assert.deepEqual(milvusTls(rs), []);
      assert.deepEqual(milvusTls(unwrapped(rs)), []);
    }
    // The check really read user.yaml: it is there, with TLS on.
    assert.match(JSON.stringify(byName(prod, CONFIG).props), /tlsMode: 1/);
  });

  it("does not apply to a stack without Milvus workloads", () => {
    const milvusWorkload = (r: StackResource) =>
      ["Deployment", "StatefulSet"].includes(String(r.props.kind)) &&
      ((r.props.metadata as Props).labels as Props)["app.kubernetes.io/name"] === "milvus";
    const withoutMilvus = withUserYaml((t) => t.replace("tlsMode: 1", "tlsMode: 0")).filter(
      (r) => !milvusWorkload(r) && r.props.kind !== "Certificate",
    );
    assert.deepEqual(milvusTls(withoutMilvus), []);
  });

  it("reports prod rendered with security.tls.enabled false: no Certificate, no mount, tlsMode 0", async () => {
    const plain = await rendered("prod", { "milvus-aks:security": { tls: { enabled: false } } });
    assert.deepEqual(milvusTls(plain), [
      { resource: "milvus-prod-data-milvus-mixcoord", message: NO_CERT },
      { resource: PROXY, message: PROXY_UNMOUNTED },
      { resource: CONFIG, message: tlsModeMessage("0") },
    ]);
    const standalone = await rendered("dev", { "milvus-aks:security": { tls: { enabled: false } } });
    assert.deepEqual(
      milvusTls(standalone).map((v) => v.message),
      [
        NO_CERT.replace("Deployment milvus/milvus-mixcoord", "StatefulSet milvus/milvus-standalone"),
        `StatefulSet milvus/milvus-standalone (client-facing Milvus standalone): no container mounts a volume of Secret "milvus-tls", so it cannot serve TLS; ${TLS_FIX}`,
        tlsModeMessage("0"),
      ],
    );
  });

  it("requires the Certificate of milvus-tls in Milvus's namespace", () => {
    const cert = "milvus-prod-data-certificates-milvus-tls";
    assert.deepEqual(milvusTls(withProps(prod, cert, () => undefined)), [
      { resource: "milvus-prod-data-milvus-mixcoord", message: NO_CERT },
    ]);
    const elsewhere = withProps(prod, cert, (p) => ({
      ...p,
      metadata: { ...(p.metadata as Props), namespace: "apps" },
    }));
    assert.deepEqual(
      milvusTls(elsewhere).map((v) => v.message),
      [NO_CERT],
    );
  });

  it("requires the client-facing pods to mount milvus-tls, not the other components", () => {
    const unmounted = withProps(prod, PROXY, (p) => {
      const container = (podSpecOf(p).containers as Props[])[0];
      container.volumeMounts = (container.volumeMounts as Props[]).filter((m) => m.name !== "tls");
      return p;
    });
    assert.deepEqual(milvusTls(unmounted), [{ resource: PROXY, message: PROXY_UNMOUNTED }]);
    const noVolume = withProps(prod, PROXY, (p) => {
      const spec = podSpecOf(p);
      spec.volumes = (spec.volumes as Props[]).filter((v) => v.name !== "tls");
      return p;
    });
    assert.deepEqual(milvusTls(noVolume), [{ resource: PROXY, message: PROXY_UNMOUNTED }]);
    const querynode = withProps(prod, "milvus-prod-data-milvus-querynode", (p) => {
      const spec = podSpecOf(p);
      spec.volumes = (spec.volumes as Props[]).filter((v) => v.name !== "tls");
      return p;
    });
    assert.deepEqual(milvusTls(querynode), []);
  });

  it("requires tlsMode 1 or 2 in user.yaml, from stringData or base64 data", () => {
    assert.deepEqual(milvusTls(withUserYaml((t) => t.replace("tlsMode: 1", "tlsMode: 0"))), [
      { resource: CONFIG, message: tlsModeMessage("0") },
    ]);
    assert.deepEqual(milvusTls(withUserYaml((t) => t.replace("    tlsMode: 1\n", ""))), [
      { resource: CONFIG, message: tlsModeMessage("unset (Milvus defaults to 0)") },
    ]);
    assert.deepEqual(milvusTls(withUserYaml((t) => t.replace("tlsMode: 1", "tlsMode: 2"))), []);
    assert.deepEqual(milvusTls(withUserYaml(() => "common: [unclosed")), [
      {
        resource: CONFIG,
        message:
          "Secret milvus/milvus-config: user.yaml is not valid YAML, so common.security.tlsMode cannot be checked.",
      },
    ]);
    // A Secret's outputs (what a stack policy sees after `pulumi up`) keep only base64 `data`.
    const asOutputs = withProps(unwrapped(prod), CONFIG, (p) => {
      const text = String((p.stringData as Props)["user.yaml"]).replace("tlsMode: 1", "tlsMode: 0");
      return { ...p, stringData: undefined, data: { "user.yaml": Buffer.from(text).toString("base64") } };
    });
    assert.deepEqual(milvusTls(asOutputs), [{ resource: CONFIG, message: tlsModeMessage("0") }]);
  });

  it("skips user.yaml while it is unknown (a first preview: it embeds generated passwords)", () => {
    const preview = asInPreview(withProps(prod, CONFIG, (p) => ({ ...p, stringData: unknownValue })));
    assert.throws(() => byName(preview, CONFIG).props.stringData, UnknownValueError);
    assert.deepEqual(milvusTls(preview), []);
  });
});

describe("policy: audit-diagnostics", () => {
  const AUDIT_FIX = "set security.audit.enabled: true in the stack's milvus-aks:security config.";
  const CLUSTER_MISSING = `ManagedCluster milvus-prod-aks: no DiagnosticSetting enables kube-audit-admin and guard, so its Kubernetes audit log and Entra ID authorization decisions are not kept; ${AUDIT_FIX}`;
  const blobMissing = (account: string, settings: number, accounts: number) =>
    `storage account ${account}: no DiagnosticSetting on its blob service (<account id>/blobServices/default) enables StorageRead, StorageWrite, StorageDelete (${settings} such settings for ${accounts} storage accounts), so blob reads, writes and deletes are not logged; ${AUDIT_FIX}`;
  const AKS_SETTING = "milvus-prod-audit-cluster-aks";
  const BLOB_SETTING = "milvus-prod-audit-backup-blob-backup";
  let prod: StackResource[];
  let account: string;
  before(async function () {
    this.timeout(120_000);
    prod = await rendered("prod");
    account = String(byName(prod, "milvus-prod-backup-account").props.accountName);
  });
  const logsOf = (rs: StackResource[], name: string) => byName(rs, name).props.logs as Props[];

  it("accepts the render of prod, and of prod with Milvus on Azure Blob (two accounts, two blob settings)", async () => {
    assert.deepEqual(auditDiagnostics(prod), []);
    const blob = await rendered("prod", { "milvus-aks:objectStore": "azureBlob" });
    assert.equal(blob.filter((r) => r.type === STORAGE_ACCOUNT).length, 2);
    assert.deepEqual(auditDiagnostics(blob), []);
  });

  it("accepts a preview, where the resourceUri of every setting is still unknown", () => {
    const preview = asInPreview(
      prod.map((r) =>
        r.type === DIAGNOSTIC_SETTING ? { ...r, props: { ...r.props, resourceUri: unknownValue } } : r,
      ),
    );
    assert.throws(() => byName(preview, AKS_SETTING).props.resourceUri, UnknownValueError);
    assert.deepEqual(auditDiagnostics(preview), []);
  });

  it("accepts outputs, which carry ARM ids instead of resourceUri", () => {
    const rg = "/subscriptions/s/resourceGroups/milvus-prod-rg/providers";
    const outputs = prod.map((r) => {
      if (r.type !== DIAGNOSTIC_SETTING) return r;
      const target =
        r.name === AKS_SETTING
          ? `${rg}/Microsoft.ContainerService/managedClusters/milvus-prod-aks`
          : `${rg}/Microsoft.Storage/storageAccounts/${account}/blobServices/default`;
      const { resourceUri: _uri, ...rest } = r.props;
      return {
        ...r,
        props: {
          ...rest,
          id: `${target}/providers/Microsoft.Insights/diagnosticSettings/audit-to-log-analytics`,
        },
      };
    });
    assert.deepEqual(auditDiagnostics(outputs), []);
    // The same blob setting on the file service is not a blob audit setting.
    const fileService = outputs.map((r) =>
      r.name === BLOB_SETTING
        ? { ...r, props: { ...r.props, id: String(r.props.id).replace("blobServices", "fileServices") } }
        : r,
    );
    assert.deepEqual(auditDiagnostics(fileService), [
      { resource: "milvus-prod-backup-account", message: blobMissing(account, 0, 1) },
    ]);
  });

  it("reports prod rendered with security.audit.enabled false", async () => {
    const off = await rendered("prod", { "milvus-aks:security": { audit: { enabled: false } } });
    assert.deepEqual(auditDiagnostics(off), [
      { resource: "milvus-prod-aks", message: CLUSTER_MISSING },
      { resource: "milvus-prod-backup-account", message: blobMissing(account, 0, 1) },
    ]);
  });

  it("reports a setting that leaves one of its categories off, and the resource it leaves uncovered", () => {
    const noGuard = withProps(prod, AKS_SETTING, (p) => ({
      ...p,
      logs: [
        { category: "kube-audit-admin", enabled: true },
        { category: "guard", enabled: false },
      ],
    }));
    assert.deepEqual(auditDiagnostics(noGuard), [
      {
        resource: AKS_SETTING,
        message:
          "DiagnosticSetting audit-to-log-analytics: guard not enabled; the AKS audit setting enables kube-audit-admin, guard.",
      },
      { resource: "milvus-prod-aks", message: CLUSTER_MISSING },
    ]);
    const noDeletes = withProps(prod, BLOB_SETTING, (p) => ({
      ...p,
      logs: (p.logs as Props[]).filter((l) => l.category !== "StorageDelete"),
    }));
    assert.deepEqual(auditDiagnostics(noDeletes), [
      {
        resource: BLOB_SETTING,
        message:
          "DiagnosticSetting audit-to-log-analytics: StorageDelete not enabled; a blob audit setting enables StorageRead, StorageWrite, StorageDelete.",
      },
      { resource: "milvus-prod-backup-account", message: blobMissing(account, 0, 1) },
    ]);
    // The allLogs category group contains every category.
    const allLogs = withProps(prod, AKS_SETTING, (p) => ({
      ...p,
      logs: [{ categoryGroup: "allLogs", enabled: true }],
    }));
    assert.deepEqual(auditDiagnostics(allLogs), []);
    assert.deepEqual(logsOf(prod, AKS_SETTING).length, 2);
  });

  it("counts blob settings against storage accounts, and never gives one setting to two owners", () => {
    const secondAccount = res(STORAGE_ACCOUNT, "extra", { accountName: "milvusextra" });
    assert.deepEqual(auditDiagnostics([...prod, secondAccount]), [
      { resource: "extra", message: blobMissing("milvusextra", 1, 2) },
    ]);
    // Two settings on cluster A do not cover cluster B.
    const a = `/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a`;
    const setting = (name: string) =>
      res(DIAGNOSTIC_SETTING, name, { name, resourceUri: a, logs: logsOf(prod, AKS_SETTING) });
    assert.deepEqual(
      auditDiagnostics([
        res(MANAGED_CLUSTER, "a", { resourceName: "a" }),
        res(MANAGED_CLUSTER, "b", { resourceName: "b" }),
        setting("one"),
        setting("two"),
      ]),
      [{ resource: "b", message: CLUSTER_MISSING.replace("milvus-prod-aks", "b") }],
    );
  });
});

describe("policy: encryption-at-host", () => {
  let prod: StackResource[];
  before(async function () {
    this.timeout(120_000);
    prod = await rendered("prod");
  });

  it("accepts every resource of the prod render", () => {
    const checked = prod.filter((r) => [MANAGED_CLUSTER, AGENT_POOL, STORAGE_ACCOUNT].includes(r.type));
    assert.equal(checked.length, 5);
    for (const r of prod) assert.deepEqual(encryptionAtHost(r.type, r.props), [], r.name);
  });

  it("reports prod rendered with security.encryption atHost and infrastructure false", async () => {
    const off = await rendered("prod", {
      "milvus-aks:security": { encryption: { atHost: false, infrastructure: false } },
    });
    const found = off.flatMap((r) => encryptionAtHost(r.type, r.props).map((m) => `${r.name}: ${m}`));
    const atHost = (pool: string) =>
      `node pool "${pool}": enableEncryptionAtHost is false; set it to true (security.encryption.atHost) so temp disks, disk caches and ephemeral OS disks are encrypted on the host.`;
    const account = String(byName(off, "milvus-prod-backup-account").props.accountName);
    assert.deepEqual(found, [
      `milvus-prod-backup-account: storage account ${account}: encryption.requireInfrastructureEncryption is false; set it to true (security.encryption.infrastructure) for a second layer of encryption at rest. Azure accepts it only when the account is created, so an existing account has to be replaced.`,
      `milvus-prod-aks: ${atHost("system")}`,
      `milvus-prod-data1: ${atHost("data1")}`,
      `milvus-prod-data2: ${atHost("data2")}`,
      `milvus-prod-data3: ${atHost("data3")}`,
    ]);
  });

  it("reports a missing setting as null, on inline pools, AgentPools and accounts alike", () => {
    assert.deepEqual(
      encryptionAtHost(MANAGED_CLUSTER, {
        agentPoolProfiles: [{ name: "system", enableEncryptionAtHost: true }, { name: "user" }],
      }),
      [
        'node pool "user": enableEncryptionAtHost is null; set it to true (security.encryption.atHost) so temp disks, disk caches and ephemeral OS disks are encrypted on the host.',
      ],
    );
    assert.deepEqual(encryptionAtHost(AGENT_POOL, { agentPoolName: "data1" }).length, 1);
    assert.deepEqual(encryptionAtHost(STORAGE_ACCOUNT, { accountName: "milvusbkprod" }), [
      "storage account milvusbkprod: encryption.requireInfrastructureEncryption is null; set it to true (security.encryption.infrastructure) for a second layer of encryption at rest. Azure accepts it only when the account is created, so an existing account has to be replaced.",
    ]);
    assert.deepEqual(encryptionAtHost("kubernetes:core/v1:Secret", {}), []);
  });
});

describe("policy: no-root-credentials", () => {
  const ONLY_ACCESS =
    "Secret milvus-root-credentials; only the access Job (a Job labelled app.kubernetes.io/name=milvus-backup, app.kubernetes.io/component=access) may use the Milvus root user. Give the workload its own Milvus user (access.users).";
  const CRONJOB = "milvus-prod-backup-worker-cronjob";
  const ACCESS_JOB = "milvus-prod-access-job";
  let prod: StackResource[];
  before(async function () {
    this.timeout(120_000);
    prod = await rendered("prod");
  });
  it("accepts the render of prod: the access Job alone reads the root Secret", () => {
    assert.deepEqual(noRootCredentials(prod), []);
    assert.deepEqual(noRootCredentials(unwrapped(prod)), []);
    assert.deepEqual(noRootCredentials(asInPreview(prod)), []);
    assert.match(JSON.stringify(byName(prod, ACCESS_JOB).props), /"name":"milvus-root-credentials"/);
  });

  it("reports the backup CronJob switched to the root Secret, in its init container and container", () => {
    const switched = withProps(
      prod,
      CRONJOB,
      (p) =>
        JSON.parse(
          JSON.stringify(p).replaceAll('"milvus-backup-credentials"', '"milvus-root-credentials"'),
        ) as Props,
    );
    assert.deepEqual(noRootCredentials(switched), [
      {
        resource: CRONJOB,
        message: `CronJob milvus/milvus-backup: initContainer "backup" env MILVUS_TOKEN reads ${ONLY_ACCESS}`,
      },
      {
        resource: CRONJOB,
        message: `CronJob milvus/milvus-backup: initContainer "backup-rbac" env MILVUS_TOKEN reads ${ONLY_ACCESS}`,
      },
      {
        resource: CRONJOB,
        message: `CronJob milvus/milvus-backup: container "prune" env MILVUS_TOKEN reads ${ONLY_ACCESS}`,
      },
    ]);
  });

  it("reports envFrom, Secret volumes and projected volumes", () => {
    const w = workload("Deployment", "app", {
      containers: [goodContainer("app", { envFrom: [{ secretRef: { name: "milvus-root-credentials" } }] })],
    });
    const spec = podSpecOf(w);
    spec.volumes = [
      { name: "root", secret: { secretName: "milvus-root-credentials" } },
      { name: "all", projected: { sources: [{ secret: { name: "milvus-root-credentials" } }] } },
    ];
    assert.deepEqual(
      noRootCredentials([res(DEPLOYMENT, "app", w)]).map((v) => v.message),
      [
        `Deployment milvus/app: container "app" envFrom loads ${ONLY_ACCESS}`,
        `Deployment milvus/app: volume "root" holds ${ONLY_ACCESS}`,
        `Deployment milvus/app: volume "all" holds ${ONLY_ACCESS}`,
      ],
    );
  });

  it("exempts only a Job with both access labels", () => {
    const job = byName(prod, ACCESS_JOB);
    const relabel = (kind: string, labels: Props): StackResource => {
      const props = copy(job.props);
      props.kind = kind;
      props.metadata = { ...(props.metadata as Props), labels };
      return { ...job, props };
    };
    const access = { "app.kubernetes.io/name": "milvus-backup", "app.kubernetes.io/component": "access" };
    assert.deepEqual(noRootCredentials([relabel("Job", access)]), []);
    const worker = noRootCredentials([
      relabel("Job", { ...access, "app.kubernetes.io/component": "worker" }),
    ]);
    assert.deepEqual(
      worker.map((v) => v.message),
      [
        `Job milvus/${String((job.props.metadata as Props).name)}: container "apply-access" env MILVUS_TOKEN reads ${ONLY_ACCESS}`,
      ],
    );
    // The same pod template in a Pod (not a Job) is not the access Job, whatever its labels.
    const pod = copy(job.props);
    const podProps = { kind: "Pod", metadata: pod.metadata, spec: podSpecOf(pod) };
    assert.equal(noRootCredentials([res("kubernetes:core/v1:Pod", "p", podProps)]).length, 1);
  });

  it("reports another Secret holding a root token, in stringData or base64 data", () => {
    const secret = "milvus-prod-backup-worker-credentials";
    const rootToken = withProps(prod, secret, (p) => ({
      ...p,
      stringData: sealed({ MILVUS_TOKEN: "root:pw" }),
    }));
    const message =
      'Secret milvus/milvus-backup-credentials: stringData.MILVUS_TOKEN holds a Milvus root token ("root:..."); only Secret milvus-root-credentials may, for the access Job. Give the workload its own Milvus user (access.users).';
    assert.deepEqual(noRootCredentials(rootToken), [{ resource: secret, message }]);
    const asOutputs = withProps(prod, secret, (p) => ({
      ...p,
      stringData: undefined,
      data: { MILVUS_TOKEN: Buffer.from("root:pw").toString("base64") },
    }));
    assert.deepEqual(noRootCredentials(asOutputs), [
      { resource: secret, message: message.replace("stringData.", "data.") },
    ]);
    // Unknown in a preview (the password is generated): nothing to read, nothing reported.
    assert.deepEqual(
      noRootCredentials(
        asInPreview(withProps(prod, secret, (p) => ({ ...p, stringData: { MILVUS_TOKEN: unknownValue } }))),
      ),
      [],
    );
  });

  it("reports a literal root token in an env var, even as a Pulumi secret", () => {
    const w = workload("Deployment", "app", {
      containers: [goodContainer("app", { env: [{ name: "MILVUS_AUTH", value: sealed("root:Milvus") }] })],
    });
    assert.deepEqual(noRootCredentials([res(DEPLOYMENT, "app", w)]), [
      {
        resource: "app",
        message:
          'Deployment milvus/app: container "app" env MILVUS_AUTH holds a literal Milvus root token ("root:..."); no workload may carry root credentials. Give the workload its own Milvus user (access.users).',
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
    assert.equal(names.length, 12);
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
