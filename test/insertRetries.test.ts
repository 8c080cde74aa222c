import * as assert from "node:assert/strict";
import { insertWithRetries } from "../backup/restore";

/** A Milvus whose inserts fail with the given messages, then succeed; it records every call. */
function flaky(failures: string[]) {
  const calls: { upsert: boolean }[] = [];
  return {
    calls,
    insert: (_n: string, _p: string | undefined, _f: object[], _r: number, upsert?: boolean) => {
      calls.push({ upsert: upsert ?? false });
      const failure = failures.shift();
      return failure === undefined ? Promise.resolve() : Promise.reject(new Error(failure));
    },
  };
}
const quiet = () => {
  const warnings: Record<string, unknown>[] = [];
  return {
    warnings,
    warn: (_e: string, fields?: Record<string, unknown>) => void warnings.push(fields ?? {}),
  };
};
const fast = { baseMs: 1 };

describe("restore insert retries", () => {
  it("retries a refusal (rate limit) as the same insert, with doubling waits", async () => {
    const m = flaky(["rate limit exceeded", "memory quota exhausted"]);
    const log = quiet();
    await insertWithRetries(m, "c", undefined, [], 10, true, log, fast);
    assert.deepEqual(m.calls, [{ upsert: false }, { upsert: false }, { upsert: false }]);
    assert.deepEqual(
      log.warnings.map((w) => [w.attempt, w.delayMs]),
      [
        [1, 2],
        [2, 4],
      ],
    );
  });

  it("retries an ambiguous failure as an upsert, which cannot duplicate rows that did land", async () => {
    const m = flaky(["14 UNAVAILABLE: connection reset"]);
    await insertWithRetries(m, "c", undefined, [], 10, true, quiet(), fast);
    assert.deepEqual(m.calls, [{ upsert: false }, { upsert: true }]);
  });

  it("does not retry an ambiguous failure where upsert is impossible, nor any other error", async () => {
    const noUpsert = flaky(["DEADLINE_EXCEEDED"]);
    await assert.rejects(
      insertWithRetries(noUpsert, "c", undefined, [], 1, false, quiet(), fast),
      /DEADLINE/,
    );
    assert.equal(noUpsert.calls.length, 1);
    const schema = flaky(["field vec: dimension mismatch"]);
    await assert.rejects(insertWithRetries(schema, "c", undefined, [], 1, true, quiet(), fast), /dimension/);
    assert.equal(schema.calls.length, 1);
  });

  it("gives up after five attempts with the last error; the waits double (1, 2, 4, 8 s at the default 500 ms base)", async () => {
    const m = flaky(Array.from({ length: 9 }, (_, i) => `rate limit ${i}`));
    const log = quiet();
    await assert.rejects(insertWithRetries(m, "c", undefined, [], 1, true, log, fast), /rate limit 4/);
    assert.equal(m.calls.length, 5);
    assert.deepEqual(
      log.warnings.map((w) => w.delayMs),
      [2, 4, 8, 16],
    );
  });
});
