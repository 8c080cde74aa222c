import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { APP, appLabels, clusterDns } from "../common/naming";

/** Secrets cert-manager writes (type kubernetes.io/tls: tls.crt, tls.key and, from a CA issuer, ca.crt). */
export const MILVUS_TLS_SECRET = "milvus-tls";
export const MILVUS_INTERNAL_TLS_SECRET = "milvus-internal-tls";
/**
 * The one name every Milvus component's internal certificate carries and every internal client checks
 * (`internaltls.sni`): components dial each other by pod IP (sessions in etcd), which no certificate
 * can list, so verification is against this fixed name instead.
 */
export const MILVUS_INTERNAL_SNI = "milvus-internal";

/**
 * Leaf lifetime and renewal. cert-manager renews at renewBefore; Milvus reads its certificate files when
 * a process starts, so a renewed certificate is served after the next restart, and the 30 days between
 * renewal and expiry leave room for the weekly maintenance window's node-image rollout to restart every
 * pod (docs/security.md "TLS to Milvus").
 */
export const LEAF_DURATION = "2160h";
export const LEAF_RENEW_BEFORE = "720h";

export interface CertificateSpec {
  name: string;
  secretName: string;
  dnsNames: string[];
  usages: string[];
}

/** The client-facing and internal certificates for Milvus in `namespace` (pure, unit-tested). */
export function milvusCertificateSpecs(args: {
  namespace: string;
  serviceName: string;
  extraDnsNames: string[];
  internal: boolean;
  client: boolean;
}): CertificateSpec[] {
  const svc = args.serviceName;
  const ns = args.namespace;
  const specs: CertificateSpec[] = [];
  if (args.client) {
    specs.push({
      name: MILVUS_TLS_SECRET,
      secretName: MILVUS_TLS_SECRET,
      // Every name a pod in the cluster can use for the Service, plus the names clients outside use.
      dnsNames: [
        ...new Set([svc, `${svc}.${ns}`, `${svc}.${ns}.svc`, clusterDns(svc, ns), ...args.extraDnsNames]),
      ],
      usages: ["server auth", "digital signature"],
    });
  }
  if (args.internal) {
    specs.push({
      name: MILVUS_INTERNAL_TLS_SECRET,
      secretName: MILVUS_INTERNAL_TLS_SECRET,
      dnsNames: [MILVUS_INTERNAL_SNI],
      // Each component is server and client of the others with the same certificate.
      usages: ["server auth", "client auth", "digital signature"],
    });
  }
  return specs;
}

export interface MilvusCertificatesArgs {
  /** Data namespace (resolved output, so the Certificates wait for it). @default none */
  namespace: pulumi.Input<string>;
  /** Data namespace name. @default none */
  namespaceName: string;
  /** Milvus client Service name. @default none */
  serviceName: string;
  /** Extra DNS names on the client certificate. @default [] */
  extraDnsNames?: string[];
  /** Issue the client-facing certificate. @default none */
  client: boolean;
  /** Issue the internal certificate. @default none */
  internal: boolean;
  /** cert-manager issuer reference. @default none */
  issuerRef: { name: string; kind: string; group: string };
  /** cert-manager's release and issuer: Certificates wait for them. @default [] */
  dependsOn?: pulumi.Resource[];
}

/** cert-manager Certificates for Milvus; each is awaited until Ready, so Milvus never starts without it. */
export class MilvusCertificatesComponent extends pulumi.ComponentResource {
  public readonly certificates: pulumi.Resource[] = [];

  constructor(name: string, args: MilvusCertificatesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:security:MilvusCertificates", name, {}, opts);
    const specs = milvusCertificateSpecs({
      namespace: args.namespaceName,
      serviceName: args.serviceName,
      extraDnsNames: args.extraDnsNames ?? [],
      internal: args.internal,
      client: args.client,
    });
    for (const spec of specs) {
      this.certificates.push(
        new k8s.apiextensions.CustomResource(
          `${name}-${spec.name}`,
          {
            apiVersion: "cert-manager.io/v1",
            kind: "Certificate",
            metadata: {
              name: spec.name,
              namespace: args.namespace,
              labels: appLabels(APP.milvus, "tls"),
              // pulumi-kubernetes waits for this condition (the `pulumi.com/waitFor` annotation, v4.18+).
              annotations: { "pulumi.com/waitFor": "condition=Ready" },
            },
            spec: {
              secretName: spec.secretName,
              dnsNames: spec.dnsNames,
              duration: LEAF_DURATION,
              renewBefore: LEAF_RENEW_BEFORE,
              // A new key at every renewal (cert-manager's default since v1.18, stated so it never drifts).
              privateKey: { algorithm: "ECDSA", size: 256, rotationPolicy: "Always" },
              usages: spec.usages,
              issuerRef: args.issuerRef,
              secretTemplate: { labels: appLabels(APP.milvus, "tls") },
            },
          },
          { parent: this, dependsOn: args.dependsOn },
        ),
      );
    }
    this.registerOutputs({});
  }
}
