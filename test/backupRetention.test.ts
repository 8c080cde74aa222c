import * as assert from "node:assert/strict";
import { BUILTIN_ROLES } from "../components/azure/roles";
import { RenderResult, renderStack } from "../tools/offline-runtime";

/**
 * Does backup storage stay bounded? A year of daily backups and prunes is replayed against Azure's
 * documented rules, with the settings taken from the rendered stack:
 * - a time-based retention policy blocks deletes and overwrites until it expires ("Time-based
 *   retention policies for immutable blob data");
 * - lifecycle management's delete action "won't work with any blob in an immutable container"
 *   ("Lifecycle management overview", known issues);
 * - with versioning on, deleting a blob keeps its data as a previous version ("Blob versioning");
 * - only Storage Blob Data Owner may delete previous versions (`deleteBlobVersion/action`, which
 *   Storage Blob Data Contributor lacks: "Azure built-in roles");
 * - a deleted blob or version stays soft-deleted for the retention days, then is purged ("Soft delete
 *   for blobs").
 */

interface StorageSettings {
  versioning: boolean;
  wormDays: number;
  softDeleteDays: number;
  /** Lifecycle rule on previous versions, days after creation; undefined when there is none. */
  lifecycleVersionDays: number | undefined;
  workerCanDeleteVersions: boolean;
}

type Obj = Record<string, unknown>;

function settingsOf(r: RenderResult): StorageSettings {
  const one = (type: string): Obj | undefined =>
    r.resources.find((x) => x.type === `azure-native:storage:${type}`)?.inputs;
  const service = one("BlobServiceProperties") ?? {};
  const policy = one("BlobContainerImmutabilityPolicy");
  const rule = ((one("ManagementPolicy")?.policy as { rules: Obj[] }).rules[0]?.definition as Obj)
    .actions as Obj;
  const versionRule = (rule.version as Obj | undefined)?.delete as Obj | undefined;
  const workerRoles = r.resources
    .filter(
      (x) => x.type === "azure-native:authorization:RoleAssignment" && x.name.includes("backup-worker-blob"),
    )
    .map((x) => String(x.inputs.roleDefinitionId).split("/").pop());
  return {
    versioning: service.isVersioningEnabled === true,
    wormDays: Number(policy?.immutabilityPeriodSinceCreationInDays ?? 0),
    softDeleteDays: Number((service.deleteRetentionPolicy as Obj).days),
    lifecycleVersionDays: versionRule ? Number(versionRule.daysAfterCreationGreaterThan) : undefined,
    workerCanDeleteVersions: workerRoles.includes(BUILTIN_ROLES.storageBlobDataOwner),
  };
}

/** Backups held (current, previous versions and soft-deleted) after `days` of daily backup + prune. */
function replay(s: StorageSettings, retentionDays: number, days: number): number {
  type Blob = { created: number; state: "current" | "version" | "soft"; softUntil?: number };
  const blobs: Blob[] = [];
  const softDelete = (b: Blob, today: number) => {
    b.state = "soft";
    b.softUntil = today + s.softDeleteDays;
  };
  for (let today = 0; today < days; today++) {
    blobs.push({ created: today, state: "current" });
    for (const b of blobs) {
      const age = today - b.created;
      const underWorm = s.wormDays > 0 && age < s.wormDays;
      // The worker's prune: deletes current backups past the retention, when WORM allows it.
      if (b.state === "current" && age > retentionDays && !underWorm) {
        if (s.versioning) b.state = "version";
        else softDelete(b, today);
      }
      // Lifecycle acts only outside an immutable container; the worker deletes versions only as Owner.
      if (b.state === "version") {
        const lifecycle =
          s.wormDays === 0 && s.lifecycleVersionDays !== undefined && age > s.lifecycleVersionDays;
        if (lifecycle || s.workerCanDeleteVersions) softDelete(b, today);
      }
    }
    for (let i = blobs.length - 1; i >= 0; i--) {
      const b = blobs.at(i);
      if (b?.state === "soft" && (b.softUntil ?? 0) <= today) blobs.splice(i, 1);
    }
  }
  return blobs.length;
}

describe("backup storage stays bounded (WORM, versioning, lifecycle, roles)", () => {
  it("holds at most retention + soft delete days of backups with WORM on (prod)", async () => {
    const prod = await renderStack("prod");
    const s = settingsOf(prod);
    assert.deepEqual(s, {
      versioning: false,
      wormDays: 7,
      softDeleteDays: 37,
      lifecycleVersionDays: undefined,
      workerCanDeleteVersions: false,
    });
    const bound = prod.config.backup.retentionDays + s.softDeleteDays + 1;
    assert.equal(replay(s, 30, 365), bound);
    assert.equal(replay(s, 30, 730), bound);
  });

  it("holds at most retention + lifecycle + soft delete days without WORM (dev)", async () => {
    const dev = await renderStack("dev");
    const s = settingsOf(dev);
    assert.equal(s.versioning, true);
    assert.equal(s.wormDays, 0);
    assert.equal(
      replay(s, dev.config.backup.retentionDays, 365),
      replay(s, dev.config.backup.retentionDays, 730),
    );
  });

  it("shows the old design (versioning with WORM) growing without bound", async () => {
    const prod = await renderStack("prod");
    const broken = { ...settingsOf(prod), versioning: true, lifecycleVersionDays: 30 };
    assert.ok(replay(broken, 30, 730) > replay(broken, 30, 365) + 300);
  });

  it("creates the WORM policy once: retained on delete, never updated by Pulumi", async () => {
    const prod = await renderStack("prod");
    const policy = prod.resources.find(
      (r) => r.type === "azure-native:storage:BlobContainerImmutabilityPolicy",
    );
    assert.ok(policy);
    assert.equal(policy.options.retainOnDelete, true);
    assert.deepEqual(policy.options.ignoreChanges, [
      "immutabilityPeriodSinceCreationInDays",
      "allowProtectedAppendWrites",
    ]);
    const lock = prod.resources.find((r) => r.type === "azure-native:authorization:ManagementLockByScope");
    assert.ok(lock);
    assert.equal(lock.inputs.level, "CanNotDelete");
    assert.equal(lock.inputs.scope, "milvus-prod-backup-account-id"); // the backup account's id (mocked)
  });
});
