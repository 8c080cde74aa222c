import * as assert from "node:assert/strict";
import { runDrill } from "../scripts/dr-drill";

describe("dr:drill (Milvus Lite + Azurite, worker CLI)", function () {
  this.timeout(240_000);

  it("restores exactly the newest backup after an abrupt primary loss and measures RPO and RTO", async () => {
    const lines: string[] = [];
    const r = await runDrill({
      rows: 2000,
      dim: 16,
      afterBackupSeconds: 1,
      writeBatch: 50,
      writeIntervalMs: 50,
      log: (l) => lines.push(l),
    });
    // The backup holds the seed plus the writes before it, and the restore holds exactly the backup.
    assert.ok(r.backupRows >= r.seededRows, `backup rows ${r.backupRows} < seeded ${r.seededRows}`);
    assert.equal(r.restoredRows, r.backupRows);
    // Writes went on after the backup and were lost with the primary: that is the measured RPO.
    assert.equal(r.rpoRows, r.acknowledgedRows - r.backupRows);
    assert.ok(r.rpoRows >= 50, `expected writes after the backup, got ${r.rpoRows}`);
    assert.ok(r.rpoSeconds >= 1, `the primary lived ${r.rpoSeconds} s past the snapshot`);
    assert.ok(r.rtoSeconds > 0);
    assert.deepEqual(Object.keys(r.phases).sort(), [
      "backupSeconds",
      "listSeconds",
      "restoreSeconds",
      "seedSeconds",
      "startDrMilvusSeconds",
    ]);
    assert.match(r.backupId, /^drill_vectors-/);
    assert.ok(lines.some((l) => l.startsWith("drill: primary killed")));
  });
});
