import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DataType, MilvusClient } from "@zilliz/milvus2-sdk-node";
import {
  describeArgProblem,
  parseCommandLine,
  processIo,
  usageError,
  usageText,
  wholeNumber,
  type CommandLine,
  type CommandSpec,
  type Io,
} from "../backup/cliArgs";
import { AzuriteServer, MilvusLiteServer, startAzurite, startMilvusLite } from "../tools/local-servers";
import { createTestCa, startTlsTerminator, type TlsTerminator } from "../tools/tlsTerminator";

/**
 * `npm run -s dr:drill -- [--rows 20000] [--dim 128] [--after-backup-seconds 2] [--json]` (DR_DRILL below
 * is the full usage)
 *
 * A region loss on one machine: a "primary" Milvus Lite with seeded data and writes that keep coming,
 * a backup to Azurite taken by the worker CLI (the same command the CronJob runs), the primary killed
 * with SIGKILL, then a fresh "DR" Milvus Lite restored from the newest complete backup by the worker's
 * `restore` (the command the dr stack's restore Job runs). Prints the measured RPO (rows and seconds
 * acknowledged after the backup's snapshot, i.e. lost) and RTO (failover start to a verified restore).
 *
 * The worker reaches both Milvus servers over TLS, as in production: each Milvus Lite (plaintext only)
 * sits behind a TLS terminator whose certificate comes from a throwaway CA, and the worker gets that CA
 * as MILVUS_CA_FILE. The drill's own writer (the "application") talks to the primary directly.
 */

export interface DrillOptions {
  rows: number;
  dim: number;
  afterBackupSeconds: number;
  /** Rows per continuing write and the pause between writes. */
  writeBatch: number;
  writeIntervalMs: number;
  log: (line: string) => void;
}

export interface DrillReport {
  seededRows: number;
  acknowledgedRows: number;
  backupId: string;
  backupRows: number;
  restoredRows: number;
  rpoRows: number;
  rpoSeconds: number;
  rtoSeconds: number;
  phases: Record<string, number>;
}

const COLLECTION = "drill_vectors";
const ROOT = path.resolve(__dirname, "..");

function check(
  status: { code?: number; error_code?: string | number; reason?: string } | undefined,
  what: string,
) {
  // @zilliz/milvus2-sdk-node signals failures in `status.code`; `error_code` can still read "Success".
  if (!status || (status.code ?? 0) !== 0) {
    if (!status) throw new Error(`${what} failed: Milvus returned no status`);
    throw new Error(`${what} failed: ${status.reason || "no reason given"} (code ${status.code ?? "none"})`);
  }
}

function rowsFrom(start: number, count: number, dim: number, now: number) {
  return Array.from({ length: count }, (_, i) => {
    const id = start + i;
    const vector = Array.from({ length: dim }, (_, j) => Math.sin(id * 0.7 + j));
    return { id: String(id), vector, written_at: String(now) };
  });
}

/** Runs the worker CLI as a separate process, exactly as `npm run -s worker -- <args>` does. */
function worker(args: string[], env: Record<string, string>): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["-r", "ts-node/register/transpile-only", path.join(ROOT, "backup/cli.ts"), ...args, "--json"],
      { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code !== 0) {
        const last = err.trim().split("\n").pop() ?? "";
        // Killed by a signal, a process has no exit code: name the signal instead of "exited null".
        const how = code === null ? `was killed by ${signal ?? "a signal"}` : `exited ${code}`;
        reject(new Error(`worker ${args[0] ?? ""} ${how}: ${last}`));
        return;
      }
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`worker ${args[0] ?? ""} printed no JSON document: ${out.slice(0, 200)}`));
      }
    });
  });
}

const seconds = (ms: number) => Math.round(ms / 10) / 100;

export async function runDrill(o: DrillOptions): Promise<DrillReport> {
  const servers: (AzuriteServer | MilvusLiteServer | TlsTerminator)[] = [];
  const phases: Record<string, number> = {};
  // Holds only the CA certificate (MILVUS_CA_FILE); keys stay in this process's memory.
  const tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), "dr-drill-tls-"));
  try {
    const [azurite, primary] = await Promise.all([startAzurite(), startMilvusLite()]);
    servers.push(azurite, primary);
    const storageEnv = {
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      BACKUP_CONTAINER: "drill-backups",
    };
    // Certificates are issued before the failover, as cert-manager has them ready in production.
    const ca = createTestCa("dr-drill CA");
    const caFile = ca.writeCert(tlsDir);
    const primaryCert = ca.issue(["localhost", "127.0.0.1"]);
    const drCert = ca.issue(["localhost", "127.0.0.1"]);
    const primaryTls = await startTlsTerminator({ ...primaryCert, upstream: primary.address });
    servers.push(primaryTls);
    // By name, not 127.0.0.1: gRPC sends the host as SNI, which must not be an IP (node warns, DEP0123).
    const workerTls = (t: TlsTerminator) => ({
      MILVUS_ADDRESS: `localhost:${t.port}`,
      MILVUS_CA_FILE: caFile,
    });
    o.log(
      "drill: the worker connects to each Milvus over TLS (a TLS terminator in front of Milvus Lite, " +
        "server certificate checked against a throwaway CA in MILVUS_CA_FILE)",
    );

    const client = new MilvusClient({ address: primary.address });
    check(
      await client.createCollection({
        collection_name: COLLECTION,
        fields: [
          { name: "id", data_type: DataType.Int64, is_primary_key: true, autoID: false },
          { name: "vector", data_type: DataType.FloatVector, dim: o.dim },
          { name: "written_at", data_type: DataType.Int64 },
        ],
      }),
      "create collection",
    );
    check(
      await client.createIndex({
        collection_name: COLLECTION,
        field_name: "vector",
        index_type: "FLAT",
        metric_type: "L2",
      }),
      "create index",
    );
    check(await client.loadCollectionSync({ collection_name: COLLECTION }), "load collection");

    // Acknowledgement time of the last row of every write, in pk order: rows are written sequentially.
    const acks: { lastId: number; at: number }[] = [];
    let next = 0;
    const seedStart = Date.now();
    while (next < o.rows) {
      const count = Math.min(5000, o.rows - next);
      const res = await client.insert({
        collection_name: COLLECTION,
        data: rowsFrom(next, count, o.dim, Date.now()),
      });
      check(res.status, "seed insert");
      next += count;
      acks.push({ lastId: next - 1, at: Date.now() });
    }
    phases.seedSeconds = seconds(Date.now() - seedStart);
    o.log(`drill: seeded ${o.rows} rows x ${o.dim}-d in ${phases.seedSeconds} s`);

    // Writes keep coming until the primary dies; the first failed write marks the crash.
    const state = { writing: true, paused: false, inFlight: false };
    const writer = (async () => {
      while (state.writing) {
        if (state.paused) {
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        state.inFlight = true;
        try {
          const res = await client.insert({
            collection_name: COLLECTION,
            data: rowsFrom(next, o.writeBatch, o.dim, Date.now()),
          });
          if ((res.status.code ?? 0) !== 0) break;
          next += o.writeBatch;
          acks.push({ lastId: next - 1, at: Date.now() });
        } catch {
          break;
        } finally {
          state.inFlight = false;
        }
        await new Promise((r) => setTimeout(r, o.writeIntervalMs));
      }
    })();

    // Milvus Lite cannot pin reads to the flush timestamp, so the worker (rightly) refuses a backup
    // whose row count moved while it read. A real Milvus reads at the flush timestamp and writes go on;
    // here writes pause for the backup's duration and resume the moment it has its snapshot on disk.
    await new Promise((r) => setTimeout(r, 500));
    state.paused = true;
    while (state.inFlight) await new Promise((r) => setTimeout(r, 5));
    const backupStart = Date.now();
    const backup = (await worker(["backup", "--collection", COLLECTION], {
      ...storageEnv,
      ...workerTls(primaryTls),
    })) as { backups: { backupId: string; rows: number | string }[] };
    const taken = backup.backups.at(0);
    if (!taken) throw new Error("the backup printed no backup");
    if (primaryTls.connections === 0) throw new Error("the backup did not go through the TLS terminator");
    phases.backupSeconds = seconds(Date.now() - backupStart);
    state.paused = false;
    o.log(
      `drill: backup ${taken.backupId} holds ${String(taken.rows)} rows (${phases.backupSeconds} s); writes continue`,
    );

    await new Promise((r) => setTimeout(r, o.afterBackupSeconds * 1000));
    // Region loss: no graceful shutdown, no final flush.
    process.kill(primary.pid, "SIGKILL");
    const crashAt = Date.now();
    state.writing = false;
    await writer;
    await client.closeConnection();
    const acknowledgedRows = next;
    o.log(`drill: primary killed; ${acknowledgedRows} rows had been acknowledged`);

    // Failover: everything from here counts toward the RTO.
    const failoverStart = Date.now();
    const dr = await startMilvusLite();
    servers.push(dr);
    const drTls = await startTlsTerminator({ ...drCert, upstream: dr.address });
    servers.push(drTls);
    phases.startDrMilvusSeconds = seconds(Date.now() - failoverStart);
    const listStart = Date.now();
    const listed = (await worker(["list", "--collection", COLLECTION], storageEnv)) as {
      backups: { backupId: string; rows: number | string }[];
    };
    const newest = listed.backups.at(0);
    if (!newest) throw new Error("no complete backup is listed");
    phases.listSeconds = seconds(Date.now() - listStart);
    const restoreStart = Date.now();
    await worker(["restore", "--backup", newest.backupId], { ...storageEnv, ...workerTls(drTls) });
    phases.restoreSeconds = seconds(Date.now() - restoreStart);
    if (drTls.connections === 0) throw new Error("the restore did not go through the TLS terminator");
    const drClient = new MilvusClient({ address: dr.address });
    const counted = await drClient.query({
      collection_name: COLLECTION,
      output_fields: ["count(*)"],
      filter: "",
    });
    check(counted.status, "count restored rows");
    const restoredRows = Number(counted.data[0]?.["count(*)"]);
    // RPO below assumes the backup holds exactly the first `rows` sequential writes: check it.
    const beyond = await drClient.query({
      collection_name: COLLECTION,
      output_fields: ["count(*)"],
      filter: `id >= ${counted.data[0]?.["count(*)"] ?? 0}`,
    });
    check(beyond.status, "count rows beyond the snapshot");
    if (Number(beyond.data[0]?.["count(*)"]) !== 0) {
      throw new Error("the restored collection is not a prefix of the acknowledged writes");
    }
    await drClient.closeConnection();
    const rtoSeconds = seconds(Date.now() - failoverStart);

    const backupRows = Number(newest.rows);
    if (restoredRows !== backupRows) {
      throw new Error(`restored ${restoredRows} rows but backup ${newest.backupId} promised ${backupRows}`);
    }
    // The newest write contained in the backup: the snapshot holds a pk prefix of the sequential writes.
    const lastIncluded = acks.find((a) => a.lastId >= backupRows - 1)?.at ?? crashAt;
    const lastAcked = acks.at(-1)?.at ?? crashAt;
    const report: DrillReport = {
      seededRows: o.rows,
      acknowledgedRows,
      backupId: newest.backupId,
      backupRows,
      restoredRows,
      rpoRows: acknowledgedRows - backupRows,
      rpoSeconds: seconds(lastAcked - lastIncluded),
      rtoSeconds,
      phases,
    };
    return report;
  } finally {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    fs.rmSync(tlsDir, { recursive: true, force: true });
  }
}

export const DR_DRILL: CommandSpec = {
  name: "dr:drill",
  invocation: "npm run -s dr:drill --",
  synopsis:
    "[--rows <n>] [--dim <d>] [--after-backup-seconds <s>] [--write-batch <b>] [--write-interval-ms <ms>] [--json]",
  description:
    "A region loss on this machine: Milvus Lite (primary) with seeded rows and continuing writes, a backup to\n" +
    "Azurite by the worker, the primary killed with SIGKILL, a fresh Milvus Lite restored from the newest backup.\n" +
    "Prints the measured RPO and RTO. Starts and removes its own servers; needs no Azure account.",
  flags: {
    "--rows": { type: "string", value: "<n>", help: "rows seeded before the backup (default 20000)" },
    "--dim": { type: "string", value: "<d>", help: "vector dimension (default 128)" },
    "--after-backup-seconds": {
      type: "string",
      value: "<s>",
      help: "seconds the primary keeps taking writes after the backup (default 2)",
    },
    "--write-batch": { type: "string", value: "<b>", help: "rows per continuing write (default 100)" },
    "--write-interval-ms": { type: "string", value: "<ms>", help: "pause between writes (default 50)" },
    "--json": { type: "boolean", help: "print the report as one JSON document" },
  },
  env: [],
  exitCodes: "0 the drill ran, 1 it failed, 2 bad usage",
};

function optionsFrom(
  line: CommandLine,
): { options: Omit<DrillOptions, "log">; json: boolean } | { problems: string[] } {
  const problems = line.problems.map(describeArgProblem);
  const n = (flag: string, fallback: number) =>
    wholeNumber(flag, line.values.get(flag)?.[0], 1, fallback, problems);
  const options = {
    rows: n("--rows", 20000),
    dim: n("--dim", 128),
    afterBackupSeconds: n("--after-backup-seconds", 2),
    writeBatch: n("--write-batch", 100),
    writeIntervalMs: n("--write-interval-ms", 50),
  };
  return problems.length > 0 ? { problems } : { options, json: line.flags.has("--json") };
}

/** Runs the command line; returns the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const line = parseCommandLine(argv, DR_DRILL.flags);
  if (line.help) {
    io.out(usageText(DR_DRILL));
    return 0;
  }
  const parsed = optionsFrom(line);
  if ("problems" in parsed) {
    io.err(usageError(DR_DRILL, parsed.problems));
    return 2;
  }
  try {
    const r = await runDrill({ ...parsed.options, log: io.err });
    if (parsed.json) io.out(JSON.stringify(r));
    else {
      io.out(`RPO: ${r.rpoRows} rows, ${r.rpoSeconds} s of acknowledged writes lost (backup ${r.backupId})`);
      io.out(`RTO: ${r.rtoSeconds} s from failover start to ${r.restoredRows} verified rows`);
      io.out(
        `phases (s): ${Object.entries(r.phases)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ")}`,
      );
    }
    return 0;
  } catch (err) {
    io.err(`dr:drill: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (require.main === module) {
  // The servers are stopped by runDrill; exit without waiting for the SDK's idle gRPC handles.
  void main(process.argv.slice(2)).then((code) => process.exit(code));
}
