import { UnknownValueError } from "@pulumi/policy";
import { specialSecretSig, specialSigKey } from "@pulumi/pulumi/runtime/rpc";

/**
 * Shared vocabulary of the policy pack. Every policy is a pure function of what @pulumi/policy hands a
 * validation (a resource's type and input properties, or the list of resources for a stack check), so
 * the same code runs inside `pulumi preview --policy-pack policy` and against the offline render in
 * the tests.
 */

export type Props = Record<string, unknown>;

/** One resource as a stack check sees it. `name` is the Pulumi resource name (or URN, in a real run). */
export interface StackResource {
  type: string;
  name: string;
  props: Props;
}

export interface Violation {
  message: string;
  /** The offending resource's `name`, when the violation is about one resource. */
  resource?: string;
}

/** Mirrors `validateResource`: the resource's type token and its inputs; returns one message per problem. */
export type ResourceCheck = (type: string, props: Props) => string[];
/** Mirrors `validateStack`: every resource of the stack. */
export type StackCheck = (resources: StackResource[]) => Violation[];

export function isObject(v: unknown): v is Props {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A value the program marked as a Pulumi secret, when that is observable: under `pulumi.runtime.setMocks`
 * secrets reach the engine wrapped in Pulumi's secret signature. In a real policy run @pulumi/policy
 * unwraps every secret before `validateResource` sees it (pulumi/pulumi-policy#241), so nothing is
 * ever sealed there; checks that depend on this say so.
 */
export function isSealed(v: unknown): boolean {
  return isObject(v) && v[specialSigKey] === specialSecretSig;
}

/** The plain value behind a sealed one (recursively); other values unchanged. */
export function reveal(v: unknown): unknown {
  if (isSealed(v)) return reveal((v as Props).value);
  if (Array.isArray(v)) return v.map(reveal);
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reveal(x)]));
  return v;
}

/**
 * Reads `obj[key]`, treating a value that is unknown during `pulumi preview` as absent. Only for
 * walks that look for literals: an unknown value is computed by a provider, so it cannot be a
 * hard-coded credential. Structural checks read properties directly and let @pulumi/policy report
 * "can't run during preview" instead.
 */
function readKnown(obj: Props | unknown[], key: string | number): unknown {
  try {
    return (obj as Record<string | number, unknown>)[key];
  } catch (err) {
    if (err instanceof UnknownValueError) return undefined;
    throw err;
  }
}

/** Visits every string leaf with its property path, looking through sealed (secret) values. */
export function walkStrings(v: unknown, visit: (path: string, value: string) => void, path = ""): void {
  if (isSealed(v)) {
    walkStrings((v as Props).value, visit, path);
    return;
  }
  if (typeof v === "string") {
    visit(path, v);
    return;
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) walkStrings(readKnown(v, i), visit, `${path}[${i}]`);
    return;
  }
  if (isObject(v)) {
    for (const key of Object.keys(v)) walkStrings(readKnown(v, key), visit, path ? `${path}.${key}` : key);
  }
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

export function num(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "string" && /^-?\d+$/.test(v)) return Number(v);
  return undefined;
}

export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function record(v: unknown): Props {
  return isObject(v) ? v : {};
}

/** Kubernetes objects arrive under `kubernetes:<group>/<version>:<Kind>` type tokens. */
export function k8sKind(type: string): string | undefined {
  const m = /^kubernetes:[^:]+:([A-Za-z]+)$/.exec(type);
  return m?.[1];
}

/** `Kind namespace/name` for messages. */
export function k8sSubject(type: string, props: Props): string {
  const meta = record(props.metadata);
  // Helm releases carry their name at the top level.
  const name = str(meta.name) ?? str(props.name) ?? "(unnamed)";
  const ns = str(meta.namespace);
  return `${k8sKind(type) ?? type} ${ns ? `${ns}/` : ""}${name}`;
}

export const WORKLOAD_KINDS = [
  "Deployment",
  "StatefulSet",
  "DaemonSet",
  "ReplicaSet",
  "Job",
  "CronJob",
  "Pod",
  "PodTemplate",
];

/** The pod template of a workload (the spec itself for a Pod), or undefined for other kinds. */
export function podTemplate(kind: string, props: Props): { labels: Props; spec: Props } | undefined {
  const spec = record(props.spec);
  switch (kind) {
    case "Pod":
      return { labels: record(record(props.metadata).labels), spec };
    case "CronJob": {
      const tpl = record(record(record(spec.jobTemplate).spec).template);
      return { labels: record(record(tpl.metadata).labels), spec: record(tpl.spec) };
    }
    // A core/v1 PodTemplate keeps its template at the top level, not under spec.
    case "PodTemplate": {
      const tpl = record(props.template);
      return { labels: record(record(tpl.metadata).labels), spec: record(tpl.spec) };
    }
    case "Deployment":
    case "StatefulSet":
    case "DaemonSet":
    case "ReplicaSet":
    case "Job": {
      const tpl = record(spec.template);
      return { labels: record(record(tpl.metadata).labels), spec: record(tpl.spec) };
    }
    default:
      return undefined;
  }
}

export interface ContainerRef {
  /** "container", "initContainer" or "sidecar" (an init container with restartPolicy Always). */
  role: "container" | "initContainer" | "sidecar";
  name: string;
  spec: Props;
}

export function containersOf(podSpec: Props): ContainerRef[] {
  const out: ContainerRef[] = [];
  for (const c of list(podSpec.initContainers)) {
    const spec = record(c);
    out.push({
      role: spec.restartPolicy === "Always" ? "sidecar" : "initContainer",
      name: str(spec.name) ?? "(unnamed)",
      spec,
    });
  }
  for (const c of list(podSpec.containers)) {
    const spec = record(c);
    out.push({ role: "container", name: str(spec.name) ?? "(unnamed)", spec });
  }
  return out;
}

/** True when a label selector (matchLabels + matchExpressions) selects the given labels. */
export function selectorMatches(selector: Props, labels: Props): boolean {
  const matchLabels = record(selector.matchLabels);
  const expressions = list(selector.matchExpressions).map(record);
  if (Object.keys(matchLabels).length === 0 && expressions.length === 0) return false;
  for (const [k, v] of Object.entries(matchLabels)) if (labels[k] !== v) return false;
  for (const e of expressions) {
    const key = str(e.key) ?? "";
    const values = list(e.values).map(String);
    const has = key in labels;
    const value = String(labels[key]);
    switch (e.operator) {
      case "In":
        if (!has || !values.includes(value)) return false;
        break;
      case "NotIn":
        if (has && values.includes(value)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}
