import { revealSecrets } from "./offline-runtime";

/**
 * Validates rendered Kubernetes objects against the Kubernetes OpenAPI schemas (kubernetes-models)
 * and the Prometheus Operator and cert-manager CRD schemas. Unknown kinds are an error, never a silent pass.
 */

interface Validatable {
  validate(): void;
}
type ModelClass = new (data: unknown) => Validatable;

function modelFor(apiVersion: string, kind: string): ModelClass | undefined {
  const [group, version] = apiVersion.includes("/")
    ? (apiVersion.split("/") as [string, string])
    : ["", apiVersion];
  const modulePath =
    group === "monitoring.coreos.com"
      ? `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`
      : group === "cert-manager.io"
        ? `@kubernetes-models/cert-manager/cert-manager.io/${version}/${kind}`
        : group === ""
          ? `kubernetes-models/${version}/${kind}`
          : `kubernetes-models/${group}/${version}/${kind}`;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(modulePath) as Record<string, ModelClass | undefined>;
    return mod[kind];
  } catch {
    return undefined;
  }
}

/** Returns the schema problems of one object (empty when valid). Secrets are validated by value. */
export function schemaProblems(object: Record<string, unknown>): string[] {
  const obj = revealSecrets(object) as Record<string, unknown>;
  const apiVersion = String(obj.apiVersion);
  const kind = String(obj.kind);
  const meta = obj.metadata as { name?: string } | undefined;
  const id = `${apiVersion} ${kind} ${meta?.name ?? "(unnamed)"}`;
  const Model = modelFor(apiVersion, kind);
  if (!Model) return [`${id}: no OpenAPI schema known for ${apiVersion}/${kind}`];
  try {
    new Model(obj).validate();
    return [];
  } catch (err) {
    return [`${id}: ${err instanceof Error ? err.message : String(err)}`];
  }
}
