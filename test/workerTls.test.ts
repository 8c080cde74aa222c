/**
 * The worker over TLS, end to end: Milvus Lite behind a TLS terminator whose certificate comes from a
 * CA generated here, Azurite for storage, the worker's CLI run in-process. Shows a backup, verify and
 * restore through TLS with MILVUS_CA_FILE, and that every way TLS can be misconfigured ends in one
 * clear line naming the setting to change; plaintext is possible but never silent.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import {
  explainHandshake,
  handshake,
  loadCaFile,
  parseMilvusAddress,
  PLAINTEXT_HINT,
  type TlsTarget,
} from "../backup/tls";
import { UsageError } from "../backup/errors";
import { createTestCa, startTlsTerminator, type TestCa, type TlsTerminator } from "../tools/tlsTerminator";
import { runCli, seedRichCollection, startServers, type Servers } from "./support/workerEnv";

const lastLine = (t: string) => t.trim().split("\n").at(-1) ?? "";
const ROWS = 500;

describe("worker over TLS (Milvus Lite behind a TLS terminator, Azurite)", function () {
  this.timeout(60_000);
  let s: Servers;
  let dir: string;
  let ca: TestCa;
  let caFile: string;
  let front: TlsTerminator;
  let expiredFront: TlsTerminator;
  /** The worker's environment for TLS through the terminator, by name: the certificate carries localhost. */
  let tlsEnv: NodeJS.ProcessEnv;

  before(async function () {
    s = await startServers();
    // Certificates and the files the worker reads live in this test's own temp dir; keys stay in memory.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "worker-tls-"));
    ca = createTestCa("worker-tls test CA");
    caFile = ca.writeCert(dir);
    front = await startTlsTerminator({ ...ca.issue(["127.0.0.1", "localhost"]), upstream: s.milvus.address });
    const hourAgo = new Date(Date.now() - 3_600_000);
    expiredFront = await startTlsTerminator({
      ...ca.issue(["127.0.0.1", "localhost"], {
        notBefore: new Date(Date.now() - 7_200_000),
        notAfter: hourAgo,
      }),
      upstream: s.milvus.address,
    });
    // "localhost", not 127.0.0.1: gRPC sends the host as SNI, and node warns (DEP0123) when that is an IP.
    tlsEnv = { ...s.env, MILVUS_ADDRESS: `localhost:${front.port}`, MILVUS_CA_FILE: caFile };
    await seedRichCollection(s.client, { name: "tls_docs", rows: ROWS, pk: "int64", array: "nums" });
  });

  after(async function () {
    await Promise.all([front.stop(), expiredFront.stop()]);
    await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("backs up, verifies and restores through TLS, checking the server against MILVUS_CA_FILE", async function () {
    const before = front.connections;
    const failuresBefore = front.handshakeFailures;
    const b = await runCli(["backup", "--collection", "tls_docs", "--json"], tlsEnv);
    assert.equal(b.code, 0, b.stderr);
    const [taken] = (b.json as { backups: { backupId: string; rows: number }[] }).backups;
    assert.ok(taken, b.stdout);
    assert.equal(taken.rows, ROWS);
    // The pre-flight handshake and the SDK's own connection, both through the terminator.
    assert.ok(front.connections - before >= 2, `${front.connections - before} TLS connections`);
    // TLS on: no plaintext warning.
    assert.doesNotMatch(b.stderr, /milvus\.plaintext|not encrypted/);
    const id = taken.backupId;

    const v = await runCli(["verify", "--backup", id, "--json"], tlsEnv);
    assert.equal(v.code, 0, v.stderr);
    assert.equal((v.json as { ok: boolean; rows: number }).rows, ROWS);

    // The flags instead of the environment, and an explicit server name with an IP address: the
    // certificate is checked against the name given, not the address.
    const r = await runCli(
      [
        "restore",
        "--backup",
        id,
        "--target",
        "tls_docs_restored",
        "--json",
        "--milvus-address",
        front.address,
        "--milvus-ca-file",
        caFile,
        "--milvus-tls-server-name",
        "localhost",
      ],
      { ...s.env, MILVUS_ADDRESS: "" },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal((r.json as { rows: number }).rows, ROWS);
    const count = await s.client.count({ collection_name: "tls_docs_restored" });
    assert.equal(count.data, ROWS);
    assert.ok(front.connections - before >= 4, `${front.connections - before} TLS connections`);
    // The pre-flight closes its connection politely: the server sees no failed handshake.
    assert.equal(front.handshakeFailures, failuresBefore);
  });

  it("refuses a server certificate from another CA, naming MILVUS_CA_FILE", async function () {
    const otherFile = createTestCa("another CA").writeCert(dir, "other-ca.crt");
    const r = await runCli(["backup", "--collection", "tls_docs"], { ...tlsEnv, MILVUS_CA_FILE: otherFile });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.ok(
      lastLine(r.stderr).startsWith(
        `error: TLS handshake with Milvus at localhost:${front.port} failed: the server certificate is not signed ` +
          `by the CA in MILVUS_CA_FILE=${JSON.stringify(otherFile)} (UNABLE_TO_VERIFY_LEAF_SIGNATURE; ` +
          'the certificate was issued by "CN=worker-tls test CA"',
      ),
      r.stderr,
    );
    assert.match(
      r.stderr,
      /Fix: set MILVUS_CA_FILE to the certificate of the CA that issued the server certificate/,
    );
  });

  it("refuses a certificate without the expected name, naming MILVUS_TLS_SERVER_NAME", async function () {
    const r = await runCli(["backup", "--collection", "tls_docs"], {
      ...tlsEnv,
      MILVUS_TLS_SERVER_NAME: "milvus.example.org",
    });
    assert.equal(r.code, 1);
    assert.match(
      lastLine(r.stderr),
      /failed: the server certificate is not valid for the name "milvus\.example\.org" \(MILVUS_TLS_SERVER_NAME="milvus\.example\.org"\); it carries IP Address:127\.0\.0\.1, DNS:localhost \(ERR_TLS_CERT_ALTNAME_INVALID\)\. Fix: set MILVUS_TLS_SERVER_NAME/,
    );
  });

  it("refuses an expired server certificate", async function () {
    const r = await runCli(["backup", "--collection", "tls_docs"], {
      ...tlsEnv,
      MILVUS_ADDRESS: `localhost:${expiredFront.port}`,
    });
    assert.equal(r.code, 1);
    assert.match(lastLine(r.stderr), /: the server certificate expired on .+ GMT \(CERT_HAS_EXPIRED; /);
  });

  it("says a TLS client met a plaintext server: 'does not speak TLS'", async function () {
    const r = await runCli(["backup", "--collection", "tls_docs"], {
      ...tlsEnv,
      MILVUS_ADDRESS: s.milvus.address,
    });
    assert.equal(r.code, 1);
    // Milvus Lite answers a TLS ClientHello with HTTP/2 bytes; node 20 (OpenSSL 3) calls that this code.
    assert.equal(
      lastLine(r.stderr).split(". Fix:")[0],
      `error: TLS handshake with Milvus at ${s.milvus.address} failed: the server does not speak TLS (plaintext Milvus?): ` +
        "it answered the TLS hello with bytes that are not TLS (ERR_SSL_WRONG_VERSION_NUMBER)",
    );
  });

  it("hints at TLS when a plaintext client fails against a TLS server", async function () {
    const failures = front.handshakeFailures;
    const env = { ...tlsEnv, MILVUS_CA_FILE: undefined };
    const r = await runCli(["backup", "--collection", "tls_docs"], env);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(lastLine(r.stderr), new RegExp(`^error: cannot reach Milvus at localhost:${front.port}: `));
    assert.ok(lastLine(r.stderr).endsWith(` ${PLAINTEXT_HINT}`), r.stderr);
    assert.ok(front.handshakeFailures > failures, "the terminator saw the plaintext client");
  });

  it("warns once that the connection is not encrypted when TLS is off", async function () {
    const r = await runCli(["list", "--json"], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /not encrypted/, "commands without Milvus say nothing about it");
    const b = await runCli(["backup", "--collection", "tls_docs"], s.env);
    assert.equal(b.code, 0, b.stderr);
    const warnings = b.stderr
      .trim()
      .split("\n")
      .filter((l) => l.includes('"event":"milvus.plaintext"'));
    assert.equal(warnings.length, 1, b.stderr);
    const w = JSON.parse(warnings[0] ?? "{}") as { level: string; message: string };
    assert.equal(w.level, "warn");
    assert.equal(
      w.message,
      `the connection to Milvus at ${s.milvus.address} is not encrypted (TLS is off): the token and every row ` +
        "cross the network in clear text. To turn TLS on, set MILVUS_TLS=true and MILVUS_CA_FILE=<path of the " +
        "CA bundle> (flags --milvus-tls --milvus-ca-file <path>)",
    );
  });

  describe("settings (exit code 2, before any connection)", function () {
    const usage = async (env: NodeJS.ProcessEnv, args: string[] = []) => {
      const r = await runCli(["backup", "--collection", "tls_docs", ...args], { ...tlsEnv, ...env });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      return lastLine(r.stderr);
    };

    it("names MILVUS_CA_FILE, its value, what is allowed and the fix", async function () {
      const missing = path.join(dir, "missing.crt");
      assert.equal(
        await usage({ MILVUS_CA_FILE: missing }),
        `error: MILVUS_CA_FILE=${JSON.stringify(missing)}: no such file; allowed: the path of a readable PEM file ` +
          "holding the certificate(s) of the CA that issued Milvus's server certificate (for cert-manager, the " +
          "ca.crt key of the Milvus TLS secret). Fix: mount the CA certificate at that path (e.g. a volume from " +
          "the Milvus TLS secret) or correct MILVUS_CA_FILE",
      );
      assert.match(
        await usage({ MILVUS_CA_FILE: dir }),
        /^error: MILVUS_CA_FILE=".*": is a directory, not a file; /,
      );
      const junk = path.join(dir, "junk.crt");
      fs.writeFileSync(junk, "not a certificate\n");
      assert.match(
        await usage({ MILVUS_CA_FILE: junk }),
        /^error: MILVUS_CA_FILE=".*junk\.crt": the file holds no PEM certificate \(no -----BEGIN CERTIFICATE----- block\); allowed: .* Fix: use the PEM form/,
      );
      const broken = path.join(dir, "broken.crt");
      fs.writeFileSync(broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
      assert.match(
        await usage({ MILVUS_CA_FILE: broken }),
        /certificate #1 in the file is not a valid X\.509 certificate/,
      );
      // A leaf key next to the CA (a combined PEM) is refused: the worker must never hold a key.
      const withKey = path.join(dir, "with-key.pem");
      const issued = ca.issue(["localhost"]);
      fs.writeFileSync(withKey, ca.cert + issued.key);
      assert.match(await usage({ MILVUS_CA_FILE: withKey }), /: the file holds a private key; /);
      // The flag is named as the flag.
      assert.match(
        await usage({ MILVUS_CA_FILE: undefined }, ["--milvus-ca-file", missing]),
        /^error: --milvus-ca-file=".*missing\.crt": no such file; /,
      );
    });

    it("refuses a contradiction and a malformed server name", async function () {
      assert.equal(
        await usage({ MILVUS_TLS: "false" }),
        'error: MILVUS_TLS="false" turns TLS off, but MILVUS_CA_FILE is set, which needs TLS. ' +
          "Fix: set MILVUS_TLS=true (or unset it), or remove MILVUS_CA_FILE",
      );
      assert.match(
        await usage({ MILVUS_TLS_SERVER_NAME: "milvus:19530" }),
        /^error: MILVUS_TLS_SERVER_NAME="milvus:19530" is not a host name; allowed: a DNS name or IP address/,
      );
    });
  });
});

describe("worker TLS units", function () {
  it("reads host and port from an address as the SDK and gRPC do", function () {
    assert.deepEqual(parseMilvusAddress("milvus.milvus.svc:19530"), {
      host: "milvus.milvus.svc",
      port: 19530,
      https: false,
    });
    assert.deepEqual(parseMilvusAddress("https://milvus.example.org"), {
      host: "milvus.example.org",
      port: 443,
      https: true,
    });
    assert.deepEqual(parseMilvusAddress("[::1]:19530"), { host: "::1", port: 19530, https: false });
    assert.deepEqual(parseMilvusAddress("http://10.0.0.7:19530/"), {
      host: "10.0.0.7",
      port: 19530,
      https: false,
    });
  });

  it("loads a CA bundle with several certificates", function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "worker-tls-unit-"));
    try {
      const file = path.join(dir, "bundle.crt");
      fs.writeFileSync(file, createTestCa("one").cert + createTestCa("two").cert);
      assert.ok(loadCaFile(file).toString().includes("BEGIN CERTIFICATE"));
      assert.throws(() => loadCaFile(path.join(dir, "nope")), UsageError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const target: TlsTarget = { host: "milvus", port: 19530, serverName: "milvus", serverNameSet: false };

  it("words the failures no server here produces", function () {
    assert.match(
      explainHandshake({ kind: "error", code: "ECONNRESET", message: "socket hang up" }, target) ?? "",
      /closed the connection during the handshake \(ECONNRESET\)\. It may not speak TLS \(plaintext Milvus\?\)/,
    );
    assert.match(
      explainHandshake(
        { kind: "error", code: "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED", message: "" },
        target,
      ) ?? "",
      /requires a client certificate \(mutual TLS, Milvus tlsMode 2\)/,
    );
    assert.equal(
      explainHandshake({ kind: "error", code: "ECONNREFUSED", message: "" }, target),
      "cannot reach Milvus at milvus:19530 (ECONNREFUSED). Check --milvus-address/MILVUS_ADDRESS and that the server is running.",
    );
    const peer = {
      subject: '"CN=milvus"',
      issuer: '"CN=ca"',
      validFrom: "a",
      validTo: "b",
      altNames: "DNS:milvus",
    };
    assert.match(
      explainHandshake({ kind: "rejected", code: "ERR_TLS_CERT_ALTNAME_INVALID", peer }, target) ?? "",
      /\(MILVUS_TLS_SERVER_NAME is not set, so the host of MILVUS_ADDRESS, "milvus", is checked\)/,
    );
    assert.match(
      explainHandshake({ kind: "rejected", code: "SELF_SIGNED_CERT_IN_CHAIN", peer }, target) ?? "",
      /is not signed by a CA this machine trusts \(MILVUS_CA_FILE is not set, so the system's CAs are used\) \(SELF_SIGNED_CERT_IN_CHAIN;/,
    );
  });

  it("reports a non-numeric port as such instead of throwing", async function () {
    const o = await handshake({ ...target, port: Number("abc") });
    assert.equal(o.kind, "error");
    assert.match(
      explainHandshake(o, target) ?? "",
      /^the port of MILVUS_ADDRESS .* is not a number from 1 to 65535/,
    );
  });

  it("gives up on a server that never answers the TLS hello", async function () {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const o = await handshake({ ...target, host: "127.0.0.1", port }, 200);
      assert.deepEqual(o, { kind: "timeout", ms: 200 });
      assert.match(
        explainHandshake(o, target) ?? "",
        /no TLS answer within 0\.2 s\. The server may not speak TLS/,
      );
    } finally {
      silent.close();
    }
  });
});
