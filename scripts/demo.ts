/**
 * `npm run -s demo`: an embedded backup/restore round trip on this machine. Starts Milvus Lite and Azurite
 * on free loopback ports, seeds a demo collection, backs it up with the worker, verifies the backup,
 * restores it under a new name, compares both collections and prints a summary. Everything it starts
 * is stopped and removed at the end, also on failure.
 *
 * The worker connects to Milvus over TLS, as in production: Milvus Lite speaks only plaintext, so a
 * TLS terminator with a certificate from a throwaway CA sits in front of it, and the worker checks the
 * server against that CA (MILVUS_CA_FILE). The demo's own client seeds and compares directly.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DataType, MilvusClient } from "@zilliz/milvus2-sdk-node";
import { main as runWorker } from "../backup/cli";
import {
  describeArgProblem,
  parseCommandLine,
  processIo,
  usageError,
  usageText,
  type CommandSpec,
  type Io,
} from "../backup/cliArgs";
import { startAzurite, startMilvusLite } from "../tools/local-servers";
import { createTestCa, startTlsTerminator, type TlsTerminator } from "../tools/tlsTerminator";

const ROWS = 20_000;
const DIM = 64;
const SOURCE = "demo_documents";
const TARGET = "demo_documents_restored";

async function worker(args: string[], env: NodeJS.ProcessEnv): Promise<unknown> {
  let out = "";
  const code = await runWorker([...args, "--json"], {
    stdout: {
      write: (s: string) => {
        out += s;
        return true;
      },
    },
    stderr: process.stderr,
    env,
  });
  if (code !== 0) throw new Error(`worker ${args.join(" ")} failed (exit ${code})`);
  return JSON.parse(out);
}

function ok(status: { code?: number; reason?: string }, what: string) {
  if (status.code !== 0) throw new Error(`${what}: ${status.reason ?? ""}`);
}

async function seed(client: MilvusClient) {
  ok(
    await client.createCollection({
      collection_name: SOURCE,
      description: "demo documents",
      enable_dynamic_field: true,
      fields: [
        { name: "id", data_type: DataType.Int64, is_primary_key: true },
        { name: "title", data_type: DataType.VarChar, max_length: 128 },
        { name: "attributes", data_type: DataType.JSON },
        { name: "embedding", data_type: DataType.FloatVector, dim: DIM },
      ],
    }),
    "create collection",
  );
  let s = 42;
  const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  for (let start = 0; start < ROWS; start += 2000) {
    const data = Array.from({ length: 2000 }, (_, i) => ({
      id: String(9_007_199_254_740_993n + BigInt(start + i)),
      title: `document ${start + i}`,
      attributes: { lang: (start + i) % 3 === 0 ? "en" : "de", views: (start + i) % 97 },
      embedding: Array.from({ length: DIM }, rnd),
      source: "demo",
    }));
    ok((await client.insert({ collection_name: SOURCE, data })).status, "insert");
  }
  ok((await client.flush({ collection_names: [SOURCE] })).status, "flush");
  ok(
    await client.createIndex({
      collection_name: SOURCE,
      field_name: "embedding",
      index_type: "IVF_FLAT",
      metric_type: "COSINE",
      params: { nlist: 64 },
    }),
    "create index",
  );
  ok(await client.loadCollectionSync({ collection_name: SOURCE }), "load");
}

async function run() {
  process.stderr.write("starting Milvus Lite and Azurite...\n");
  const [milvus, azurite] = await Promise.all([startMilvusLite(), startAzurite()]);
  const client = new MilvusClient({ address: milvus.address, logLevel: "error" });
  // Holds only the CA certificate; the keys stay in this process's memory.
  const tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), "demo-tls-"));
  let front: TlsTerminator | undefined;
  try {
    const ca = createTestCa("milvus-aks demo CA");
    front = await startTlsTerminator({ ...ca.issue(["localhost", "127.0.0.1"]), upstream: milvus.address });
    const env = {
      // By name, not 127.0.0.1: gRPC sends the host as SNI, which must not be an IP (node warns, DEP0123).
      MILVUS_ADDRESS: `localhost:${front.port}`,
      MILVUS_CA_FILE: ca.writeCert(tlsDir),
      BACKUP_CONTAINER: "milvus-backups",
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    };
    process.stderr.write(
      `the worker connects over TLS: ${env.MILVUS_ADDRESS} is a TLS terminator in front of Milvus Lite, ` +
        `its certificate checked against a throwaway CA (MILVUS_CA_FILE=${env.MILVUS_CA_FILE})\n`,
    );
    process.stderr.write(`seeding ${ROWS} rows into ${SOURCE}...\n`);
    await seed(client);

    const backup = (await worker(["backup", "--collection", SOURCE], env)) as {
      backups: { backupId: string; rows: number; bytes: number; seconds: number }[];
    };
    const b = backup.backups.at(0);
    if (!b) throw new Error("the backup reported nothing");
    const verify = (await worker(["verify", "--backup", b.backupId], env)) as { ok: boolean; chunks: number };
    const restore = (await worker(["restore", "--backup", b.backupId, "--target", TARGET], env)) as {
      rows: number;
      seconds: number;
      method: string;
    };

    // Same nearest neighbours from both collections: the restored index and data answer like the original.
    const query = Array.from({ length: DIM }, (_, i) => Math.sin(i));
    const search = async (name: string) =>
      (
        await client.search({ collection_name: name, data: [query], limit: 5, output_fields: ["id"] })
      ).results.map((r) => r.id);
    const [before, after] = await Promise.all([search(SOURCE), search(TARGET)]);
    const counts = await Promise.all([SOURCE, TARGET].map((c) => client.count({ collection_name: c })));

    const rows: [string, string][] = [
      ["backup id", b.backupId],
      [
        "rows backed up",
        `${b.rows} in ${b.seconds.toFixed(1)} s, ${(b.bytes / 1024 / 1024).toFixed(1)} MiB stored`,
      ],
      ["verify", verify.ok ? `ok (${verify.chunks} chunks, checksums match)` : "FAILED"],
      [
        "restored",
        `${restore.rows} rows into ${TARGET} in ${restore.seconds.toFixed(1)} s (${restore.method})`,
      ],
      ["row counts", `${SOURCE} ${counts[0]?.data ?? "?"}, ${TARGET} ${counts[1]?.data ?? "?"}`],
      ["top-5 search", before.join(",") === after.join(",") ? "identical in both collections" : "DIFFERENT"],
      [
        "worker to Milvus",
        `TLS, ${front.connections} connections through the terminator, server certificate checked against MILVUS_CA_FILE`,
      ],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    process.stdout.write(
      `\nbackup/restore round trip\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join("\n")}\n`,
    );
    if (!verify.ok || before.join(",") !== after.join(",") || counts[0]?.data !== counts[1]?.data) {
      throw new Error("the restored collection differs from the original");
    }
  } finally {
    await client.closeConnection().catch(() => undefined);
    await Promise.all([front?.stop(), milvus.stop(), azurite.stop()]);
    fs.rmSync(tlsDir, { recursive: true, force: true });
  }
}

export const DEMO: CommandSpec = {
  name: "demo",
  invocation: "npm run -s demo --",
  synopsis: "",
  description:
    "A backup/restore round trip on this machine: starts Milvus Lite and Azurite on free loopback ports, seeds\n" +
    `${SOURCE} (${ROWS} rows), backs it up with the worker over TLS, verifies the backup, restores it as\n` +
    `${TARGET}, compares row counts and a top-5 search, prints a summary and removes everything it started.`,
  flags: {},
  env: [],
  exitCodes: "0 the restored collection matches, 1 it does not or a step failed, 2 bad usage",
};

/** Runs the command line; returns the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const line = parseCommandLine(argv, DEMO.flags);
  if (line.help) {
    io.out(usageText(DEMO));
    return 0;
  }
  if (line.problems.length > 0) {
    io.err(usageError(DEMO, line.problems.map(describeArgProblem)));
    return 2;
  }
  try {
    await run();
    return 0;
  } catch (e) {
    io.err(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (require.main === module) {
  // gRPC keeps handles open after the servers stop; leave once the summary is written.
  void main(process.argv.slice(2)).then((code) => process.exit(code));
}
