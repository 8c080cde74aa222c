/**
 * The worker's blob store under storage faults: real Azurite behind a fault-injecting proxy
 * (test/support/faultProxy.ts) that answers 503/429/gateway errors, cuts or stalls response bodies and
 * stalls uploads. Retry timing is shortened through StorageSettings.retry so the file runs in seconds;
 * the production timing is asserted on its own. Also the lease lock primitive, on plain Azurite.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  AzureBlobStore,
  STORAGE_RETRY,
  StorageUnavailableError,
  type Lease,
  type RetryTiming,
} from "../backup/blobStore";
import { WorkerError } from "../backup/errors";
import { AZURITE_KEY, startAzurite, type AzuriteServer } from "../tools/local-servers";
import { startFaultProxy, type FaultProxy, type ProxyLogEntry } from "./support/faultProxy";
import { rng } from "./support/workerEnv";

/** Short timing for tests: 4 tries, waits 0, 100, 300 ms, 1 s per try. */
const FAST: RetryTiming = {
  maxTries: 4,
  retryDelayInMs: 100,
  maxRetryDelayInMs: 3_000,
  tryTimeoutInMs: 1_000,
};

function bytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** "PUT 503 status", one line per request the proxy saw. */
const trace = (log: ProxyLogEntry[]) =>
  log.map((l) => `${l.method}${l.comp ? `?comp=${l.comp}` : ""} ${l.path} ${l.status ?? "-"} ${l.outcome}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("blob store under storage faults (Azurite behind a fault-injecting proxy)", function () {
  this.timeout(30_000);
  let azurite: AzuriteServer;
  let proxy: FaultProxy;
  let store: AzureBlobStore;
  const location = () => `${proxy.blobEndpoint}/faults`;

  before(async function () {
    azurite = await startAzurite();
    proxy = await startFaultProxy(azurite.port);
    store = new AzureBlobStore({
      container: "faults",
      connectionString: proxy.connectionString,
      retry: FAST,
    });
    await store.ensureContainer();
  });

  beforeEach(function () {
    proxy.plan();
  });

  after(async function () {
    await proxy.close();
    await azurite.stop();
  });

  it("uses 8 tries, exponential backoff from 1 s to 30 s and a 60 s per-try timeout in production", function () {
    assert.deepEqual(STORAGE_RETRY, {
      maxTries: 8,
      retryDelayInMs: 1_000,
      maxRetryDelayInMs: 30_000,
      tryTimeoutInMs: 60_000,
    });
    assert.equal(Object.isFrozen(STORAGE_RETRY), true);
    // A store without overrides runs on exactly these values.
    const plain = new AzureBlobStore({ container: "faults", connectionString: proxy.connectionString });
    assert.deepEqual(plain["retry"], STORAGE_RETRY);
    // With these values the SDK's EXPONENTIAL policy waits min((2^(n-1) - 1) x 1 s, 30 s) before retry n
    // (@azure/storage-common StorageRetryPolicyV2 calculateDelay): 0, 1, 3, 7, 15, 30, 30 s, 86 s in all.
    // The timed tests below exercise the policy itself with shorter delays.
  });

  it("rides out a burst of 503s and stores the exact bytes", async function () {
    const data = bytes(50_000, 1);
    proxy.plan({ method: "PUT", path: "burst.bin", fault: { kind: "status", status: 503 }, times: 3 });
    await store.put("burst.bin", data);
    assert.deepEqual(trace(proxy.log), [
      "PUT /faults/burst.bin 503 status",
      "PUT /faults/burst.bin 503 status",
      "PUT /faults/burst.bin 503 status",
      "PUT /faults/burst.bin 201 forwarded",
    ]);
    assert.equal(sha(await store.get("burst.bin")), sha(data));
  });

  it("retries 502, 504 and 408, which the SDK's own policy would not", async function () {
    const data = bytes(1_000, 2);
    proxy.plan(
      { method: "PUT", path: "gateway.bin", fault: { kind: "status", status: 502 } },
      { method: "PUT", path: "gateway.bin", fault: { kind: "status", status: 504 } },
      { method: "PUT", path: "gateway.bin", fault: { kind: "status", status: 408 } },
    );
    await store.put("gateway.bin", data);
    assert.deepEqual(trace(proxy.log), [
      "PUT /faults/gateway.bin 502 status",
      "PUT /faults/gateway.bin 504 status",
      "PUT /faults/gateway.bin 408 status",
      "PUT /faults/gateway.bin 201 forwarded",
    ]);
    assert.equal(sha(await store.get("gateway.bin")), sha(data));
  });

  it("moves a 20 MiB blob in requests of at most 8 MiB, retrying a failed block", async function () {
    const data = bytes(20 * 1024 * 1024 + 5, 10);
    proxy.plan({ method: "PUT", comp: "block", fault: { kind: "status", status: 503 } });
    await store.put("big.bin", data);
    const sizes = (comp: string, status?: number) =>
      proxy.log
        .filter((l) => l.comp === comp && l.status === status)
        .map((l) => l.requestBytes)
        .sort((a, b) => a - b);
    // Three blocks (8 + 8 + 4 MiB and 5 bytes), the one answered 503 sent again, then the block list.
    assert.deepEqual(sizes("block", 201), [4 * 1024 * 1024 + 5, 8 * 1024 * 1024, 8 * 1024 * 1024]);
    assert.equal(sizes("block", 503).length, 1);
    assert.ok([4 * 1024 * 1024 + 5, 8 * 1024 * 1024].includes(sizes("block", 503)[0]));
    assert.equal(sizes("blocklist", 201).length, 1);
    assert.equal(proxy.log.length, 5);
    proxy.plan();
    assert.equal(sha(await store.get("big.bin")), sha(data));
    assert.deepEqual(trace(proxy.log), [
      "HEAD /faults/big.bin 200 forwarded",
      "GET /faults/big.bin 206 forwarded",
      "GET /faults/big.bin 206 forwarded",
      "GET /faults/big.bin 206 forwarded",
    ]);
  });

  it("retries a 429 only after its Retry-After", async function () {
    const data = bytes(1_000, 3);
    proxy.plan({
      method: "PUT",
      path: "throttled.bin",
      fault: { kind: "status", status: 429, headers: { "Retry-After": "2" } },
    });
    await store.put("throttled.bin", data);
    assert.deepEqual(trace(proxy.log), [
      "PUT /faults/throttled.bin 429 status",
      "PUT /faults/throttled.bin 201 forwarded",
    ]);
    const [throttled, retried] = proxy.log;
    const waited = retried.received - throttled.answered!;
    // Retry-After: 2 s, plus the SDK's first backoff, which is 0.
    assert.ok(waited >= 2_000 && waited < 2_500, `waited ${waited} ms`);
    assert.equal(sha(await store.get("throttled.bin")), sha(data));
  });

  it("reads a download cut off mid-body again and returns the exact bytes", async function () {
    const data = bytes(300_000, 4);
    await store.put("cut.bin", data);
    proxy.plan({ method: "GET", path: "cut.bin", fault: { kind: "truncate", afterBytes: 1_000 } });
    const got = await store.get("cut.bin");
    assert.equal(got.length, 300_000);
    assert.equal(sha(got), sha(data));
    assert.deepEqual(trace(proxy.log), [
      "HEAD /faults/cut.bin 200 forwarded",
      "GET /faults/cut.bin 206 truncated",
      "HEAD /faults/cut.bin 200 forwarded",
      "GET /faults/cut.bin 206 forwarded",
    ]);
  });

  it("gives up on a download body stalled past the per-try timeout and reads it again", async function () {
    const data = bytes(300_000, 5);
    await store.put("slow.bin", data);
    proxy.plan({ method: "GET", path: "slow.bin", fault: { kind: "stallBody", afterBytes: 1_000 } });
    const t0 = Date.now();
    const got = await store.get("slow.bin");
    const took = Date.now() - t0;
    assert.equal(sha(got), sha(data));
    assert.ok(took >= 1_000 && took < 2_000, `took ${took} ms`);
    assert.deepEqual(trace(proxy.log), [
      "HEAD /faults/slow.bin 200 forwarded",
      "GET /faults/slow.bin 206 stalledBody",
      "HEAD /faults/slow.bin 200 forwarded",
      "GET /faults/slow.bin 206 forwarded",
    ]);
  });

  it("fails a stalled upload at the per-try timeout and succeeds on the retry", async function () {
    const data = bytes(100_000, 6);
    proxy.plan({ method: "PUT", path: "stalled.bin", fault: { kind: "stall" } });
    const t0 = Date.now();
    await store.put("stalled.bin", data);
    const took = Date.now() - t0;
    // One 1 s try, no backoff before the first retry, then a quick success.
    assert.ok(took >= 1_000 && took < 2_000, `took ${took} ms`);
    assert.deepEqual(trace(proxy.log), [
      "PUT /faults/stalled.bin - stalled",
      "PUT /faults/stalled.bin 201 forwarded",
    ]);
    assert.equal(sha(await store.get("stalled.bin")), sha(data));
  });

  it("reports spent retries as StorageUnavailableError naming the operation and location, no secrets", async function () {
    proxy.plan({ path: "down.bin", fault: { kind: "status", status: 503 }, times: Infinity });
    const t0 = Date.now();
    const e = await store.put("down.bin", bytes(100, 7)).then(
      () => assert.fail("the upload succeeded"),
      (err: unknown) => err,
    );
    const took = Date.now() - t0;
    assert.ok(e instanceof StorageUnavailableError);
    assert.ok(e instanceof WorkerError);
    assert.equal(e.exitCode, 1);
    const m = /^uploading down\.bin in (\S+) failed after 4 tries over (\d+(?:\.\d)?) s: (.*)$/.exec(
      e.message,
    );
    assert.ok(m, e.message);
    assert.equal(m[1], location());
    assert.equal(
      m[3],
      "HTTP 503 Service Unavailable (InjectedFault): injected by the test proxy; " +
        "the storage account was unreachable or throttling: this is transient, retry the command",
    );
    // Waits of 0, 100 and 300 ms between the 4 tries.
    const seconds = Number(m[2]);
    assert.ok(seconds >= 0.3 && seconds <= took / 1000 + 0.1, `${seconds} s of ${took} ms`);
    assert.deepEqual([e.what, e.where, e.tries, e.seconds], ["uploading down.bin", location(), 4, seconds]);
    assert.equal(proxy.log.length, 4);
    assert.ok(!e.message.includes(AZURITE_KEY) && !/AccountKey/i.test(e.message), e.message);
    assert.ok(!/AccountKey|Eby8vdM02x/.test(String(e.stack)));
  });

  it("reports uploads that stall on every try as StorageUnavailableError after the per-try timeouts", async function () {
    const short = new AzureBlobStore({
      container: "faults",
      connectionString: proxy.connectionString,
      retry: { ...FAST, maxTries: 2 },
    });
    proxy.plan({ method: "PUT", path: "hung.bin", fault: { kind: "stall" }, times: Infinity });
    const t0 = Date.now();
    await assert.rejects(short.put("hung.bin", bytes(100, 8)), (e: unknown) => {
      assert.ok(e instanceof StorageUnavailableError);
      assert.equal(
        e.message.replace(/ over \d+(\.\d)? s:/, " over S s:"),
        `uploading hung.bin in ${location()} failed after 2 tries over S s: ` +
          "TIMEOUT: no answer within the per-try timeout of 1 s; " +
          "the storage account was unreachable or throttling: this is transient, retry the command",
      );
      return true;
    });
    const took = Date.now() - t0;
    assert.ok(took >= 2_000 && took < 3_000, `took ${took} ms`);
    assert.deepEqual(trace(proxy.log), ["PUT /faults/hung.bin - stalled", "PUT /faults/hung.bin - stalled"]);
  });

  it("reports a download whose body is cut off on every read as StorageUnavailableError", async function () {
    await store.put("torn.bin", bytes(200_000, 9));
    proxy.plan({
      method: "GET",
      path: "torn.bin",
      fault: { kind: "truncate", afterBytes: 500 },
      times: Infinity,
    });
    await assert.rejects(store.get("torn.bin"), (e: unknown) => {
      assert.ok(e instanceof StorageUnavailableError);
      assert.equal(
        e.message.replace(/ over \d+(\.\d)? s:/, " over S s:"),
        `downloading torn.bin in ${location()} failed after 4 tries over S s: ` +
          "the download was cut off or stalled (The operation was aborted.); " +
          "the storage account was unreachable or throttling: this is transient, retry the command",
      );
      return true;
    });
    assert.equal(proxy.log.filter((l) => l.outcome === "truncated").length, 4);
  });

  it("reports a missing blob as 'missing', at once and not as StorageUnavailableError", async function () {
    await assert.rejects(store.get("never-written.bin"), (e: unknown) => {
      assert.ok(e instanceof WorkerError);
      assert.ok(!(e instanceof StorageUnavailableError));
      assert.equal(e.message, `never-written.bin is missing from ${location()}`);
      return true;
    });
    assert.deepEqual(trace(proxy.log), ["HEAD /faults/never-written.bin 404 forwarded"]);
  });

  describe("leases", function () {
    const holderA = "restore documents by pod worker-a (pid 7) since 2026-01-02T03:04:05.000Z; naïve ✓ 100%";
    const holderB = "backup documents by pod worker-b (pid 8) since 2026-01-02T03:05:00.000Z";

    it("refuses a second lease while the first is held and tells who holds it", async function () {
      assert.equal(await store.exists("locks/a.lock"), false);
      const first = await store.tryLease("locks/a.lock", 15, holderA);
      assert.ok(first);
      assert.equal(first.name, "locks/a.lock");
      // tryLease created the lock blob, empty.
      assert.equal((await store.get("locks/a.lock")).length, 0);
      assert.equal(await store.tryLease("locks/a.lock", 15, holderB), undefined);
      assert.equal(await store.leaseHolder("locks/a.lock"), holderA);
      await first.release();
      assert.equal(await store.leaseHolder("locks/a.lock"), undefined);
      const second = await store.tryLease("locks/a.lock", 15, holderB);
      assert.ok(second);
      assert.equal(await store.leaseHolder("locks/a.lock"), holderB);
      await second.release();
      assert.equal(await store.leaseHolder("locks/missing.lock"), undefined);
    });

    it("renews a held lease; renewing after release throws WorkerError; releasing twice is fine", async function () {
      const lease = await store.tryLease("locks/b.lock", 15, holderA);
      assert.ok(lease);
      await lease.renew();
      assert.equal(await store.tryLease("locks/b.lock", 15, holderB), undefined);
      await lease.release();
      await lease.release();
      await assert.rejects(lease.renew(), (e: unknown) => {
        assert.ok(e instanceof WorkerError);
        assert.equal(
          e.message,
          `the lease on locks/b.lock in ${location()} was released; it cannot be renewed`,
        );
        return true;
      });
      const next = await store.tryLease("locks/b.lock", 15, holderB);
      assert.ok(next);
      await next.release();
    });

    it("refuses lease durations outside Azure's 15-60 s", async function () {
      for (const seconds of [14, 61, 30.5]) {
        await assert.rejects(store.tryLease("locks/c.lock", seconds, holderA), {
          name: "WorkerError",
          message: `a lease on locks/c.lock must last 15-60 s (Azure's range), not ${seconds}`,
        });
      }
      assert.deepEqual(trace(proxy.log), []);
    });

    it("lets a 15 s lease that is not renewed expire: another holder takes it, the first renew fails", async function () {
      this.timeout(40_000);
      const first: Lease | undefined = await store.tryLease("locks/d.lock", 15, holderA);
      assert.ok(first);
      await sleep(16_000);
      const second = await store.tryLease("locks/d.lock", 15, holderB);
      assert.ok(second, "the expired lease was not taken over");
      assert.equal(await store.leaseHolder("locks/d.lock"), holderB);
      await assert.rejects(first.renew(), (e: unknown) => {
        assert.ok(e instanceof WorkerError);
        assert.ok(!(e instanceof StorageUnavailableError));
        assert.equal(
          e.message,
          `lost the lease on locks/d.lock in ${location()} (HTTP 409, LeaseIdMismatchWithLeaseOperation): ` +
            "it expired and another holder may have taken it",
        );
        return true;
      });
      // Releasing the lost lease neither throws nor disturbs the new holder.
      await first.release();
      assert.equal(await store.leaseHolder("locks/d.lock"), holderB);
      assert.equal(await store.tryLease("locks/d.lock", 15, holderA), undefined);
      await second.release();
    });
  });
});
