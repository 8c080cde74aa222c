/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-explicit-any --
 * Rendered objects are untyped JSON (schemaProblems validates their shape against the OpenAPI schemas). */
import * as assert from "node:assert/strict";
import {
  backupWorkerDefaults,
  imageReference,
  scheduledCommands,
  serviceAccountSubject,
} from "../components/backupDeployment/backupWorker";
import { BUILTIN_ROLES } from "../components/azure/roles";
import {
  isSecretValue,
  kubernetesObjects,
  RenderResult,
  renderStack,
  revealSecrets,
} from "../tools/offline-runtime";

type Obj = Record<string, any>;

const ofType = (r: RenderResult, type: string) =>
  r.resources.filter((x) => x.type === type).map((x) => x.inputs as Obj);
const k8sNamed = (r: RenderResult, kind: string, name: string): Obj => {
  const found = kubernetesObjects(r)
    .map((o) => o.inputs as Obj)
    .filter((o) => o.kind === kind && o.metadata?.name === name);
  assert.equal(found.length, 1, `expected one ${kind} ${name}`);
  return found[0];
};
const roleOf = (a: Obj) => String(a.roleDefinitionId).split("/").pop();

/** Everything a key-based credential would look like, anywhere in a render (secrets included). */
function keyMaterial(r: RenderResult): string[] {
  const hits: string[] = [];
  const walk = (v: unknown, path: string): void => {
    if (typeof v === "string") {
      if (/AccountKey=|SharedAccessSignature=|[?&]sig=|DefaultEndpointsProtocol=/i.test(v))
        hits.push(`${path}: ${v.slice(0, 40)}`);
    } else if (Array.isArray(v))
      v.forEach((x, i) => {
        walk(x, `${path}[${i}]`);
      });
    else if (typeof v === "object" && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (/^(AZURE_STORAGE_CONNECTION_STRING|AZURE_STORAGE_KEY|AZURE_CLIENT_SECRET|ACCOUNT_KEY)$/i.test(k))
          hits.push(`${path}.${k}`);
        if (
          k === "name" &&
          typeof x === "string" &&
          /CONNECTION_STRING|ACCOUNT_KEY|CLIENT_SECRET|AZURE_STORAGE_KEY/i.test(x)
        )
          hits.push(`${path}.name=${x}`);
        walk(x, `${path}.${k}`);
      }
    }
  };
  for (const res of r.resources) walk(revealSecrets(res.inputs), `${res.type} ${res.name}`);
  return hits;
}

describe("backup worker deployment", () => {
  let prod: RenderResult;
  let dr: RenderResult;
  before(async () => {
    prod = await renderStack("prod");
    dr = await renderStack("dr");
  });

  it("has pure defaults: pinned image references, subjects and the scheduled commands", () => {
    assert.equal(
      imageReference(
        { registry: "", repository: "milvus-backup", tag: "0.1.0", digest: "" },
        "acr.azurecr.io",
      ),
      "acr.azurecr.io/milvus-backup:0.1.0",
    );
    assert.equal(
      imageReference(
        { registry: "r.io", repository: "w", tag: "1.0.0", digest: "sha256:abc" },
        "acr.azurecr.io",
      ),
      "r.io/w@sha256:abc",
    );
    assert.equal(
      serviceAccountSubject("milvus", "milvus-backup"),
      "system:serviceaccount:milvus:milvus-backup",
    );
    assert.deepEqual(scheduledCommands(["a", "b"], 30, 3), {
      backup: ["backup", "--collection", "a", "--collection", "b"],
      rbac: ["backup-rbac"],
      prune: ["prune", "--retention-days", "30", "--keep-last", "3"],
    });
    const d = backupWorkerDefaults();
    assert.equal(d.concurrencyPolicy, "Forbid");
    assert.ok(d.activeDeadlineSeconds < 24 * 3600, "a hung run must end before the next daily run");
  });

  it("creates a private, zone-redundant registry the kubelet may pull from", () => {
    const [registry] = ofType(prod, "azure-native:containerregistry:Registry");
    assert.equal(registry.registryName, "milvusacrprod3cd4f0");
    assert.deepEqual(registry.sku, { name: "Premium" });
    assert.equal(registry.adminUserEnabled, false);
    assert.equal(registry.anonymousPullEnabled, false);
    const pull = ofType(prod, "azure-native:authorization:RoleAssignment").filter(
      (a) => roleOf(a) === BUILTIN_ROLES.acrPull,
    );
    assert.equal(pull.length, 1);
    assert.equal(pull[0].principalId, "11111111-1111-1111-1111-111111111111");
    // Mock ids are `<resource name>-id`: the grant is on this stack's registry resource.
    assert.equal(pull[0].scope, "milvus-prod-backup-worker-acr-id");
  });

  it("federates the worker's service account with an identity scoped to the backup account only", () => {
    const [fed] = ofType(prod, "azure-native:managedidentity:FederatedIdentityCredential");
    assert.equal(fed.subject, "system:serviceaccount:milvus:milvus-backup");
    assert.deepEqual(fed.audiences, ["api://AzureADTokenExchange"]);
    assert.match(String(fed.issuer), /^https:\/\/oidc\.example\.invalid\/.*\/$/);
    const grants = ofType(prod, "azure-native:authorization:RoleAssignment").filter(
      (a) => a.principalId === "principal-milvus-prod-backup-worker-identity",
    );
    // Mock ids are `<resource name>-id`: exactly one grant, on this stack's backup account resource.
    assert.deepEqual(
      grants.map((a) => [roleOf(a), a.scope]),
      [[BUILTIN_ROLES.storageBlobDataContributor, "milvus-prod-backup-account-id"]],
    );
    const sa = k8sNamed(prod, "ServiceAccount", "milvus-backup");
    assert.equal(
      sa.metadata.annotations["azure.workload.identity/client-id"],
      "client-milvus-prod-backup-worker-identity",
    );
    assert.equal(sa.automountServiceAccountToken, false);
  });

  it("lets a dr stack's worker read, never write, the primary's backups", () => {
    const grants = ofType(dr, "azure-native:authorization:RoleAssignment").filter(
      (a) => a.principalId === "principal-milvus-dr-backup-worker-identity",
    );
    assert.deepEqual(
      grants.map((a) => [roleOf(a), a.scope]),
      [
        [BUILTIN_ROLES.storageBlobDataContributor, "milvus-dr-backup-account-id"],
        // The primary's account id, read from the prod stack's outputs.
        [
          BUILTIN_ROLES.storageBlobDataReader,
          "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/milvus-prod-rg/providers/Microsoft.Storage/storageAccounts/milvusbkprod3cd4f0",
        ],
      ],
    );
  });

  it("schedules backup then prune from config, with workload identity and no key anywhere", () => {
    const cron = k8sNamed(prod, "CronJob", "milvus-backup");
    assert.equal(cron.spec.schedule, "0 2 * * *");
    assert.equal(cron.spec.timeZone, "Etc/UTC");
    assert.equal(cron.spec.concurrencyPolicy, "Forbid");
    const pod = cron.spec.jobTemplate.spec.template;
    assert.equal(pod.metadata.labels["azure.workload.identity/use"], "true");
    assert.equal(pod.metadata.labels["app.kubernetes.io/name"], "milvus-backup");
    assert.deepEqual(
      pod.spec.initContainers.map((c: Obj) => [c.name, c.args]),
      [
        ["backup", ["backup", "--collection", "documents"]],
        ["backup-rbac", ["backup-rbac"]],
      ],
    );
    assert.deepEqual(
      pod.spec.containers.map((c: Obj) => c.args),
      [["prune", "--retention-days", "30", "--keep-last", "3"]],
    );
    const env = Object.fromEntries(
      (pod.spec.containers[0].env as Obj[]).map((e) => [e.name, e.value ?? e.valueFrom]),
    );
    assert.deepEqual(env, {
      MILVUS_ADDRESS: "milvus.milvus.svc.cluster.local:19530",
      BACKUP_CONTAINER: "milvus-backups",
      AZURE_STORAGE_ACCOUNT_URL: "https://milvusbkprod3cd4f0.blob.core.windows.net/",
      MILVUS_TOKEN: { secretKeyRef: { name: "milvus-backup-credentials", key: "MILVUS_TOKEN" } },
      MILVUS_CA_FILE: "/etc/milvus-ca/ca.crt",
    });
    const secret = k8sNamed(prod, "Secret", "milvus-backup-credentials");
    assert.ok(isSecretValue(secret.stringData), "the Milvus token must be a Pulumi secret");
    for (const c of [...pod.spec.initContainers, ...pod.spec.containers] as Obj[]) {
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.runAsNonRoot, true);
      assert.match(String(c.image), /^milvusacrprod3cd4f0\.azurecr\.io\/milvus-backup:0\.1\.0$/);
    }
    for (const r of [prod, dr]) assert.deepEqual(keyMaterial(r), []);
  });

  it("the key check finds a connection string or an account key if one is ever introduced", () => {
    const leaky = structuredClone(prod);
    const cron = leaky.resources.find(
      (r) => r.inputs.kind === "CronJob" && (r.inputs as Obj).metadata.name === "milvus-backup",
    );
    assert.ok(cron);
    ((cron.inputs as Obj).spec.jobTemplate.spec.template.spec.containers[0].env as Obj[]).push({
      name: "AZURE_STORAGE_CONNECTION_STRING",
      value: "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc",
    });
    leaky.resources.push({
      type: "kubernetes:core/v1:Secret",
      name: "k",
      inputs: { stringData: { AZURE_STORAGE_KEY: "x" } },
      options: leaky.resources[0].options,
    });
    assert.equal(keyMaterial(leaky).length, 3);
  });

  it("gives backup and restore pods time to stop cleanly on SIGTERM (Kubernetes' default is 30 s)", () => {
    const pod = k8sNamed(prod, "CronJob", "milvus-backup").spec.jobTemplate.spec.template.spec;
    assert.equal(pod.terminationGracePeriodSeconds, 180);
    assert.equal(pod.enableServiceLinks, false);
  });

  it("limits the worker's network to Milvus, DNS and public HTTPS, selecting exactly its pods", () => {
    const policy = k8sNamed(prod, "NetworkPolicy", "milvus-backup-egress");
    const pod = k8sNamed(prod, "CronJob", "milvus-backup").spec.jobTemplate.spec.template;
    for (const [k, v] of Object.entries(policy.spec.podSelector.matchLabels as Record<string, string>)) {
      assert.equal(pod.metadata.labels[k], v, `selector ${k}=${v} must match the worker pods`);
    }
    assert.deepEqual(policy.spec.policyTypes, ["Ingress", "Egress"]);
    assert.deepEqual(policy.spec.ingress, []);
    assert.deepEqual(
      (policy.spec.egress as Obj[]).map((e) =>
        (e.ports as Obj[]).map((p) => `${String(p.protocol)}/${String(p.port)}`),
      ),
      [["TCP/19530"], ["UDP/53", "TCP/53"], ["TCP/443"]],
    );
    const milvusProxy = kubernetesObjects(prod)
      .map((o) => o.inputs as Obj)
      .find((o) => o.kind === "Deployment" && o.metadata.labels?.["app.kubernetes.io/component"] === "proxy");
    assert.ok(milvusProxy);
    const to = (policy.spec.egress as Obj[])[0].to[0].podSelector.matchLabels as Record<string, string>;
    for (const [k, v] of Object.entries(to)) assert.equal(milvusProxy.spec.template.metadata.labels[k], v);
    assert.deepEqual((policy.spec.egress as Obj[])[2].to[0].ipBlock.except, [
      "10.0.0.0/8",
      "172.16.0.0/12",
      "192.168.0.0/16",
      "169.254.0.0/16",
    ]);
  });

  it("exports the registry and image for the build-and-push runbook", () => {
    assert.equal(prod.outputs.backupRegistryLoginServer, "milvusacrprod3cd4f0.azurecr.io");
    assert.equal(prod.outputs.backupWorkerImage, "milvusacrprod3cd4f0.azurecr.io/milvus-backup:0.1.0");
  });
});
