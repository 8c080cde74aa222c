/** The worker's logger (pino underneath) and its progress output (cli-progress on a terminal). */
import * as assert from "node:assert/strict";
import { Log, textLine } from "../backup/log";
import { barWidth, chooseOutput } from "../backup/progress";

const collect = (extra: { isTTY?: boolean; columns?: number } = {}) => {
  const writes: string[] = [];
  return { writes, sink: { ...extra, write: (s: string) => (writes.push(s), true) } };
};
const parse = (writes: string[]) => writes.map((l) => JSON.parse(l) as Record<string, unknown>);

describe("worker output choice", function () {
  it("draws text and a bar only on a terminal without --json; quiet runs show no progress", function () {
    assert.deepEqual(chooseOutput({ isTTY: true }), { logs: "text", progress: "bar" });
    assert.deepEqual(chooseOutput({ isTTY: true, json: true }), { logs: "json", progress: "lines" });
    assert.deepEqual(chooseOutput({ isTTY: false }), { logs: "json", progress: "lines" });
    assert.deepEqual(chooseOutput({}), { logs: "json", progress: "lines" });
    assert.deepEqual(chooseOutput({ isTTY: true, quiet: true }), { logs: "text", progress: "none" });
    assert.deepEqual(chooseOutput({ quiet: true }), { logs: "json", progress: "none" });
  });

  it("sizes the bar to the terminal, 10 to 40 characters", function () {
    assert.deepEqual([barWidth(undefined), barWidth(55), barWidth(70), barWidth(200)], [30, 10, 20, 40]);
  });

  it("follows the sink and --json in Log", function () {
    assert.deepEqual(new Log({ isTTY: true, write: () => true }).output, { logs: "text", progress: "bar" });
    assert.deepEqual(new Log({ isTTY: true, write: () => true }, false, { json: true }).output, {
      logs: "json",
      progress: "lines",
    });
    assert.deepEqual(new Log({ write: () => true }, true).output, { logs: "json", progress: "none" });
  });
});

describe("worker JSON log lines", function () {
  it("writes one JSON object per write with level names, the event first and an ISO time", function () {
    const { writes, sink } = collect();
    const log = new Log(sink);
    log.info("backup.start", { collection: "docs", rows: 3 });
    log.warn("prune.immutable", { backupId: "b1" }, "backup b1 is immutable; skipped");
    log.event("error", "milvus.lost", {});
    assert.equal(writes.length, 3);
    for (const w of writes) assert.match(w, /^\{.*\}\n$/);
    assert.match(writes[0], /^\{"level":"info","event":"backup.start","collection":"docs","rows":3,"time":"/);
    assert.match(writes[1], /"level":"warn","event":"prune.immutable"/);
    const [a, b, c] = parse(writes);
    assert.deepEqual(
      { ...a, time: "t" },
      { level: "info", event: "backup.start", collection: "docs", rows: 3, time: "t" },
    );
    assert.equal(new Date(String(a.time)).toISOString(), a.time);
    assert.equal(b.message, "backup b1 is immutable; skipped");
    assert.deepEqual([c.level, c.event], ["error", "milvus.lost"]);
    assert.deepEqual(log.warnings, ["backup b1 is immutable; skipped"]);
  });

  it("keeps warnings and drops info when quiet", function () {
    const { writes, sink } = collect();
    const log = new Log(sink, true);
    log.info("backup.start");
    log.progress("backup docs", 1, 1);
    log.warn("lock.lost", { collection: "c" });
    assert.deepEqual(
      parse(writes).map((l) => l.event),
      ["lock.lost"],
    );
    assert.deepEqual(log.warnings, ["lock.lost"]);
  });

  it("writes a progress line at most every 10 s, and always the last one", function () {
    const { writes, sink } = collect();
    const log = new Log(sink);
    log.progress("backup docs", 1, 10, { backupId: "b" });
    log.progress("backup docs", 2, 10);
    log.progress("backup docs", 10, 10);
    const lines = parse(writes).map(({ time: _t, ...rest }) => rest);
    assert.deepEqual(lines, [
      { level: "info", event: "progress", step: "backup docs", done: 1, total: 10, backupId: "b" },
      { level: "info", event: "progress", step: "backup docs", done: 10, total: 10 },
    ]);
  });
});

describe("worker log redaction", function () {
  const secrets = ["abc/def==", "SASSECRET", "hunter2", "s3cr3t-token", "pw-in-url", "nested-pw"];
  const lines = () => {
    const { writes, sink } = collect();
    const log = new Log(sink);
    log.warn(
      "storage.retry",
      {
        connection: "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc/def==;EndpointSuffix=x",
        url: "https://a.blob.core.windows.net/c?sv=1&sig=SASSECRET",
        password: "hunter2",
        token: "s3cr3t-token",
        settings: { address: "https://root:pw-in-url@milvus:19530", password: "nested-pw" },
        milvusToken: "hunter2",
        resetPassword: 1,
        passwords: 2,
      },
      "retrying with password=hunter2 and token: s3cr3t-token",
    );
    return writes;
  };

  it("censors secret fields by path and secrets inside any string, message included", function () {
    const writes = lines();
    const text = writes.join("");
    for (const s of secrets) assert.ok(!text.includes(s), `${s} leaked: ${text}`);
    const [line] = parse(writes);
    assert.equal(line.password, "***");
    assert.equal(line.token, "***");
    assert.equal(line.milvusToken, "***");
    assert.deepEqual(line.settings, { address: "https://root:***@milvus:19530", password: "***" });
    assert.equal(line.url, "https://a.blob.core.windows.net/c?sv=1&sig=***");
    assert.match(String(line.connection), /AccountKey=\*\*\*;EndpointSuffix=x$/);
    assert.equal(line.message, "retrying with password=*** and token: ***");
  });

  it("leaves counts named like passwords as numbers, so the line stays valid JSON", function () {
    // The old whole-line redactor turned `"resetPassword":1}` into `"resetPassword":***`.
    const [line] = parse(lines());
    assert.equal(line.resetPassword, 1);
    assert.equal(line.passwords, 2);
    const { writes, sink } = collect();
    new Log(sink).info("access.plan", { counts: { resetPassword: 1, createUser: 2 } });
    assert.deepEqual(parse(writes)[0].counts, { resetPassword: 1, createUser: 2 });
  });

  it("censors the same on a terminal", function () {
    const { writes, sink } = collect({ isTTY: true, columns: 100 });
    new Log(sink).warn("x", { password: "hunter2", url: "mongodb://u:hunter2@h" }, "token=hunter2");
    assert.deepEqual(writes, ["warn: token=***  password=*** url=mongodb://u:***@h\n"]);
  });
});

describe("worker terminal output", function () {
  it("writes readable lines: the message (or event), then key=value fields", function () {
    const { writes, sink } = collect({ isTTY: true, columns: 100 });
    const log = new Log(sink);
    log.info("backup.start", { collection: "docs", rows: 3 });
    log.warn("milvus.plaintext", { address: "h:19530" }, "plaintext to h:19530");
    assert.deepEqual(writes, [
      "backup.start  collection=docs rows=3\n",
      "warn: plaintext to h:19530  address=h:19530\n",
    ]);
    assert.equal(textLine('{"level":"error","event":"e","n":{"a":1}}'), 'error: e  n={"a":1}\n');
  });

  it("draws a bar with rate and ETA that ends its line when done, and clears it for a log line", function () {
    const { writes, sink } = collect({ isTTY: true, columns: 100 });
    const log = new Log(sink);
    log.progress("backup docs", 5, 10);
    log.info("backup.chunk", { n: 1 });
    log.progress("backup docs", 10, 10);
    const out = writes.join("").replaceAll("\x1b", "ESC");
    assert.ok(out.includes("\rESC[Kbackup.chunk  n=1\n"), JSON.stringify(out));
    assert.match(out, /backup docs \[#{20}-{20}\] 50% 5\/10 \| \d+\/s \| ETA /);
    assert.match(out, /backup docs \[#{40}\] 100% 10\/10 \| \d+\/s \| ETA \S+ESC\[0K\n$/);
    // No cursor save/restore (log lines come between redraws) and line wrapping is never switched off.
    assert.doesNotMatch(out, /ESC[78]|ESC\[\?7l/);
  });

  it("stops a bar left mid-step on close, and starts a new bar for a new label", function () {
    const { writes, sink } = collect({ isTTY: true, columns: 100 });
    const log = new Log(sink);
    log.progress("verify a", 1, 4);
    log.progress("verify b", 1, 2);
    log.close();
    const out = writes.join("");
    assert.match(out, /verify a \[#{10}-{30}\] 25% 1\/4[^\n]*\n/);
    assert.match(out, /verify b \[#{20}-{20}\] 50% 1\/2[^\n]*\n$/);
    // Nothing redraws after close (a bar timer left running would keep the process alive).
    const before = writes.length;
    return new Promise<void>((r) => setTimeout(r, 250)).then(() => {
      assert.equal(writes.length, before);
    });
  });
});
