import { distance } from "fastest-levenshtein";
import { z } from "zod";
import { cronProblem } from "../../backup/schedule";
import type { Environment } from "./config";
import {
  ACCESS_LEVELS,
  checkQuantity,
  defaultsFor,
  DISK_SKUS,
  ENVIRONMENTS,
  MILVUS_MODES,
  OBJECT_STORES,
  WEEKDAYS,
} from "./config";
import { DATA_NAMESPACE } from "./naming";
import * as ipaddr from "ipaddr.js";

/**
 * The schema of the stack configuration: every `milvus-aks:*` key, its type, range, allowed values,
 * per-environment default and documentation. components/common/config.ts parses with it and keeps only the
 * rules that relate several keys; tools/config-docs.ts renders docs/configuration.md from it and
 * test/configSchema.test.ts checks that Pulumi.yaml declares the same top-level keys.
 *
 * Why zod (4.6.7, pinned): the schema is TypeScript, so the leaves reuse the project's own checks
 * (Kubernetes quantities, cron schedules, CIDRs) as refinements instead of re-encoding them in JSON
 * Schema keywords; `z.strictObject` reports unknown keys at every level (code `unrecognized_keys`, with
 * their names, which the did-you-mean suggestion needs); a failed parse returns every issue with its
 * path rather than the first; `.default()`/`.prefault()` carry the per-environment defaults, and
 * `z.registry` attaches each key's documentation to the schema node itself. valibot would do the same
 * with fewer downloads but a less common API; ajv would validate but not yield the typed config, and
 * the custom checks would be ajv keywords outside the schema's type inference.
 */

/** Documentation and error wording of one schema node. */
export interface ConfigDoc {
  /** Dotted key, `*` for a map entry (access.roles.*.access). */
  key: string;
  /** `leaf`: a value; `node`: an object or map with keys of its own. */
  kind: "leaf" | "node";
  description: string;
  /** What the value must be, as the error message and the docs say it. */
  allowed: string;
  /** Example value for the `pulumi config set --path` hint; undefined: the default. */
  example?: string;
  /** A fix that replaces the `pulumi config set` hint. */
  fix?: string;
  /** Required: no default, the stack file must set it. */
  required?: boolean;
  /** Documented default, where the schema cannot state it (a computed one). */
  defaultText?: string;
}

/** Documentation of every schema node, read by the parser's messages and the docs generator. */
export const configDocs = z.registry<ConfigDoc>();

export const CONFIG_NAMESPACE = "milvus-aks";
export const setHint = (key: string, example: string) =>
  `Set it with \`pulumi config set ${CONFIG_NAMESPACE}:${key} ${example}\` or in Pulumi.<stack>.yaml.`;
export const setPathHint = (key: string, example: string) =>
  `Set it with \`pulumi config set --path ${CONFIG_NAMESPACE}:${key} ${example}\` or in Pulumi.<stack>.yaml.`;

export const VM_SIZE = /^Standard_[A-Za-z0-9_]+$/;
export const K8S_VERSION = /^1\.\d{2}(\.\d+)?$/;
export const IMAGE_TAG = /^v?\d+\.\d+\.\d+(-[A-Za-z0-9.]+)?$/;
export const REGION = /^[a-z]+[a-z0-9]*$/;
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const COLLECTION = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
const STACK_NAME = /^[A-Za-z0-9_.-]{1,60}$/;
const STACK_REF = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;
const SUBNET_ID =
  /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Network\/virtualNetworks\/[^/]+\/subnets\/[^/]+$/i;
// MinIO images pinned to a RELEASE tag or a digest, never `latest` or another floating tag.
const MINIO_IMAGE =
  /^[a-z0-9.-]+(:\d+)?\/[a-z0-9._/-]+(:RELEASE\.[0-9TZ-]+(\.[a-z0-9]+)*|@sha256:[a-f0-9]{64})$/;
// Milvus name rules (milvus internal/proxy/validate_util.go, ValidateUsername and ValidateRoleName:
// a letter or underscore first, then letters, digits and underscores; at most 32 characters).
export const MILVUS_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;
// Database names: same alphabet, at most 64 characters (validate_util.go, ValidateDatabaseName).
const MILVUS_DATABASE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** backup.databases: database names, or "*" alone for every database (rule checked in config.ts). */
const DATABASE_OR_ALL = /^(\*|[A-Za-z_][A-Za-z0-9_]{0,63})$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;
export const SCHEDULE_ALLOWED =
  'a Kubernetes CronJob schedule in UTC: five fields such as "0 2 * * *" (names such as SUN or JAN allowed) or a macro such as @daily';

/**
 * backup.testRestore defaults (the dr stack's weekly test restore, components/backupDeployment/testRestore.ts):
 * Wednesdays 06:00 UTC, after the nightly 02:00 backup and away from the weekend maintenance windows; the
 * restore of each collection must finish within an hour (the restore share of the failover RTO).
 */
export const TEST_RESTORE_DEFAULTS = { schedule: "0 6 * * 3", rtoMinutes: 60 } as const;
export interface TestRestoreConfig {
  /** CronJob schedule (UTC) of the weekly test restore. */
  schedule: string;
  /** Longest acceptable restore of one collection, minutes; a slower test restore alerts. */
  rtoMinutes: number;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Two variants of one schema. `strict` reports every issue (unknown keys included) and is what the
 * problems come from; `lenient` never fails: a bad value becomes its default (a bad string stays as
 * given, as the cross-field rules expect), so those rules still run and every problem is reported in
 * one pass. Without issues both return the same value.
 */
type Mode = "strict" | "lenient";

interface LeafSpec<T> {
  doc: Omit<ConfigDoc, "key" | "kind">;
  schema: z.ZodType<T>;
  /** Preprocessing of CLI strings ("14", "true") before the schema. */
  pre?: (v: unknown) => unknown;
  def: T | undefined;
  /** Lenient value when the input is bad. */
  recover: (input: unknown) => T;
}

class Builder {
  constructor(readonly mode: Mode) {}

  leaf<T>(key: string, spec: LeafSpec<T>): z.ZodType<T> {
    let s: z.ZodType = spec.pre ? z.preprocess(spec.pre, spec.schema) : spec.schema;
    if (spec.def !== undefined) s = s.default(spec.def as never);
    if (this.mode === "lenient") s = s.catch((ctx: { input: unknown }) => spec.recover(ctx.input));
    configDocs.add(s, { ...spec.doc, key, kind: "leaf", required: spec.def === undefined });
    return s as z.ZodType<T>;
  }

  obj<S extends z.ZodRawShape>(key: string, shape: S, doc?: Partial<ConfigDoc>) {
    const o = this.mode === "strict" ? z.strictObject(shape) : z.object(shape);
    const s =
      this.mode === "strict"
        ? o.prefault({} as never)
        : z.preprocess((v) => (isObject(v) ? v : {}), o).prefault({});
    configDocs.add(s, {
      description: "",
      allowed: `an object with the keys ${Object.keys(shape).join(", ")}`,
      ...doc,
      key,
      kind: "node",
    });
    return s as unknown as z.ZodType<z.output<typeof o>>;
  }

  map<T>(
    key: string,
    value: z.ZodType<T>,
    doc: Omit<ConfigDoc, "key" | "kind">,
  ): z.ZodType<Record<string, T>> {
    const r = z.record(z.string(), value);
    const s =
      this.mode === "strict"
        ? r.optional().transform((v) => v ?? {})
        : z.preprocess((v) => (isObject(v) ? v : {}), r);
    configDocs.add(s, { ...doc, key, kind: "node" });
    return s as unknown as z.ZodType<Record<string, T>>;
  }

  int(
    key: string,
    def: number | undefined,
    min: number,
    max: number,
    unit: string,
    description: string,
    example?: string,
  ) {
    return this.leaf<number>(key, {
      doc: { description, allowed: `an integer from ${min} to ${max}${unit}`, example },
      // Pulumi's CLI stores `config set` values as strings; numeric strings are numbers.
      pre: (v) => (typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v),
      schema: z.number().int().min(min).max(max),
      def,
      recover: () => def ?? 0,
    });
  }

  bool(key: string, def: boolean, description: string) {
    return this.leaf<boolean>(key, {
      doc: { description, allowed: "true or false" },
      // `pulumi config set` stores "true"/"false" as strings.
      pre: (v) => (v === "true" ? true : v === "false" ? false : v),
      schema: z.boolean(),
      def,
      recover: () => def,
    });
  }

  oneOf<T extends string>(key: string, def: T | undefined, values: readonly T[], description: string) {
    return this.leaf<T>(key, {
      doc: { description, allowed: `one of ${values.join(", ")}`, example: values.join("|") },
      schema: z.enum(values as unknown as [T, ...T[]]) as unknown as z.ZodType<T>,
      def,
      recover: () => def ?? values[0],
    });
  }

  str(
    key: string,
    def: string | undefined,
    test: RegExp | ((s: string) => boolean),
    allowed: string,
    description: string,
    example?: string,
  ) {
    const check = typeof test === "function" ? test : (s: string) => test.test(s);
    return this.leaf<string>(key, {
      doc: { description, allowed, example },
      schema: z.string().refine(check),
      def,
      // A bad string stays as given: the rules after the parse skip what they cannot read.
      recover: (v) => (typeof v === "string" ? v : (def ?? "")),
    });
  }

  /** A string with a check that explains itself: its reason follows the allowed text after "; ". */
  explained(
    key: string,
    def: string,
    why: (s: string) => string | undefined,
    allowed: string,
    description: string,
    example?: string,
  ) {
    return this.leaf<string>(key, {
      doc: { description, allowed, example },
      schema: z.string().superRefine((s, ctx) => {
        const reason = why(s);
        if (reason !== undefined)
          ctx.addIssue({ code: "custom", message: reason, params: { explains: true } });
      }),
      def,
      recover: (v) => (typeof v === "string" ? v : def),
    });
  }

  list(
    key: string,
    def: string[] | undefined,
    item: RegExp,
    allowed: string,
    description: string,
    example: string,
  ) {
    return this.leaf<string[]>(key, {
      doc: { description, allowed, example },
      schema: z.array(z.string().regex(item)),
      def,
      recover: () => def ?? [],
    });
  }
}

/** A CPU or memory quantity, in any form Kubernetes reads (checkQuantity), never negative. */
function quantityProblem(q: string): string | undefined {
  const c = checkQuantity(q);
  if (!c.ok) return c.reason;
  return c.value.isNegative() ? "Kubernetes rejects negative requests and limits" : undefined;
}

const isIpv4Cidr = (s: string) => ipaddr.IPv4.isValidCIDRFourPartDecimal(s);
const isIpv4 = (s: string) => ipaddr.IPv4.isValidFourPartDecimal(s);

const built = new Map<string, ReturnType<typeof buildSchema>>();

/** The stack configuration schema for one environment (its defaults are that environment's). */
export function stackConfigSchema(environment: Environment, mode: Mode = "strict") {
  const id = `${environment}/${mode}`;
  const cached = built.get(id);
  if (cached) return cached;
  const schema = buildSchema(environment, mode);
  built.set(id, schema);
  return schema;
}

function buildSchema(environment: Environment, mode: Mode) {
  const b = new Builder(mode);
  const d = defaultsFor(environment);
  const pool = (name: "system" | "data") => {
    const p = `nodePools.${name}`;
    const def = d.nodePools[name];
    return b.obj(p, {
      vmSize: b.str(
        `${p}.vmSize`,
        def.vmSize,
        VM_SIZE,
        "an Azure VM size such as Standard_D8ds_v5",
        "Azure VM size; must have a local cache or temp disk for the ephemeral OS disk.",
      ),
      minCount: b.int(
        `${p}.minCount`,
        def.minCount,
        name === "system" ? 1 : 0,
        1000,
        "",
        `Cluster-autoscaler lower bound${name === "data" ? " per zone" : ""}; at most maxCount.`,
      ),
      maxCount: b.int(`${p}.maxCount`, def.maxCount, 1, 1000, "", "Cluster-autoscaler upper bound."),
      osDiskSizeGB: b.int(
        `${p}.osDiskSizeGB`,
        def.osDiskSizeGB,
        30,
        2048,
        " GiB",
        "Ephemeral OS disk size; must fit the VM size's cache or temp disk.",
      ),
    });
  };
  const resources = (p: string, def: { cpu: string; memory: string }, what: string) =>
    b.obj(p, {
      cpu: b.explained(
        `${p}.cpu`,
        def.cpu,
        quantityProblem,
        'a CPU quantity such as "2" or "500m"',
        `CPU ${what}, a Kubernetes quantity.`,
      ),
      memory: b.explained(
        `${p}.memory`,
        def.memory,
        quantityProblem,
        'a memory quantity such as "8Gi"',
        `Memory ${what}, a Kubernetes quantity.`,
      ),
    });
  const dm = d.milvus;
  type Role = "standalone" | "mixCoord" | "proxy" | "queryNode" | "dataNode" | "streamingNode";
  const sizing = (role: Role, minReplicas: number, maxReplicas: number, why: string) => {
    const p = `milvus.${role}`;
    const def = dm[role];
    return {
      replicas: b.int(
        `${p}.replicas`,
        def.replicas,
        minReplicas,
        maxReplicas,
        "",
        `${role} replicas. ${why}`,
      ),
      requests: resources(`${p}.requests`, def.requests, `request of each ${role} pod`),
      limits: resources(`${p}.limits`, def.limits, `limit of each ${role} pod`),
    };
  };
  const cacheDisk = (role: Role, def: number, what: string) =>
    b.int(`milvus.${role}.diskSizeGi`, def, 10, 32767, " GiB", what);
  const dt = d.security.tls;
  const da = d.security.audit;
  const de = d.security.encryption;
  const di = d.backup.image;

  return b.obj(
    "",
    {
      environment: b.oneOf<Environment>(
        "environment",
        undefined,
        ENVIRONMENTS,
        "Selects the defaults below; prod and dr also apply the production rules (3 zones, cluster mode, 3 etcd members, MinIO quorum through a zone loss).",
      ),
      location: b.str(
        "location",
        undefined,
        REGION,
        "an Azure region name such as westeurope",
        "Azure region; must offer RA-GZRS storage (the backup account).",
        "westeurope",
      ),
      zones: b.list(
        "zones",
        d.zones,
        /^.*$/,
        'a list of availability zones, e.g. ["1","2","3"]',
        'Availability zones, distinct, from "1", "2", "3"; production needs all three.',
        '\'["1","2","3"]\'',
      ),
      kubernetesVersion: b.str(
        "kubernetesVersion",
        d.kubernetesVersion,
        K8S_VERSION,
        'an AKS version "1.MINOR" or "1.MINOR.PATCH", e.g. "1.36"',
        "AKS Kubernetes version; a minor AKS supports today (AKS release calendar in components/common/config.ts).",
      ),
      nodePools: b.obj("nodePools", { system: pool("system"), data: pool("data") }),
      drainTimeoutMinutes: b.int(
        "drainTimeoutMinutes",
        d.drainTimeoutMinutes,
        1,
        1440,
        " minutes",
        "Node drain timeout for upgrades; must exceed Milvus's 30-minute graceful stop.",
      ),
      maintenance: b.obj("maintenance", {
        day: b.oneOf("maintenance.day", d.maintenance.day, WEEKDAYS, "Day of the weekly AKS upgrade window."),
        startHourUtc: b.int(
          "maintenance.startHourUtc",
          d.maintenance.startHourUtc,
          0,
          23,
          "",
          "Start hour of the window, UTC.",
        ),
        durationHours: b.leaf<number>("maintenance.durationHours", {
          doc: {
            description:
              "Window length; unset: long enough for an upgrade of the pools (upgradeMinutesEstimate), at least 4.",
            allowed: "an integer from 4 to 24 hours (AKS allows 4 to 24)",
            defaultText: "computed from the pools",
          },
          pre: (v) => (typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v),
          schema: z.number().int().min(4).max(24),
          // 0: unset, filled in from the upgrade estimate by parseStackConfig.
          def: 0,
          recover: () => 0,
        }),
      }),
      network: b.obj("network", {
        ...Object.fromEntries(
          (["vnetCidr", "nodeSubnetCidr", "endpointSubnetCidr", "podCidr", "serviceCidr"] as const).map(
            (k) => [
              k,
              b.str(
                `network.${k}`,
                d.network[k],
                isIpv4Cidr,
                "an IPv4 CIDR such as 10.10.0.0/16",
                {
                  vnetCidr: "Address range of the VNet.",
                  nodeSubnetCidr: "Node subnet, inside the VNet.",
                  endpointSubnetCidr: "Private-endpoint subnet, inside the VNet, apart from the node subnet.",
                  podCidr: "Overlay pod range, outside the VNet.",
                  serviceCidr: "Kubernetes service range, outside the VNet.",
                }[k],
              ),
            ],
          ),
        ),
        dnsServiceIp: b.str(
          "network.dnsServiceIp",
          d.network.dnsServiceIp,
          isIpv4,
          "an IPv4 address",
          "Cluster DNS address, inside serviceCidr.",
        ),
      } as Record<
        "vnetCidr" | "nodeSubnetCidr" | "endpointSubnetCidr" | "podCidr" | "serviceCidr" | "dnsServiceIp",
        z.ZodType<string>
      >),
      adminGroupObjectIds: b.list(
        "adminGroupObjectIds",
        d.adminGroupObjectIds,
        GUID,
        "a list of Entra ID group object ids (GUIDs)",
        "Entra ID groups granted AKS RBAC Cluster Admin; at least one, holding the identity that runs `pulumi up`.",
        "'[\"00000000-0000-0000-0000-000000000000\"]'",
      ),
      storage: b.obj("storage", {
        diskSku: b.oneOf(
          "storage.diskSku",
          d.storage.diskSku,
          DISK_SKUS,
          "Managed disk SKU of the StorageClass.",
        ),
      }),
      milvus: b.obj("milvus", {
        mode: b.oneOf("milvus.mode", dm.mode, MILVUS_MODES, "standalone (one pod, dev) or cluster."),
        imageTag: b.str(
          "milvus.imageTag",
          dm.imageTag,
          IMAGE_TAG,
          'a pinned Milvus 2.6 release tag such as "v2.6.24" (never "latest")',
          "milvusdb/milvus image tag, a 2.6 patch release >= v2.6.10.",
        ),
        // Standalone embeds the coordinators and a local WAL: more than one replica is invalid (milvus#28063;
        // milvus-helm runs standalone as one replica with the Recreate strategy).
        standalone: b.obj("milvus.standalone", {
          ...sizing("standalone", 1, 1, "Always 1."),
          diskSizeGi: cacheDisk("standalone", dm.standalone.diskSizeGi, "Standalone data disk."),
        }),
        // Active-standby needs exactly one standby; more only adds idle pods.
        mixCoord: b.obj("milvus.mixCoord", sizing("mixCoord", 2, 3, "Active and standby.")),
        proxy: b.obj("milvus.proxy", {
          ...sizing("proxy", 2, 100, "Autoscaler minimum."),
          maxReplicas: b.int(
            "milvus.proxy.maxReplicas",
            dm.proxy.maxReplicas,
            2,
            200,
            "",
            "Autoscaler maximum.",
          ),
        }),
        queryNode: b.obj("milvus.queryNode", {
          ...sizing("queryNode", 2, 100, "Autoscaler minimum; memory requests must equal limits."),
          maxReplicas: b.int(
            "milvus.queryNode.maxReplicas",
            dm.queryNode.maxReplicas,
            2,
            200,
            "",
            "Autoscaler maximum.",
          ),
          diskSizeGi: cacheDisk(
            "queryNode",
            dm.queryNode.diskSizeGi,
            "Cache emptyDir on the data node's OS disk; must fit it.",
          ),
        }),
        dataNode: b.obj("milvus.dataNode", sizing("dataNode", 2, 100, "")),
        streamingNode: b.obj("milvus.streamingNode", {
          ...sizing("streamingNode", 2, 100, ""),
          diskSizeGi: cacheDisk(
            "streamingNode",
            dm.streamingNode.diskSizeGi,
            "Cache emptyDir on the data node's OS disk; must fit it.",
          ),
        }),
      }),
      objectStore: b.oneOf(
        "objectStore",
        d.objectStore,
        OBJECT_STORES,
        "Milvus object storage: in-cluster MinIO or an Azure Blob account.",
      ),
      etcd: b.obj("etcd", {
        replicas: b.int(
          "etcd.replicas",
          d.etcd.replicas,
          1,
          7,
          "",
          "Members; odd, at least 3 in production.",
        ),
        diskSizeGi: b.int(
          "etcd.diskSizeGi",
          d.etcd.diskSizeGi,
          1,
          1024,
          " GiB",
          "Disk per member; at least 128 (P10, 500 IOPS) in production.",
        ),
        quotaBackendBytes: b.int(
          "etcd.quotaBackendBytes",
          d.etcd.quotaBackendBytes,
          1024 ** 3,
          8 * 1024 ** 3,
          " bytes (etcd's supported maximum is 8 GiB)",
          "Backend quota.",
        ),
      }),
      minio: b.obj("minio", {
        replicas: b.int(
          "minio.replicas",
          d.minio.replicas,
          1,
          32,
          "",
          "1, or 4 to 16 (one erasure set); production keeps write quorum through a zone loss.",
        ),
        diskSizeGi: b.int("minio.diskSizeGi", d.minio.diskSizeGi, 10, 32767, " GiB", "Disk per pod."),
        image: b.str(
          "minio.image",
          d.minio.image,
          MINIO_IMAGE,
          'a MinIO image pinned to a RELEASE tag (>= RELEASE.2024-12-18, which Woodpecker needs) or a digest, e.g. "myacr.azurecr.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"',
          "MinIO server image; point it at a copy in your registry.",
        ),
        clientImage: b.str(
          "minio.clientImage",
          d.minio.clientImage,
          MINIO_IMAGE,
          'an mc image pinned to a RELEASE tag or a digest (never "latest")',
          "mc image of the bucket Job.",
        ),
      }),
      backup: b.obj("backup", {
        // What a Kubernetes CronJob accepts (backup/schedule.ts), with the reason when not, e.g.
        // "hour 25 is out of range 0-23"; the worker's loop and the stale-backup alert read it the same way.
        schedule: b.explained(
          "backup.schedule",
          d.backup.schedule,
          (s) => {
            const p = cronProblem(s);
            return p === undefined ? undefined : `here ${p}`;
          },
          SCHEDULE_ALLOWED,
          "Backup CronJob schedule (UTC); keeps a daily backup outside the maintenance window.",
          "'0 2 * * *'",
        ),
        retentionDays: b.int(
          "backup.retentionDays",
          d.backup.retentionDays,
          1,
          36500,
          " days",
          "Days backups are kept.",
        ),
        immutabilityDays: b.int(
          "backup.immutabilityDays",
          d.backup.immutabilityDays,
          0,
          146000,
          " days (0 disables immutability)",
          "Time-based immutability of the backup container; at most retentionDays.",
        ),
        collections: b.list(
          "backup.collections",
          d.backup.collections,
          COLLECTION,
          "a list of Milvus collection names",
          "Collections the scheduled job backs up.",
          "'[\"docs\"]'",
        ),
        databases: b.list(
          "backup.databases",
          d.backup.databases,
          DATABASE_OR_ALL,
          'a list of Milvus database names, or ["*"] for every database',
          "Databases the scheduled job backs up: each one's backup.collections, or all its collections when that is empty; " +
            '["*"]: every collection of every database. Empty: backup.collections of database "default".',
          '\'["default","tenant_a"]\'',
        ),
        image: b.obj("backup.image", {
          registry: b.str(
            "backup.image.registry",
            di.registry,
            /^([a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?)?$/,
            "a registry host such as myacr.azurecr.io, or empty for the stack's own registry",
            "Worker image registry; empty: the stack's own.",
            "myacr.azurecr.io",
          ),
          repository: b.str(
            "backup.image.repository",
            di.repository,
            /^[a-z0-9]+([._/-][a-z0-9]+)*$/,
            "a lower-case repository path such as milvus-backup",
            "Worker image repository.",
          ),
          tag: b.str(
            "backup.image.tag",
            di.tag,
            /^(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/,
            'a pinned tag such as "0.1.0" (never "latest")',
            "Worker image tag.",
          ),
          digest: b.str(
            "backup.image.digest",
            di.digest,
            /^(sha256:[a-f0-9]{64})?$/,
            "empty, or a digest sha256:<64 hex>",
            "Worker image digest; wins over the tag.",
            "sha256:<digest>",
          ),
        }),
        testRestore: b.obj("backup.testRestore", {
          schedule: b.explained(
            "backup.testRestore.schedule",
            TEST_RESTORE_DEFAULTS.schedule,
            (s) => {
              const p = cronProblem(s);
              return p === undefined ? undefined : `here ${p}`;
            },
            SCHEDULE_ALLOWED,
            "dr stack only: schedule of the test restore CronJob, which restores the newest backup of every collection into a scratch collection, checks it and drops it.",
            "'0 6 * * 3'",
          ),
          rtoMinutes: b.int(
            "backup.testRestore.rtoMinutes",
            TEST_RESTORE_DEFAULTS.rtoMinutes,
            1,
            10080,
            " minutes",
            "dr stack only: a test restore Job running longer than this alerts (MilvusTestRestoreSlow).",
          ),
        }),
      }),
      monitoring: b.obj("monitoring", {
        chartVersion: b.str(
          "monitoring.chartVersion",
          d.monitoring.chartVersion,
          /^\d+\.\d+\.\d+$/,
          'an exact kube-prometheus-stack chart version such as "88.5.3" (no ranges, no "latest")',
          "kube-prometheus-stack chart version.",
        ),
        retentionDays: b.int(
          "monitoring.retentionDays",
          d.monitoring.retentionDays,
          1,
          365,
          " days",
          "Prometheus retention.",
        ),
        storageGi: b.int(
          "monitoring.storageGi",
          d.monitoring.storageGi,
          10,
          4096,
          " GiB",
          "Prometheus volume per replica.",
        ),
      }),
      dr: b.obj("dr", {
        pairedLocation: b.str(
          "dr.pairedLocation",
          undefined,
          REGION,
          "the Azure region paired with location, e.g. northeurope",
          "The Azure pair of location, where RA-GZRS replicates backups.",
          "northeurope",
        ),
        primaryStack:
          environment === "dr"
            ? b.str(
                "dr.primaryStack",
                undefined,
                STACK_REF,
                "the fully qualified primary stack, organization/project/stack, e.g. acme/milvus-aks/prod",
                "dr stacks: the primary stack (org/project/stack) to restore from.",
                "acme/milvus-aks/prod",
              )
            : b.str(
                "dr.primaryStack",
                "",
                (s) => s === "" || STACK_REF.test(s),
                "the fully qualified primary stack, organization/project/stack, e.g. acme/milvus-aks/prod",
                "dr stacks: the primary stack (org/project/stack) to restore from; ignored elsewhere.",
                "acme/milvus-aks/prod",
              ),
        standby: b.oneOf<"warm" | "cold">(
          "dr.standby",
          "warm",
          ["warm", "cold"],
          "warm: the dr stack stays up, scaled down; cold: deployed at failover.",
        ),
        activated: b.bool("dr.activated", false, "Failover has started (set by `npm run dr:failover`)."),
        standbySubnetIds: b.list(
          "dr.standbySubnetIds",
          [],
          SUBNET_ID,
          "a list of subnet resource ids, /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>",
          "dr node subnets admitted through the backup firewall.",
          "'[\"<the dr stack's nodeSubnetId output>\"]'",
        ),
        standbyStack: b.str(
          "dr.standbyStack",
          "",
          STACK_NAME,
          "the name of this stack's dr stack in the same subscription (letters, digits, _ . -), e.g. dr",
          "On a primary: its dr stack in the same subscription.",
          "dr",
        ),
      }),
      security: b.obj("security", {
        tls: b.obj("security.tls", {
          enabled: b.bool("security.tls.enabled", dt.enabled, "Clients reach the Milvus proxy over TLS."),
          internal: b.bool(
            "security.tls.internal",
            dt.internal,
            "Milvus components call each other over TLS.",
          ),
          certManagerChartVersion: b.str(
            "security.tls.certManagerChartVersion",
            dt.certManagerChartVersion,
            /^v\d+\.\d+\.\d+$/,
            'an exact cert-manager chart version such as "v1.21.1" (no ranges, no "latest")',
            "cert-manager Helm chart version.",
          ),
          issuer: b.obj("security.tls.issuer", {
            kind: b.oneOf(
              "security.tls.issuer.kind",
              dt.issuer.kind,
              ["ClusterIssuer", "Issuer"] as const,
              "Kind of a user-supplied issuer.",
            ),
            name: b.str(
              "security.tls.issuer.name",
              dt.issuer.name,
              /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$/,
              "empty (the stack's own CA), or the name of an existing cert-manager issuer",
              "Empty: the stack's own CA; else an existing issuer (then caBundle is required).",
              "corp-ca",
            ),
          }),
          caBundle: b.str(
            "security.tls.caBundle",
            dt.caBundle,
            /^[\s\S]*$/,
            "a PEM CA bundle",
            "PEM CA bundle of a user-supplied issuer.",
            '"$(cat ca.pem)"',
          ),
          dnsNames: b.list(
            "security.tls.dnsNames",
            dt.dnsNames,
            DNS_NAME,
            "a list of lower-case DNS names",
            "Extra DNS names on the client certificate.",
            "'[\"milvus.prod.internal.example.com\"]'",
          ),
        }),
        audit: b.obj("security.audit", {
          enabled: b.bool(
            "security.audit.enabled",
            da.enabled,
            "A Log Analytics workspace receives audit logs.",
          ),
          // Log Analytics workspaces keep data 30 to 730 days on the PerGB2018 tier (Microsoft.OperationalInsights
          // workspaces, retentionInDays; "Manage data retention in a Log Analytics workspace").
          retentionDays: b.int(
            "security.audit.retentionDays",
            da.retentionDays,
            30,
            730,
            " days",
            "Workspace retention.",
          ),
          containerInsights: b.bool(
            "security.audit.containerInsights",
            da.containerInsights,
            "Container logs to the workspace; needs audit.enabled.",
          ),
          milvusAccessLog: b.bool(
            "security.audit.milvusAccessLog",
            da.milvusAccessLog,
            "Milvus proxy access log on stdout.",
          ),
        }),
        encryption: b.obj("security.encryption", {
          atHost: b.bool("security.encryption.atHost", de.atHost, "Encryption at host on every node pool."),
          infrastructure: b.bool(
            "security.encryption.infrastructure",
            de.infrastructure,
            "Double encryption of the storage accounts (fixed at creation).",
          ),
          customerManagedKey: b.bool(
            "security.encryption.customerManagedKey",
            de.customerManagedKey,
            "A Key Vault key for disks and storage accounts.",
          ),
        }),
      }),
      access: b.obj("access", {
        roles: b.map(
          "access.roles",
          b.obj(
            "access.roles.*",
            {
              database: b.str(
                "access.roles.*.database",
                "default",
                MILVUS_DATABASE,
                "a Milvus database name",
                "Database of the role.",
              ),
              collections: b.list(
                "access.roles.*.collections",
                [],
                /^(\*|[A-Za-z_][A-Za-z0-9_]{0,254})$/,
                'a list of collection names, or ["*"] for every collection of the database',
                'Collections, or ["*"]; at least one.',
                "'[\"documents\"]'",
              ),
              access: b.oneOf("access.roles.*.access", undefined, ACCESS_LEVELS, "read or readWrite."),
            },
            {
              allowed: "a role { database, collections, access }",
              example: '\'{"database":"default","collections":["documents"],"access":"read"}\'',
              description: "A Milvus role, by name.",
            },
          ),
          {
            description: "Milvus roles for applications, by name.",
            allowed: "a map of role name to role",
            fix: setPathHint(
              "access.roles.search",
              '\'{"database":"default","collections":["documents"],"access":"read"}\'',
            ),
          },
        ),
        users: b.map(
          "access.users",
          b.obj(
            "access.users.*",
            {
              roles: b.list(
                "access.users.*.roles",
                [],
                MILVUS_NAME,
                "a list of role names from access.roles",
                "Roles of the user, from access.roles.",
                "'[\"search\"]'",
              ),
              // Default: the data namespace, which this stack creates; another namespace must already exist.
              secretNamespace: b.str(
                "access.users.*.secretNamespace",
                DATA_NAMESPACE,
                DNS_LABEL,
                "the existing Kubernetes namespace of the application that uses this user",
                "Namespace of the user's password Secret.",
                "search",
              ),
            },
            {
              allowed: "a user { roles, secretNamespace }",
              example: '\'{"roles":["search"],"secretNamespace":"search"}\'',
              description: "A Milvus user, by name.",
            },
          ),
          {
            description: "Milvus users for applications, by name; passwords are generated.",
            allowed: "a map of user name to user",
            fix: setPathHint(
              "access.users.search_api",
              '\'{"roles":["search"],"secretNamespace":"search"}\'',
            ),
          },
        ),
      }),
      tags: b.leaf<Record<string, string>>("tags", {
        doc: {
          description: "Extra Azure tags on every resource.",
          allowed: "a map of string tags",
          example: "'tags.team' platform",
        },
        schema: z.record(z.string(), z.string()),
        def: {},
        recover: () => ({}),
      }),
    },
    { description: "" },
  );
}

export type StackConfigInput = z.output<ReturnType<typeof stackConfigSchema>>;

/** One problem, before it becomes `<key> = <value> is invalid: expected <allowed>. <fix>`. */
export interface SchemaProblem {
  key: string;
  value: unknown;
  allowed: string;
  fix: string;
}

type AnySchema = z.ZodType;

/** The next schema inside wrappers (default, catch, pipe...); undefined at an object, record or leaf. */
function inner(s: AnySchema): AnySchema | undefined {
  const def = (s as unknown as { _zod: { def: Record<string, unknown> } })._zod.def;
  switch (def.type) {
    case "default":
    case "prefault":
    case "optional":
    case "catch":
    case "nullable":
      return def.innerType as AnySchema;
    case "pipe": {
      const out = def.out as AnySchema;
      const outType = (out as unknown as { _zod: { def: { type: string } } })._zod.def.type;
      return outType === "transform" ? (def.in as AnySchema) : out;
    }
    default:
      return undefined;
  }
}

/** The object shape or record value schema under a node. */
function children(s: AnySchema): { shape?: Record<string, AnySchema>; value?: AnySchema } {
  for (let cur: AnySchema | undefined = s; cur; cur = inner(cur)) {
    if (cur instanceof z.ZodObject) return { shape: cur.shape as Record<string, AnySchema> };
    if (cur instanceof z.ZodRecord) return { value: cur.valueType as AnySchema };
  }
  return {};
}

/** The documented node at a path, walking from the root: stops at a leaf. */
function nodeAt(root: AnySchema, path: readonly PropertyKey[]) {
  let s = root;
  let depth = 0;
  for (const seg of path) {
    const doc = configDocs.get(s);
    if (doc?.kind === "leaf") break;
    const c = children(s);
    const next = c.shape ? c.shape[String(seg)] : c.value;
    if (!next) break;
    s = next;
    depth++;
  }
  return { schema: s, doc: configDocs.get(s), depth };
}

/** Every documented node, depth first, with its concrete dotted key pattern. */
export function walkSchema(root: AnySchema): { key: string; doc: ConfigDoc; schema: AnySchema }[] {
  const out: { key: string; doc: ConfigDoc; schema: AnySchema }[] = [];
  const visit = (s: AnySchema) => {
    const doc = configDocs.get(s);
    if (doc && doc.key !== "") out.push({ key: doc.key, doc, schema: s });
    if (doc?.kind === "leaf") return;
    const c = children(s);
    for (const child of Object.values(c.shape ?? {})) visit(child);
    if (c.value) visit(c.value);
  };
  visit(root);
  return out;
}

/** The default a leaf takes, if it has one (a `.default()` anywhere in its wrappers). */
export function defaultOf(s: AnySchema): { value: unknown } | undefined {
  for (let cur: AnySchema | undefined = s; cur; cur = inner(cur)) {
    const def = (cur as unknown as { _zod: { def: { type: string; defaultValue?: unknown } } })._zod.def;
    if (def.type === "default") return { value: def.defaultValue };
  }
  return undefined;
}

const lookup = (raw: unknown, path: readonly PropertyKey[]) => {
  let cur = raw;
  for (const seg of path) {
    if (!isObject(cur)) return undefined;
    cur = cur[String(seg)];
  }
  return cur;
};

/** The closest known key, if close enough to be a likely typo. */
function suggest(name: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const dist = distance(name.toLowerCase(), k.toLowerCase());
    if (dist < bestDistance) [best, bestDistance] = [k, dist];
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/** A value as `pulumi config set` takes it on the command line. */
const cliValue = (v: unknown) =>
  typeof v === "string" ? (/^[\w.:/@-]+$/.test(v) ? v : `'${v}'`) : `'${JSON.stringify(v)}'`;

/**
 * Every problem the schema finds in a raw stack config, each once: a bad value, a wrong type or a
 * missing required key (with the key's allowed values and a `pulumi config set` hint), an unknown key
 * (with the closest known key), and a top-level key with dots that names a nested key (set without
 * `--path`). `examples` overrides the example value of computed defaults.
 */
export function schemaProblems(
  root: AnySchema,
  raw: Record<string, unknown>,
  examples: Partial<Record<string, string>> = {},
): SchemaProblem[] {
  const result = root.safeParse(raw);
  if (result.success) return [];
  const byKey = new Map<string, SchemaProblem>();
  const add = (p: SchemaProblem) => {
    if (!byKey.has(p.key)) byKey.set(p.key, p);
  };
  const issues = result.error.issues;
  // A reason (a quantity's, a schedule's) explains the value better than a type issue: it goes first.
  const explains = (i: z.core.$ZodIssue) => i.code === "custom" && i.params?.explains === true;
  const ordered = [...issues.filter(explains), ...issues.filter((i) => !explains(i))];
  for (const issue of ordered) {
    if (issue.code === "unrecognized_keys") {
      const { shape } = children(nodeAt(root, issue.path).schema);
      const known = Object.keys(shape ?? {});
      const parent = issue.path.map(String).join(".");
      for (const name of issue.keys) {
        const key = parent ? `${parent}.${name}` : name;
        const value = lookup(raw, [...issue.path, name]);
        const flat = parent === "" && name.includes(".") ? nodeAt(root, name.split(".")) : undefined;
        if (flat?.doc && flat.depth === name.split(".").length) {
          add({
            key,
            value,
            allowed: `the nested key ${name}, not a top-level key whose name contains dots`,
            fix: `Set it with \`pulumi config set --path ${CONFIG_NAMESPACE}:${name} ${cliValue(value)}\` (without --path it became a top-level key named "${name}"); remove that one with \`pulumi config rm ${CONFIG_NAMESPACE}:${name}\`.`,
          });
          continue;
        }
        const close = suggest(name, known);
        const where = parent ? `of ${parent}` : `of ${CONFIG_NAMESPACE}`;
        const path = parent ? "--path " : "";
        add(
          close !== undefined
            ? {
                key,
                value,
                allowed: `a key ${where} (did you mean ${parent ? `${parent}.` : ""}${close}?)`,
                fix: `Rename ${key} to ${parent ? `${parent}.` : ""}${close} in Pulumi.<stack>.yaml, or \`pulumi config rm ${path}${CONFIG_NAMESPACE}:${key}\` and set ${CONFIG_NAMESPACE}:${parent ? `${parent}.` : ""}${close}${path ? " with --path" : ""}.`,
              }
            : {
                key,
                value,
                allowed: `one of the keys ${where}: ${known.join(", ")}`,
                fix: `This program does not read ${key}: remove it (\`pulumi config rm ${path}${CONFIG_NAMESPACE}:${key}\`) or fix its name.`,
              },
        );
      }
      continue;
    }
    const { doc, depth } = nodeAt(root, issue.path);
    if (!doc) continue;
    const keyPath = issue.path.slice(0, depth).map(String);
    const key = keyPath.join(".");
    const value = lookup(raw, keyPath);
    const example = examples[doc.key] ?? doc.example ?? exampleOf(nodeAt(root, keyPath).schema);
    add({
      key,
      value,
      allowed: explains(issue) ? `${doc.allowed}; ${issue.message}` : doc.allowed,
      fix: doc.fix ?? setPathHint(key, example),
    });
  }
  return [...byKey.values()];
}

function exampleOf(s: AnySchema): string {
  const d = defaultOf(s);
  return d === undefined ? "<value>" : typeof d.value === "string" ? d.value : JSON.stringify(d.value);
}
