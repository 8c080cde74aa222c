import * as assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as analyzerGrpc from "@pulumi/pulumi/proto/analyzer_grpc_pb";
import * as analyzerPb from "@pulumi/pulumi/proto/analyzer_pb";
import { specialSecretSig, specialSigKey } from "@pulumi/pulumi/runtime/rpc";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import { policyDefinitions } from "../policy/policies";
import { ROOT } from "../tools/offline-runtime";

/**
 * Loads policy/ exactly the way the Pulumi CLI's Node.js analyzer host does (the SDK's
 * cmd/run-policy-pack, ts-node with type checking, cwd = the pack directory), then talks to it over
 * the analyzer gRPC protocol the engine uses: proves the pack starts, declares its policies with the
 * stack's enforcement level, and reports violations on real RPC payloads, where secrets arrive
 * unwrapped by @pulumi/policy.
 */

const POLICY_DIR = path.join(ROOT, "policy");
const RUN_POLICY_PACK = path.join(ROOT, "node_modules/@pulumi/pulumi/cmd/run-policy-pack");

interface Pack {
  child: ChildProcess;
  client: analyzerGrpc.AnalyzerClient;
}

function startPack(stack: string): Promise<Pack> {
  const env = { ...process.env };
  env.MILVUS_AKS_STACK = stack;
  // The engine address is unused by policy packs; the host passes one anyway.
  const child = spawn(process.execPath, [RUN_POLICY_PACK, "127.0.0.1:1", "."], { cwd: POLICY_DIR, env });
  let out = "";
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => {
      reject(new Error(`policy pack exited with ${String(code)}: ${err}`));
    });
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const port = /^(\d+)\s*$/m.exec(out)?.[1];
      if (port) {
        const client = new analyzerGrpc.AnalyzerClient(
          `127.0.0.1:${port}`,
          grpc.credentials.createInsecure(),
        );
        resolve({ child, client });
      }
    });
  });
}

function stopPack(pack: Pack | undefined): void {
  if (!pack) return;
  pack.client.close();
  pack.child.removeAllListeners("exit");
  if (pack.child.pid !== undefined && pack.child.exitCode === null) process.kill(pack.child.pid, "SIGKILL");
}

function call<Req, Res>(
  fn: (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, (err, res) => {
      if (err) reject(err);
      else resolve(res);
    });
  });
}

function analyzeRequest(
  type: string,
  name: string,
  props: Record<string, unknown>,
): analyzerPb.AnalyzeRequest {
  const req = new analyzerPb.AnalyzeRequest();
  req.setType(type);
  req.setName(name);
  req.setUrn(`urn:pulumi:prod::milvus-aks::${type}::${name}`);
  req.setProperties(Struct.fromJavaScript(props as Parameters<typeof Struct.fromJavaScript>[0]));
  req.setOptions(new analyzerPb.AnalyzerResourceOptions());
  return req;
}

const publicLb = {
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "milvus", namespace: "milvus" },
  spec: { type: "LoadBalancer", ports: [{ port: 19530 }] },
};
/** The SDK prefixes each violation message with the policy's description. */
const described = (policy: string, message: string) =>
  `${policyDefinitions(false).find((p) => p.name === policy)?.description ?? "?"}\n${message}`;

const LB_MESSAGE =
  'Service milvus/milvus: type LoadBalancer without annotation service.beta.kubernetes.io/azure-load-balancer-internal: "true" gets a public IP; add the annotation (or use ClusterIP).';

describe("policy pack loaded like the Pulumi CLI loads it", function () {
  this.timeout(120_000);
  let prod: Pack | undefined;
  let dev: Pack | undefined;

  before(async () => {
    // Started together: each one type-checks the pack with ts-node, which dominates the test's time.
    const started = await Promise.allSettled([startPack("prod"), startPack("dev")]);
    [prod, dev] = started.map((r) => (r.status === "fulfilled" ? r.value : undefined));
    // If one failed to start, the other is still stopped by after().
    for (const r of started) if (r.status === "rejected") throw r.reason;
  });
  after(() => {
    stopPack(prod);
    stopPack(dev);
  });

  it("declares every policy, mandatory for prod and advisory for dev", async () => {
    const levels = async (pack: Pack) => {
      const info = await call<Empty, analyzerPb.AnalyzerInfo>(
        pack.client.getAnalyzerInfo.bind(pack.client),
        new Empty(),
      );
      assert.equal(info.getName(), "milvus-aks-production");
      assert.equal(info.getVersion(), "0.1.0");
      return [...new Set(info.getPoliciesList().map((p) => p.getEnforcementlevel()))];
    };
    const info = await call<Empty, analyzerPb.AnalyzerInfo>(
      prod!.client.getAnalyzerInfo.bind(prod!.client),
      new Empty(),
    );
    assert.deepEqual(
      info.getPoliciesList().map((p) => p.getName()),
      [
        "aks-cluster-settings",
        "aks-zone-redundancy",
        "pdb-allows-disruption",
        "container-hygiene",
        "no-public-load-balancer",
        "storage-account-hardening",
        "no-plaintext-secrets",
        "milvus-standalone-single-replica",
        "milvus-tls",
        "audit-diagnostics",
        "encryption-at-host",
        "no-root-credentials",
      ],
    );
    assert.deepEqual(await levels(prod!), [analyzerPb.EnforcementLevel.MANDATORY]);
    assert.deepEqual(await levels(dev!), [analyzerPb.EnforcementLevel.ADVISORY]);
  });

  it("reports a resource violation over the analyzer protocol", async () => {
    const res = await call<analyzerPb.AnalyzeRequest, analyzerPb.AnalyzeResponse>(
      prod!.client.analyze.bind(prod!.client),
      analyzeRequest("kubernetes:core/v1:Service", "milvus-lb", publicLb),
    );
    assert.deepEqual(
      res.getDiagnosticsList().map((d) => [d.getPolicyname(), d.getEnforcementlevel(), d.getMessage()]),
      [
        [
          "no-public-load-balancer",
          analyzerPb.EnforcementLevel.MANDATORY,
          described("no-public-load-balancer", LB_MESSAGE),
        ],
      ],
    );
  });

  it("sees secrets unwrapped, as pulumi/pulumi-policy#241 says, and still flags credential env vars", async () => {
    const secretEnv = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "minio", namespace: "milvus" },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "minio" } },
        template: {
          metadata: { labels: { app: "minio" } },
          spec: {
            containers: [
              {
                name: "minio",
                image: "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z",
                env: [
                  {
                    name: "MINIO_ROOT_PASSWORD",
                    value: { [specialSigKey]: specialSecretSig, value: "hunter2" },
                  },
                ],
                resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { cpu: "1", memory: "1Gi" } },
                livenessProbe: { httpGet: { path: "/minio/health/live", port: 9000 } },
                readinessProbe: { httpGet: { path: "/minio/health/ready", port: 9000 } },
              },
            ],
          },
        },
      },
    };
    const res = await call<analyzerPb.AnalyzeRequest, analyzerPb.AnalyzeResponse>(
      prod!.client.analyze.bind(prod!.client),
      analyzeRequest("kubernetes:apps/v1:Deployment", "minio", secretEnv),
    );
    assert.deepEqual(
      res.getDiagnosticsList().map((d) => d.getMessage()),
      [
        described(
          "no-plaintext-secrets",
          'Deployment milvus/minio container "minio": env MINIO_ROOT_PASSWORD has a literal value; use valueFrom.secretKeyRef (a literal is stored in plain text in the pod spec).',
        ),
      ],
    );
    // A Secret's payload cannot be told apart from plain text here, so only the render checks it.
    const secret = await call<analyzerPb.AnalyzeRequest, analyzerPb.AnalyzeResponse>(
      prod!.client.analyze.bind(prod!.client),
      analyzeRequest("kubernetes:core/v1:Secret", "creds", {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "creds", namespace: "milvus" },
        stringData: { password: { [specialSigKey]: specialSecretSig, value: "hunter2" } },
      }),
    );
    assert.deepEqual(secret.getDiagnosticsList().length, 0);
  });

  it("runs the stack policies over analyzeStack and reports advisory findings for dev", async () => {
    const resource = (type: string, name: string, props: Record<string, unknown>) => {
      const r = new analyzerPb.AnalyzerResource();
      r.setType(type);
      r.setName(name);
      r.setUrn(`urn:pulumi:dev::milvus-aks::${type}::${name}`);
      r.setProperties(Struct.fromJavaScript(props as Parameters<typeof Struct.fromJavaScript>[0]));
      r.setOptions(new analyzerPb.AnalyzerResourceOptions());
      return r;
    };
    const req = new analyzerPb.AnalyzeStackRequest();
    req.setResourcesList([
      resource("azure-native:containerservice:ManagedCluster", "aks", {
        agentPoolProfiles: [{ name: "system", mode: "System", availabilityZones: ["1", "2", "3"] }],
      }),
      resource("azure-native:containerservice:AgentPool", "data1", {
        mode: "User",
        availabilityZones: ["1"],
      }),
    ]);
    const res = await call<analyzerPb.AnalyzeStackRequest, analyzerPb.AnalyzeResponse>(
      dev!.client.analyzeStack.bind(dev!.client),
      req,
    );
    assert.deepEqual(
      res
        .getDiagnosticsList()
        .map((d) => [d.getPolicyname(), d.getEnforcementlevel(), d.getUrn(), d.getMessage()]),
      [
        [
          "aks-zone-redundancy",
          analyzerPb.EnforcementLevel.ADVISORY,
          "urn:pulumi:dev::milvus-aks::azure-native:containerservice:ManagedCluster::aks",
          described(
            "aks-zone-redundancy",
            "user node pools cover zones [1], missing 2, 3; add a zonal pool per missing zone.",
          ),
        ],
        // The cluster comes without its audit DiagnosticSetting.
        [
          "audit-diagnostics",
          analyzerPb.EnforcementLevel.ADVISORY,
          "urn:pulumi:dev::milvus-aks::azure-native:containerservice:ManagedCluster::aks",
          described(
            "audit-diagnostics",
            "ManagedCluster (generated name): no DiagnosticSetting enables kube-audit-admin and guard, so its Kubernetes audit log and Entra ID authorization decisions are not kept; set security.audit.enabled: true in the stack's milvus-aks:security config.",
          ),
        ],
      ],
    );
  });
});
