import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { defaultsFor, parseStackConfig } from "../components/common/config";
import { configErrors } from "./support/config";
import type { Dashboard } from "../components/monitoring/dashboards";
import {
  GRAFANA_DASHBOARD_LABEL,
  KPS_CHART,
  KPS_RELEASE,
  KPS_REPO,
  kubePrometheusStackValues,
  milvusRolesFor,
  MINIO_METRICS_PATH,
  MonitoringComponent,
  monitoringDefaults,
  PROMETHEUS_STORAGE_CLASS,
} from "../components/monitoring/monitoring";
import { DATA_POOL_LABEL, MONITORING_NAMESPACE } from "../components/common/naming";
import { schemaProblems } from "../tools/k8s-schema";
import {
  isSecretValue,
  kubernetesObjects,
  RenderedResource,
  RenderResult,
  renderStack,
  revealSecrets,
} from "../tools/offline-runtime";

type Obj = Record<string, unknown>;
interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
}
interface PodMonitor {
  metadata: Meta;
  spec: {
    namespaceSelector: { matchNames: string[] };
    selector: { matchLabels: Record<string, string> };
    podMetricsEndpoints: { port: string; path: string }[];
  };
}
interface PodTemplate {
  metadata?: { labels?: Record<string, string> };
  spec: { containers: { name: string; ports?: { name?: string; containerPort: number }[] }[] };
}

const renders = new Map<string, Promise<RenderResult>>();
function render(stack: string): Promise<RenderResult> {
  let r = renders.get(stack);
  if (!r) {
    r = renderStack(stack);
    renders.set(stack, r);
  }
  return r;
}

function release(result: RenderResult): RenderedResource {
  const releases = result.resources.filter(
    (r) => r.type === "kubernetes:helm.sh/v3:Release" && r.inputs.chart === KPS_CHART,
  );
  assert.equal(releases.length, 1);
  return releases[0];
}

function values(result: RenderResult) {
  return release(result).inputs.values as {
    prometheus: { prometheusSpec: Obj & Record<string, { matchLabels: Record<string, string> }> };
    grafana: {
      admin: { existingSecret: string; passwordKey: string };
      sidecar: { dashboards: { label: string; labelValue: string; searchNamespace: string } };
    };
  };
}

function ofKind(result: RenderResult, kind: string): Obj[] {
  return kubernetesObjects(result)
    .map((o) => o.inputs)
    .filter((o) => o.kind === kind);
}

/** Pod templates of the rendered workloads, with their namespace. */
function podTemplates(result: RenderResult): { namespace: string; owner: string; template: PodTemplate }[] {
  const out: { namespace: string; owner: string; template: PodTemplate }[] = [];
  for (const o of kubernetesObjects(result).map((r) => r.inputs)) {
    const meta = o.metadata as Meta;
    const spec = o.spec as Obj | undefined;
    if (["Deployment", "StatefulSet", "DaemonSet"].includes(String(o.kind))) {
      out.push({
        namespace: meta.namespace ?? "",
        owner: `${String(o.kind)}/${meta.name}`,
        template: spec?.template as PodTemplate,
      });
    }
  }
  return out;
}

const matches = (selector: Record<string, string>, labels: Record<string, string> | undefined) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

describe("monitoring: rendered stack", () => {
  for (const stack of ["prod", "dev"]) {
    describe(stack, () => {
      it("installs kube-prometheus-stack from its repository at the pinned version", async () => {
        const result = await render(stack);
        const rel = release(result).inputs;
        assert.equal(rel.chart, "kube-prometheus-stack");
        assert.equal(rel.version, "88.5.3");
        assert.equal(rel.version, result.config.monitoring.chartVersion);
        assert.deepEqual(rel.repositoryOpts, { repo: KPS_REPO });
        assert.equal(rel.name, KPS_RELEASE);
        assert.equal(rel.namespace, MONITORING_NAMESPACE);
        assert.equal(rel.atomic, true);
      });

      it("gives every monitor and rule the label Prometheus selects", async () => {
        const result = await render(stack);
        const spec = values(result).prometheus.prometheusSpec;
        const selectors = {
          PodMonitor: spec.podMonitorSelector,
          ServiceMonitor: spec.serviceMonitorSelector,
          PrometheusRule: spec.ruleSelector,
        };
        for (const s of Object.values(selectors))
          assert.deepEqual(s, { matchLabels: { release: KPS_RELEASE } });
        let count = 0;
        for (const [kind, selector] of Object.entries(selectors)) {
          for (const o of ofKind(result, kind)) {
            count++;
            const meta = o.metadata as Meta;
            assert.ok(
              matches(selector.matchLabels, meta.labels),
              `${kind} ${meta.name} lacks ${JSON.stringify(selector)}`,
            );
          }
        }
        const expected = milvusRolesFor(result.config.milvus.mode).length + 1 + 1 + 1; // + etcd, MinIO, rules
        assert.equal(count, expected);
      });

      it("has a PodMonitor per Milvus role, etcd and MinIO whose selector finds the workloads and their metrics port", async () => {
        const result = await render(stack);
        const monitors = ofKind(result, "PodMonitor") as unknown as PodMonitor[];
        const templates = podTemplates(result);
        const covered = new Set<string>();
        for (const m of monitors) {
          const [endpoint] = m.spec.podMetricsEndpoints;
          assert.ok(endpoint);
          const found = templates.filter(
            (t) =>
              m.spec.namespaceSelector.matchNames.includes(t.namespace) &&
              matches(m.spec.selector.matchLabels, t.template.metadata?.labels),
          );
          assert.ok(found.length > 0, `PodMonitor ${m.metadata.name} selects no workload`);
          for (const t of found) {
            covered.add(t.owner);
            const ports = t.template.spec.containers.flatMap((c) => c.ports ?? []);
            assert.ok(
              ports.some((p) => p.name === endpoint.port),
              `${t.owner} has no container port named ${endpoint.port} for PodMonitor ${m.metadata.name}`,
            );
          }
        }
        const byName = Object.fromEntries(monitors.map((m) => [m.metadata.name, m]));
        const expectedNames = [
          ...milvusRolesFor(result.config.milvus.mode).map((r) => `milvus-${r}`),
          "etcd",
          "minio",
        ].sort();
        assert.deepEqual(Object.keys(byName).sort(), expectedNames);
        assert.equal(byName.minio.spec.podMetricsEndpoints[0].path, MINIO_METRICS_PATH);
        assert.equal(byName.etcd.spec.podMetricsEndpoints[0].path, "/metrics");
        // Every long-running Milvus, etcd and MinIO workload is scraped by some monitor.
        const dataWorkloads = templates
          .filter((t) => t.namespace === "milvus")
          .filter((t) =>
            ["milvus", "etcd", "minio"].includes(
              t.template.metadata?.labels?.["app.kubernetes.io/name"] ?? "",
            ),
          );
        assert.ok(dataWorkloads.length > 0);
        assert.deepEqual(
          dataWorkloads.map((t) => t.owner).filter((o) => !covered.has(o)),
          [],
        );
      });

      it("generates the Grafana admin password as a secret and keeps it out of Helm values", async () => {
        const result = await render(stack);
        const secret = ofKind(result, "Secret").find((s) => (s.metadata as Meta).name === "grafana-admin");
        assert.ok(secret);
        assert.equal((secret.metadata as Meta).namespace, MONITORING_NAMESPACE);
        assert.ok(isSecretValue(secret.stringData), "the Secret's stringData must be a Pulumi secret");
        const data = revealSecrets(secret.stringData) as Record<string, string>;
        assert.equal(data["admin-user"], "admin");
        const v = values(result);
        assert.equal(v.grafana.admin.existingSecret, "grafana-admin");
        assert.equal(v.grafana.admin.passwordKey, "admin-password");
        const revealed = data["admin-password"] ?? "";
        assert.ok(revealed.length >= 32);
        assert.ok(
          !JSON.stringify(release(result).inputs).includes(revealed),
          "password leaked into Helm values",
        );
        assert.ok(isSecretValue(result.outputs.grafanaAdminPassword), "stack output must be secret");
        const random = result.resources.find(
          (r) =>
            r.type === "random:index/randomPassword:RandomPassword" &&
            r.name.endsWith("-monitoring-grafana-admin"),
        );
        assert.deepEqual(random?.inputs, { length: 32, special: false });
      });

      it("ships the dashboards as ConfigMaps the Grafana sidecar loads", async () => {
        const result = await render(stack);
        const sidecar = values(result).grafana.sidecar.dashboards;
        assert.equal(sidecar.searchNamespace, MONITORING_NAMESPACE);
        const maps = ofKind(result, "ConfigMap").filter(
          (c) => (c.metadata as Meta).labels?.[sidecar.label] === sidecar.labelValue,
        );
        assert.deepEqual(maps.map((m) => (m.metadata as Meta).name).sort(), [
          "dashboard-milvus",
          "dashboard-milvus-dependencies",
        ]);
        const uids = new Set<string>();
        for (const m of maps) {
          assert.equal((m.metadata as Meta).namespace, MONITORING_NAMESPACE);
          const [file, text] = Object.entries(m.data as Record<string, string>)[0] ?? ["", ""];
          assert.match(file, /\.json$/);
          const board = JSON.parse(text) as Dashboard;
          uids.add(board.uid);
          const ids = board.panels.map((p) => p.id);
          assert.equal(new Set(ids).size, ids.length, `${board.uid} has duplicate panel ids`);
          for (const p of board.panels.filter((x) => x.type !== "row")) {
            assert.ok((p.targets ?? []).length > 0, `${board.title}/${p.title} has no query`);
            assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${board.title}/${p.title} overflows the grid`);
          }
        }
        assert.equal(uids.size, 2);
        const titles = maps.flatMap((m) =>
          (JSON.parse(Object.values(m.data as Record<string, string>)[0] ?? "{}") as Dashboard).panels.map(
            (p) => p.title,
          ),
        );
        for (const t of [
          "Search / query latency (P50, P95, P99)",
          "Requests per second by type",
          "Failed requests per second by type",
          "Query node memory (working set vs limit)",
          "Index build tasks by state",
          "WAL fsync latency (P99)",
          "Database size / quota",
          "Time since last successful backup",
          "Failed backup jobs (in history)",
        ]) {
          assert.ok(titles.includes(t), `missing panel ${t}`);
        }
      });

      it("renders monitoring objects that validate against their schemas", async () => {
        const result = await render(stack);
        const objs = kubernetesObjects(result).filter(
          (o) =>
            (o.inputs.metadata as Meta | undefined)?.namespace === MONITORING_NAMESPACE ||
            o.inputs.kind === "Namespace",
        );
        assert.ok(objs.some((o) => o.inputs.kind === "PrometheusRule"));
        assert.deepEqual(
          objs.flatMap((o) => schemaProblems(o.inputs)),
          [],
        );
      });
    });
  }

  it("sizes Prometheus from the stack config on the Premium class, on the data pools", async () => {
    const prod = values(await render("prod")).prometheus.prometheusSpec;
    assert.equal(prod.replicas, 2);
    assert.equal(prod.retention, "15d");
    assert.equal(prod.retentionSize, "85GiB");
    assert.equal(prod.podAntiAffinityTopologyKey, "topology.kubernetes.io/zone");
    assert.deepEqual(prod.storageSpec, {
      volumeClaimTemplate: {
        spec: {
          storageClassName: PROMETHEUS_STORAGE_CLASS,
          accessModes: ["ReadWriteOnce"],
          resources: { requests: { storage: "100Gi" } },
        },
      },
    });
    assert.deepEqual(prod.nodeSelector, { [DATA_POOL_LABEL]: "data" });
    const dev = values(await render("dev")).prometheus.prometheusSpec;
    assert.equal(dev.replicas, 1);
    assert.equal(dev.retention, "7d");
    assert.equal(dev.podAntiAffinity, undefined);
  });
});

describe("monitoring: pure defaults and values", () => {
  it("turns off rules for control-plane parts AKS manages", () => {
    const v = kubePrometheusStackValues({
      production: false,
      retentionDays: 3,
      storageGi: 40,
      grafanaAdminSecretName: "s",
      monitoringNamespace: "mon",
    });
    assert.deepEqual(
      [v.kubeEtcd.enabled, v.kubeControllerManager.enabled, v.kubeScheduler.enabled, v.kubeProxy.enabled],
      [false, false, false, false],
    );
    assert.equal(v.defaultRules.rules.etcd, false);
    assert.equal(v.prometheus.prometheusSpec.retention, "3d");
    assert.equal(v.prometheus.prometheusSpec.retentionSize, "34GiB");
    assert.deepEqual(v["kube-state-metrics"].metricLabelsAllowlist, [
      "pods=[app.kubernetes.io/name,app.kubernetes.io/component]",
    ]);
    assert.equal(
      (v.grafana.sidecar as { dashboards: { label: string } }).dashboards.label,
      GRAFANA_DASHBOARD_LABEL.key,
    );
  });

  it("runs two Prometheus replicas only in production", () => {
    assert.equal(monitoringDefaults(true).prometheusReplicas, 2);
    assert.equal(monitoringDefaults(false).prometheusReplicas, 1);
    assert.deepEqual(milvusRolesFor("standalone"), ["standalone"]);
    assert.deepEqual(milvusRolesFor("cluster"), [
      "mixcoord",
      "proxy",
      "querynode",
      "datanode",
      "streamingnode",
    ]);
  });
});

describe("monitoring: stack configuration", () => {
  const base = () => ({
    environment: "dev",
    location: "westeurope",
    adminGroupObjectIds: ["6f1c2a5e-8d3b-4b7e-9a41-2c5d8e7f9b10"],
    dr: { pairedLocation: "northeurope" },
  });
  const problems = (raw: Record<string, unknown>) => configErrors(raw).map((e) => e.reason);

  it("defaults by environment", () => {
    assert.deepEqual(defaultsFor("prod").monitoring, {
      chartVersion: "88.5.3",
      retentionDays: 15,
      storageGi: 100,
    });
    assert.deepEqual(defaultsFor("dev").monitoring, {
      chartVersion: "88.5.3",
      retentionDays: 7,
      storageGi: 20,
    });
    assert.deepEqual(parseStackConfig("t", { ...base(), monitoring: { retentionDays: 30 } }).monitoring, {
      chartVersion: "88.5.3",
      retentionDays: 30,
      storageGi: 20,
    });
  });

  it("reports every bad monitoring key in one error, naming the value and the fix", () => {
    const reasons = problems({
      ...base(),
      monitoring: { chartVersion: "^88.0.0", retentionDays: 0, storageGi: 5 },
    });
    assert.equal(reasons.length, 3, reasons.join("\n"));
    assert.match(
      reasons[0] ?? "",
      /monitoring\.chartVersion = "\^88\.0\.0" is invalid: expected an exact kube-prometheus-stack chart version/,
    );
    assert.ok(reasons.some((r) => r.startsWith("monitoring.retentionDays = 0 is invalid")));
    assert.ok(reasons.some((r) => r.startsWith("monitoring.storageGi = 5 is invalid")));
    assert.deepEqual(problems({ ...base(), monitoring: { chartVersion: "latest" } }).length, 1);
  });
});

describe("monitoring: ordering", () => {
  it("creates PodMonitors and the PrometheusRule only after the release that installs their CRDs", async () => {
    // Let any queued render finish: the mock runtime is global.
    await render("dev");
    await pulumi.runtime.setMocks(
      {
        newResource: (args) => ({
          id: `${args.name}-id`,
          state: {
            ...(args.inputs as Obj),
            ...(args.type.startsWith("random:") ? { result: "x".repeat(32) } : {}),
          },
        }),
        call: (args) => args.inputs as Obj,
      },
      "milvus-aks",
      "ordering",
      true,
    );
    const seen: { type: string; resource: pulumi.Resource; dependsOn: unknown[] }[] = [];
    const component = new MonitoringComponent(
      "ordering",
      {
        chartVersion: "88.5.3",
        retentionDays: 7,
        storageGi: 20,
        production: false,
        milvusMode: "standalone",
        minio: true,
        etcdQuotaBytes: 4 * 1024 ** 3,
      },
      {
        transformations: [
          (args) => {
            const deps = args.opts.dependsOn;
            seen.push({
              type: args.type,
              resource: args.resource,
              dependsOn: deps === undefined ? [] : Array.isArray(deps) ? deps : [deps],
            });
            return undefined;
          },
        ],
      },
    );
    await new Promise<void>((resolve) =>
      component.grafanaAdminPassword.apply(() => {
        resolve();
      }),
    );
    const rel = seen.find((s) => s.type === "kubernetes:helm.sh/v3:Release");
    assert.ok(rel);
    const custom = seen.filter((s) => s.type.startsWith("kubernetes:monitoring.coreos.com/"));
    assert.deepEqual(custom.map((s) => s.type).sort(), [
      "kubernetes:monitoring.coreos.com/v1:PodMonitor",
      "kubernetes:monitoring.coreos.com/v1:PodMonitor",
      "kubernetes:monitoring.coreos.com/v1:PodMonitor",
      "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
    ]);
    for (const c of custom)
      assert.ok(c.dependsOn.includes(rel.resource), `${c.type} does not wait for the release`);
    const secret = seen.find((s) => s.type === "kubernetes:core/v1:Secret");
    assert.ok(
      secret && rel.dependsOn.includes(secret.resource),
      "the release must wait for the Grafana admin Secret",
    );
  });
});
