/**
 * TLS towards Milvus: reading and checking the CA bundle (MILVUS_CA_FILE), the name the server
 * certificate must carry (MILVUS_TLS_SERVER_NAME), and a TLS pre-flight handshake that turns the many
 * ways a handshake fails into one sentence saying which setting to change.
 *
 * Why a pre-flight: when gRPC's handshake fails, the SDK only reports "14 UNAVAILABLE" with the TLS
 * reason buried (or lost after retries). Node's own `tls.connect` with the same CA, server name and ALPN
 * ("h2", what @grpc/grpc-js offers: node_modules/@grpc/grpc-js/build/src/channel-credentials.js,
 * getConnectionOptions) hits the same failure and gives OpenSSL's error code.
 */
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as tls from "node:tls";
import { UsageError, WorkerError } from "./errors";

/** Where a setting's value came from, for messages: `MILVUS_CA_FILE="/etc/milvus-ca/ca.crt"`. */
export function settingText(name: string, value: string): string {
  return `${name}=${JSON.stringify(value)}`;
}

export interface MilvusEndpoint {
  host: string;
  port: number;
  /** "https://" in the address makes the SDK use TLS (dist/milvus/grpc/BaseClient.js, tlsMode). */
  https: boolean;
}

/**
 * Host and port of a Milvus address as the SDK dials it: an optional http:// or https:// prefix is
 * dropped (SDK dist/milvus/utils/Format.js, formatAddress), IPv6 hosts are bracketed, and a missing port
 * is gRPC's default 443 (@grpc/grpc-js build/src/resolver-dns.js, DEFAULT_PORT).
 */
export function parseMilvusAddress(address: string): MilvusEndpoint {
  const scheme = /^(https?):\/\//i.exec(address);
  const rest = address.slice(scheme ? scheme[0].length : 0).replace(/\/.*$/, "");
  const https = scheme?.[1]?.toLowerCase() === "https";
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
  // The port group is optional: unmatched, it is undefined at run time whatever the type says.
  if (bracketed) return { host: bracketed[1], port: Number(bracketed[2] || 443), https };
  const colon = rest.lastIndexOf(":");
  // More than one colon without brackets: a bare IPv6 address, no port.
  if (colon < 0 || rest.indexOf(":") !== colon) return { host: rest, port: 443, https };
  return { host: rest.slice(0, colon), port: Number(rest.slice(colon + 1)), https };
}

const WHAT_CA_FILE =
  "allowed: the path of a readable PEM file holding the certificate(s) of the CA that issued Milvus's " +
  "server certificate (for cert-manager, the ca.crt key of the Milvus TLS secret)";

/**
 * Reads and checks a PEM CA bundle. Throws a UsageError (exit code 2) naming the setting, the value,
 * what is allowed and how to fix it; never reads anything but the one file it is given.
 */
export function loadCaFile(file: string, setting = "MILVUS_CA_FILE"): Buffer {
  const where = settingText(setting, file);
  const fail = (problem: string, fix: string) =>
    new UsageError(`${where}: ${problem}; ${WHAT_CA_FILE}. Fix: ${fix}`);
  let pem: Buffer;
  try {
    pem = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw fail(
        "no such file",
        `mount the CA certificate at that path (e.g. a volume from the Milvus TLS secret) or correct ${setting}`,
      );
    }
    if (code === "EACCES" || code === "EPERM") {
      throw fail("the file cannot be read (permission denied)", "make it readable by the worker's user");
    }
    if (code === "EISDIR") {
      throw fail(
        "is a directory, not a file",
        `point ${setting} at the certificate file inside it (e.g. ca.crt)`,
      );
    }
    throw fail(`the file cannot be read (${code || "unknown error"})`, `check the path and the volume mount`);
  }
  const text = pem.toString("latin1");
  // A CA bundle never needs a key: refuse one so a mis-pointed setting cannot leave a key in the pod's reach.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw fail(
      "the file holds a private key",
      "point it at the CA certificate alone (ca.crt), never at a key or a combined key+certificate file",
    );
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    throw fail(
      "the file holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)",
      "use the PEM form of the CA certificate; a DER file converts with `openssl x509 -inform der -in ca.der -out ca.crt`",
    );
  }
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (e) {
      throw fail(
        `certificate #${i + 1} in the file is not a valid X.509 certificate (${(e as Error).message})`,
        "replace the file with an intact copy of the CA certificate",
      );
    }
  });
  return pem;
}

/** A DNS name (labels of letters, digits, hyphens) or an IP address; no port, no scheme, no wildcard. */
export function checkServerName(name: string, setting = "MILVUS_TLS_SERVER_NAME"): string {
  const label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
  if (net.isIP(name) !== 0 || new RegExp(`^${label}(?:\\.${label})*\\.?$`).test(name)) return name;
  throw new UsageError(
    `${settingText(setting, name)} is not a host name; allowed: a DNS name or IP address the Milvus server ` +
      "certificate carries (no scheme, port or wildcard), e.g. milvus.milvus.svc.cluster.local. " +
      `Fix: correct ${setting}, or unset it to use the host of MILVUS_ADDRESS`,
  );
}

export interface TlsTarget {
  host: string;
  port: number;
  /** The name the certificate must carry. */
  serverName: string;
  /** True when MILVUS_TLS_SERVER_NAME was set; otherwise the name is the host of MILVUS_ADDRESS. */
  serverNameSet: boolean;
  /** PEM CA bundle; undefined: the system's CAs (what gRPC uses without a root certificate). */
  ca?: Buffer;
  /** e.g. `MILVUS_CA_FILE="/etc/milvus-ca/ca.crt"`, for messages. */
  caSetting?: string;
}

/** What the pre-flight handshake saw (plain data, so the wording is unit-testable without a server). */
export type HandshakeOutcome =
  | { kind: "ok"; alpn: string | false }
  /** The handshake completed but the certificate failed verification (`code` as OpenSSL/node name it). */
  | { kind: "rejected"; code: string; peer: PeerSummary }
  /** The socket failed before or during the handshake. */
  | { kind: "error"; code: string; message: string }
  | { kind: "timeout"; ms: number };

export interface PeerSummary {
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  /** As node prints it: "DNS:milvus, IP Address:10.0.0.1". */
  altNames: string;
}

/** Verification codes meaning "not signed by a CA you trust" (OpenSSL X509_V_ERR_* names, as node reports them). */
const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
]);

/**
 * Errors of a TLS client that got bytes which are not TLS back. Node 20 against Milvus Lite (a plaintext
 * gRPC server, which answers the ClientHello with an HTTP/2 frame) gives ERR_SSL_WRONG_VERSION_NUMBER
 * (checked by experiment; test/workerTls.test.ts asserts it). The others are OpenSSL record-layer errors
 * for other bytes that do not parse as a TLS record (e.g. an HTTP answer); not seen here, listed so such
 * a server gets the same sentence.
 */
const NOT_TLS = new Set([
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "ERR_SSL_HTTP_REQUEST",
  "ERR_SSL_UNKNOWN_PROTOCOL",
  "ERR_SSL_RECORD_LAYER_FAILURE",
]);

const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
]);

const TLS_OFF_FIX =
  "to connect without TLS instead, unset MILVUS_TLS, MILVUS_CA_FILE and MILVUS_TLS_SERVER_NAME (not recommended)";

/**
 * One sentence for a failed pre-flight; undefined when the handshake succeeded. Milvus's TLS modes named
 * in the fixes are `common.security.tlsMode`: 0 off, 1 one-way (server certificate), 2 two-way (client
 * certificates too) (Milvus docs, "Encryption in Transit", https://milvus.io/docs/tls.md).
 */
export function explainHandshake(o: HandshakeOutcome, t: TlsTarget): string | undefined {
  const at = `TLS handshake with Milvus at ${formatHostPort(t.host, t.port)} failed`;
  const nameSetting = t.serverNameSet
    ? settingText("MILVUS_TLS_SERVER_NAME", t.serverName)
    : `MILVUS_TLS_SERVER_NAME is not set, so the host of MILVUS_ADDRESS, ${JSON.stringify(t.serverName)}, is checked`;
  switch (o.kind) {
    case "ok":
      return undefined;
    case "timeout":
      return (
        `${at}: no TLS answer within ${o.ms / 1000} s. The server may not speak TLS (plaintext Milvus waits ` +
        "silently for an HTTP/2 preface) or something drops the traffic. Fix: check that MILVUS_ADDRESS is " +
        `Milvus's TLS port and that Milvus has TLS enabled; ${TLS_OFF_FIX}`
      );
    case "error": {
      if (o.code === "ERR_SOCKET_BAD_PORT") {
        return `the port of MILVUS_ADDRESS (${JSON.stringify(t.host)} port ${t.port}) is not a number from 1 to 65535; use host:port, e.g. milvus.milvus.svc:19530`;
      }
      if (UNREACHABLE.has(o.code)) {
        return (
          `cannot reach Milvus at ${formatHostPort(t.host, t.port)} (${o.code}). ` +
          "Check --milvus-address/MILVUS_ADDRESS and that the server is running."
        );
      }
      if (NOT_TLS.has(o.code)) {
        return (
          `${at}: the server does not speak TLS (plaintext Milvus?): it answered the TLS hello with bytes ` +
          `that are not TLS (${o.code}). Fix: enable TLS on Milvus (common.security.tlsMode 1) or point ` +
          `MILVUS_ADDRESS at its TLS port; ${TLS_OFF_FIX}`
        );
      }
      if (o.code === "ECONNRESET" || o.code === "EPIPE") {
        return (
          `${at}: the server closed the connection during the handshake (${o.code}). It may not speak TLS ` +
          "(plaintext Milvus?) or may refuse this client's TLS versions. Fix: check that MILVUS_ADDRESS is " +
          `Milvus's TLS port and that Milvus has TLS enabled; ${TLS_OFF_FIX}`
        );
      }
      if (o.code === "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED") {
        return (
          `${at}: the server requires a client certificate (mutual TLS, Milvus tlsMode 2), which this worker ` +
          `does not send (${o.code}). Fix: run Milvus with tlsMode 1 (server-side TLS)`
        );
      }
      return `${at}: ${o.message.split("\n")[0] ?? o.code} (${o.code})`;
    }
    case "rejected": {
      const which = `issued by ${o.peer.issuer} to ${o.peer.subject}`;
      if (UNTRUSTED.has(o.code)) {
        const ca = t.caSetting
          ? `the CA in ${t.caSetting}`
          : "a CA this machine trusts (MILVUS_CA_FILE is not set, so the system's CAs are used)";
        return (
          `${at}: the server certificate is not signed by ${ca} (${o.code}; the certificate was ${which}). ` +
          "Fix: set MILVUS_CA_FILE to the certificate of the CA that issued the server certificate " +
          "(for cert-manager, the ca.crt key of the Milvus TLS secret)"
        );
      }
      if (o.code === "ERR_TLS_CERT_ALTNAME_INVALID") {
        return (
          `${at}: the server certificate is not valid for the name ${JSON.stringify(t.serverName)} ` +
          `(${nameSetting}); it carries ${o.peer.altNames || `no subjectAltName, only the subject ${o.peer.subject}`} ` +
          `(${o.code}). Fix: set MILVUS_TLS_SERVER_NAME to one of the names the certificate carries, ` +
          "or add the name to the certificate's subjectAltName"
        );
      }
      if (o.code === "CERT_HAS_EXPIRED") {
        return (
          `${at}: the server certificate expired on ${o.peer.validTo} (${o.code}; it was ${which}). ` +
          "Fix: renew the server certificate and restart Milvus so it serves the new one, or correct this machine's clock"
        );
      }
      if (o.code === "CERT_NOT_YET_VALID") {
        return (
          `${at}: the server certificate is not valid before ${o.peer.validFrom} (${o.code}; it was ${which}). ` +
          "Fix: correct the clock of this machine or of the issuer"
        );
      }
      return `${at}: the server certificate was rejected (${o.code}; it was ${which})`;
    }
  }
}

export function formatHostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function summary(c: tls.PeerCertificate): PeerSummary {
  const dn = (n: tls.Certificate | undefined) =>
    n
      ? Object.entries(n)
          .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : String(v)}`)
          .join(",") || "(empty)"
      : "(none)";
  return {
    subject: JSON.stringify(dn(c.subject)),
    issuer: JSON.stringify(dn(c.issuer)),
    validFrom: c.valid_from,
    validTo: c.valid_to,
    altNames: c.subjectaltname ?? "",
  };
}

/**
 * One TLS handshake the way gRPC makes it, then closes without sending anything. Verification is done
 * here, not by OpenSSL aborting the handshake (`rejectUnauthorized: false`, then `authorized` and
 * `authorizationError`, node docs tls.TLSSocket), so the message can quote the certificate it saw.
 * Nothing is ever sent on an unverified connection: the socket is closed right after the handshake.
 */
export function handshake(t: TlsTarget, timeoutMs = 5000): Promise<HandshakeOutcome> {
  // tls.connect throws (not emits) on a bad port; "host:abc" must still end in one clear line.
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) {
    return Promise.resolve({ kind: "error", code: "ERR_SOCKET_BAD_PORT", message: `bad port ${t.port}` });
  }
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: HandshakeOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (o.kind === "ok" || o.kind === "rejected") {
        // A completed handshake is closed politely (TLS close_notify, then FIN), so the server sees a
        // client that left rather than a failed handshake; the socket is dropped soon either way.
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      } else socket.destroy();
      resolve(o);
    };
    const socket = tls.connect({
      host: t.host,
      port: t.port,
      ca: t.ca,
      // SNI must not be an IP address (RFC 6066 section 3; node warns, DEP0123); the name check below is
      // what matters, and it uses `serverName` whatever it is, as grpc-js does with its name override.
      servername: net.isIP(t.serverName) === 0 ? t.serverName : undefined,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(t.serverName, cert),
      ALPNProtocols: ["h2"],
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      finish({ kind: "timeout", ms: timeoutMs });
    }, timeoutMs);
    socket.once("secureConnect", () => {
      if (socket.authorized) {
        finish({ kind: "ok", alpn: socket.alpnProtocol ?? false });
        return;
      }
      const err = socket.authorizationError as Error | string | null;
      const code = typeof err === "string" ? err : ((err as NodeJS.ErrnoException | null)?.code ?? "UNKNOWN");
      finish({ kind: "rejected", code, peer: summary(socket.getPeerCertificate()) });
    });
    socket.once("error", (e: NodeJS.ErrnoException) => {
      finish({ kind: "error", code: e.code ?? "UNKNOWN", message: e.message });
    });
  });
}

/** Throws one WorkerError saying what to change when a TLS handshake with `t` does not succeed. */
export async function tlsPreflight(t: TlsTarget, timeoutMs = 5000): Promise<void> {
  const problem = explainHandshake(await handshake(t, timeoutMs), t);
  if (problem !== undefined) throw new WorkerError(problem);
}

/** Appended to a failed plaintext connection: the likeliest cause is a server that wants TLS. */
export const PLAINTEXT_HINT =
  "If the server requires TLS, set MILVUS_TLS=true and MILVUS_CA_FILE (the CA bundle that issued its certificate).";

/** The one warning a run without TLS logs. */
export function plaintextWarning(address: string): string {
  return (
    `the connection to Milvus at ${address} is not encrypted (TLS is off): the token and every row cross ` +
    "the network in clear text. To turn TLS on, set MILVUS_TLS=true and MILVUS_CA_FILE=<path of the CA " +
    "bundle> (flags --milvus-tls --milvus-ca-file <path>)"
  );
}
