/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-explicit-any --
 * Rendered objects are untyped JSON (schemaProblems validates their shape against the OpenAPI schemas). */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";
import { parseStackConfig } from "../components/common/config";
import {
  certManagerValues,
  CERT_MANAGER_REPO,
  STACK_CA_ISSUER,
  STACK_CA_SECRET,
} from "../components/data/certManager";
import { milvusCertificateSpecs, MILVUS_INTERNAL_SNI } from "../components/data/milvusCertificates";
import { ACCESS_LOG_FORMAT, milvusSecurityConfig } from "../components/data/milvusConfig";
import { accountEncryptionArgs } from "../components/azure/storageAccount";
import { CONTAINER_INSIGHTS_STREAMS, containerInsightsRule } from "../components/azure/auditDiagnostics";
import {
  accessDeclaration,
  accessJobName,
  milvusAccessDefaults,
} from "../components/backupDeployment/milvusAccess";
import {
  isSecretValue,
  kubernetesObjects,
  RenderedResource,
  RenderResult,
  renderStack,
  revealSecrets,
  ROOT,
} from "../tools/offline-runtime";
import { configErrors, validProd } from "./support/config";
import { parseDeclaration } from "../backup/accessPlan";
import { parseRestoreArgs, RestoreRequest, restoreJobFromCronJob } from "../tools/restore-job";

type Obj = any;

const ofType = (r: RenderResult, suffix: string) => r.resources.filter((x) => x.type.endsWith(suffix));
const one = (r: RenderResult, suffix: string, name?: string): RenderedResource => {
  const found = ofType(r, suffix).filter((x) => name === undefined || x.name === name);
  assert.equal(found.length, 1, `${suffix} ${name ?? ""}: ${found.map((x) => x.name).join(", ")}`);
  return found[0];
};
const k8s = (r: RenderResult, kind: string, name: string): Obj => {
  const found = kubernetesObjects(r).filter(
    (o) => o.inputs.kind === kind && (o.inputs as Obj).metadata.name === name,
  );
  assert.equal(found.length, 1, `${kind} ${name}`);
  return found[0].inputs;
};
const reasons = (raw: Record<string, unknown>) => configErrors(raw).map((e) => e.reason);

describe("security configuration", () => {
  it("turns TLS, audit and encryption at host on in every environment, a customer-managed key off", () => {
    const prod = parseStackConfig("prod", validProd());
    assert.deepEqual(prod.security, {
      tls: {
        enabled: true,
        internal: true,
        certManagerChartVersion: "v1.21.1",
        issuer: { kind: "ClusterIssuer", name: "" },
        caBundle: "",
        dnsNames: [],
      },
      audit: { enabled: true, retentionDays: 365, containerInsights: true, milvusAccessLog: true },
      encryption: { atHost: true, infrastructure: true, customerManagedKey: false },
    });
    const dev = parseStackConfig("dev", { ...validProd(), environment: "dev", zones: ["1"] });
    assert.equal(dev.security.tls.enabled, true);
    assert.equal(dev.security.audit.retentionDays, 30);
    assert.deepEqual(prod.access, { roles: {}, users: {} });
  });

  it("reads roles and users, defaulting a user's Secret to the data namespace", () => {
    const cfg = parseStackConfig("prod", {
      ...validProd(),
      access: {
        roles: { search: { collections: ["documents"], access: "read" } },
        users: { search_api: { roles: ["search"] }, batch: { roles: ["search"], secretNamespace: "jobs" } },
      },
    });
    assert.deepEqual(cfg.access, {
      roles: { search: { database: "default", collections: ["documents"], access: "read" } },
      users: {
        search_api: { roles: ["search"], secretNamespace: "milvus" },
        batch: { roles: ["search"], secretNamespace: "jobs" },
      },
    });
  });

  it("rejects users with undeclared roles, reserved or invalid names, and clashing Secret names", () => {
    const got = reasons({
      ...validProd(),
      access: {
        roles: {
          search: { collections: ["documents"], access: "read" },
          admin: { collections: ["*"], access: "read" },
        },
        users: {
          root: { roles: ["search"] },
          "search-api": { roles: ["search"] },
          writer: { roles: ["ingest"] },
          App_One: { roles: ["search"] },
          app_one: { roles: ["search"] },
        },
      },
    });
    assert.equal(got.length, 5, got.join("\n"));
    assert.match(
      got[0] ?? "",
      /^access\.roles\.admin = "admin" is invalid: .*other than the built-in admin and public/,
    );
    assert.match(
      got[1] ?? "",
      /^access\.users\.root = "root" is invalid: .*other than root and backup_worker/,
    );
    assert.match(
      got[2] ?? "",
      /^access\.users\.search-api = "search-api" is invalid: expected a Milvus user name/,
    );
    assert.equal(
      got[3],
      'access.users.writer.roles = ["ingest"] is invalid: expected one or more roles declared in access.roles (search). Declare ingest under access.roles or remove it from the user.',
    );
    assert.match(
      got[4] ?? "",
      /^access\.users\.app_one = "app_one" is invalid: .*App_One's \(milvus-user-app-one\)/,
    );
  });

  it("finds a role named like an Object property (constructor) undeclared, as the worker does", () => {
    const got = reasons({
      ...validProd(),
      access: { roles: {}, users: { app: { roles: ["constructor"] } } },
    });
    assert.deepEqual(got, [
      'access.users.app.roles = ["constructor"] is invalid: expected one or more roles declared in access.roles (none declared). Declare constructor under access.roles or remove it from the user.',
    ]);
  });

  it("needs the CA bundle of a user-supplied issuer, and nothing else", () => {
    const withIssuer = reasons({ ...validProd(), security: { tls: { issuer: { name: "corp-ca" } } } });
    assert.equal(withIssuer.length, 1);
    assert.match(
      withIssuer[0] ?? "",
      /^security\.tls\.caBundle = \(missing\) is invalid: expected the PEM CA/,
    );
    const pem = fs.readFileSync(path.join(ROOT, "tools", "fixtures", "offline-ca.pem"), "utf8");
    assert.deepEqual(
      reasons({ ...validProd(), security: { tls: { issuer: { name: "corp-ca" }, caBundle: pem } } }),
      [],
    );
    const stray = reasons({ ...validProd(), security: { tls: { caBundle: pem } } });
    assert.match(
      stray[0] ?? "",
      /^security\.tls\.caBundle = "\(a PEM bundle\)" is invalid: expected empty when/,
    );
  });

  it("keeps Log Analytics retention inside 30-730 days and Container Insights tied to the workspace", () => {
    assert.match(
      reasons({ ...validProd(), security: { audit: { retentionDays: 20 } } })[0] ?? "",
      /^security\.audit\.retentionDays = 20 is invalid: expected an integer from 30 to 730 days/,
    );
    assert.match(
      reasons({ ...validProd(), security: { audit: { enabled: false, containerInsights: true } } })[0] ?? "",
      /^security\.audit\.containerInsights = true is invalid: expected false when security\.audit\.enabled is false/,
    );
    const off = parseStackConfig("prod", { ...validProd(), security: { audit: { enabled: false } } });
    assert.equal(off.security.audit.containerInsights, false);
  });
});

describe("security building blocks", () => {
  it("Milvus: one-way client TLS, internal TLS with a fixed SNI, REST off with TLS, root as super user, access log on stdout", () => {
    assert.deepEqual(milvusSecurityConfig({ tls: true, internalTls: true, accessLog: true }), {
      common: { security: { tlsMode: 1, internaltlsEnabled: true, superUsers: "root" } },
      tls: {
        serverPemPath: "/milvus/tls/tls.crt",
        serverKeyPath: "/milvus/tls/tls.key",
        caPemPath: "/milvus/tls/ca.crt",
      },
      internaltls: {
        serverPemPath: "/milvus/internal-tls/tls.crt",
        serverKeyPath: "/milvus/internal-tls/tls.key",
        caPemPath: "/milvus/internal-tls/ca.crt",
        sni: "milvus-internal",
      },
      proxy: {
        http: { enabled: false },
        accessLog: {
          enable: true,
          minioEnable: false,
          filename: "",
          formatters: { base: { format: ACCESS_LOG_FORMAT } },
        },
      },
    });
    // Every variable is one Milvus 2.6 knows (internal/proxy/accesslog/info/info.go); who and what are there.
    const known = new Set(
      "method_name method_status trace_id user_addr user_name response_size error_code error_msg error_type database_name collection_name partition_name time_cost time_now time_start time_end method_expr output_fields sdk_version cluster_prefix consistency_level anns_field nq search_params query_params client_request_time template_value_length partial_update".split(
        " ",
      ),
    );
    const used = [...ACCESS_LOG_FORMAT.matchAll(/\$([a-z_]+)/g)].map((m) => m[1]);
    assert.deepEqual(
      used.filter((v) => !known.has(v)),
      [],
    );
    for (const v of [
      "user_name",
      "user_addr",
      "method_name",
      "database_name",
      "collection_name",
      "method_status",
    ]) {
      assert.ok(used.includes(v), v);
    }
    const off = milvusSecurityConfig({ tls: false, internalTls: false, accessLog: false });
    assert.equal(off.common.security.tlsMode, 0);
    assert.deepEqual(off.proxy, { http: { enabled: true }, accessLog: { enable: false } });
  });

  it("certificates: every in-cluster name of the Service plus configured names; the internal one carries the SNI", () => {
    assert.deepEqual(
      milvusCertificateSpecs({
        namespace: "milvus",
        serviceName: "milvus",
        extraDnsNames: ["milvus.prod.example.com"],
        internal: true,
        client: true,
      }),
      [
        {
          name: "milvus-tls",
          secretName: "milvus-tls",
          dnsNames: [
            "milvus",
            "milvus.milvus",
            "milvus.milvus.svc",
            "milvus.milvus.svc.cluster.local",
            "milvus.prod.example.com",
          ],
          usages: ["server auth", "digital signature"],
        },
        {
          name: "milvus-internal-tls",
          secretName: "milvus-internal-tls",
          dnsNames: [MILVUS_INTERNAL_SNI],
          usages: ["server auth", "client auth", "digital signature"],
        },
      ],
    );
  });

  it("cert-manager values: CRDs by the chart, leader election in its own namespace, HA in production", () => {
    const v = certManagerValues(true) as Obj;
    assert.deepEqual(v.crds, { enabled: true, keep: true });
    assert.equal(v.installCRDs, undefined, "the chart refuses installCRDs together with crds.enabled");
    assert.equal(v.global.leaderElection.namespace, "cert-manager");
    assert.deepEqual([v.replicaCount, v.webhook.replicaCount, v.cainjector.replicaCount], [2, 2, 2]);
    assert.deepEqual(v.webhook.podDisruptionBudget, { enabled: true, maxUnavailable: 1 });
    assert.equal((certManagerValues(false) as Obj).replicaCount, 1);
  });

  it("storage accounts: infrastructure encryption, and a customer-managed key through a user-assigned identity", () => {
    assert.deepEqual(accountEncryptionArgs({ infrastructure: true }).encryption, {
      requireInfrastructureEncryption: true,
      services: { blob: { enabled: true, keyType: "Account" }, file: { enabled: true, keyType: "Account" } },
      keySource: "Microsoft.Storage",
      keyVaultProperties: undefined,
      encryptionIdentity: undefined,
    });
    const cmk = accountEncryptionArgs({
      infrastructure: true,
      customerManagedKey: { keyVaultUri: "https://kv.vault.azure.net/", keyName: "k", identityId: "/id" },
    });
    const e = cmk.encryption as Obj;
    assert.equal(e.keySource, "Microsoft.Keyvault");
    assert.deepEqual(e.keyVaultProperties, { keyVaultUri: "https://kv.vault.azure.net/", keyName: "k" });
    assert.deepEqual(e.encryptionIdentity, { encryptionUserAssignedIdentity: "/id" });
    assert.equal((cmk.identity as Obj).type, "UserAssigned");
  });

  it("Container Insights rule: the extension, ContainerLogV2 and one flow into the workspace", () => {
    const rule = containerInsightsRule("/ws");
    assert.equal(rule.kind, "Linux");
    const ext = rule.dataSources.extensions[0];
    assert.equal(ext.extensionName, "ContainerInsights");
    assert.equal(ext.extensionSettings.dataCollectionSettings.enableContainerLogV2, true);
    assert.ok(CONTAINER_INSIGHTS_STREAMS.includes("Microsoft-ContainerLogV2"));
    assert.deepEqual(rule.destinations.logAnalytics, [{ name: "ciworkspace", workspaceResourceId: "/ws" }]);
    assert.deepEqual(rule.dataFlows, [
      { streams: [...CONTAINER_INSIGHTS_STREAMS], destinations: ["ciworkspace"] },
    ]);
  });

  it("access: the backup worker gets its own admin user; a new declaration or password means a new Job", () => {
    const access = {
      roles: { search: { database: "default", collections: ["documents"], access: "read" as const } },
      users: { search_api: { roles: ["search"], secretNamespace: "milvus" } },
    };
    const decl = accessDeclaration(access);
    assert.deepEqual(decl, {
      version: 1,
      roles: { search: { database: "default", collections: ["documents"], access: "read" } },
      users: { backup_worker: { roles: ["admin"] }, search_api: { roles: ["search"] } },
    });
    const name = accessJobName(decl, { backup_worker: "a", search_api: "b" });
    assert.match(name, /^milvus-access-[0-9a-f]{10}$/);
    assert.equal(accessJobName(decl, { search_api: "b", backup_worker: "a" }), name, "order-independent");
    assert.notEqual(accessJobName(decl, { backup_worker: "a", search_api: "c" }), name);
    const readWrite = accessDeclaration({
      ...access,
      roles: { search: { ...access.roles.search, access: "readWrite" as const } },
    });
    assert.notEqual(accessJobName(readWrite, { backup_worker: "a", search_api: "b" }), name);
  });
});

describe("security in the prod render", function () {
  this.timeout(300_000);
  let prod: RenderResult;
  let cmk: RenderResult;
  let off: RenderResult;
  before(async () => {
    prod = await renderStack("prod");
    cmk = await renderStack("prod", {
      overrides: { "milvus-aks:security": { encryption: { customerManagedKey: true } } },
    });
    off = await renderStack("prod", {
      overrides: {
        "milvus-aks:security": {
          tls: { enabled: false, internal: false },
          audit: { enabled: false },
          encryption: { atHost: false, infrastructure: false },
        },
      },
    });
  });

  it("installs a pinned cert-manager and the stack's CA issuer; the CA is an output", () => {
    const release = one(prod, "helm.sh/v3:Release", "milvus-prod-cert-manager-release").inputs as Obj;
    assert.equal(release.chart, "cert-manager");
    assert.equal(release.version, "v1.21.1");
    assert.equal(release.repositoryOpts.repo, CERT_MANAGER_REPO);
    assert.deepEqual(release.values.crds, { enabled: true, keep: true });
    const issuer = k8s(prod, "ClusterIssuer", STACK_CA_ISSUER);
    assert.deepEqual(issuer.spec, { ca: { secretName: STACK_CA_SECRET } });
    const caSecret = k8s(prod, "Secret", STACK_CA_SECRET);
    assert.equal(caSecret.metadata.namespace, "cert-manager");
    assert.ok(isSecretValue(caSecret.stringData), "the CA key only travels as a Pulumi secret");
    assert.match(
      String((revealSecrets(caSecret.stringData) as Obj)["tls.key"]),
      /^-----BEGIN PRIVATE KEY-----/,
    );
    const pem = fs.readFileSync(path.join(ROOT, "tools", "fixtures", "offline-ca.pem"), "utf8");
    assert.equal(prod.outputs.milvusCaCertificate, pem);
  });

  it("Milvus waits for its certificates and mounts them; user.yaml turns TLS, internal TLS and the access log on", () => {
    const cert = k8s(prod, "Certificate", "milvus-tls");
    assert.equal(cert.metadata.namespace, "milvus");
    assert.equal(cert.metadata.annotations["pulumi.com/waitFor"], "condition=Ready");
    assert.deepEqual(cert.spec.issuerRef, {
      name: STACK_CA_ISSUER,
      kind: "ClusterIssuer",
      group: "cert-manager.io",
    });
    assert.ok(cert.spec.dnsNames.includes("milvus.milvus.svc.cluster.local"));
    assert.deepEqual(k8s(prod, "Certificate", "milvus-internal-tls").spec.dnsNames, ["milvus-internal"]);

    const proxy = k8s(prod, "Deployment", "milvus-proxy");
    const mounts = proxy.spec.template.spec.containers[0].volumeMounts as Obj[];
    assert.deepEqual(
      mounts.filter((m) => m.name.includes("tls")),
      [
        { name: "tls", mountPath: "/milvus/tls", readOnly: true },
        { name: "internal-tls", mountPath: "/milvus/internal-tls", readOnly: true },
      ],
    );
    const certUrn = one(prod, "cert-manager.io/v1:Certificate", "milvus-prod-data-certificates-milvus-tls")
      .options.urn;
    const mixcoord = one(prod, "apps/v1:Deployment", "milvus-prod-data-milvus-mixcoord");
    assert.ok(
      mixcoord.options.dependencies.includes(certUrn),
      "the first Milvus role waits for the certificate",
    );

    const userYaml = yaml.load(
      String((revealSecrets(k8s(prod, "Secret", "milvus-config").stringData) as Obj)["user.yaml"]),
    ) as Obj;
    assert.equal(userYaml.common.security.tlsMode, 1);
    assert.equal(userYaml.common.security.internaltlsEnabled, true);
    assert.equal(userYaml.internaltls.sni, "milvus-internal");
    assert.equal(userYaml.proxy.accessLog.enable, true);
    assert.equal(userYaml.proxy.http.enabled, false);

    const offYaml = yaml.load(
      String((revealSecrets(k8s(off, "Secret", "milvus-config").stringData) as Obj)["user.yaml"]),
    ) as Obj;
    assert.equal(offYaml.common.security.tlsMode, 0);
    assert.equal(ofType(off, "cert-manager.io/v1:Certificate").length, 0);
    assert.equal(off.outputs.milvusCaCertificate, "");
  });

  it("audit: a workspace with the configured retention, the AKS audit log, blob access logs, Container Insights", () => {
    const ws = one(prod, "operationalinsights:Workspace").inputs as Obj;
    assert.equal(ws.retentionInDays, 365);
    assert.deepEqual(ws.sku, { name: "PerGB2018" });
    assert.equal(one(prod, "operationalinsights:Workspace").options.protect, true);
    const settings = ofType(prod, "monitor:DiagnosticSetting").map((d) => d.inputs as Obj);
    // Mock ids are `<name>-id` (tools/offline-runtime.ts): the cluster's is milvus-prod-aks-id.
    const aks = settings.find((d) => d.resourceUri === "milvus-prod-aks-id");
    assert.ok(aks, JSON.stringify(settings.map((d) => d.resourceUri)));
    assert.deepEqual(aks.logs, [
      { category: "kube-audit-admin", enabled: true },
      { category: "guard", enabled: true },
    ]);
    assert.equal(aks.logAnalyticsDestinationType, "Dedicated");
    const blob = settings.find((d) => String(d.resourceUri).endsWith("/blobServices/default"));
    assert.ok(blob);
    assert.deepEqual(
      (blob.logs as Obj[]).map((l) => l.category),
      ["StorageRead", "StorageWrite", "StorageDelete"],
    );
    const cluster = one(prod, "containerservice:ManagedCluster").inputs as Obj;
    assert.deepEqual(cluster.addonProfiles.omsagent.config, {
      logAnalyticsWorkspaceResourceID: "milvus-prod-audit-workspace-id",
      useAADAuth: "true",
    });
    assert.equal(
      (one(prod, "monitor:DataCollectionRuleAssociation").inputs as Obj).associationName,
      "ContainerInsightsExtension",
    );
    assert.equal(ofType(off, "monitor:DiagnosticSetting").length, 0);
    assert.equal((one(off, "containerservice:ManagedCluster").inputs as Obj).addonProfiles, undefined);
  });

  it("stops the preview while the subscription lacks Microsoft.Compute/EncryptionAtHost, naming the commands", async () => {
    await assert.rejects(
      renderStack("prod", { featureStates: { "Microsoft.Compute/EncryptionAtHost": "Pending" } }),
      (err: unknown) => {
        const text = String(err);
        assert.match(
          text,
          /security\.encryption\.atHost is true, but the subscription's Microsoft\.Compute\/EncryptionAtHost feature is Pending/,
        );
        assert.match(text, /az feature register --namespace Microsoft\.Compute --name EncryptionAtHost/);
        assert.match(text, /or set security\.encryption\.atHost to false/);
        return true;
      },
    );
    // Switched off, the subscription is not asked, and nothing fails.
    const offline = await renderStack("prod", {
      featureStates: { "Microsoft.Compute/EncryptionAtHost": "NotRegistered" },
      overrides: { "milvus-aks:security": { encryption: { atHost: false } } },
    });
    assert.equal(
      (one(offline, "containerservice:ManagedCluster").inputs as Obj).agentPoolProfiles[0]
        .enableEncryptionAtHost,
      false,
    );
  });

  it("encryption at host on every pool and infrastructure encryption on the backup account", () => {
    const cluster = one(prod, "containerservice:ManagedCluster").inputs as Obj;
    assert.deepEqual(
      (cluster.agentPoolProfiles as Obj[]).map((p) => p.enableEncryptionAtHost),
      [true],
    );
    const pools = ofType(prod, "containerservice:AgentPool").map(
      (p) => (p.inputs as Obj).enableEncryptionAtHost,
    );
    assert.deepEqual(pools, [true, true, true]);
    const account = one(prod, "storage:StorageAccount").inputs as Obj;
    assert.equal(account.encryption.requireInfrastructureEncryption, true);
    assert.equal(account.encryption.keySource, "Microsoft.Storage");
    assert.deepEqual(
      ofType(off, "containerservice:AgentPool").map((p) => (p.inputs as Obj).enableEncryptionAtHost),
      [false, false, false],
    );
  });

  it("a customer-managed key: vault with purge protection, a DES for nodes and volumes, the key for storage", () => {
    assert.equal(ofType(prod, "keyvault:Vault").length, 0);
    const vault = one(cmk, "keyvault:Vault");
    assert.equal((vault.inputs as Obj).properties.enablePurgeProtection, true);
    assert.equal((vault.inputs as Obj).properties.enableRbacAuthorization, true);
    assert.equal(vault.options.protect, true);
    const key = one(cmk, "keyvault:Key").inputs as Obj;
    assert.deepEqual([key.properties.kty, key.properties.keySize], ["RSA", 3072]);
    const des = one(cmk, "compute:DiskEncryptionSet").inputs as Obj;
    assert.equal(des.encryptionType, "EncryptionAtRestWithCustomerKey");
    assert.match(String(des.activeKey.keyUrl), /\/keys\/milvus-aks\/[0-9a-f]{32}$/);
    const desId = String(one(cmk, "containerservice:ManagedCluster").inputs.diskEncryptionSetID);
    assert.equal(desId, "milvus-prod-cmk-des-id");
    const sc = k8s(cmk, "StorageClass", "milvus-premium-retain");
    assert.equal(sc.parameters.diskEncryptionSetID, desId);
    const account = one(cmk, "storage:StorageAccount").inputs as Obj;
    assert.equal(account.encryption.keySource, "Microsoft.Keyvault");
    assert.equal(account.encryption.keyVaultProperties.keyName, "milvus-aks");
    assert.equal(account.identity.type, "UserAssigned");
    const roles = ofType(cmk, "authorization:RoleAssignment").map((r) =>
      String((r.inputs as Obj).roleDefinitionId),
    );
    assert.equal(roles.filter((r) => r.endsWith("e147488a-f6f5-4113-8e2d-b22465e65bf6")).length, 2);
  });

  it("the restore Job, built from the rendered CronJob, verifies Milvus against the CA like the backup", () => {
    const cron = k8s(prod, "CronJob", "milvus-backup");
    const req = parseRestoreArgs(["--stack", "prod", "--backup", "b1"]) as RestoreRequest;
    const job = restoreJobFromCronJob(cron, req, new Date("2026-11-27T10:00:00Z")) as Obj;
    const spec = job.spec.template.spec;
    const env = Object.fromEntries(
      (spec.containers[0].env as Obj[]).map((e) => [e.name, e.value ?? e.valueFrom]),
    );
    assert.equal(env.MILVUS_CA_FILE, "/etc/milvus-ca/ca.crt");
    assert.deepEqual(env.MILVUS_TOKEN, {
      secretKeyRef: { name: "milvus-backup-credentials", key: "MILVUS_TOKEN" },
    });
    assert.deepEqual(
      (spec.containers[0].volumeMounts as Obj[]).find((m) => m.name === "milvus-ca"),
      { name: "milvus-ca", mountPath: "/etc/milvus-ca", readOnly: true },
    );
    assert.deepEqual(
      (spec.volumes as Obj[]).find((v) => v.name === "milvus-ca"),
      { name: "milvus-ca", configMap: { name: "milvus-ca" } },
    );
  });

  it("access: a Job applies the declaration as root; applications and the worker use their own users", () => {
    const d = milvusAccessDefaults();
    const decl = JSON.parse(String(k8s(prod, "ConfigMap", d.configMapName).data["access.json"]));
    assert.deepEqual(Object.keys(decl.users).sort(), ["backup_worker", "ingest_pipeline", "search_api"]);
    assert.deepEqual(decl.roles.ingest, {
      database: "default",
      collections: ["documents"],
      access: "readWrite",
    });
    const job = kubernetesObjects(prod).find(
      (o) => o.inputs.kind === "Job" && String((o.inputs as Obj).metadata.name).startsWith("milvus-access-"),
    );
    assert.ok(job);
    const container = (job.inputs as Obj).spec.template.spec.containers[0];
    assert.deepEqual(container.args, [
      "apply-access",
      "--declaration",
      d.declarationPath,
      "--passwords-dir",
      d.passwordsDir,
    ]);
    assert.deepEqual((container.env as Obj[]).find((e) => e.name === "MILVUS_TOKEN").valueFrom, {
      secretKeyRef: { name: d.rootSecretName, key: "MILVUS_TOKEN" },
    });
    const user = k8s(prod, "Secret", "milvus-user-search-api");
    assert.equal(user.metadata.namespace, "milvus");
    const data = revealSecrets(user.stringData) as Obj;
    assert.deepEqual(Object.keys(data).sort(), ["address", "ca.crt", "password", "token", "username"]);
    assert.equal(data.username, "search_api");
    assert.match(String(data.token), /^search_api:mock-secret-/);
    const worker = revealSecrets(k8s(prod, "Secret", "milvus-backup-credentials").stringData) as Obj;
    assert.match(String(worker.MILVUS_TOKEN), /^backup_worker:mock-secret-/);
    // root's password reaches exactly one Secret, and only the access Job reads that Secret.
    const root = String(
      (revealSecrets(k8s(prod, "Secret", d.rootSecretName).stringData) as Obj).MILVUS_TOKEN,
    );
    assert.match(root, /^root:/);
    const holders = kubernetesObjects(prod).filter((o) =>
      JSON.stringify(revealSecrets(o.inputs)).includes(root),
    );
    assert.deepEqual(
      holders.map((o) => (o.inputs as Obj).metadata.name),
      [d.rootSecretName],
    );
    const readers = kubernetesObjects(prod).filter(
      (o) => JSON.stringify(o.inputs).includes(`"${d.rootSecretName}"`) && o.inputs.kind !== "Secret",
    );
    assert.deepEqual(
      readers.map((o) => o.inputs.kind),
      ["Job"],
    );
  });
});

describe("the access declaration the program writes is the one the worker reads", () => {
  it("passes the worker's strict parser for the prod and dr declarations", () => {
    for (const stack of ["prod", "dr"]) {
      const raw = yaml.load(fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8")) as {
        config: Record<string, unknown>;
      };
      const cfg = parseStackConfig(stack, {
        ...validProd(),
        environment: stack,
        ...(stack === "dr"
          ? {
              dr: { pairedLocation: "westeurope", primaryStack: "acme/milvus-aks/prod" },
              location: "northeurope",
            }
          : {}),
        access: raw.config["milvus-aks:access"],
      });
      const parsed = parseDeclaration(JSON.parse(JSON.stringify(accessDeclaration(cfg.access))));
      assert.deepEqual(
        Object.keys(parsed.users).sort(),
        ["backup_worker", "ingest_pipeline", "search_api"],
        stack,
      );
    }
    // A key the worker does not know (the config's secretNamespace) would be refused.
    assert.throws(
      () =>
        parseDeclaration({ version: 1, roles: {}, users: { a: { roles: ["admin"], secretNamespace: "x" } } }),
      /secretNamespace/,
    );
  });
});
