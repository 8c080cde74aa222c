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
import { spawnSync } from "node:child_process";
import { MilvusClient } from "@zilliz/milvus2-sdk-node";

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

/**
 * A real Milvus standalone server (not Milvus Lite): the `milvus` package on PyPI bundles the Milvus
 * 2.3.5 binaries with an embedded etcd and a launcher, `milvus-server`. Milvus Lite answers every user,
 * role and grant call with gRPC UNIMPLEMENTED and checks no credentials, so whatever must be tested
 * against real users and roles runs on this server instead, with authorization on (root:Milvus).
 */
export const MILVUS_STANDALONE_VERSION = "2.3.5";
export const MILVUS_STANDALONE_ROOT_TOKEN = "root:Milvus";

export interface MilvusStandaloneServer extends LocalServer {
  /** Token of the built-in root user (Milvus's default password; the server is private to the test). */
  readonly rootToken: string;
  readonly version: string;
}

/**
 * Path of `milvus-server`, installed on first use into a virtual environment under the repository's
 * .tmp/ (git-ignored) with `python3 -m venv` and pip from PyPI (about 10 s). A half-finished install is
 * redone: the environment only counts once its marker file is written. Throws, with pip's output, when
 * Python or the network is missing: a test that needs this server must fail, not skip.
 */
export function ensureMilvusStandalone(): string {
  const venv = path.resolve(__dirname, "..", ".tmp", `milvus-${MILVUS_STANDALONE_VERSION}`);
  const bin = path.join(venv, "bin", "milvus-server");
  const marker = path.join(venv, ".installed");
  if (fs.existsSync(marker) && fs.existsSync(bin)) return bin;
  fs.rmSync(venv, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(venv), { recursive: true });
  const steps: [string, string[]][] = [
    ["python3", ["-m", "venv", venv]],
    [
      path.join(venv, "bin", "pip"),
      ["install", "--disable-pip-version-check", "--no-input", "-q", `milvus==${MILVUS_STANDALONE_VERSION}`],
    ],
  ];
  for (const [cmd, args] of steps) {
    const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 600_000 });
    if (r.error !== undefined || r.status !== 0) {
      const output = `${r.stdout}${r.stderr}`.trim().split("\n").slice(-15).join("\n");
      throw new Error(
        `could not install Milvus ${MILVUS_STANDALONE_VERSION} (PyPI package "milvus") into ${venv}: ` +
          `\`${cmd} ${args.join(" ")}\` ${r.error ? `failed: ${r.error.message}` : `exited with ${r.status}`}. ` +
          `It needs python3 with the venv module and access to PyPI.\n${output}`,
      );
    }
  }
  fs.writeFileSync(marker, new Date().toISOString() + "\n");
  return bin;
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // already gone
  }
}

/**
 * Starts Milvus standalone 2.3.5 with authorization on, on a free loopback port with a fresh data
 * directory, and returns once root can list users (the proxy answers before its RBAC is ready).
 *
 * The launcher (a Python process) starts `milvus run standalone` as its child, so both run in a process
 * group of their own and are stopped together: SIGINT (the launcher then stops Milvus), SIGKILL to the
 * group after a grace period, also when the test process exits or is interrupted.
 *
 * The embedded etcd would listen on its fixed default ports (peer 2380, client 2379), so two servers on
 * one machine collided. Milvus reads the embedded etcd's own configuration from the file named by
 * `ETCD_CONFIG_PATH` (the way milvus-io/milvus scripts/standalone_embed.sh configures it,
 * `ETCD_CONFIG_PATH=/milvus/configs/embedEtcd.yaml`), so each server gets free peer and client ports
 * there and `--etcd-port` points Milvus at that client port. Its HTTP server (metrics, health) listens on
 * `common.MetricsPort`, 9091 by default; Milvus reads any setting from the environment with dots and
 * underscores dropped and case ignored (pkg/config/env_source.go), hence `COMMON_METRICSPORT`. Every
 * component port is passed as a launcher flag. Checked here: two servers side by side.
 */
export async function startMilvusStandalone(opts: StartOptions = {}): Promise<MilvusStandaloneServer> {
  const bin = ensureMilvusStandalone();
  const dataDir = makeDataDir("milvus-standalone-", opts.baseDir);
  const port = await freePort();
  const etcdPeerPort = await freePort();
  const etcdClientPort = await freePort();
  const metricsPort = await freePort();
  // The launcher writes its defaults for every component's gRPC port (53100, 19529, 19531, ...) into
  // milvus.yaml (data/config.yaml.template in the wheel): a second server panicked binding 53100.
  const componentPorts: string[] = [];
  for (const flag of [
    "--root-coord-port",
    "--proxy-internal-port",
    "--query-coord-port",
    "--query-node-port",
    "--index-coord-port",
    "--index-node-port",
    "--data-coord-port",
    "--data-node-port",
  ]) {
    componentPorts.push(flag, String(await freePort()));
  }
  const etcdConfig = path.join(dataDir, "embedEtcd.yaml");
  fs.writeFileSync(
    etcdConfig,
    [
      `listen-peer-urls: http://127.0.0.1:${etcdPeerPort}`,
      `initial-advertise-peer-urls: http://127.0.0.1:${etcdPeerPort}`,
      `initial-cluster: default=http://127.0.0.1:${etcdPeerPort}`,
      `listen-client-urls: http://127.0.0.1:${etcdClientPort}`,
      `advertise-client-urls: http://127.0.0.1:${etcdClientPort}`,
      "",
    ].join("\n"),
  );
  const log = path.join(dataDir, "milvus-standalone.log");
  const out = opts.logToParent ? "inherit" : fs.openSync(log, "a");
  const child = spawn(
    bin,
    [
      "--data",
      dataDir,
      "--proxy-port",
      String(port),
      "--etcd-port",
      String(etcdClientPort),
      "--authorization-enabled",
      "true",
      ...componentPorts,
    ],
    {
      stdio: ["ignore", out, out],
      detached: true,
      env: { ...process.env, ETCD_CONFIG_PATH: etcdConfig, COMMON_METRICSPORT: String(metricsPort) },
    },
  );
  if (typeof out === "number") fs.closeSync(out);
  const pgid = child.pid ?? -1;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      resolve();
    });
  });
  const onExit = () => {
    killGroup(pgid, "SIGKILL");
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  // An interrupted run must not leave Milvus behind: kill the group, then let the signal do what it
  // would have done (unless another handler, such as the one of the servers above, re-raises it).
  const onSignal = (sig: NodeJS.Signals) => {
    onExit();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  process.on("exit", onExit);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    killGroup(pgid, "SIGINT");
    const deadline = Date.now() + 15_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 15_000)))]);
    clearTimeout(timer);
    while (groupAlive(pgid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    killGroup(pgid, "SIGKILL");
    while (groupAlive(pgid) && Date.now() < deadline + 5_000) await new Promise((r) => setTimeout(r, 100));
    process.removeListener("exit", onExit);
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  const deadline = Date.now() + timeoutMs;
  try {
    await waitForPort(child, "milvus-standalone", port, timeoutMs, log);
    const client = new MilvusClient({
      address: `127.0.0.1:${port}`,
      token: MILVUS_STANDALONE_ROOT_TOKEN,
      logLevel: "error",
      timeout: 5_000,
      maxRetries: 0,
    });
    client.connectPromise.catch(() => undefined);
    try {
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`milvus-standalone exited during startup; see ${log} and ${dataDir}/logs`);
        }
        const ok = await client.listUsers().then(
          (r) => (r.status as { code?: number } | undefined)?.code === 0,
          () => false,
        );
        if (ok) break;
        if (Date.now() > deadline) {
          throw new Error(`milvus-standalone did not answer as root within ${timeoutMs} ms; see ${log}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await client.closeConnection().catch(() => undefined);
    }
  } catch (e) {
    // The data directory goes with the server: keep the end of its logs in the error.
    const tails = [log, path.join(dataDir, "logs", "milvus-stderr.log")]
      .filter((f) => fs.existsSync(f))
      .map((f) => `--- ${path.basename(f)}\n${fs.readFileSync(f, "utf8").split("\n").slice(-20).join("\n")}`);
    await stop();
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${tails.join("\n")}`);
  }
  return {
    address: `127.0.0.1:${port}`,
    port,
    pid: pgid,
    dataDir,
    rootToken: MILVUS_STANDALONE_ROOT_TOKEN,
    version: MILVUS_STANDALONE_VERSION,
    stop,
  };
}

/**
 * The Python rewrite of Milvus Lite (PyPI `milvus-lite` 3.x): a gRPC server speaking Milvus's protocol,
 * started with `milvus-lite server --data-dir D --host H --port P` (its `server --help`). It imports the
 * protocol classes from pymilvus (milvus_lite/adapter/grpc/servicer.py: `from pymilvus.grpc_gen import
 * ...`), which its wheel does not require, so pymilvus is installed beside it.
 */
export const MILVUS_LITE_PY_VERSION = "3.2.2";
const PYMILVUS_FOR_LITE_PY = "3.0.2";

/** Path of the `milvus-lite` command, installed on first use like {@link ensureMilvusStandalone}. */
export function ensureMilvusLitePy(): string {
  const venv = path.resolve(__dirname, "..", ".tmp", `milvus-lite-${MILVUS_LITE_PY_VERSION}`);
  const bin = path.join(venv, "bin", "milvus-lite");
  const marker = path.join(venv, ".installed");
  if (fs.existsSync(marker) && fs.existsSync(bin)) return bin;
  fs.rmSync(venv, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(venv), { recursive: true });
  const packages = [`milvus-lite==${MILVUS_LITE_PY_VERSION}`, `pymilvus==${PYMILVUS_FOR_LITE_PY}`];
  const steps: [string, string[]][] = [
    ["python3", ["-m", "venv", venv]],
    [
      path.join(venv, "bin", "pip"),
      ["install", "--disable-pip-version-check", "--no-input", "-q", ...packages],
    ],
  ];
  for (const [cmd, args] of steps) {
    const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 600_000 });
    if (r.error !== undefined || r.status !== 0) {
      const output = `${r.stdout}${r.stderr}`.trim().split("\n").slice(-15).join("\n");
      throw new Error(
        `could not install ${packages.join(" and ")} (PyPI) into ${venv}: ` +
          `\`${cmd} ${args.join(" ")}\` ${r.error ? `failed: ${r.error.message}` : `exited with ${r.status}`}. ` +
          `It needs python3 (>= 3.10) with the venv module and access to PyPI.\n${output}`,
      );
    }
  }
  fs.writeFileSync(marker, new Date().toISOString() + "\n");
  return bin;
}

/**
 * Starts the Python Milvus Lite server on a free loopback port with a fresh data directory; it opens its
 * port within about 2 s and stops on SIGTERM (measured here on milvus-lite 3.2.2). No authentication.
 */
export async function startMilvusLitePy(opts: StartOptions = {}): Promise<LocalServer & { version: string }> {
  const bin = ensureMilvusLitePy();
  const dataDir = makeDataDir("milvus-lite-py-", opts.baseDir);
  const port = await freePort();
  const { child, log } = startProcess(
    "milvus-lite-py",
    bin,
    ["server", "--data-dir", path.join(dataDir, "data"), "--host", "127.0.0.1", "--port", String(port)],
    process.env,
    dataDir,
    opts.logToParent ?? false,
  );
  try {
    await waitForPort(child, "milvus-lite-py", port, opts.startTimeoutMs ?? 60000, log);
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
    version: MILVUS_LITE_PY_VERSION,
    stop: async () => {
      await stopChild(child);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
