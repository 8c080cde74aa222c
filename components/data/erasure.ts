/**
 * MinIO erasure-coding arithmetic: parity, read and write quorum, and what losing one zone leaves.
 * Pure and unit-tested; config validation and the failure-domain report both use it.
 *
 * Upstream facts (minio/minio):
 * - Default parity of the STANDARD storage class by drives per erasure set
 *   (internal/config/storageclass/storage-class.go, DefaultParityBlocks): 1 drive 0, 2-3 drives 1,
 *   4-5 drives 2, 6-7 drives 3, 8 or more 4. Parity may not exceed half the set.
 * - Read quorum is the data drives (set size minus parity); write quorum is the data drives, plus one
 *   when data equals parity (cmd/erasure-metadata.go, objectQuorumFromMeta).
 * - Up to 16 drives form one erasure set; the set size is 2-16 (cmd/endpoint-ellipses.go).
 */

/** MinIO's default STANDARD parity for an erasure set of `drives` drives. */
export function defaultParity(drives: number): number {
  if (drives <= 1) return 0;
  if (drives <= 3) return 1;
  if (drives <= 5) return 2;
  if (drives <= 7) return 3;
  return 4;
}

export interface ErasureLayout {
  /** MinIO pods (StatefulSet replicas). */
  pods: number;
  /** Drives (PVCs) per pod. */
  drivesPerPod: number;
  /** Zones the pods spread over with maxSkew 1 (so the fullest zone holds ceil(pods / zones)). */
  zones: number;
  /** STANDARD parity (`MINIO_STORAGE_CLASS_STANDARD=EC:<n>`); MinIO's default when omitted. */
  parity?: number;
}

export interface ErasureQuorum {
  drives: number;
  parity: number;
  dataDrives: number;
  readQuorum: number;
  writeQuorum: number;
  /** Drives in the zone holding the most pods (what losing the worst zone takes away). */
  worstZoneDrives: number;
  /** Drives left after losing that zone. */
  drivesAfterZoneLoss: number;
  readsSurviveZoneLoss: boolean;
  writesSurviveZoneLoss: boolean;
}

/** Quorum of a single-erasure-set MinIO deployment and what the loss of its fullest zone leaves. */
export function erasureQuorum(layout: ErasureLayout): ErasureQuorum {
  const drives = layout.pods * layout.drivesPerPod;
  if (drives > 16) {
    throw new Error(
      `${drives} MinIO drives form more than one erasure set (sets hold at most 16 drives); this project models one set`,
    );
  }
  const parity = layout.parity ?? defaultParity(drives);
  if (parity > Math.floor(drives / 2)) {
    throw new Error(`MinIO parity EC:${parity} exceeds half of ${drives} drives`);
  }
  const dataDrives = drives - parity;
  const readQuorum = dataDrives;
  const writeQuorum = dataDrives === parity ? dataDrives + 1 : dataDrives;
  const worstZoneDrives = Math.ceil(layout.pods / Math.max(1, layout.zones)) * layout.drivesPerPod;
  const drivesAfterZoneLoss = drives - worstZoneDrives;
  return {
    drives,
    parity,
    dataDrives,
    readQuorum,
    writeQuorum,
    worstZoneDrives,
    drivesAfterZoneLoss,
    readsSurviveZoneLoss: layout.zones > 1 && drivesAfterZoneLoss >= readQuorum,
    writesSurviveZoneLoss: layout.zones > 1 && drivesAfterZoneLoss >= writeQuorum,
  };
}

/**
 * The parity to configure: the highest parity MinIO allows (half the set) when that is what keeps
 * writes through a zone loss, else MinIO's default. 6 pods in 3 zones: EC:3, write quorum 4, and a
 * zone takes 2 drives, leaving 4.
 */
export function zoneSafeParity(pods: number, drivesPerPod: number, zones: number): number {
  const drives = pods * drivesPerPod;
  const fallback = defaultParity(drives);
  for (let parity = fallback; parity <= Math.floor(drives / 2); parity++) {
    if (erasureQuorum({ pods, drivesPerPod, zones, parity }).writesSurviveZoneLoss) return parity;
  }
  return fallback;
}
