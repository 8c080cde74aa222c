/**
 * Starts and stops real local substitutes for the production services: Azurite (Azure Blob Storage) and
 * the Milvus Lite server binary. Each server gets a free loopback port and a fresh data directory, is
 * awaited until its port accepts connections, and is stopped by pid (never by name, so parallel runs on
 * one machine cannot kill each other's servers). Used by the worker tests, the benchmark, the demo and
 * the disaster-recovery drill.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

/** Azurite's well-known development account (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = "devstoreaccount1";
export const AZURITE_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface LocalServer {
  /** host:port the server listens on. */
  readonly address: string;
  readonly port: number;
  readonly pid: number;
  /** The server's private data directory (removed by `stop`). */
  readonly dataDir: string;
  /** Stops the server (SIGTERM, then SIGKILL after a grace period) and removes its data directory. */
  stop(): Promise<void>;
}

export interface AzuriteServer extends LocalServer {
  /** Connection string for the development account on this server. */
  readonly connectionString: string;
  /** Blob endpoint URL including the account, e.g. http://127.0.0.1:10000/devstoreaccount1. */
  readonly blobEndpoint: string;
}

export interface MilvusLiteServer extends LocalServer {
  /** The Milvus Lite database file inside `dataDir`. */
  readonly dbFile: string;
}

export interface StartOptions {
  /** Parent directory for the data directory. @default os.tmpdir() */
  baseDir?: string;
  /** How long to wait for the port. @default 60000 ms */
  startTimeoutMs?: number;
  /** Where the server's stdout/stderr go. @default a log file in the data directory */
  logToParent?: boolean;
}

const running = new Map<ChildProcess, string>();
let exitHookInstalled = false;

function killAllNow(): void {
  for (const [child, dataDir] of running) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  running.clear();
}

// A crashed or interrupted run (test, benchmark, demo) must not leave servers behind holding ports,
// CPU and disk: kill them and remove their data on exit and on SIGINT/SIGTERM, then die of the signal.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", killAllNow);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      killAllNow();
      process.kill(process.pid, sig);
    });
  }
}

/** A TCP port that is free on 127.0.0.1 at the time of the call. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        srv.close();
        reject(new Error("could not determine a free port"));
        return;
      }
      const port = addr.port;
      srv.close(() => {
        resolve(port);
      });
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function waitForPort(child: ChildProcess, name: string, port: number, timeoutMs: number, log: string) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited during startup (${child.exitCode ?? child.signalCode}); see ${log}`);
    }
    if (await canConnect(port)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not open port ${port} within ${timeoutMs} ms; see ${log}`);
}

async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) {
    running.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      resolve();
    });
  });
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    running.delete(child);
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // exited between the check and the kill
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
  running.delete(child);
}

function startProcess(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  dataDir: string,
  logToParent: boolean,
): { child: ChildProcess; log: string } {
  const log = path.join(dataDir, `${name}.log`);
  const out = logToParent ? "inherit" : fs.openSync(log, "a");
  const child = spawn(command, args, { env, stdio: ["ignore", out, out] });
  if (typeof out === "number") fs.closeSync(out);
  installExitHook();
  running.set(child, dataDir);
  child.once("exit", () => running.delete(child));
  return { child, log };
}

function makeDataDir(prefix: string, baseDir?: string): string {
  const base = baseDir ?? os.tmpdir();
  fs.mkdirSync(base, { recursive: true });
  return fs.mkdtempSync(path.join(base, prefix));
}

/** Starts Azurite's blob service on a free loopback port with a fresh, empty data directory. */
export async function startAzurite(opts: StartOptions = {}): Promise<AzuriteServer> {
  const dataDir = makeDataDir("azurite-", opts.baseDir);
  const port = await freePort();
  const main = require.resolve("azurite/dist/src/blob/main.js");
  const { child, log } = startProcess(
    "azurite",
    process.execPath,
    [
      main,
      "--blobHost",
      "127.0.0.1",
      "--blobPort",
      String(port),
      "--location",
      dataDir,
      "--silent",
      "--skipApiVersionCheck",
      "--disableProductStyleUrl",
    ],
    process.env,
    dataDir,
    opts.logToParent ?? false,
  );
  try {
    await waitForPort(child, "azurite", port, opts.startTimeoutMs ?? 60000, log);
  } catch (e) {
    await stopChild(child);
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  const blobEndpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  return {
    address: `127.0.0.1:${port}`,
    port,
    pid: child.pid ?? -1,
    dataDir,
    blobEndpoint,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
      `BlobEndpoint=${blobEndpoint};`,
    stop: async () => {
      await stopChild(child);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Location of the pinned Milvus Lite server binary and its bundled shared libraries. */
export function milvusLiteBinary(): { binPath: string; libDir: string } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require("@lyyyuna/milvus-lite-linux-x64") as { binPath: string; libDir: string };
  return pkg;
}

/** Starts the Milvus Lite server on a free loopback port with a fresh database file. */
export async function startMilvusLite(opts: StartOptions = {}): Promise<MilvusLiteServer> {
  const dataDir = makeDataDir("milvus-lite-", opts.baseDir);
  const port = await freePort();
  const { binPath, libDir } = milvusLiteBinary();
  const dbFile = path.join(dataDir, "milvus.db");
  const { child, log } = startProcess(
    "milvus-lite",
    binPath,
    [dbFile, `127.0.0.1:${port}`, "ERROR"],
    { ...process.env, LD_LIBRARY_PATH: libDir },
    dataDir,
    opts.logToParent ?? false,
  );
  try {
    await waitForPort(child, "milvus-lite", port, opts.startTimeoutMs ?? 60000, log);
  } catch (e) {
    await stopChild(child);
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    address: `127.0.0.1:${port}`,
    port,
    pid: child.pid ?? -1,
    dataDir,
    dbFile,
    stop: async () => {
      await stopChild(child);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Peak resident set size of a process in bytes, read from /proc (Linux), or undefined elsewhere. */
export function peakRssBytes(pid: number): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
