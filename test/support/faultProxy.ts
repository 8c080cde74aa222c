/**
 * A fault-injecting HTTP proxy between a blob client and Azurite, for tests of the worker's storage
 * retries: it forwards every request unchanged unless a planned fault matches it, in which case it
 * answers with an error status (optionally with Retry-After), cuts the response body after some bytes,
 * or takes the request and never answers. Every request is logged with what happened to it and when.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { AZURITE_ACCOUNT, AZURITE_KEY } from "../../tools/local-servers";

export type Fault =
  /** Answer with this status (and headers), without forwarding. */
  | { kind: "status"; status: number; headers?: Record<string, string> }
  /** Forward, then send the response head and only the first `afterBytes` body bytes, then close. */
  | { kind: "truncate"; afterBytes: number }
  /** Forward, then send the response head and the first `afterBytes` body bytes, then nothing more. */
  | { kind: "stallBody"; afterBytes: number }
  /** Read the request and never answer (until the client gives up or the proxy closes). */
  | { kind: "stall" };

export interface FaultRule {
  /** HTTP method the request must have, e.g. "PUT". @default any */
  method?: string;
  /** Text the request path (without query) must contain, e.g. a blob name. @default any */
  path?: string;
  /** Value the `comp` query parameter must have ("" for none), e.g. "lease". @default any */
  comp?: string;
  fault: Fault;
  /** How many matching requests get the fault; `Infinity` for all. @default 1 */
  times?: number;
}

export interface ProxyLogEntry {
  method: string;
  /** Path without the account, e.g. "/faults/a.bin". */
  path: string;
  /** The `comp` query parameter, "" when absent. */
  comp: string;
  outcome: "forwarded" | "status" | "truncated" | "stalled" | "stalledBody";
  /** Size of the request body. */
  requestBytes: number;
  /** Status sent to the client (undefined for stalled requests). */
  status?: number;
  /** When the request arrived and when the proxy answered it (Date.now()). */
  received: number;
  answered?: number;
}

export interface FaultProxy {
  readonly port: number;
  /** Blob endpoint through the proxy, e.g. http://127.0.0.1:<port>/devstoreaccount1. */
  readonly blobEndpoint: string;
  /** Azurite's development-account connection string pointed at the proxy. */
  readonly connectionString: string;
  /** Every request seen since the last `plan`. */
  readonly log: ProxyLogEntry[];
  /** Replaces the fault plan and clears the log; `plan()` forwards everything. */
  plan(...rules: FaultRule[]): void;
  close(): Promise<void>;
}

interface ActiveRule extends FaultRule {
  left: number;
}

/** Starts the proxy on a free loopback port in front of Azurite listening on `targetPort`. */
export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  let rules: ActiveRule[] = [];
  const log: ProxyLogEntry[] = [];
  const upstream = new http.Agent({ keepAlive: true });

  function take(method: string, path: string, comp: string): Fault | undefined {
    const rule = rules.find(
      (r) =>
        r.left > 0 &&
        (r.method === undefined || r.method === method) &&
        (r.path === undefined || path.includes(r.path)) &&
        (r.comp === undefined || r.comp === comp),
    );
    if (!rule) return undefined;
    rule.left -= 1;
    return rule.fault;
  }

  function forward(
    req: http.IncomingMessage,
    body: Buffer,
    onResponse: (status: number, headers: http.IncomingHttpHeaders, data: Buffer) => void,
    onError: (e: Error) => void,
  ): void {
    const up = http.request(
      {
        host: "127.0.0.1",
        port: targetPort,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: `127.0.0.1:${targetPort}` },
        agent: upstream,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          onResponse(res.statusCode ?? 502, res.headers, Buffer.concat(chunks));
        });
        res.on("error", onError);
      },
    );
    up.on("error", onError);
    up.end(body);
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://proxy");
    const path = url.pathname.replace(`/${AZURITE_ACCOUNT}`, "");
    const comp = url.searchParams.get("comp") ?? "";
    const method = req.method ?? "GET";
    const entry: ProxyLogEntry = {
      method,
      path,
      comp,
      outcome: "forwarded",
      requestBytes: 0,
      received: Date.now(),
    };
    log.push(entry);
    const fault = take(method, path, comp);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      entry.requestBytes = chunks.reduce((n, c) => n + c.length, 0);
      if (fault?.kind === "stall") {
        entry.outcome = "stalled";
        return;
      }
      if (fault?.kind === "status") {
        entry.outcome = "status";
        entry.status = fault.status;
        entry.answered = Date.now();
        const text =
          `<?xml version="1.0" encoding="utf-8"?><Error><Code>InjectedFault</Code>` +
          `<Message>injected by the test proxy</Message></Error>`;
        res.writeHead(fault.status, {
          "Content-Type": "application/xml",
          "Content-Length": Buffer.byteLength(text),
          "x-ms-error-code": "InjectedFault",
          ...fault.headers,
        });
        res.end(method === "HEAD" ? undefined : text);
        return;
      }
      forward(
        req,
        Buffer.concat(chunks),
        (status, headers, data) => {
          entry.status = status;
          entry.answered = Date.now();
          res.writeHead(status, headers);
          if (fault?.kind === "truncate" && data.length > fault.afterBytes) {
            entry.outcome = "truncated";
            res.write(data.subarray(0, fault.afterBytes), () => {
              res.socket?.destroy();
            });
            return;
          }
          if (fault?.kind === "stallBody" && data.length > fault.afterBytes) {
            entry.outcome = "stalledBody";
            res.write(data.subarray(0, fault.afterBytes));
            return;
          }
          res.end(data);
        },
        (e) => {
          entry.status = 502;
          entry.answered = Date.now();
          res.destroy(e);
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = (server.address() as AddressInfo).port;
  const blobEndpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  return {
    port,
    blobEndpoint,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
      `BlobEndpoint=${blobEndpoint};`,
    log,
    plan(...planned: FaultRule[]) {
      rules = planned.map((r) => ({ ...r, left: r.times ?? 1 }));
      log.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        upstream.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}
