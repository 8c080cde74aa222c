import * as yaml from "js-yaml";
import { MilvusMode } from "./config";

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
  return {
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
      security: { authorizationEnabled: true, defaultRootPassword: input.rootPassword },
      gracefulStopTimeout: stopSeconds,
    },
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
}

/** The YAML text of {@link milvusUserConfig}. */
export function renderMilvusUserConfig(input: MilvusConfigInput): string {
  return yaml.dump(milvusUserConfig(input), { lineWidth: -1, noRefs: true, sortKeys: true });
}
