import * as fs from "node:fs";
import {
  describeArgProblem,
  parseCommandLine,
  usageError,
  usageText,
  type CommandSpec,
} from "../backup/cliArgs";

/**
 * `npm run -s check:preview -- <preview.json | -> [--allow <urn> ...]`
 *
 * Reads the document `pulumi preview --json` prints and fails (exit 1) when the plan replaces or deletes a
 * stateful resource: the etcd and MinIO StatefulSets, volumes, namespaces, the storage accounts that hold
 * Milvus's data and its backups, the cluster and its pools. CI runs it before every `pulumi up` and in
 * every pull-request preview. Exit 0 prints how many steps were checked; exit 2 is bad usage or input
 * that is not a preview document. `--allow <urn>` (repeatable, exact URN) lets one deliberate
 * replacement or deletion through.
 *
 * Why: pulumi-kubernetes replaces a StatefulSet when `spec.volumeClaimTemplates`,
 * `spec.podManagementPolicy`, `spec.selector`, `spec.serviceName` or `spec.revisionHistoryLimit`
 * change (pulumi/pulumi-kubernetes provider/pkg/provider/diff.go, `statefulSet`), and because ours
 * have a fixed `metadata.name` it deletes the old object before creating the new one
 * (provider/pkg/provider/provider.go, `Diff`: `deleteBeforeReplace`): every etcd member or MinIO pod
 * goes at once, and the cluster loses quorum or its erasure set.
 */

/**
 * The document's shape, from pulumi/pulumi: `PreviewDigest`, `PreviewStep` and `PropertyDiff` in
 * sdk/pkg/display/json.go (aliased by pkg/display/json.go), filled by `ShowPreviewDigest` /
 * `getPreviewMetadataStep` in pkg/backend/display/json.go. Every field but `op`, `urn` and
 * `detailedDiff` is `omitempty` in Go, so it may be absent. `oldState` / `newState` are
 * `apitype.ResourceV3` (sdk/go/common/apitype/core.go); only the fields read here are typed.
 */
export interface ResourceState {
  urn?: string;
  type?: string;
  custom?: boolean;
  id?: string;
  [key: string]: unknown;
}

export interface PreviewStep {
  op: string;
  urn: string;
  provider?: string;
  oldState?: ResourceState;
  newState?: ResourceState;
  diffReasons?: string[];
  replaceReasons?: string[];
  detailedDiff?: Record<string, { kind: string; inputDiff: boolean }> | null;
}

export interface PreviewDigest {
  config?: Record<string, string>;
  steps: PreviewStep[];
  diagnostics?: { urn?: string; prefix?: string; message?: string; severity?: string }[];
  /** Go's time.Duration: nanoseconds. */
  duration?: number;
  changeSummary?: Record<string, number>;
  maybeCorrupt?: boolean;
}

/** Resource types whose replacement or deletion loses data or takes every replica down at once. */
export const STATEFUL_TYPES: ReadonlyMap<string, string> = new Map(
  Object.entries({
    // etcd (Milvus metadata) and MinIO (segments, WAL): replaced delete-before-create, all members at once.
    "kubernetes:apps/v1:StatefulSet":
      "etcd and MinIO run as StatefulSets with a fixed name: a replacement deletes every member before the new one exists",
    // The claim binds the data disk; its replace triggers (accessModes, selector, storageClassName,
    // volumeName) re-bind to a new, empty disk.
    "kubernetes:core/v1:PersistentVolumeClaim":
      "the claim holds a data disk; a replacement binds a new, empty one and a Delete-class disk goes with it",
    // The Azure disk itself; with reclaimPolicy Delete, deleting the volume deletes the disk.
    "kubernetes:core/v1:PersistentVolume": "the volume is the Azure disk; deleting it can delete the disk",
    // Deleting a namespace deletes everything in it, the claims included.
    "kubernetes:core/v1:Namespace": "deleting a namespace deletes every object in it, volume claims included",
    // The backup account (and Milvus's object store with objectStore: azureBlob).
    "azure-native:storage:StorageAccount":
      "the account holds the backups (or Milvus's object store): deleting it deletes every blob",
    "azure-native:storage:BlobContainer":
      "the container holds the backups or Milvus's data: deleting it deletes them",
    // The cluster's node resource group holds every managed disk; it goes with the cluster.
    "azure-native:containerservice:ManagedCluster":
      "the cluster's node resource group holds every data disk and is deleted with it",
    // A pool replacement drains every node of the pool at once (the data pool runs etcd and MinIO).
    "azure-native:containerservice:AgentPool":
      "replacing a pool removes all of its nodes at once, and every etcd or MinIO pod on them",
    // The customer-managed key: without it every disk and blob it encrypts is unreadable.
    "azure-native:keyvault:Vault":
      "the vault holds the customer-managed key; without it the disks and blobs it encrypts are unreadable",
    "azure-native:keyvault:Key":
      "the customer-managed key: a replacement is a different key, and the old one protects the data",
    "azure-native:compute:DiskEncryptionSet":
      "every customer-key disk of the cluster names this set; a replacement strands them",
    // Audit history is evidence; a new workspace starts empty.
    "azure-native:operationalinsights:Workspace":
      "the workspace holds the audit history; a replacement starts empty",
    // Deleting the group deletes the cluster and the storage accounts in it.
    "azure-native:resources:ResourceGroup":
      "deleting the group deletes the cluster and the storage accounts in it",
  }),
);

/**
 * Step ops that destroy (or schedule the destruction of) the object Pulumi manages. The full list is
 * `StepOps` in pulumi/pulumi pkg/resource/deploy/step.go (mirrored as `OpType` in
 * sdk/go/common/apitype/history.go); what each does is that file's step types. By default the JSON
 * holds only logical steps: `shouldShow` in pkg/backend/display/display.go drops the non-logical ones
 * (create-replacement, delete-replaced, read-replacement, import-replacement) unless
 * `--show-replacement-steps`. CI passes that flag, because a delete-before-replace also deletes the
 * dependents that must be replaced with it, and those show only as delete-replaced steps
 * (pkg/resource/deploy/step_generator.go, `calculateDependentReplacements`).
 */
export const DESTRUCTIVE_OPS: ReadonlyMap<string, string> = new Map(
  Object.entries({
    // ReplaceStep: the logical replacement the default JSON shows (with replaceReasons).
    replace: "replaces the resource",
    // CreateStep with `replacing`: the new object of a replacement; the old one is deleted before or after.
    "create-replacement": "creates the replacement of the resource, whose old object is deleted",
    // DeleteStep with `replacing`: deletes the old object, before the create when deleteBeforeReplace.
    "delete-replaced": "deletes the resource as part of a replacement",
    // DeleteStep: calls the provider's Delete.
    delete: "deletes the resource",
    // ReadStep with `replacing`: a managed resource becomes a read one; the old object is marked Delete.
    "read-replacement": "replaces the managed resource with a read one and deletes the original",
    // ImportStep with `replacing`: the original resource is marked Delete.
    "import-replacement": "replaces the resource with an imported one and deletes the original",
  }),
);

/**
 * The other ops, which leave the object in place: nothing changes (same), a new resource (create,
 * import), an in-place change (update), a read or refresh; `discard` and `discard-replaced` are
 * DeleteSteps of *external* (read) resources, for which step.go calls no provider Delete ("Deleting an
 * External resource is a no-op"); `remove-pending-replace` only drops from the state a resource whose
 * delete already ran in an interrupted delete-before-replace (its Apply is a no-op). An op in neither
 * list (a newer CLI) is treated as destructive.
 */
export const NON_DESTRUCTIVE_OPS: readonly string[] = [
  "same",
  "create",
  "update",
  "read",
  "refresh",
  "import",
  "discard",
  "discard-replaced",
  "remove-pending-replace",
];

export interface Finding {
  /** Index of the step in the document. */
  index: number;
  op: string;
  urn: string;
  /** The resource type, or undefined when neither the states nor the URN give one. */
  type: string | undefined;
  replaceReasons: string[];
  diffReasons: string[];
}

export interface CheckResult {
  checked: number;
  /** Steps that replace or delete a stateful resource and were not allowed. */
  blocked: Finding[];
  /** The same, let through by `--allow`. */
  allowed: Finding[];
  /** `--allow` URNs that matched no destructive step (stale or mistyped). */
  unusedAllows: string[];
}

/** Input that is not a `pulumi preview --json` document. */
export class PreviewInputError extends Error {}

/**
 * The type of a URN, `urn:pulumi:<stack>::<project>::<qualified type>::<name>`, where the qualified
 * type is the parent types and the resource's own, joined by `$` (the name may itself contain `::`).
 */
export function typeFromUrn(urn: string): string | undefined {
  const prefix = "urn:pulumi:";
  if (!urn.startsWith(prefix)) return undefined;
  const parts = urn.slice(prefix.length).split("::");
  if (parts.length < 4) return undefined;
  const own = (parts[2] ?? "").split("$").pop();
  return own === undefined || own === "" ? undefined : own;
}

/** The step's resource type: from its new or old state, else from its URN. */
export function stepType(step: PreviewStep): string | undefined {
  return step.newState?.type ?? step.oldState?.type ?? typeFromUrn(step.urn);
}

export function isDestructive(op: string): boolean {
  return DESTRUCTIVE_OPS.has(op) || !NON_DESTRUCTIVE_OPS.includes(op);
}

/** Whether a step of this type can lose data; an unknown type is treated as stateful. */
export function isStateful(type: string | undefined): boolean {
  return type === undefined || STATEFUL_TYPES.has(type);
}

export function checkPreview(digest: PreviewDigest, allow: readonly string[] = []): CheckResult {
  const blocked: Finding[] = [];
  const allowed: Finding[] = [];
  const used = new Set<string>();
  digest.steps.forEach((step, index) => {
    const type = stepType(step);
    if (!isDestructive(step.op) || !isStateful(type)) return;
    const finding: Finding = {
      index,
      op: step.op,
      urn: step.urn,
      type,
      replaceReasons: step.replaceReasons ?? [],
      diffReasons: step.diffReasons ?? [],
    };
    if (allow.includes(step.urn)) {
      used.add(step.urn);
      allowed.push(finding);
    } else {
      blocked.push(finding);
    }
  });
  return {
    checked: digest.steps.length,
    blocked,
    allowed,
    unusedAllows: [...new Set(allow)].filter((u) => !used.has(u)),
  };
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === "string");

/** Parses and checks the shape of a `pulumi preview --json` document; throws PreviewInputError. */
export function parsePreview(text: string): PreviewDigest {
  if (text.trim() === "")
    throw new PreviewInputError("the input is empty (did `pulumi preview --json` fail?)");
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    const first = text.trimStart().split("\n", 1)[0] ?? "";
    let streamed = false;
    try {
      const line: unknown = JSON.parse(first);
      streamed = isObject(line) && "sequence" in line && "timestamp" in line;
    } catch {
      streamed = false;
    }
    if (streamed) {
      throw new PreviewInputError(
        "the input is a stream of engine events, not the preview document: unset PULUMI_ENABLE_STREAMING_JSON_PREVIEW",
      );
    }
    throw new PreviewInputError(`the input is not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isObject(doc)) throw new PreviewInputError("the input is not a JSON object");
  if (!Array.isArray(doc.steps)) {
    throw new PreviewInputError(
      'the input has no "steps" array: not a `pulumi preview --json` document (every preview lists at least the stack)',
    );
  }
  const steps: unknown[] = doc.steps;
  steps.forEach((step, i) => {
    if (!isObject(step)) throw new PreviewInputError(`steps[${i}] is not an object`);
    if (typeof step.op !== "string" || step.op === "") throw new PreviewInputError(`steps[${i}] has no "op"`);
    if (typeof step.urn !== "string" || step.urn === "")
      throw new PreviewInputError(`steps[${i}] has no "urn"`);
    for (const key of ["oldState", "newState"]) {
      const state = step[key];
      if (state === undefined) continue;
      if (!isObject(state) || !(state.type === undefined || typeof state.type === "string"))
        throw new PreviewInputError(`steps[${i}].${key} is not a resource state`);
    }
    for (const key of ["diffReasons", "replaceReasons"]) {
      if (step[key] !== undefined && !isStringArray(step[key]))
        throw new PreviewInputError(`steps[${i}].${key} is not a list of property paths`);
    }
  });
  return doc as unknown as PreviewDigest;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** What to do instead, or how to go ahead on purpose; printed under every refusal. */
export const PROCEED = `Nothing was changed. Before going ahead:
  - Prefer a change that keeps these resources: grow a volume by patching each PVC's
    spec.resources.requests.storage in place (the StorageClasses allow expansion) instead of the
    StatefulSet's volumeClaimTemplates, and leave names, selectors, serviceName and
    podManagementPolicy as they are.
  - If the replacement or deletion is intended, take a backup and check it restores, then allow exactly
    these URNs: --allow <urn> (once per URN). In CI, run the deploy workflow by hand with
    allow_stateful_changes set to the URNs, separated by spaces.`;

export function formatRefusal(result: CheckResult): string {
  const lines = [
    `check-preview: ${plural(result.blocked.length, "step")} of ${result.checked} would replace or delete a stateful resource:`,
  ];
  for (const f of result.blocked) {
    lines.push(`  ${f.op} ${f.urn}`);
    lines.push(
      `    ${f.type ?? "unknown type"}: ${DESTRUCTIVE_OPS.get(f.op) ?? `unknown step op "${f.op}"`}`,
    );
    const why = f.type === undefined ? undefined : STATEFUL_TYPES.get(f.type);
    if (why !== undefined) lines.push(`    why it matters: ${why}`);
    if (f.replaceReasons.length > 0) lines.push(`    replaceReasons: ${f.replaceReasons.join(", ")}`);
    if (f.diffReasons.length > 0) lines.push(`    diffReasons: ${f.diffReasons.join(", ")}`);
  }
  lines.push(PROCEED);
  return lines.join("\n");
}

export function formatSummary(result: CheckResult): string {
  const head = `check-preview: ${plural(result.checked, "step")} checked, none replaces or deletes a stateful resource`;
  if (result.allowed.length === 0) return `${head}.`;
  return [
    `${head} (${result.allowed.length} allowed by --allow):`,
    ...result.allowed.map((f) => `  ${f.op} ${f.urn}`),
  ].join("\n");
}

export const CHECK_PREVIEW: CommandSpec = {
  // Its messages have always been prefixed "check-preview:" (the file's name); CI logs are searched for it.
  name: "check-preview",
  invocation: "npm run -s check:preview --",
  synopsis: "<preview.json | -> [--allow <urn> ...]",
  description:
    "Fails when `pulumi preview --json` plans to replace or delete a stateful resource (StatefulSets, volumes,\n" +
    "namespaces, storage accounts, blob containers, the cluster and its pools, the resource group).",
  positionals: [["<preview.json>", 'what `pulumi preview --json` printed ("-" reads standard input)']],
  flags: {
    "--allow": {
      type: "string",
      multiple: true,
      value: "<urn>",
      help: "let this resource's replacement or deletion through (exact URN)",
    },
  },
  env: [],
  exitCodes: "0 no stateful resource is replaced or deleted, 1 some would be, 2 bad usage or input",
};

export const USAGE = usageText(CHECK_PREVIEW);

export interface Io {
  readFile: (path: string) => string;
  readStdin: () => string;
  out: (text: string) => void;
  err: (text: string) => void;
}

/** The command line; returns the exit code. */
export function run(argv: string[], io: Io): number {
  // Every positional is taken here so that a wrong count gets the message below, not the parser's.
  const line = parseCommandLine(argv, CHECK_PREVIEW.flags, { maxPositionals: Infinity });
  if (line.help) {
    io.out(USAGE);
    return 0;
  }
  const problems = line.problems.map(describeArgProblem);
  if (problems.length > 0) {
    io.err(usageError(CHECK_PREVIEW, problems));
    return 2;
  }
  const positionals = line.positionals;
  if (positionals.length !== 1) {
    io.err(usageError(CHECK_PREVIEW, [`expected one preview file (or "-"), got ${positionals.length}`]));
    return 2;
  }
  const allow = line.values.get("--allow") ?? [];
  const notUrns = allow.filter((u) => typeFromUrn(u) === undefined);
  if (notUrns.length > 0) {
    io.err(
      usageError(CHECK_PREVIEW, [
        `--allow takes a full URN (urn:pulumi:<stack>::<project>::<type>::<name>), not ${notUrns.map((u) => JSON.stringify(u)).join(", ")}`,
      ]),
    );
    return 2;
  }
  const source = positionals[0] ?? "-";
  let digest: PreviewDigest;
  try {
    const text = source === "-" ? io.readStdin() : io.readFile(source);
    digest = parsePreview(text);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.err(`check-preview: cannot read ${source === "-" ? "standard input" : source}: ${message}`);
    return 2;
  }
  const result = checkPreview(digest, allow);
  for (const u of result.unusedAllows)
    io.err(`check-preview: --allow ${u} matched no replace or delete (stale or mistyped URN)`);
  if (result.blocked.length > 0) {
    io.err(formatRefusal(result));
    return 1;
  }
  io.out(formatSummary(result));
  return 0;
}

if (require.main === module) {
  process.exitCode = run(process.argv.slice(2), {
    readFile: (p) => fs.readFileSync(p, "utf8"),
    readStdin: () => fs.readFileSync(0, "utf8"),
    out: (t) => {
      console.log(t);
    },
    err: (t) => {
      console.error(t);
    },
  });
}
