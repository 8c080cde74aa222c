/**
 * TLS in front of a plaintext local server, for tests, the demo and the DR drill: Milvus Lite speaks
 * only plaintext gRPC, so a small TLS terminator (what an ingress or a TLS-enabled Milvus proxy is in
 * production) lets the worker's TLS path run against a real Milvus on this machine.
 *
 * Also a throwaway certificate authority: a CA and server certificates for given DNS names and IPs,
 * made with node-forge (a devDependency). Private keys stay in memory; only certificates are written,
 * and only into a directory the caller owns.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import * as tls from "node:tls";
import forge from "node-forge";
import { freePort } from "./local-servers";

export interface ServerCertificate {
  /** PEM certificate, signed by the CA. */
  cert: string;
  /** PEM (PKCS#8) private key. Keep it in memory: `startTlsTerminator` takes it as a string. */
  key: string;
}

export interface TestCa {
  /** The CA certificate (PEM): what MILVUS_CA_FILE points at. */
  readonly cert: string;
  /** A server certificate for `names` (DNS names or IP addresses) signed by this CA. */
  issue(names: string[], validity?: { notBefore?: Date; notAfter?: Date }): ServerCertificate;
  /** Writes the CA certificate (never a key) as `dir/<fileName>` and returns its path. */
  writeCert(dir: string, fileName?: string): string;
}

const DAY_MS = 86_400_000;

/** RSA: the only key type node-forge signs certificates with. Node's native generator is fast (~50 ms). */
function rsaKeyPair(): {
  forgePrivate: forge.pki.rsa.PrivateKey;
  forgePublic: forge.pki.rsa.PublicKey;
  pem: string;
} {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return {
    forgePrivate: forge.pki.privateKeyFromPem(privateKey),
    forgePublic: forge.pki.publicKeyFromPem(publicKey),
    pem: privateKey,
  };
}

/** Positive random serial (RFC 5280 section 4.1.2.2: positive, at most 20 octets). */
const serial = () => "01" + crypto.randomBytes(15).toString("hex");

/** A new CA named `commonName`, valid from a minute ago for a day (enough for any test or drill). */
export function createTestCa(commonName = "milvus-aks test CA"): TestCa {
  const caKeys = rsaKeyPair();
  const ca = forge.pki.createCertificate();
  ca.publicKey = caKeys.forgePublic;
  ca.serialNumber = serial();
  // A minute of slack: a freshly issued certificate must already be valid on a clock a little behind.
  ca.validity.notBefore = new Date(Date.now() - 60_000);
  ca.validity.notAfter = new Date(Date.now() + DAY_MS);
  const name = [{ name: "commonName", value: commonName }];
  ca.setSubject(name);
  ca.setIssuer(name);
  ca.setExtensions([
    { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  ca.sign(caKeys.forgePrivate, forge.md.sha256.create());
  const caPem = forge.pki.certificateToPem(ca);
  const caKeyId = ca.generateSubjectKeyIdentifier().getBytes();
  return {
    cert: caPem,
    issue(names, validity = {}) {
      if (names.length === 0)
        throw new Error("a server certificate needs at least one DNS name or IP address");
      const leafKeys = rsaKeyPair();
      const leaf = forge.pki.createCertificate();
      leaf.publicKey = leafKeys.forgePublic;
      leaf.serialNumber = serial();
      leaf.validity.notBefore = validity.notBefore ?? new Date(Date.now() - 60_000);
      leaf.validity.notAfter = validity.notAfter ?? new Date(Date.now() + DAY_MS);
      leaf.setSubject([{ name: "commonName", value: names[0] ?? "" }]);
      leaf.setIssuer(ca.subject.attributes);
      leaf.setExtensions([
        { name: "basicConstraints", cA: false, critical: true },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
        { name: "extKeyUsage", serverAuth: true },
        // Names are checked against subjectAltName only (RFC 6125 section 6.4.4; node's
        // tls.checkServerIdentity ignores the CN when SANs are present). GeneralName tags: 2 dNSName, 7 iPAddress.
        {
          name: "subjectAltName",
          altNames: names.map((n) => (net.isIP(n) !== 0 ? { type: 7, ip: n } : { type: 2, value: n })),
        },
        { name: "authorityKeyIdentifier", keyIdentifier: caKeyId },
      ]);
      leaf.sign(caKeys.forgePrivate, forge.md.sha256.create());
      return { cert: forge.pki.certificateToPem(leaf), key: leafKeys.pem };
    },
    writeCert(dir, fileName = "ca.crt") {
      const file = path.join(dir, fileName);
      fs.writeFileSync(file, caPem, { mode: 0o644 });
      return file;
    },
  };
}

export interface TlsTerminator {
  /** 127.0.0.1:port, what a client dials. */
  readonly address: string;
  readonly port: number;
  /** Connections that completed the TLS handshake and were piped upstream. */
  readonly connections: number;
  /** Handshakes that failed (plaintext clients, clients that reject the certificate). */
  readonly handshakeFailures: number;
  /** Stops listening and closes every open connection. */
  stop(): Promise<void>;
}

export interface TerminatorOptions {
  /** Server certificate and key (PEM), e.g. from `TestCa.issue`. */
  cert: string;
  key: string;
  /** Plaintext upstream, host:port (e.g. Milvus Lite's address). */
  upstream: string;
}

/**
 * Listens on a free loopback port, completes TLS (ALPN "h2", which gRPC clients require: @grpc/grpc-js
 * offers only h2, build/src/channel-credentials.js) and pipes the decrypted bytes to `upstream`.
 */
export async function startTlsTerminator(o: TerminatorOptions): Promise<TlsTerminator> {
  const colon = o.upstream.lastIndexOf(":");
  const upstreamHost = o.upstream.slice(0, colon);
  const upstreamPort = Number(o.upstream.slice(colon + 1));
  if (colon < 1 || !Number.isInteger(upstreamPort))
    throw new Error(`upstream ${o.upstream} is not host:port`);
  const open = new Set<net.Socket>();
  let failures = 0;
  let connections = 0;
  const server = tls.createServer({ cert: o.cert, key: o.key, ALPNProtocols: ["h2"] }, (client) => {
    connections++;
    const upstream = net.connect({ host: upstreamHost, port: upstreamPort });
    open.add(client);
    open.add(upstream);
    // Either side ending or failing ends both: a half-open pair would hang the client's next call.
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on("error", closeBoth).on("close", closeBoth);
    upstream.on("error", closeBoth).on("close", closeBoth);
    client.pipe(upstream).pipe(client);
  });
  // Without a listener node just drops the socket; counting lets tests see that a client was refused.
  server.on("tlsClientError", (_e, socket) => {
    failures++;
    socket.destroy();
  });
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    address: `127.0.0.1:${port}`,
    port,
    get connections() {
      return connections;
    },
    get handshakeFailures() {
      return failures;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        open.clear();
        server.close(() => {
          resolve();
        });
      }),
  };
}
