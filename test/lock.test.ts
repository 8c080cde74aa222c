import * as assert from "node:assert/strict";
import type { BlobStore, Lease } from "../backup/blobStore";
import { lockCollection, LOCK_LEASE_SECONDS } from "../backup/lock";
import { Log } from "../backup/log";

/** A store whose lease is taken at once and whose renewals behave as `renew` says. */
function storeWith(renew: () => Promise<void>): BlobStore {
  const lease: Lease = { name: "locks/docs.lock", renew, release: () => Promise.resolve() };
  return { location: "fake", tryLease: () => Promise.resolve(lease) } as unknown as BlobStore;
}

describe("collection lock (blob lease)", function () {
  this.timeout(30_000);
  const lines: string[] = [];
  const log = new Log({
    write: (s: string) => {
      lines.push(s);
      return true;
    },
  });

  it("stops the run when renewals hang behind storage retries, before the lease can lapse", async function () {
    assert.equal(LOCK_LEASE_SECONDS, 15);
    const lock = await lockCollection(
      storeWith(() => new Promise<void>(() => undefined)),
      "docs",
      "backup of docs",
      log,
    );
    const started = Date.now();
    await new Promise<void>((resolve) => {
      lock.lost.addEventListener("abort", () => {
        resolve();
      });
    });
    const waited = (Date.now() - started) / 1000;
    // Renewed every 5 s; without one success for 10 s the run stops, 5 s before the lease can lapse.
    assert.ok(waited >= 9.5 && waited < 15, `stopped after ${waited} s`);
    assert.equal(lock.lost.reason, "lost the lock on docs");
    assert.match(lines.join(""), /lost the lock on docs: no renewal succeeded for 1\d s/);
    await lock.release();
  });

  it("keeps the lock while renewals succeed, and stops at once when one is refused", async function () {
    let calls = 0;
    const lock = await lockCollection(
      storeWith(() => (++calls < 3 ? Promise.resolve() : Promise.reject(new Error("lease id mismatch")))),
      "docs",
      "restore of x into docs",
      log,
    );
    await new Promise<void>((resolve) => {
      lock.lost.addEventListener("abort", () => {
        resolve();
      });
    });
    assert.equal(calls, 3);
    assert.match(lines.join(""), /lost the lock on docs: lease id mismatch/);
    await lock.release();
  });
});
