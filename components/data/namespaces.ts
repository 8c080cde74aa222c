import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { Environment } from "../common/config";
import { DATA_NAMESPACE, PART_OF } from "../common/naming";

export interface DataNamespaceArgs {
  /** Environment written into the namespace's labels (dashboards and policies select on it). @default none */
  environment: Environment;
  /** Namespace name. @default "milvus" (DATA_NAMESPACE) */
  name?: string;
}

/** Labels and container defaults of the data namespace, as one pure function (unit-tested). */
export function dataNamespaceDefaults(environment: Environment) {
  return {
    labels: {
      environment,
      "app.kubernetes.io/part-of": PART_OF,
      // Every workload in this namespace runs non-root with a RuntimeDefault seccomp profile and no
      // added capabilities, so the strictest Pod Security level is enforced rather than only audited.
      "pod-security.kubernetes.io/enforce": "restricted",
      "pod-security.kubernetes.io/enforce-version": "latest",
      "pod-security.kubernetes.io/warn": "restricted",
      "pod-security.kubernetes.io/audit": "restricted",
    },
    // A safety net for containers added later without sizing (e.g. a debug pod): they get modest
    // requests and limits instead of running unbounded next to the query nodes. Every container this
    // project declares sets its own values, which a LimitRange default never overrides.
    containerDefaults: {
      defaultRequest: { cpu: "100m", memory: "128Mi" },
      default: { cpu: "500m", memory: "512Mi" },
    },
  };
}

/** The data namespace (Milvus, etcd, MinIO, the backup worker) with Pod Security labels and a LimitRange. */
export class DataNamespaceComponent extends pulumi.ComponentResource {
  /** The namespace name, resolved once the namespace exists (children depend on it through this output). */
  public readonly name: pulumi.Output<string>;

  constructor(name: string, args: DataNamespaceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:k8s:DataNamespace", name, {}, opts);
    const d = dataNamespaceDefaults(args.environment);
    const ns = new k8s.core.v1.Namespace(
      `${name}-ns`,
      { metadata: { name: args.name ?? DATA_NAMESPACE, labels: d.labels } },
      { parent: this },
    );
    new k8s.core.v1.LimitRange(
      `${name}-limits`,
      {
        metadata: {
          name: "container-defaults",
          namespace: ns.metadata.name,
          labels: { "app.kubernetes.io/part-of": PART_OF },
        },
        spec: { limits: [{ type: "Container", ...d.containerDefaults }] },
      },
      { parent: this },
    );
    this.name = ns.metadata.name;
    this.registerOutputs({ name: this.name });
  }
}
