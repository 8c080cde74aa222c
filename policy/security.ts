import { UnknownValueError } from "@pulumi/policy";
import * as yaml from "js-yaml";
import { AGENT_POOL, MANAGED_CLUSTER } from "./aks";
import {
  containersOf,
  isObject,
  isSealed,
  k8sKind,
  k8sSubject,
  list,
  num,
  podTemplate,
  Props,
  record,
  StackResource,
  str,
  Violation,
  WORKLOAD_KINDS,
} from "./common";
import { STORAGE_ACCOUNT } from "./storage";

/**
 * The security baseline (TLS, audit logs, encryption at rest on the hosts, root kept to one Job):
 * - milvus-tls: clients reach Milvus over TLS, with a certificate cert-manager issues and renews.
 * - audit-diagnostics: the AKS audit log and the blob access logs go to Log Analytics.
 * - encryption-at-host: node pools encrypt temp disks, caches and OS disks on the host; storage
 *   accounts add infrastructure (double) encryption.
 * - no-root-credentials: the Milvus root user is used by the access Job alone.
 *
 * Names below repeat the program's (components/data/milvusCertificates.ts, milvusAccess.ts,
 * auditDiagnostics.ts, naming.ts) instead of importing them: the CLI loads this pack on its own, and
 * importing the components would pull the whole program and its providers into it. The unit tests
 * assert they are equal.
 *
 * Stack policies see each resource's *outputs* (pulumi/pulumi: stepGenerator.AnalyzeResources passes
 * `v.Outputs`): during a preview, values a provider has not computed yet (ids of resources still to be
 * created, Secret payloads built from generated passwords) are unknown, and reading one through
 * @pulumi/policy's proxy throws. The reads below that can meet such values go through {@link known}.
 */

export const DIAGNOSTIC_SETTING = "azure-native:monitor:DiagnosticSetting";
/** The client-facing certificate's Secret (components/data/milvusCertificates.ts MILVUS_TLS_SECRET). */
export const MILVUS_TLS_SECRET = "milvus-tls";
/** The Secret holding Milvus's user.yaml (components/data/milvus.ts). */
export const MILVUS_CONFIG_SECRET = "milvus-config";
/** The root token's Secret (components/backupDeployment/milvusAccess.ts rootSecretName). */
export const ROOT_CREDENTIALS_SECRET = "milvus-root-credentials";
/** components/azure/auditDiagnostics.ts AKS_AUDIT_CATEGORIES. */
export const AKS_AUDIT_CATEGORIES = ["kube-audit-admin", "guard"];
/** components/azure/auditDiagnostics.ts BLOB_AUDIT_CATEGORIES. */
export const BLOB_AUDIT_CATEGORIES = ["StorageRead", "StorageWrite", "StorageDelete"];
/** A category group that contains every category of a resource ("Diagnostic settings in Azure Monitor"). */
const ALL_LOGS = "allLogs";

const NAME_LABEL = "app.kubernetes.io/name";
const COMPONENT_LABEL = "app.kubernetes.io/component";
/** The access Job's labels (components/backupDeployment/milvusAccess.ts: appLabels(APP.backup, "access")). */
export const ACCESS_JOB_LABELS = { [NAME_LABEL]: "milvus-backup", [COMPONENT_LABEL]: "access" };

const AUDIT_FIX = "set security.audit.enabled: true in the stack's milvus-aks:security config";
const TLS_FIX = "set security.tls.enabled: true in the stack's milvus-aks:security config";

/** `obj[key]`, or undefined when it is absent or unknown during a preview. */
function known(obj: unknown, key: string): unknown {
  if (!isObject(obj) && !Array.isArray(obj)) return undefined;
  try {
    return (obj as Record<string, unknown>)[key];
  } catch (err) {
    if (err instanceof UnknownValueError) return undefined;
    throw err;
  }
}

/**
 * The plain value behind a Pulumi secret marker. The offline render keeps secrets wrapped; a real run
 * sees them unwrapped (pulumi/pulumi-policy#241). Reading through the marker makes both see the same
 * content, so these checks need no `secretsObservable` switch: only unknown values stay unreadable.
 */
function unseal(v: unknown): unknown {
  let value = v;
  while (isSealed(value)) value = known(value, "value");
  return value;
}

/**
 * Every readable string value of a Kubernetes Secret, decoded: `stringData` as written, `data` from
 * base64 (the API server, and so a Secret's outputs, keep only `data`).
 */
function secretEntries(props: Props): { field: string; key: string; value: string }[] {
  const out: { field: string; key: string; value: string }[] = [];
  for (const field of ["stringData", "data"]) {
    const payload = unseal(known(props, field));
    if (!isObject(payload)) continue;
    for (const key of Object.keys(payload)) {
      const value = unseal(known(payload, key));
      if (typeof value !== "string") continue;
      out.push({
        field,
        key,
        value: field === "data" ? Buffer.from(value, "base64").toString("utf8") : value,
      });
    }
  }
  return out;
}

function labelsOf(kind: string, props: Props): Props[] {
  return [record(record(props.metadata).labels), podTemplate(kind, props)?.labels ?? {}];
}

function labelValue(kind: string, props: Props, key: string): string | undefined {
  for (const labels of labelsOf(kind, props)) {
    const v = str(labels[key]);
    if (v !== undefined) return v;
  }
  return undefined;
}

function namespaceOf(props: Props): string | undefined {
  return str(known(record(props.metadata), "namespace"));
}

function isCertificate(type: string): boolean {
  return /^kubernetes:cert-manager\.io\/[^:]+:Certificate$/.test(type);
}

/** Names of the pod's volumes that carry a Secret (directly or in a projected volume). */
function secretVolumes(podSpec: Props): { volume: string; secret: string }[] {
  const out: { volume: string; secret: string }[] = [];
  for (const v of list(podSpec.volumes).map(record)) {
    const volume = str(v.name) ?? "(unnamed)";
    const direct = str(known(record(v.secret), "secretName"));
    if (direct !== undefined) out.push({ volume, secret: direct });
    for (const source of list(record(v.projected).sources).map(record)) {
      const projected = str(known(record(source.secret), "name"));
      if (projected !== undefined) out.push({ volume, secret: projected });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// milvus-tls

/** Pods clients connect to: the proxy in cluster mode, the single process in standalone mode. */
const CLIENT_FACING_COMPONENTS = ["proxy", "standalone"];
const MILVUS_WORKLOAD_KINDS = ["Deployment", "StatefulSet"];

/**
 * `common.security.tlsMode` of a parsed user.yaml; undefined when unset. Milvus flattens its YAML into
 * dotted keys when it loads it, so a flat `common.security.tlsMode` key sets the same parameter.
 */
function tlsModeOf(doc: unknown): unknown {
  const nested = record(record(record(doc).common).security).tlsMode;
  return nested ?? record(doc)["common.security.tlsMode"];
}

/**
 * When the stack runs Milvus: a cert-manager Certificate issues Secret `milvus-tls` in Milvus's
 * namespace, every client-facing pod mounts it, and user.yaml turns TLS on (`tlsMode` 1, or 2 for
 * mutual TLS). user.yaml is checked when it is readable: it embeds generated passwords, so it is
 * unknown in the first preview of a stack.
 */
export function milvusTls(resources: StackResource[]): Violation[] {
  const milvus = resources.flatMap((r) => {
    const kind = k8sKind(r.type);
    if (kind === undefined || !MILVUS_WORKLOAD_KINDS.includes(kind)) return [];
    return labelValue(kind, r.props, NAME_LABEL) === "milvus" ? [{ resource: r, kind }] : [];
  });
  if (milvus.length === 0) return [];
  const violations: Violation[] = [];

  const certificates = resources.filter(
    (r) => isCertificate(r.type) && record(r.props.spec).secretName === MILVUS_TLS_SECRET,
  );
  // A Secret volume reads a Secret of the pod's own namespace. An unknown namespace matches any.
  const seen = new Set<string | undefined>();
  for (const w of milvus) {
    const ns = namespaceOf(w.resource.props);
    if (seen.has(ns)) continue;
    seen.add(ns);
    const issued = certificates.some((c) => {
      const certNs = namespaceOf(c.props);
      return certNs === undefined || ns === undefined || certNs === ns;
    });
    if (!issued) {
      violations.push({
        resource: w.resource.name,
        message: `Milvus runs in namespace ${ns ?? "(default)"} (${k8sSubject(w.resource.type, w.resource.props)}) but no cert-manager Certificate there has spec.secretName "${MILVUS_TLS_SECRET}", so Milvus has no server certificate; ${TLS_FIX}.`,
      });
    }
  }

  for (const w of milvus) {
    const component = labelValue(w.kind, w.resource.props, COMPONENT_LABEL);
    if (component === undefined || !CLIENT_FACING_COMPONENTS.includes(component)) continue;
    const spec = podTemplate(w.kind, w.resource.props)?.spec ?? {};
    const tlsVolumes = secretVolumes(spec)
      .filter((v) => v.secret === MILVUS_TLS_SECRET)
      .map((v) => v.volume);
    const mounted = containersOf(spec).some((c) =>
      list(c.spec.volumeMounts).some((m) => tlsVolumes.includes(str(record(m).name) ?? "")),
    );
    if (!mounted) {
      violations.push({
        resource: w.resource.name,
        message: `${k8sSubject(w.resource.type, w.resource.props)} (client-facing Milvus ${component}): no container mounts a volume of Secret "${MILVUS_TLS_SECRET}", so it cannot serve TLS; ${TLS_FIX}.`,
      });
    }
  }

  for (const s of resources) {
    if (k8sKind(s.type) !== "Secret" || str(record(s.props.metadata).name) !== MILVUS_CONFIG_SECRET) continue;
    const text = secretEntries(s.props).find((e) => e.key === "user.yaml")?.value;
    if (text === undefined) continue;
    const subject = k8sSubject(s.type, s.props);
    let doc: unknown;
    try {
      doc = yaml.load(text);
    } catch {
      // Fail closed: a config that cannot be read cannot be shown to turn TLS on.
      violations.push({
        resource: s.name,
        message: `${subject}: user.yaml is not valid YAML, so common.security.tlsMode cannot be checked.`,
      });
      continue;
    }
    const raw = tlsModeOf(doc);
    const mode = num(raw);
    if (mode !== 1 && mode !== 2) {
      const shown = raw === undefined ? "unset (Milvus defaults to 0)" : JSON.stringify(raw);
      violations.push({
        resource: s.name,
        message: `${subject}: user.yaml has common.security.tlsMode ${shown}; Milvus then accepts clients in plain text (1 = TLS, 2 = mutual TLS); ${TLS_FIX}.`,
      });
    }
  }
  return violations;
}

// ---------------------------------------------------------------------------------------------------
// audit-diagnostics

interface Setting {
  resource: StackResource;
  label: string;
  /** resourceUri (inputs) or id (outputs), lower-cased, when known. */
  uri?: string;
  id?: string;
  /** Categories enabled, and every category the setting names (enabled or not). */
  enabled: Set<string>;
  named: Set<string>;
  allLogs: boolean;
}

function settingOf(r: StackResource): Setting {
  const enabled = new Set<string>();
  const named = new Set<string>();
  let allLogs = false;
  for (const l of list(known(r.props, "logs")).map(record)) {
    const on = known(l, "enabled") === true;
    const category = str(known(l, "category"));
    if (category !== undefined) {
      named.add(category);
      if (on) enabled.add(category);
    }
    if (on && str(known(l, "categoryGroup")) === ALL_LOGS) allLogs = true;
  }
  return {
    resource: r,
    label: str(known(r.props, "name")) ?? r.name,
    uri: str(known(r.props, "resourceUri"))?.toLowerCase(),
    id: str(known(r.props, "id"))?.toLowerCase(),
    enabled,
    named,
    allLogs,
  };
}

function covers(s: Setting, categories: string[]): boolean {
  return s.allLogs || categories.every((c) => s.enabled.has(c));
}

/**
 * Whether a setting is on a blob service. `resourceUri` is an input only (absent from outputs); a
 * setting's ARM id is `<target>/providers/microsoft.insights/diagnosticSettings/<name>`. With neither
 * known (a preview), the Storage* categories decide.
 */
function onBlobService(s: Setting): boolean {
  if (s.uri !== undefined) return s.uri.endsWith("/blobservices/default");
  if (s.id !== undefined) return s.id.includes("/blobservices/default/providers/microsoft.insights/");
  return true;
}

/** True when a known target (resourceUri or id) is `path` or below it. */
function targets(s: Setting, path: string): boolean {
  return [s.uri, s.id].some((t) => t !== undefined && `${t}/`.includes(`${path}/`));
}

/**
 * Pairs owners (clusters, accounts) with settings and returns the owners left without one. A setting
 * whose target names an owner goes to that owner. Ids of resources still to be created are unknown in
 * a preview (and the offline render's are placeholders), so exact id matching would fail every first
 * preview: a setting whose target is unknown, or names none of the stack's owners, stands in for any
 * owner still uncovered. This makes the check a count (enough settings for the owners) rather than a
 * proof that each setting points at the right resource.
 */
function uncovered(
  owners: { resource: StackResource; name?: string }[],
  settings: Setting[],
  pathOf: (name: string) => string,
): { resource: StackResource; name?: string }[] {
  const paths = owners.map((o) => (o.name === undefined ? undefined : pathOf(o.name).toLowerCase()));
  const free = [...settings];
  const left: { resource: StackResource; name?: string }[] = [];
  owners.forEach((o, i) => {
    const path = paths[i];
    const claimed = path === undefined ? -1 : free.findIndex((s) => targets(s, path));
    if (claimed >= 0) free.splice(claimed, 1);
    else left.push(o);
  });
  const floating = free.filter((s) => !paths.some((p) => p !== undefined && targets(s, p))).length;
  return left.slice(floating);
}

function missingCategories(s: Setting, categories: string[]): string[] {
  return s.allLogs ? [] : categories.filter((c) => !s.enabled.has(c));
}

/**
 * Every ManagedCluster has a DiagnosticSetting with kube-audit-admin and guard enabled, and there are
 * at least as many blob-service settings (`<account id>/blobServices/default`) with StorageRead,
 * StorageWrite and StorageDelete enabled as there are storage accounts. A setting naming some but not
 * all of its categories is reported on its own, since it looks like the audit setting but is not.
 */
export function auditDiagnostics(resources: StackResource[]): Violation[] {
  const settings = resources.filter((r) => r.type === DIAGNOSTIC_SETTING).map(settingOf);
  const violations: Violation[] = [];

  const partial = (s: Setting, categories: string[], what: string) => {
    const missing = missingCategories(s, categories);
    if (missing.length === 0 || !categories.some((c) => s.named.has(c))) return;
    violations.push({
      resource: s.resource.name,
      message: `DiagnosticSetting ${s.label}: ${missing.join(", ")} not enabled; ${what} enables ${categories.join(", ")}.`,
    });
  };
  for (const s of settings) {
    partial(s, AKS_AUDIT_CATEGORIES, "the AKS audit setting");
    if (onBlobService(s)) partial(s, BLOB_AUDIT_CATEGORIES, "a blob audit setting");
  }

  const clusters = resources
    .filter((r) => r.type === MANAGED_CLUSTER)
    .map((r) => ({ resource: r, name: str(known(r.props, "resourceName")) ?? str(known(r.props, "name")) }));
  const clusterSettings = settings.filter((s) => covers(s, AKS_AUDIT_CATEGORIES));
  for (const c of uncovered(clusters, clusterSettings, (n) => `/managedclusters/${n}`)) {
    violations.push({
      resource: c.resource.name,
      message: `ManagedCluster ${c.name ?? "(generated name)"}: no DiagnosticSetting enables ${AKS_AUDIT_CATEGORIES.join(" and ")}, so its Kubernetes audit log and Entra ID authorization decisions are not kept; ${AUDIT_FIX}.`,
    });
  }

  const accounts = resources
    .filter((r) => r.type === STORAGE_ACCOUNT)
    .map((r) => ({ resource: r, name: str(known(r.props, "accountName")) ?? str(known(r.props, "name")) }));
  const blobSettings = settings.filter((s) => onBlobService(s) && covers(s, BLOB_AUDIT_CATEGORIES));
  for (const a of uncovered(accounts, blobSettings, (n) => `/storageaccounts/${n}/blobservices/default`)) {
    violations.push({
      resource: a.resource.name,
      message: `storage account ${a.name ?? "(generated name)"}: no DiagnosticSetting on its blob service (<account id>/blobServices/default) enables ${BLOB_AUDIT_CATEGORIES.join(", ")} (${blobSettings.length} such settings for ${accounts.length} storage accounts), so blob reads, writes and deletes are not logged; ${AUDIT_FIX}.`,
    });
  }
  return violations;
}

// ---------------------------------------------------------------------------------------------------
// encryption-at-host

function atHostProblem(subject: string, pool: Props): string[] {
  if (pool.enableEncryptionAtHost === true) return [];
  return [
    `${subject}: enableEncryptionAtHost is ${JSON.stringify(pool.enableEncryptionAtHost ?? null)}; set it to true (security.encryption.atHost) so temp disks, disk caches and ephemeral OS disks are encrypted on the host.`,
  ];
}

/** Node pools (inline and AgentPool) encrypt at host; storage accounts require infrastructure encryption. */
export function encryptionAtHost(type: string, props: Props): string[] {
  if (type === MANAGED_CLUSTER) {
    return list(props.agentPoolProfiles)
      .map(record)
      .flatMap((p) => atHostProblem(`node pool "${str(p.name) ?? "?"}"`, p));
  }
  if (type === AGENT_POOL) return atHostProblem(`node pool "${str(props.agentPoolName) ?? "?"}"`, props);
  if (type === STORAGE_ACCOUNT) {
    const required = record(props.encryption).requireInfrastructureEncryption;
    if (required === true) return [];
    return [
      `storage account ${str(props.accountName) ?? "(generated name)"}: encryption.requireInfrastructureEncryption is ${JSON.stringify(required ?? null)}; set it to true (security.encryption.infrastructure) for a second layer of encryption at rest. Azure accepts it only when the account is created, so an existing account has to be replaced.`,
    ];
  }
  return [];
}

// ---------------------------------------------------------------------------------------------------
// no-root-credentials

/** A Milvus token for the root user (`user:password`). */
const ROOT_TOKEN = /^\s*root:/;

function isAccessJob(kind: string, props: Props): boolean {
  const labels = record(record(props.metadata).labels);
  return kind === "Job" && Object.entries(ACCESS_JOB_LABELS).every(([k, v]) => labels[k] === v);
}

/** How a pod spec uses Secret `secret`: one phrase per reference. */
function secretUses(podSpec: Props, secret: string): string[] {
  const uses: string[] = [];
  for (const c of containersOf(podSpec)) {
    for (const e of list(c.spec.env).map(record)) {
      const ref = str(known(record(record(e.valueFrom).secretKeyRef), "name"));
      if (ref === secret) uses.push(`${c.role} "${c.name}" env ${str(e.name) ?? "?"} reads`);
    }
    for (const f of list(c.spec.envFrom).map(record)) {
      if (str(known(record(f.secretRef), "name")) === secret)
        uses.push(`${c.role} "${c.name}" envFrom loads`);
    }
  }
  for (const v of secretVolumes(podSpec)) {
    if (v.secret === secret) uses.push(`volume "${v.volume}" holds`);
  }
  return uses;
}

/**
 * The Milvus root user belongs to the access Job (components/backupDeployment/milvusAccess.ts), which creates every
 * other user: no other workload references Secret `milvus-root-credentials` (env, envFrom, Secret
 * and projected volumes, init containers and CronJob templates included), no env var holds a literal
 * root token, and no other Secret holds one (`root:<password>`), where its values are readable (they
 * are unknown in a preview that generates the password). The exemption goes by the Job's labels: the
 * policy cannot tell who wrote a Job, only that it claims to be the access Job.
 */
export function noRootCredentials(resources: StackResource[]): Violation[] {
  const violations: Violation[] = [];
  for (const r of resources) {
    const kind = k8sKind(r.type);
    if (kind === "Secret") {
      const name = str(record(r.props.metadata).name);
      if (name === ROOT_CREDENTIALS_SECRET) continue;
      for (const e of secretEntries(r.props)) {
        if (!ROOT_TOKEN.test(e.value)) continue;
        violations.push({
          resource: r.name,
          message: `${k8sSubject(r.type, r.props)}: ${e.field}.${e.key} holds a Milvus root token ("root:..."); only Secret ${ROOT_CREDENTIALS_SECRET} may, for the access Job. Give the workload its own Milvus user (access.users).`,
        });
      }
      continue;
    }
    if (kind === undefined || !WORKLOAD_KINDS.includes(kind)) continue;
    const pod = podTemplate(kind, r.props);
    if (pod === undefined) continue;
    const subject = k8sSubject(r.type, r.props);
    if (!isAccessJob(kind, r.props)) {
      for (const use of secretUses(pod.spec, ROOT_CREDENTIALS_SECRET)) {
        violations.push({
          resource: r.name,
          message: `${subject}: ${use} Secret ${ROOT_CREDENTIALS_SECRET}; only the access Job (a Job labelled ${NAME_LABEL}=milvus-backup, ${COMPONENT_LABEL}=access) may use the Milvus root user. Give the workload its own Milvus user (access.users).`,
        });
      }
    }
    for (const c of containersOf(pod.spec)) {
      for (const e of list(c.spec.env).map(record)) {
        const value = unseal(known(e, "value"));
        if (typeof value === "string" && ROOT_TOKEN.test(value)) {
          violations.push({
            resource: r.name,
            message: `${subject}: ${c.role} "${c.name}" env ${str(e.name) ?? "?"} holds a literal Milvus root token ("root:..."); no workload may carry root credentials. Give the workload its own Milvus user (access.users).`,
          });
        }
      }
    }
  }
  return violations;
}
