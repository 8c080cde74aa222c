import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { DiskSku } from "../common/config";
import { PART_OF } from "../common/naming";

export interface StorageClassesArgs {
  /** Azure managed disk SKU for every data volume. @default none: `storage.diskSku` ("Premium_LRS") */
  diskSku: DiskSku;
  /**
   * Disk encryption set for every volume (customer-managed key): the Azure Disk CSI driver's
   * `diskEncryptionSetID` parameter (kubernetes-sigs/azuredisk-csi-driver docs/driver-parameters.md).
   * @default none: platform-managed keys
   */
  diskEncryptionSetId?: pulumi.Input<string>;
}

/** The two classes' names and parameters, as one pure function (unit-tested). */
export function storageClassDefaults(diskSku: DiskSku) {
  const parameters: Record<string, string> = {
    skuName: diskSku,
    // Premium SSD v2 supports no host caching at all; for v1 disks read-only caching helps reads and
    // leaves writes (etcd's WAL fsyncs) unbuffered, which is what a database wants.
    cachingMode: diskSku === "PremiumV2_LRS" ? "None" : "ReadOnly",
  };
  return {
    provisioner: "disk.csi.azure.com",
    // Zonal disks must be created in the zone the scheduler picked for the pod, never before.
    volumeBindingMode: "WaitForFirstConsumer",
    allowVolumeExpansion: true,
    parameters,
    /**
     * etcd, MinIO and the standalone pod: losing the volume loses data, so it outlives its claim. Caches
     * (query and streaming nodes) use no disk class at all: a zonal disk would pin the pod to its zone.
     */
    retain: { name: "milvus-premium-retain", reclaimPolicy: "Retain" },
  };
}

/**
 * Premium SSD StorageClasses on the Azure Disk CSI driver: `WaitForFirstConsumer` (mandatory with
 * zonal disks), expandable, `Retain`: only database volumes use it.
 */
export class StorageClassesComponent extends pulumi.ComponentResource {
  /** Class for volumes that hold data (Retain). */
  public readonly retainClassName: pulumi.Output<string>;

  constructor(name: string, args: StorageClassesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:k8s:StorageClasses", name, {}, opts);
    const d = storageClassDefaults(args.diskSku);
    const make = (suffix: string, cls: { name: string; reclaimPolicy: string }) =>
      new k8s.storage.v1.StorageClass(
        `${name}-${suffix}`,
        {
          metadata: { name: cls.name, labels: { "app.kubernetes.io/part-of": PART_OF } },
          provisioner: d.provisioner,
          parameters:
            args.diskEncryptionSetId !== undefined
              ? pulumi
                  .output(args.diskEncryptionSetId)
                  .apply((id) => ({ ...d.parameters, diskEncryptionSetID: id }))
              : d.parameters,
          reclaimPolicy: cls.reclaimPolicy,
          volumeBindingMode: d.volumeBindingMode,
          allowVolumeExpansion: d.allowVolumeExpansion,
        },
        // StorageClass parameters are immutable: a SKU change must replace the class, and existing
        // volumes keep the SKU they were created with.
        { parent: this, deleteBeforeReplace: true },
      );
    this.retainClassName = make("retain", d.retain).metadata.name;
    this.registerOutputs({ retainClassName: this.retainClassName });
  }
}
