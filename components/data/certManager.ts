import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import * as tls from "@pulumi/tls";
import { TlsIssuer } from "../common/config";
import { appLabels, PART_OF } from "../common/naming";

export const CERT_MANAGER_NAMESPACE = "cert-manager";
export const CERT_MANAGER_CHART = "cert-manager";
/**
 * The chart's HTTP repository. cert-manager's install docs ("Helm", cert-manager.io) name the OCI copy
 * (oci://quay.io/jetstack/charts/cert-manager) the source of truth and say this one is updated a few
 * hours after it; the HTTP repository is what helm.v3.Release's repositoryOpts takes.
 */
export const CERT_MANAGER_REPO = "https://charts.jetstack.io";
/** Name of the stack's own CA ClusterIssuer (when `security.tls.issuer.name` is empty). */
export const STACK_CA_ISSUER = "milvus-aks-ca";
/** Secret (in the cert-manager namespace, the CA issuer's "cluster resource namespace") holding the CA. */
export const STACK_CA_SECRET = "milvus-aks-ca";

/** How long the stack's CA lives, and when `pulumi up` renews it (tls.SelfSignedCert early renewal). */
export const CA_VALIDITY_HOURS = 10 * 8760;
export const CA_EARLY_RENEWAL_HOURS = 8760;

/**
 * The cert-manager chart values this stack sets (deploy/charts/cert-manager/values.yaml at v1.21.1).
 * - `crds.enabled`/`crds.keep` replaced `installCRDs` in v1.15 (the chart refuses both at once); `keep`
 *   leaves the CRDs (and so every Certificate) in place if the release is ever uninstalled.
 * - Replicas and PDBs default to 1 and off; the chart's own comments advise 2+ with a PDB in production,
 *   and the webhook answers every Certificate admission, so one webhook pod on a drained node would
 *   block renewals.
 * - Leader election defaults to kube-system, which needs a Role there; the cert-manager namespace keeps
 *   everything of the release in one place (cert-manager.io "Compatibility", GKE Autopilot section).
 * The default pod and container security contexts already meet Pod Security "restricted" (runAsNonRoot,
 * RuntimeDefault seccomp, no privilege escalation, all capabilities dropped), so the namespace enforces it.
 */
export function certManagerValues(production: boolean): Record<string, unknown> {
  const replicas = production ? 2 : 1;
  const pdb = production ? { enabled: true, maxUnavailable: 1 } : { enabled: false };
  const resources = (cpu: string, memory: string) => ({
    requests: { cpu, memory },
    limits: { cpu, memory },
  });
  return {
    crds: { enabled: true, keep: true },
    global: { leaderElection: { namespace: CERT_MANAGER_NAMESPACE } },
    replicaCount: replicas,
    podDisruptionBudget: pdb,
    resources: resources("100m", "256Mi"),
    webhook: { replicaCount: replicas, podDisruptionBudget: pdb, resources: resources("100m", "128Mi") },
    cainjector: { replicaCount: replicas, podDisruptionBudget: pdb, resources: resources("100m", "256Mi") },
    startupapicheck: { resources: resources("100m", "128Mi") },
    prometheus: { enabled: true },
  };
}

export interface CertManagerArgs {
  /** Exact chart version, e.g. "v1.21.1". @default none: `security.tls.certManagerChartVersion` */
  chartVersion: string;
  /** Production sizing (2 replicas and PDBs). @default none */
  production: boolean;
  /** Stack name, written into the CA's subject. @default none */
  stack: string;
  /**
   * A cert-manager issuer the organisation already runs; empty name: this stack's own CA.
   * @default { kind: "ClusterIssuer", name: "" }
   */
  issuer?: TlsIssuer;
  /** PEM bundle of the user-supplied issuer's CA (required with `issuer.name`). @default "" */
  caBundle?: string;
}

/**
 * cert-manager (a pinned Helm release) and the issuer of Milvus's certificates: by default a CA
 * ClusterIssuer whose CA key and certificate Pulumi generates, so the CA certificate is known at deploy
 * time and published as a stack output for applications to trust; cert-manager issues and renews the
 * server certificates from it. A user-supplied issuer replaces the CA (its bundle comes from config).
 */
export class CertManagerComponent extends pulumi.ComponentResource {
  /** The issuer Certificates name (`issuerRef`). */
  public readonly issuerRef: { name: string; kind: string; group: string };
  /** PEM CA certificate(s) clients must trust. */
  public readonly caCertificate: pulumi.Output<string>;
  /** The Helm release: Certificates wait for it (it installs the CRDs and the webhook). */
  public readonly ready: pulumi.Resource[];

  constructor(name: string, args: CertManagerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:security:CertManager", name, {}, opts);
    const ns = new k8s.core.v1.Namespace(
      `${name}-ns`,
      {
        metadata: {
          name: CERT_MANAGER_NAMESPACE,
          labels: {
            "app.kubernetes.io/part-of": PART_OF,
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
          },
        },
      },
      { parent: this },
    );
    const release = new k8s.helm.v3.Release(
      `${name}-release`,
      {
        name: CERT_MANAGER_CHART,
        chart: CERT_MANAGER_CHART,
        version: args.chartVersion,
        repositoryOpts: { repo: CERT_MANAGER_REPO },
        namespace: ns.metadata.name,
        values: certManagerValues(args.production),
        // The chart's startupapicheck post-install hook proves the webhook answers before anything
        // creates a Certificate; a failed install or upgrade rolls back as a whole.
        atomic: true,
        cleanupOnFail: true,
        timeout: 600,
        maxHistory: 10,
      },
      { parent: this },
    );

    const userIssuer = args.issuer?.name ? args.issuer : undefined;
    if (userIssuer) {
      this.issuerRef = { name: userIssuer.name, kind: userIssuer.kind, group: "cert-manager.io" };
      this.caCertificate = pulumi.output(args.caBundle ?? "");
      this.ready = [release];
    } else {
      const key = new tls.PrivateKey(
        `${name}-ca-key`,
        { algorithm: "ECDSA", ecdsaCurve: "P256" },
        { parent: this },
      );
      const cert = new tls.SelfSignedCert(
        `${name}-ca-cert`,
        {
          // The provider keeps it secret; said here too, so no code path can show it.
          privateKeyPem: pulumi.secret(key.privateKeyPem),
          isCaCertificate: true,
          subject: { commonName: `milvus-aks ${args.stack} CA`, organization: PART_OF },
          validityPeriodHours: CA_VALIDITY_HOURS,
          // Re-signed with the same key a year before expiry: certificates issued by the old CA
          // certificate still verify against the new one, so clients can switch bundles at leisure.
          earlyRenewalHours: CA_EARLY_RENEWAL_HOURS,
          allowedUses: ["cert_signing", "crl_signing", "digital_signature"],
        },
        { parent: this },
      );
      // The CA issuer reads tls.crt and tls.key from this Secret (cert-manager.io "CA" issuer docs).
      const caSecret = new k8s.core.v1.Secret(
        `${name}-ca-secret`,
        {
          metadata: {
            name: STACK_CA_SECRET,
            namespace: ns.metadata.name,
            labels: appLabels("cert-manager", "ca"),
          },
          type: "kubernetes.io/tls",
          stringData: { "tls.crt": cert.certPem, "tls.key": pulumi.secret(key.privateKeyPem) },
        },
        { parent: this },
      );
      const issuer = new k8s.apiextensions.CustomResource(
        `${name}-ca-issuer`,
        {
          apiVersion: "cert-manager.io/v1",
          kind: "ClusterIssuer",
          metadata: {
            name: STACK_CA_ISSUER,
            labels: appLabels("cert-manager", "ca"),
            annotations: { "pulumi.com/waitFor": "condition=Ready" },
          },
          spec: { ca: { secretName: STACK_CA_SECRET } },
        },
        // A custom resource waits for the release that installs its CRD (pulumi-kubernetes retries a
        // missing kind only briefly, provider/pkg/await/await.go).
        { parent: this, dependsOn: [release, caSecret] },
      );
      this.issuerRef = { name: STACK_CA_ISSUER, kind: "ClusterIssuer", group: "cert-manager.io" };
      this.caCertificate = cert.certPem;
      this.ready = [release, issuer];
    }
    this.registerOutputs({ caCertificate: this.caCertificate });
  }
}
