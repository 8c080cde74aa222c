import * as yaml from "js-yaml";
import { MilvusMode } from "../common/config";
import { MILVUS_INTERNAL_SNI } from "./milvusCertificates";

/** Where Milvus keeps segments, indexes and (through Woodpecker) its WAL. */
export type MilvusObjectStore =
  | { kind: "minio"; host: string; port: number; bucketName: string; accessKey: string; secretKey: string }
  | { kind: "azureBlob"; accountName: string; containerName: string };

export interface MilvusConfigInput {
  mode: MilvusMode;
  /** `host:port` of every etcd member. */
  etcdEndpoints: string[];
  objectStore: MilvusObjectStore;
  /** Initial root password (applied when Milvus first creates the root user). */
  rootPassword: string;
  /** Pod termination grace period; Milvus's own stop timeout ends a minute earlier. */
  terminationGraceSeconds: number;
  /** Clients connect with TLS (the certificate mounted at {@link MILVUS_TLS_PATH}). */
  tls: boolean;
  /** Components call each other with TLS (the certificate mounted at {@link MILVUS_INTERNAL_TLS_PATH}). */
  internalTls: boolean;
  /** The proxy writes an access log line per request to its stdout. */
  accessLog: boolean;
}

/** Where the client-facing certificate Secret (tls.crt, tls.key, ca.crt) is mounted. */
export const MILVUS_TLS_PATH = "/milvus/tls";
/** Where the internal certificate Secret is mounted. */
export const MILVUS_INTERNAL_TLS_PATH = "/milvus/internal-tls";

/**
 * The access log line: who (`$user_name` from the request's credentials, `$user_addr`), what
 * (`$method_name`, database, collection, partition, the filter expression `$method_expr`) and the
 * outcome (status, error code and message, time taken). Variables from milvus
 * internal/proxy/accesslog/info/info.go (2.6 branch); the default base format lacks the database and
 * collection, which an audit of data access needs.
 */
export const ACCESS_LOG_FORMAT =
  "[$time_now] [ACCESS] <$user_name: $user_addr> $method_name [db: $database_name] [collection: $collection_name] " +
  "[partition: $partition_name] [expr: $method_expr] [status: $method_status] [code: $error_code] " +
  "[msg: $error_msg] [traceID: $trace_id] [timeCost: $time_cost] [sdk: $sdk_version]";

/**
 * The TLS, authentication and access-log part of user.yaml. Keys and versions from the Milvus 2.6 branch
 * (pkg/util/paramtable/grpc_param.go, component_param.go):
 * - `common.security.tlsMode` 1 is one-way TLS on the proxy's gRPC port (internal/distributed/proxy/
 *   service.go, NewServerTLSFromFile, read once at start); 2 would demand client certificates, which
 *   applications do not have. With TLS on, the proxy refuses to share port 19530 with its REST server
 *   ("tls mode must be 0", listener_manager.go), so REST is switched off: the Service exposes gRPC only.
 * - `common.security.internaltlsEnabled` with `internaltls.*` (since 2.5.0): every component serves its
 *   internal port with the certificate and dials the others verifying the name `internaltls.sni`.
 * - `common.security.superUsers: root` lets root reset another user's password without the old one
 *   (internal/proxy/impl.go UpdateCredential); root is used by the access Job alone, which rotates
 *   application passwords.
 * - `proxy.accessLog` with an empty `filename` writes to stdout (internal/proxy/accesslog/global.go,
 *   initWriter), where the container log collection picks it up; it is off by default.
 */
export function milvusSecurityConfig(input: Pick<MilvusConfigInput, "tls" | "internalTls" | "accessLog">) {
  return {
    common: {
      security: {
        tlsMode: input.tls ? 1 : 0,
        internaltlsEnabled: input.internalTls,
        superUsers: "root",
      },
    },
    tls: input.tls
      ? {
          serverPemPath: `${MILVUS_TLS_PATH}/tls.crt`,
          serverKeyPath: `${MILVUS_TLS_PATH}/tls.key`,
          caPemPath: `${MILVUS_TLS_PATH}/ca.crt`,
        }
      : undefined,
    internaltls: input.internalTls
      ? {
          serverPemPath: `${MILVUS_INTERNAL_TLS_PATH}/tls.crt`,
          serverKeyPath: `${MILVUS_INTERNAL_TLS_PATH}/tls.key`,
          caPemPath: `${MILVUS_INTERNAL_TLS_PATH}/ca.crt`,
          sni: MILVUS_INTERNAL_SNI,
        }
      : undefined,
    proxy: {
      http: { enabled: !input.tls },
      accessLog: input.accessLog
        ? {
            enable: true,
            minioEnable: false,
            filename: "",
            formatters: { base: { format: ACCESS_LOG_FORMAT } },
          }
        : { enable: false },
    },
  };
}

/** Mount path of the local cache / mmap directory (Milvus's `localStorage.path`). */
export const MILVUS_LOCAL_STORAGE_PATH = "/var/lib/milvus";

/**
 * Milvus 2.6 `user.yaml` (layered over the image's milvus.yaml) from typed settings. Pure and
 * unit-tested; the component serialises it into a Secret because it carries the object-store key
 * and the root password.
 */
export function milvusUserConfig(input: MilvusConfigInput): Record<string, unknown> {
  const store = input.objectStore;
  const minio =
    store.kind === "minio"
      ? {
          address: store.host,
          port: store.port,
          accessKeyID: store.accessKey,
          secretAccessKey: store.secretKey,
          useSSL: false,
          bucketName: store.bucketName,
          rootPath: "files",
          useIAM: false,
          cloudProvider: "aws",
          useVirtualHost: false,
        }
      : {
          // Azure Blob through workload identity (Milvus docs, "Configure Blob Storage Access by
          // Workload Identity"): the account name travels in accessKeyID, the container is the bucket.
          address: "core.windows.net",
          port: 443,
          accessKeyID: store.accountName,
          secretAccessKey: "",
          useSSL: true,
          bucketName: store.containerName,
          rootPath: "files",
          useIAM: true,
          cloudProvider: "azure",
          useVirtualHost: false,
        };
  const cluster = input.mode === "cluster";
  // In 2.6 the mixcoord process reads rootCoord.enableActiveStandby for its session (mix_coord.go
  // initSession); the per-coordinator keys are set too, as the Helm chart and operator do. Without it
  // the second mixcoord replica crash-loops on session registration (milvus-io/milvus#28063).
  const activeStandby = cluster ? { enableActiveStandby: true } : {};
  // Milvus gives up its graceful stop a minute before the kubelet's SIGKILL, so it exits on its own
  // terms. Each role reads its own key (milvus pkg/util/paramtable/component_param.go):
  // dataNode.gracefulStopTimeout defaults to 1800 s and ignores common.gracefulStopTimeout;
  // queryNode.gracefulStopTimeout falls back to it; proxy (30 s) and rootCoord (5 s, used by mixcoord)
  // are already short. The streaming node's stop has no timeout key and ends at the grace period.
  const stopSeconds = Math.max(30, input.terminationGraceSeconds - 60);
  const security = milvusSecurityConfig(input);
  const config: Record<string, unknown> = {
    etcd: { endpoints: input.etcdEndpoints, rootPath: "by-dev" },
    metastore: { type: "etcd" },
    minio,
    localStorage: { path: `${MILVUS_LOCAL_STORAGE_PATH}/data/` },
    // Woodpecker keeps the WAL in the object store: no Pulsar or Kafka, and nothing on local disk that
    // a rescheduled pod would lose. The WAL type cannot be switched in place in 2.6: chosen on day one.
    mq: { type: "woodpecker" },
    woodpecker: { storage: { type: "minio" } },
    common: {
      storageType: "remote",
      security: {
        authorizationEnabled: true,
        defaultRootPassword: input.rootPassword,
        ...security.common.security,
      },
      gracefulStopTimeout: stopSeconds,
    },
    proxy: security.proxy,
    rootCoord: { ...activeStandby },
    // Segments keep 2.6's defaults (maxSize 1024 MiB, sealProportion 0.12, configs/milvus.yaml): a higher
    // seal proportion holds proportionally larger growing segments in query-node memory, unmeasured here.
    dataCoord: { ...activeStandby },
    dataNode: { gracefulStopTimeout: stopSeconds },
    queryCoord: { ...activeStandby },
    // The requested `queryNode.cacheSize` and `indexNode.scheduler.buildParallel` no longer exist in 2.6
    // (the cache is bounded by the pod's memory limit; index builds moved into the data node).
    queryNode: { enableDisk: true, gracefulStopTimeout: stopSeconds },
    log: { level: "info", format: "json" },
  };
  if (security.tls) config.tls = security.tls;
  if (security.internaltls) config.internaltls = security.internaltls;
  return config;
}

/** The YAML text of {@link milvusUserConfig}. */
export function renderMilvusUserConfig(input: MilvusConfigInput): string {
  return yaml.dump(milvusUserConfig(input), { lineWidth: -1, noRefs: true, sortKeys: true });
}
