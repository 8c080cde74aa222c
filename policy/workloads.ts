import { containersOf, k8sKind, k8sSubject, podTemplate, Props, record, str, WORKLOAD_KINDS } from "./common";

/**
 * Every container of every workload: a pinned image, CPU and memory requests and limits, and (for
 * long-running pods) liveness and readiness probes.
 */

/** Run-to-completion kinds: probes do not apply; a deadline bounds a hang instead. */
const BATCH_KINDS = ["Job", "CronJob"];

/** Why an image reference is not pinned, or undefined when it is. */
export function imagePinProblem(image: string | undefined): string | undefined {
  if (image === undefined || image.trim() === "") return "has no image";
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return undefined;
  const lastSlash = image.lastIndexOf("/");
  const lastColon = image.lastIndexOf(":");
  // A colon before the last slash belongs to a registry port (host:5000/repo), not a tag.
  const tag = lastColon > lastSlash ? image.slice(lastColon + 1) : "";
  if (tag === "") return `image "${image}" has no tag`;
  if (tag === "latest") return `image "${image}" uses the floating tag "latest"`;
  return undefined;
}

const QUANTITIES = ["cpu", "memory"] as const;

function batchDeadline(kind: string, props: Props): number | undefined {
  const spec = record(props.spec);
  const jobSpec = kind === "CronJob" ? record(record(spec.jobTemplate).spec) : spec;
  const d = jobSpec.activeDeadlineSeconds;
  return typeof d === "number" ? d : undefined;
}

export function containerHygiene(type: string, props: Props): string[] {
  const kind = k8sKind(type);
  if (kind === undefined || !WORKLOAD_KINDS.includes(kind)) return [];
  const pod = podTemplate(kind, props);
  if (pod === undefined) return [];
  const subject = k8sSubject(type, props);
  const batch =
    BATCH_KINDS.includes(kind) ||
    ((kind === "Pod" || kind === "PodTemplate") &&
      (pod.spec.restartPolicy === "Never" || pod.spec.restartPolicy === "OnFailure"));
  const problems: string[] = [];
  const containers = containersOf(pod.spec);
  if (containers.length === 0) problems.push(`${subject}: pod template has no containers.`);
  for (const c of containers) {
    const who = `${subject} ${c.role} "${c.name}"`;
    const pin = imagePinProblem(str(c.spec.image));
    if (pin) problems.push(`${who}: ${pin}; pin a version tag or a digest.`);
    const resources = record(c.spec.resources);
    for (const section of ["requests", "limits"] as const) {
      const values = record(resources[section]);
      const absent = QUANTITIES.filter((q) => values[q] === undefined || values[q] === "");
      if (absent.length > 0) problems.push(`${who}: resources.${section} missing ${absent.join(" and ")}.`);
    }
    // Init containers cannot have probes; sidecars (restartPolicy Always) and regular containers of
    // long-running pods must, or a wedged process keeps receiving traffic and never restarts.
    if (!batch && c.role !== "initContainer") {
      const absent = (["livenessProbe", "readinessProbe"] as const).filter((p) => c.spec[p] === undefined);
      if (absent.length > 0) problems.push(`${who}: no ${absent.join(" and no ")}.`);
    }
  }
  if (BATCH_KINDS.includes(kind) && batchDeadline(kind, props) === undefined) {
    problems.push(
      `${subject}: no activeDeadlineSeconds; a batch pod has no probes, so a deadline is what stops a hung run.`,
    );
  }
  return problems;
}
