import * as fs from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";
import { aksClusterSettings, aksZoneRedundancy } from "./aks";
import { Props, ResourceCheck, StackCheck, StackResource } from "./common";
import { milvusStandaloneSingleReplica } from "./milvus";
import { noPublicLoadBalancer } from "./network";
import { pdbAllowsDisruption } from "./pdb";
import { noPlaintextSecrets } from "./secrets";
import { auditDiagnostics, encryptionAtHost, milvusTls, noRootCredentials } from "./security";
import { storageAccountHardening } from "./storage";
import { containerHygiene } from "./workloads";

/** The pack's policies as data: policy/index.ts turns them into @pulumi/policy policies, the tests call them. */

interface PolicyMeta {
  name: string;
  description: string;
}
export type ResourcePolicyDef = PolicyMeta & { scope: "resource"; check: ResourceCheck };
export type StackPolicyDef = PolicyMeta & { scope: "stack"; check: StackCheck };
export type PolicyDef = ResourcePolicyDef | StackPolicyDef;

export const POLICY_PACK_NAME = "milvus-aks-production";

/**
 * @param secretsObservable false in a real policy run, where @pulumi/policy has already unwrapped
 *   secrets (see secrets.ts); true for the offline render.
 */
export function policyDefinitions(secretsObservable: boolean): PolicyDef[] {
  return [
    {
      scope: "resource",
      name: "aks-cluster-settings",
      description:
        "AKS runs the Standard tier and every node pool has the cluster autoscaler on with 0 <= min <= max.",
      check: aksClusterSettings,
    },
    {
      scope: "stack",
      name: "aks-zone-redundancy",
      description: "The system pool spans zones 1, 2 and 3, and the user pools together cover all three.",
      check: aksZoneRedundancy,
    },
    {
      scope: "stack",
      name: "pdb-allows-disruption",
      description:
        "PodDisruptionBudgets allow at least one disruption (maxUnavailable >= 1, or minAvailable below the replica count) and never cover a singleton.",
      check: pdbAllowsDisruption,
    },
    {
      scope: "resource",
      name: "container-hygiene",
      description:
        "Every container of every workload pins its image (no latest, no missing tag), sets CPU and memory requests and limits, and long-running ones have liveness and readiness probes; batch jobs set activeDeadlineSeconds.",
      check: containerHygiene,
    },
    {
      scope: "resource",
      name: "no-public-load-balancer",
      description:
        'LoadBalancer Services carry service.beta.kubernetes.io/azure-load-balancer-internal: "true".',
      check: noPublicLoadBalancer,
    },
    {
      scope: "resource",
      name: "storage-account-hardening",
      description:
        "Storage accounts: HTTPS only, TLS 1.2+, no public blob access, shared keys off, firewall default Deny; the backup account is RA-GZRS.",
      check: storageAccountHardening,
    },
    {
      scope: "resource",
      name: "no-plaintext-secrets",
      description:
        "No account keys, SAS signatures or private keys in resource properties, no credential-named env vars or ConfigMap keys with literal values, and Kubernetes Secret data held as Pulumi secrets.",
      check: (type, props) => noPlaintextSecrets(type, props, { secretsObservable }),
    },
    {
      scope: "stack",
      name: "milvus-standalone-single-replica",
      description:
        "Standalone Milvus runs exactly one replica, has no HorizontalPodAutoscaler and never rolls with a surge.",
      check: milvusStandaloneSingleReplica,
    },
    {
      scope: "stack",
      name: "milvus-tls",
      description:
        "Where Milvus runs: a cert-manager Certificate issues Secret milvus-tls, the client-facing pods (proxy or standalone) mount it, and user.yaml sets common.security.tlsMode 1 or 2 (checked when readable).",
      check: milvusTls,
    },
    {
      scope: "stack",
      name: "audit-diagnostics",
      description:
        "Every AKS cluster has a diagnostic setting with kube-audit-admin and guard enabled, and there are at least as many blob-service diagnostic settings (StorageRead, StorageWrite, StorageDelete) as storage accounts.",
      check: auditDiagnostics,
    },
    {
      scope: "resource",
      name: "encryption-at-host",
      description:
        "Every node pool (inline and AgentPool) has enableEncryptionAtHost: true, and every storage account encryption.requireInfrastructureEncryption: true.",
      check: encryptionAtHost,
    },
    {
      scope: "stack",
      name: "no-root-credentials",
      description:
        "Only the access Job (a Job labelled app.kubernetes.io/name=milvus-backup, component=access) references Secret milvus-root-credentials; no other Secret and no env var holds a Milvus root token (root:...).",
      check: noRootCredentials,
    },
  ];
}

export type EnforcementLevel = "advisory" | "mandatory";
export const PROD_LIKE_ENVIRONMENTS = ["staging", "prod", "dr"];

/** Mandatory for prod-like environments and for anything unknown (fail closed); advisory for dev. */
export function enforcementFor(environment: string | undefined): EnforcementLevel {
  return environment === "dev" ? "advisory" : "mandatory";
}

/** Name of the environment variable that tells the pack which stack it is checking. */
export const STACK_ENV_VAR = "MILVUS_AKS_STACK";

/**
 * The environment (`milvus-aks:environment`) of the stack named by MILVUS_AKS_STACK, read from
 * `Pulumi.<stack>.yaml` next to the pack. Returns a reason instead when it cannot be determined.
 */
export function environmentOfStack(
  stack: string | undefined,
  projectDir: string,
): { environment: string } | { reason: string } {
  if (stack === undefined || stack === "") {
    return { reason: `${STACK_ENV_VAR} is not set` };
  }
  // Accept org/project/stack as well as the bare stack name.
  const bare = stack.split("/").pop() ?? stack;
  const file = path.join(projectDir, `Pulumi.${bare}.yaml`);
  if (!fs.existsSync(file)) return { reason: `${STACK_ENV_VAR}=${stack} but ${file} does not exist` };
  const doc = yaml.load(fs.readFileSync(file, "utf8")) as { config?: Props } | undefined;
  const env = doc?.config?.["milvus-aks:environment"];
  if (typeof env !== "string") return { reason: `${file} sets no milvus-aks:environment` };
  return { environment: env };
}

export interface EvaluatedViolation {
  policy: string;
  enforcement: EnforcementLevel;
  resource?: string;
  message: string;
}

/** Runs every policy over a stack's resources, as the engine would (used by the tests and tooling). */
export function evaluate(
  resources: StackResource[],
  environment: string,
  options: { secretsObservable: boolean } = { secretsObservable: true },
): EvaluatedViolation[] {
  const enforcement = enforcementFor(environment);
  const out: EvaluatedViolation[] = [];
  for (const p of policyDefinitions(options.secretsObservable)) {
    if (p.scope === "resource") {
      for (const r of resources) {
        for (const message of p.check(r.type, r.props)) {
          out.push({ policy: p.name, enforcement, resource: r.name, message });
        }
      }
    } else {
      for (const v of p.check(resources)) out.push({ policy: p.name, enforcement, ...v });
    }
  }
  return out;
}
