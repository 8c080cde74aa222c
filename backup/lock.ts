/**
 * One backup or restore per collection at a time: a blob lease on `locks/<collection>.lock` in the
 * backup container (`locks/<database>.<collection>.lock` for a database other than "default", so
 * same-named collections of two databases never block each other), renewed while the run lasts. A run that dies stops renewing and the lease expires
 * within LOCK_LEASE_SECONDS ("Lease Blob", Azure Storage REST API: 15-60 s or infinite), so a crash
 * never leaves a collection locked for good. A second run is refused, not queued or interleaved.
 */
import { hostname } from "node:os";
import { isReadOnlyRefusal, type BlobStore, type Lease } from "./blobStore";
import { DEFAULT_DATABASE, qualifiedName } from "./databases";
import { describeError, WorkerError } from "./errors";
import type { Log } from "./log";

/**
 * Azure's shortest lease: a run killed with SIGKILL (or its node lost) blocks the next run on its
 * collection for at most this long.
 */
export const LOCK_LEASE_SECONDS = 15;
/** Renewed three times per lease period, so one missed renewal still keeps it. */
const RENEW_EVERY_MS = (LOCK_LEASE_SECONDS * 1000) / 3;
/**
 * Without a successful renewal for this long the run stops, at the second check after the last success
 * (10 s), well before the lease can lapse (15 s). A second short of two periods: interval timers may
 * fire a millisecond early against Date.now(), which would otherwise push the stop to the third check,
 * at the very moment the lease expires.
 */
const RENEW_DEADLINE_MS = 2 * RENEW_EVERY_MS - 1000;

export const lockPath = (collection: string, database = DEFAULT_DATABASE) =>
  `locks/${qualifiedName(database, collection)}.lock`;

export interface CollectionLock {
  /** Aborted when the lease could not be renewed: the run must stop, another may start. */
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

/**
 * Takes the collection's lock or refuses with who holds it. Where the store cannot take leases (the
 * primary's read-only geo-secondary during a failover, or Blob Data Reader only), the run goes on
 * unserialized with a warning saying so: the failover runs its restores one after another.
 */
export async function lockCollection(
  store: BlobStore,
  name: string,
  what: string,
  log: Log,
  database = DEFAULT_DATABASE,
): Promise<CollectionLock> {
  const collection = qualifiedName(database, name);
  const holder = `${what} by ${hostname()} (pid ${process.pid}) since ${new Date().toISOString()}`;
  let lease: Lease | undefined;
  try {
    lease = await store.tryLease(lockPath(name, database), LOCK_LEASE_SECONDS, holder);
  } catch (e) {
    if (!isReadOnlyRefusal(e)) throw e;
    log.warn(
      "lock.unavailable",
      { collection },
      `cannot lock ${collection} in ${store.location} (${describeError(e)}); ${what} runs without serialization: run one at a time`,
    );
    const never = new AbortController();
    return { lost: never.signal, release: () => Promise.resolve() };
  }
  if (!lease) {
    const other = await store.leaseHolder(lockPath(name, database)).catch(() => undefined);
    throw new WorkerError(
      `${what} refused: another backup or restore of ${collection} is running (${other ?? "holder unknown"}). ` +
        `Wait for it to finish; if it died, its lock expires within ${LOCK_LEASE_SECONDS} s.`,
    );
  }
  const held = lease;
  const lost = new AbortController();
  let renewing = false;
  let renewedAt = Date.now();
  const loseIt = (why: string) => {
    if (lost.signal.aborted) return;
    log.warn("lock.lost", { collection }, `lost the lock on ${collection}: ${why}`);
    lost.abort(`lost the lock on ${collection}`);
    clearInterval(timer);
  };
  const timer = setInterval(() => {
    // A renewal must land well inside the lease: one that hangs behind the storage retries (up to a
    // minute per try) would let the lease lapse and another run take it while this one goes on.
    if (Date.now() - renewedAt >= RENEW_DEADLINE_MS) {
      loseIt(`no renewal succeeded for ${Math.round((Date.now() - renewedAt) / 1000)} s`);
      return;
    }
    if (renewing) return;
    renewing = true;
    held
      .renew()
      .then(() => {
        renewedAt = Date.now();
      })
      .catch((e: unknown) => {
        loseIt(describeError(e));
      })
      .finally(() => {
        renewing = false;
      });
  }, RENEW_EVERY_MS);
  timer.unref();
  return {
    lost: lost.signal,
    release: async () => {
      clearInterval(timer);
      await held.release().catch((e: unknown) => {
        log.warn(
          "lock.release",
          { collection },
          `could not release the lock on ${collection}: ${describeError(e)}`,
        );
      });
    },
  };
}
