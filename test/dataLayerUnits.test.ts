import * as assert from "node:assert/strict";
import * as yaml from "js-yaml";
import { defaultsFor, MilvusConfig, parseStackConfig } from "../components/common/config";
import { configErrors } from "./support/config";
import { etcdDefaults } from "../components/data/etcd";
import { milvusBlobStorageDefaults } from "../components/azure/milvusBlobStorage";
import { milvusDefaults, milvusProbes, milvusTopology } from "../components/data/milvus";
import { milvusUserConfig, renderMilvusUserConfig } from "../components/data/milvusConfig";
import { minioDefaults } from "../components/data/minio";
import { dataNamespaceDefaults } from "../components/data/namespaces";
import { dataNetworkPolicies } from "../components/data/networkPolicies";
import { zoneSpread } from "../components/data/podSpec";
import { storageClassDefaults } from "../components/data/storageClasses";

const prodMilvus = (): MilvusConfig => structuredClone(defaultsFor("prod").milvus);

describe("data layer defaults", () => {
  it("builds the cluster topology and one standalone pod for dev", () => {
    const cluster = milvusTopology(prodMilvus());
    assert.deepEqual(
      cluster.map((w) => [w.role, w.kind, w.replicas, w.hpa?.minReplicas, w.hpa?.maxReplicas, w.pdb]),
      [
        ["mixcoord", "Deployment", 2, undefined, undefined, true],
        ["proxy", "Deployment", undefined, 3, 10, true],
        ["querynode", "StatefulSet", undefined, 3, 6, true],
        ["datanode", "Deployment", 2, undefined, undefined, true],
        ["streamingnode", "StatefulSet", 2, undefined, undefined, true],
      ],
    );
    assert.deepEqual(cluster.find((w) => w.role === "querynode")?.hpa?.scaleDown, {
      selectPolicy: "Disabled",
    });
    assert.deepEqual(
      cluster.filter((w) => w.clientFacing).map((w) => w.role),
      ["proxy"],
    );
    const standalone = milvusTopology({ ...defaultsFor("dev").milvus, mode: "standalone" });
    assert.deepEqual(
      standalone.map((w) => [w.role, w.kind, w.replicas, w.hpa, w.pdb, w.volume]),
      [["standalone", "StatefulSet", 1, undefined, false, { kind: "pvc", sizeGi: 100 }]],
    );
  });

  it("refuses a replicated standalone even if config validation were bypassed", () => {
    const m = { ...defaultsFor("dev").milvus, mode: "standalone" as const };
    m.standalone = { ...m.standalone, replicas: 3 };
    assert.throws(
      () => milvusTopology(m),
      /milvus.standalone.replicas = 3: standalone Milvus must run exactly 1 replica/,
    );
  });

  it("uses the required probe timings: TCP for alive, /healthz for ready", () => {
    const p = milvusProbes(60);
    // Liveness and startup are TCP on 9091 as in milvus-operator and milvus-helm: /healthz answers 500
    // until every component is Healthy or StandBy (milvus internal/http/healthz/healthz_handler.go).
    assert.deepEqual(p.startupProbe.tcpSocket, { port: "metrics" });
    assert.deepEqual(p.livenessProbe, {
      tcpSocket: { port: "metrics" },
      initialDelaySeconds: 30,
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 3,
    });
    assert.deepEqual(p.readinessProbe, {
      httpGet: { path: "/healthz", port: "metrics" },
      initialDelaySeconds: 15,
      periodSeconds: 5,
      timeoutSeconds: 3,
      failureThreshold: 2,
    });
    assert.equal(p.startupProbe.failureThreshold * p.startupProbe.periodSeconds, 600);
  });

  it("pins the Milvus image to the configured tag and runs it as a non-root user", () => {
    const d = milvusDefaults("v2.6.24");
    assert.equal(d.image, "milvusdb/milvus:v2.6.24");
    assert.equal(d.runAsUser, 999);
    assert.equal(d.runAsGroup, 0);
  });

  it("renders milvus.yaml for Azure Blob with workload identity and no keys", () => {
    const text = renderMilvusUserConfig({
      mode: "standalone",
      etcdEndpoints: ["etcd-0.etcd-headless.milvus.svc.cluster.local:2379"],
      objectStore: { kind: "azureBlob", accountName: "milvusdatadev", containerName: "milvus" },
      rootPassword: "0123456789",
      terminationGraceSeconds: 1800,
      tls: false,
      internalTls: false,
      accessLog: false,
    });
    const conf = yaml.load(text) as Record<string, Record<string, unknown>>;
    assert.equal(conf.minio.cloudProvider, "azure");
    assert.equal(conf.minio.useIAM, true);
    assert.equal(conf.minio.accessKeyID, "milvusdatadev");
    assert.equal(conf.minio.secretAccessKey, "");
    assert.equal(conf.common.storageType, "remote");
    // A numeric-looking password must survive YAML as a string.
    assert.deepEqual(conf.common.security, {
      authorizationEnabled: true,
      defaultRootPassword: "0123456789",
      tlsMode: 0,
      internaltlsEnabled: false,
      superUsers: "root",
    });
    // Standalone has no standby coordinators to enable.
    assert.deepEqual(conf.rootCoord, {});
  });

  it("stops Milvus a minute before the kubelet would kill it", () => {
    const conf = milvusUserConfig({
      mode: "cluster",
      etcdEndpoints: [],
      objectStore: { kind: "minio", host: "m", port: 9000, bucketName: "b", accessKey: "a", secretKey: "s" },
      rootPassword: "p",
      terminationGraceSeconds: 1800,
      tls: false,
      internalTls: false,
      accessLog: false,
    }) as {
      common: { gracefulStopTimeout: number };
      dataNode: { gracefulStopTimeout: number };
      queryNode: { gracefulStopTimeout: number };
      dataCoord: { segment?: unknown };
    };
    assert.equal(conf.common.gracefulStopTimeout, 1740);
    // dataNode's own key defaults to 1800 and does not fall back to common (component_param.go).
    assert.equal(conf.dataNode.gracefulStopTimeout, 1740);
    assert.equal(conf.queryNode.gracefulStopTimeout, 1740);
    // Segment sizing stays at Milvus 2.6's defaults (sealProportion 0.12), nothing overridden.
    assert.equal(conf.dataCoord.segment, undefined);
  });

  it("lists every etcd member and the compaction, quota and timing flags", () => {
    const d = etcdDefaults("milvus", 3, 4294967296);
    assert.deepEqual(d.clientEndpoints, [
      "etcd-0.etcd-headless.milvus.svc.cluster.local:2379",
      "etcd-1.etcd-headless.milvus.svc.cluster.local:2379",
      "etcd-2.etcd-headless.milvus.svc.cluster.local:2379",
    ]);
    assert.ok(
      d.args.includes(
        "--initial-cluster=" +
          [0, 1, 2]
            .map((i) => `etcd-${i}=http://etcd-${i}.etcd-headless.milvus.svc.cluster.local:2380`)
            .join(","),
      ),
    );
    assert.ok(d.args.includes("--quota-backend-bytes=4294967296"));
    assert.match(d.image, /^milvusdb\/etcd:3\.5\.\d+-r\d+$/);
    // A full 4 GiB backend plus 2 GiB of headroom, guaranteed.
    assert.deepEqual(d.resources.limits, { cpu: "2", memory: "6Gi" });
    assert.equal(d.resources.requests.memory, "6Gi");
    assert.equal(etcdDefaults("milvus", 3, 8 * 1024 ** 3).resources.limits.memory, "10Gi");
  });

  it("starts distributed MinIO over every pod's drive and single MinIO on one", () => {
    assert.deepEqual(minioDefaults("milvus", 4).serverArgs.slice(0, 2), [
      "server",
      "http://minio-{0...3}.minio-headless.milvus.svc.cluster.local:9000/export",
    ]);
    assert.deepEqual(minioDefaults("milvus", 1).serverArgs.slice(0, 2), ["server", "/export"]);
  });

  it("spreads over zones strictly and over nodes as a preference", () => {
    const [zone, host] = zoneSpread({ a: "b" });
    assert.deepEqual(zone, {
      maxSkew: 1,
      topologyKey: "topology.kubernetes.io/zone",
      whenUnsatisfiable: "DoNotSchedule",
      // Unreachable nodes of a lost zone leave the skew computation, so replacements can schedule.
      nodeTaintsPolicy: "Honor",
      labelSelector: { matchLabels: { a: "b" } },
    });
    assert.equal(host.whenUnsatisfiable, "ScheduleAnyway");
    assert.equal("minDomains" in zone, false);
  });

  it("makes Premium SSD classes that wait for the consumer, expand, and retain database volumes", () => {
    const v1 = storageClassDefaults("Premium_LRS");
    assert.equal(v1.provisioner, "disk.csi.azure.com");
    assert.equal(v1.volumeBindingMode, "WaitForFirstConsumer");
    assert.equal(v1.allowVolumeExpansion, true);
    assert.deepEqual(v1.parameters, { skuName: "Premium_LRS", cachingMode: "ReadOnly" });
    assert.equal(v1.retain.reclaimPolicy, "Retain");
    assert.deepEqual(storageClassDefaults("PremiumV2_LRS").parameters, {
      skuName: "PremiumV2_LRS",
      cachingMode: "None",
    });
  });

  it("labels the namespace with its environment and enforces Pod Security restricted", () => {
    const d = dataNamespaceDefaults("prod");
    assert.equal(d.labels.environment, "prod");
    assert.equal(d.labels["pod-security.kubernetes.io/enforce"], "restricted");
  });

  it("keeps Milvus's data zone-redundant in production", () => {
    assert.equal(milvusBlobStorageDefaults(true).sku, "Standard_ZRS");
    assert.equal(milvusBlobStorageDefaults(false).sku, "Standard_LRS");
  });

  it("drops MinIO policies and opens HTTPS egress when the object store is Azure Blob", () => {
    const names = (store: "minio" | "azureBlob") =>
      dataNetworkPolicies({
        namespace: "milvus",
        clientRole: "proxy",
        objectStore: store,
      }).map((p) => p.name);
    assert.deepEqual(names("minio"), [
      "default-deny",
      "allow-dns",
      "milvus",
      "milvus-clients",
      "etcd",
      "etcd-defrag",
      "minio",
      "minio-create-bucket",
    ]);
    assert.deepEqual(names("azureBlob"), [
      "default-deny",
      "allow-dns",
      "milvus",
      "milvus-clients",
      "etcd",
      "etcd-defrag",
    ]);
  });
});

describe("data layer configuration keys", () => {
  const base = {
    environment: "prod",
    location: "westeurope",
    adminGroupObjectIds: ["6f1c2a5e-8d3b-4b7e-9a41-2c5d8e7f9b10"],
    dr: { pairedLocation: "northeurope" },
  };
  const reasons = (raw: Record<string, unknown>) => configErrors(raw).map((e) => e.reason);

  it("defaults the MinIO images to frozen, pinned releases", () => {
    const cfg = parseStackConfig("t", base);
    assert.equal(cfg.minio.image, "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z");
    assert.equal(cfg.minio.clientImage, "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z");
  });

  it("accepts a mirrored MinIO image by tag or digest", () => {
    const digest = `myacr.azurecr.io/minio/minio@sha256:${"a".repeat(64)}`;
    assert.equal(parseStackConfig("t", { ...base, minio: { image: digest } }).minio.image, digest);
  });

  it("rejects floating and too-old MinIO images with the key, value and fix", () => {
    assert.deepEqual(reasons({ ...base, minio: { image: "quay.io/minio/minio:latest" } }), [
      'minio.image = "quay.io/minio/minio:latest" is invalid: expected a MinIO image pinned to a RELEASE tag (>= RELEASE.2024-12-18, which Woodpecker needs) or a digest, e.g. "myacr.azurecr.io/minio/minio:RELEASE.2025-09-07T16-13-09Z". Set it with `pulumi config set --path milvus-aks:minio.image quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z` or in Pulumi.<stack>.yaml.',
    ]);
    assert.deepEqual(
      reasons({ ...base, minio: { image: "quay.io/minio/minio:RELEASE.2024-06-13T22-53-53Z" } }),
      [
        'minio.image = "quay.io/minio/minio:RELEASE.2024-06-13T22-53-53Z" is invalid: expected a MinIO release from RELEASE.2024-12-18 or later. Woodpecker needs S3 conditional writes, which older MinIO releases lack.',
      ],
    );
    assert.equal(reasons({ ...base, minio: { clientImage: "minio/mc" } }).length, 1);
  });
});
