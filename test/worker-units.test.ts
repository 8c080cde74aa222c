/** Pure parts of the backup worker: retention rules, cron, the chunk codec, logging and redaction. */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { BackupListing } from "../backup/catalog";
import { parseArgs } from "../backup/cli";
import { ColumnAccumulator, ColumnReader } from "../backup/columns";
import { redact } from "../backup/errors";
import { buildChunk, readChunk } from "../backup/format";
import { Log } from "../backup/log";
import { planRetention } from "../backup/prune";
import { nextRun, parseCron, scheduleLoop } from "../backup/schedule";

const day = 24 * 3600 * 1000;
const now = new Date("2026-11-25T12:00:00Z");
const listing = (collection: string, ageDays: number): BackupListing => ({
  backupId: `${collection}-${ageDays}`,
  collection,
  time: new Date(now.getTime() - ageDays * day).toISOString(),
  rows: 1,
  bytes: 1,
  chunks: 1,
  formatVersion: 1,
});

describe("worker retention plan", function () {
  it("never removes a collection's newest backup, however old", function () {
    const plan = planRetention([listing("a", 400), listing("a", 500)], {
      retentionDays: 30,
      keepLast: 1,
      now,
    });
    assert.deepEqual(
      plan.keep.map((k) => [k.b.backupId, k.reason]),
      [["a-400", "newest complete backup of its collection"]],
    );
    assert.deepEqual(
      plan.remove.map((b) => b.backupId),
      ["a-500"],
    );
  });

  it("keeps the newest k per collection and everything inside the retention", function () {
    const all = [1, 10, 31, 45, 60]
      .map((d) => listing("a", d))
      .concat([listing("b", 100), listing("b", 200)]);
    const plan = planRetention(all, { retentionDays: 30, keepLast: 3, now });
    assert.deepEqual(plan.remove.map((b) => b.backupId).sort(), ["a-45", "a-60"]);
    assert.deepEqual(plan.keep.map((k) => k.b.backupId).sort(), ["a-1", "a-10", "a-31", "b-100", "b-200"]);
    const none = planRetention(all, { retentionDays: 0, keepLast: 1, now });
    assert.deepEqual(none.keep.map((k) => k.b.backupId).sort(), ["a-1", "b-100"]);
  });
});

describe("worker cron schedule", function () {
  it("computes the next run in UTC", function () {
    const at = (expr: string, from: string) => nextRun(parseCron(expr), new Date(from)).toISOString();
    assert.equal(at("0 2 * * *", "2026-11-25T01:59:30Z"), "2026-11-25T02:00:00.000Z");
    assert.equal(at("0 2 * * *", "2026-11-25T02:00:00Z"), "2026-11-26T02:00:00.000Z");
    assert.equal(at("*/15 * * * *", "2026-11-25T10:07:00Z"), "2026-11-25T10:15:00.000Z");
    assert.equal(at("30 3 * * 0", "2026-11-25T00:00:00Z"), "2026-11-29T03:30:00.000Z");
    assert.equal(at("0 0 1 1,7 *", "2026-11-25T00:00:00Z"), "2027-01-01T00:00:00.000Z");
    // Day-of-month and day-of-week both restricted: either matches (cron semantics).
    assert.equal(at("0 0 1 * 1", "2026-11-25T00:00:00Z"), "2026-11-30T00:00:00.000Z");
  });

  it("rejects malformed expressions with the reason", function () {
    assert.throws(() => parseCron("0 2 * *"), /it has 4 fields/);
    assert.throws(() => parseCron("0 25 * * *"), /hour 25 is out of range 0-23/);
    assert.throws(() => parseCron("0 2 * * 7"), /day of week 7 is out of range 0-6/);
    assert.throws(() => parseCron("@every 1h"), /@every is not accepted here/);
    assert.throws(() => parseCron("x * * * *"), /minute "x" is not a number, range, list or step/);
    assert.throws(() => nextRun(parseCron("0 0 31 2 *"), now), /never matches a date/);
  });

  it("finishes the running backup on SIGTERM and then stops", async function () {
    const events: string[] = [];
    let clock = new Date("2026-11-25T01:59:59.900Z").getTime();
    const log = new Log({ write: (s) => (events.push(s), true) });
    await scheduleLoop(
      parseCron("* * * * *"),
      {
        now: () => new Date((clock += 60_000)),
        run: async () => {
          events.push("run-start");
          process.emit("SIGUSR2", "SIGUSR2");
          await new Promise((r) => setTimeout(r, 20));
          events.push("run-end");
        },
      },
      log,
      ["SIGUSR2"],
    );
    const runs = events.filter((e) => e.startsWith("run-"));
    assert.deepEqual(runs, ["run-start", "run-end"]);
    assert.ok(
      events.some((e) => e.includes('"event":"schedule.stopping"') && e.includes('"waitingForRun":true')),
    );
    assert.ok(events.at(-1)?.includes('"event":"schedule.stopped"'));
    assert.equal(process.listenerCount("SIGUSR2"), 0, "signal handlers are removed");
  });
});

describe("worker schedule stops", function () {
  const quietLog = (lines: string[]) => new Log({ write: (s) => (lines.push(s), true) });
  const events = (lines: string[]) => lines.map((l) => (JSON.parse(l) as { event: string }).event);

  it("when the parent that started it exits, if started by a package manager script", async function () {
    const lines: string[] = [];
    let parent = 4242;
    const loop = scheduleLoop(
      parseCron("0 3 29 2 *"),
      { run: () => Promise.resolve(), parentPid: () => parent },
      quietLog(lines),
      [],
      { stopWhenOrphaned: true },
    );
    await new Promise((r) => setTimeout(r, 700));
    assert.deepEqual(events(lines), ["schedule.next"], "same parent: still waiting");
    parent = 1;
    await loop;
    assert.deepEqual(events(lines), [
      "schedule.next",
      "schedule.parent-exited",
      "schedule.stopping",
      "schedule.stopped",
    ]);
    assert.match(lines[2] ?? "", /"signal":"parent-exited"/);
  });

  it("not when its parent exits otherwise (nohup), and on the CLI's abort signal", async function () {
    const lines: string[] = [];
    let parent = 4242;
    const stop = new AbortController();
    const loop = scheduleLoop(
      parseCron("0 3 29 2 *"),
      { run: () => Promise.resolve(), parentPid: () => parent },
      quietLog(lines),
      [],
      { stopWhenOrphaned: false, signal: stop.signal },
    );
    parent = 1;
    await new Promise((r) => setTimeout(r, 1200));
    assert.deepEqual(events(lines), ["schedule.next"]);
    stop.abort("SIGTERM");
    await loop;
    assert.deepEqual(events(lines), ["schedule.next", "schedule.stopping", "schedule.stopped"]);
    assert.match(lines[1] ?? "", /"signal":"abort","waitingForRun":false,"reason":"SIGTERM"/);
  });
});

describe("worker schedule under npm (real processes)", function () {
  // ts-node compiles the worker at start: allow for a slow, shared machine.
  this.timeout(180_000);
  const root = path.join(__dirname, "..");
  // Never due during the test (the next 29 February 03:00 UTC), and nothing is contacted before it.
  const scheduleArgs = [
    "schedule",
    "--cron",
    "0 3 29 2 *",
    "--collection",
    "docs",
    "--container",
    "backups",
    "--storage-connection-string",
    "UseDevelopmentStorage=true",
    "--milvus-address",
    "127.0.0.1:9",
  ];
  const started: number[] = [];

  /** Direct children of a process, from /proc (Linux). */
  function childrenOf(pid: number): number[] {
    return fs
      .readdirSync("/proc")
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
          return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid;
        } catch {
          return false;
        }
      })
      .map(Number);
  }
  /** Still running: exists and is not a zombie (an orphan's exit is reaped by init, not by us). */
  const alive = (pid: number) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      return !["Z", "X"].includes(stat.charAt(stat.lastIndexOf(")") + 2));
    } catch {
      return false;
    }
  };

  /** Starts a command and waits until the worker has logged its next run. */
  async function startScheduled(command: string, args: string[], env: NodeJS.ProcessEnv) {
    const child = spawn(command, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid !== undefined) started.push(child.pid);
    let stderr = "";
    child.stdout.resume();
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.on("close", (code, signal) => {
        resolve({ code, signal });
      });
    });
    /** Resolves once every process holding the output pipes has exited; fails 15 s after it is asked. */
    const closed = () =>
      Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          setTimeout(() => {
            reject(new Error(`still running 15 s after SIGTERM:\n${stderr}`));
          }, 15_000).unref();
        }),
      ]);
    const deadline = Date.now() + 150_000;
    while (!stderr.includes('"event":"schedule.next"')) {
      if (Date.now() > deadline || child.exitCode !== null)
        assert.fail(`the worker did not start:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const worker = childrenOf(child.pid ?? -1);
    started.push(...worker);
    return { child, closed, worker, stderr: () => stderr };
  }

  afterEach(function () {
    // Only what this test started, by pid.
    for (const pid of started.splice(0)) if (alive(pid)) process.kill(pid, "SIGKILL");
  });

  it("exits 0 promptly on SIGTERM sent to npm (npm forwards it to the worker)", async function () {
    const run = await startScheduled("npm", ["run", "-s", "worker", "--", ...scheduleArgs], process.env);
    // The script execs ts-node: npm's one child is the worker itself, not a shell.
    assert.equal(run.worker.length, 1);
    const sent = Date.now();
    run.child.kill("SIGTERM");
    const { code, signal } = await run.closed();
    const took = Date.now() - sent;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, run.stderr());
    assert.ok(took < 10_000, `took ${took} ms`);
    assert.match(run.stderr(), /"event":"schedule.stopping","signal":"SIGTERM","waitingForRun":false/);
    assert.match(run.stderr(), /"event":"schedule.stopped"/);
    assert.equal(alive(run.worker[0] ?? -1), false, "no worker left running");
  });

  it("stops when npm's shell dies of the SIGTERM without passing it on", async function () {
    // What `npm run` does without exec: a shell (dash) that waits for the worker; npm forwards SIGTERM to
    // that shell only, the shell dies of it and the worker is left behind with a new parent.
    const shell = `"${process.execPath}" -r ts-node/register/transpile-only backup/cli.ts "$@"; exit $?`;
    const run = await startScheduled("/bin/sh", ["-c", shell, "sh", ...scheduleArgs], {
      ...process.env,
      npm_lifecycle_event: "worker",
    });
    assert.equal(run.worker.length, 1);
    const worker = run.worker[0] ?? -1;
    assert.notEqual(worker, run.child.pid, "the shell did not exec the worker");
    const sent = Date.now();
    run.child.kill("SIGTERM");
    // "close" comes once the worker, which holds the pipes, has exited too.
    const { signal } = await run.closed();
    const took = Date.now() - sent;
    assert.equal(signal, "SIGTERM", "the shell died of the signal");
    assert.ok(took < 10_000, `took ${took} ms`);
    assert.match(run.stderr(), /"event":"schedule.parent-exited"/);
    assert.match(run.stderr(), /"event":"schedule.stopping","signal":"parent-exited","waitingForRun":false/);
    assert.match(run.stderr(), /"event":"schedule.stopped"/);
    assert.doesNotMatch(run.stderr(), /^error:/m);
    assert.equal(alive(worker), false, "no worker left running");
  });
});

describe("worker command line parsing", function () {
  it("accepts repeated --collection, --flag=value and connection flags", function () {
    const p = parseArgs([
      "backup",
      "--collection",
      "a",
      "--collection=b",
      "--milvus-tls",
      "--container",
      "c",
      "--json",
    ]);
    assert.equal(p.command, "backup");
    assert.deepEqual(p.values.get("--collection"), ["a", "b"]);
    assert.ok(p.flags.has("--milvus-tls") && p.flags.has("--json"));
  });

  it("rejects flags of other commands and repeated single-value flags", function () {
    assert.throws(() => parseArgs(["list", "--drop-existing"]), /list: unknown flag "--drop-existing"/);
    assert.throws(
      () => parseArgs(["restore", "--backup", "a", "--backup", "b"]),
      /--backup given more than once/,
    );
  });

  it("takes the deployed container args as they are rendered", function () {
    // components/backupDeployment/backupWorker.ts renders these exact argument lists.
    assert.deepEqual(
      parseArgs(["prune", "--retention-days", "30", "--keep-last", "3"]).values.get("--keep-last"),
      ["3"],
    );
    assert.deepEqual(parseArgs(["backup", "--collection", "documents"]).values.get("--collection"), [
      "documents",
    ]);
  });
});

describe("worker chunk codec", function () {
  it("keeps int64 beyond 2^53, float16 bytes, sparse rows and nulls exactly", async function () {
    const big = ["9223372036854775807", "-9223372036854775808", "9007199254740993"];
    const ints = new ColumnAccumulator({ name: "id", kind: "int64", dataType: "Int64", nullable: false });
    ints.add({ type: 5, field_name: "id", scalars: { long_data: { data: big } } }, 3);
    const half = new ColumnAccumulator({
      name: "h",
      kind: "bytesvec",
      dataType: "Float16Vector",
      dim: 2,
      nullable: false,
    });
    const halfBytes = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    half.add({ type: 102, field_name: "h", vectors: { dim: 2, float16_vector: halfBytes } }, 3);
    const sparseRow = (i: number, v: number) => {
      const b = Buffer.alloc(8);
      b.writeUInt32LE(i, 0);
      b.writeFloatLE(v, 4);
      return b;
    };
    const sparse = new ColumnAccumulator({
      name: "s",
      kind: "sparse",
      dataType: "SparseFloatVector",
      nullable: false,
    });
    sparse.add(
      {
        type: 104,
        field_name: "s",
        vectors: {
          sparse_float_vector: { contents: [sparseRow(7, 0.5), Buffer.alloc(0), sparseRow(99, 2)] },
        },
      },
      3,
    );
    const text = new ColumnAccumulator({ name: "t", kind: "string", dataType: "VarChar", nullable: true });
    text.add(
      {
        type: 21,
        field_name: "t",
        valid_data: [true, false, true],
        scalars: { string_data: { data: ["a", "", "çé"] } },
      },
      3,
    );

    const file = await buildChunk(3, "p1", [ints.take(), half.take(), sparse.take(), text.take()]);
    const { header, columns } = await readChunk(file, "chunk");
    assert.equal(header.rows, 3);
    assert.equal(header.partition, "p1");
    const reader = (name: string) => {
      const h = header.columns.find((c) => c.name === name);
      assert.ok(h);
      return new ColumnReader(h, columns.get(name) ?? Buffer.alloc(0), 3, "chunk");
    };
    assert.deepEqual(reader("id").fieldData(0, 3), {
      type: 5,
      field_name: "id",
      is_dynamic: false,
      scalars: { long_data: { data: big } },
    });
    assert.deepEqual(reader("h").fieldData(1, 3), {
      type: 102,
      field_name: "h",
      is_dynamic: false,
      vectors: { dim: 2, float16_vector: halfBytes.subarray(4) },
    });
    assert.deepEqual(reader("s").fieldData(0, 3), {
      type: 104,
      field_name: "s",
      is_dynamic: false,
      vectors: {
        dim: 100,
        sparse_float_vector: { dim: 100, contents: [sparseRow(7, 0.5), Buffer.alloc(0), sparseRow(99, 2)] },
      },
    });
    // Nullable values are stored compactly and sliced by validity.
    assert.deepEqual(reader("t").fieldData(1, 3), {
      type: 21,
      field_name: "t",
      is_dynamic: false,
      valid_data: [false, true],
      scalars: { string_data: { data: ["çé"] } },
    });
  });

  it("detects a column whose length does not match its row count", async function () {
    const ints = new ColumnAccumulator({ name: "id", kind: "int64", dataType: "Int64", nullable: false });
    assert.throws(() => {
      ints.add({ type: 5, field_name: "id", scalars: { long_data: { data: ["1"] } } }, 2);
    }, /field id: the server returned 1 values for 2 rows/);
    const file = await buildChunk(1, "", [
      {
        header: { name: "x", kind: "int64", dataType: "Int64", count: 1, hasValid: false },
        parts: [Buffer.alloc(4)],
      },
    ]);
    const { header, columns } = await readChunk(file, "chunk");
    assert.throws(
      () => new ColumnReader(header.columns[0], columns.get("x")!, 1, "c"),
      /column x has 4 bytes, expected 8/,
    );
  });
});

describe("worker logging", function () {
  it("writes one JSON line per step off a terminal and a progress bar on one", function () {
    const lines: string[] = [];
    const plain = new Log({ write: (s) => (lines.push(s), true) });
    plain.info("backup.start", { collection: "docs", rows: 3 });
    plain.progress("backup docs", 3, 3);
    assert.equal(lines.length, 2);
    const first = JSON.parse(lines[0]) as Record<string, unknown>;
    assert.deepEqual(
      { ...first, time: "t" },
      { time: "t", level: "info", event: "backup.start", collection: "docs", rows: 3 },
    );
    const tty: string[] = [];
    const bar = new Log({ isTTY: true, columns: 100, write: (s) => (tty.push(s), true) });
    bar.progress("backup docs", 5, 10);
    bar.progress("backup docs", 10, 10);
    // cli-progress: bar, percentage, done/total, rate and ETA; the line ends when the step is done.
    assert.match(
      tty.join("").replaceAll("\x1b", "ESC"),
      /backup docs \[#{40}\] 100% 10\/10 \| \d+\/s \| ETA \S+ESC\[0K\n$/,
    );
  });

  it("redacts account keys, SAS signatures and passwords", function () {
    assert.equal(
      redact(
        "AccountKey=abc/def==;BlobEndpoint=x https://a/b?sv=1&sig=SECRET token=root:pw mongodb://u:pass@h",
      ),
      "AccountKey=***;BlobEndpoint=x https://a/b?sv=1&sig=*** token=*** mongodb://u:***@h",
    );
  });
});

describe("worker container build", function () {
  const read = (p: string) => fs.readFileSync(path.join(__dirname, "..", p), "utf8");

  it("pins the worker's runtime dependencies to exactly the versions the tests ran with", function () {
    const root = JSON.parse(read("package.json")) as { dependencies: Record<string, string> };
    const worker = JSON.parse(read("backup/package.json")) as { dependencies: Record<string, string> };
    assert.deepEqual(Object.keys(worker.dependencies).sort(), [
      "@azure/identity",
      "@azure/storage-blob",
      "@zilliz/milvus2-sdk-node",
      "cli-progress",
      "cron-parser",
      "pino",
      "retry",
    ]);
    for (const [name, version] of Object.entries(worker.dependencies))
      assert.equal(version, root.dependencies[name], name);
    type Lock = { packages: Partial<Record<string, { version?: string }>> };
    const rootLock = JSON.parse(read("package-lock.json")) as Lock;
    const workerLock = JSON.parse(read("backup/package-lock.json")) as Lock;
    const drift = Object.entries(workerLock.packages)
      .filter(([p, v]) => p !== "" && rootLock.packages[p]?.version !== v?.version)
      .map(([p]) => p);
    assert.deepEqual(drift, [], "regenerate backup/package-lock.json from the root lockfile");
  });

  it("builds a non-root image whose entrypoint is the worker command line", function () {
    const docker = read("backup/Dockerfile");
    const from = [...docker.matchAll(/^ARG NODE_IMAGE=(\S+)$/gm)].map((m) => m[1]);
    assert.deepEqual(from, ["node:20.20.2-bookworm-slim"]);
    assert.doesNotMatch(docker, /:latest\b/);
    assert.match(docker, /^USER 10001:10001$/m);
    assert.match(docker, /^ENTRYPOINT \["node", "\/app\/dist\/cli\.js"\]$/m);
    assert.match(docker, /npm ci --omit=dev/);
    // The benchmark measures memory with the image's heap cap.
    const cap = /NODE_OPTIONS=(--max-old-space-size=\d+)/.exec(docker)?.[1];
    assert.equal(cap, "--max-old-space-size=512");
    assert.ok(read("bench/backup.bench.ts").includes(`const WORKER_NODE_OPTIONS = "${cap}";`));
    // Every worker module is compiled into the image.
    const sources = fs.readdirSync(path.join(__dirname, "..", "backup")).filter((f) => f.endsWith(".ts"));
    assert.ok(sources.includes("cli.ts") && sources.length >= 10);
    assert.deepEqual((JSON.parse(read("backup/tsconfig.build.json")) as { include: string[] }).include, [
      "*.ts",
    ]);
  });
});
