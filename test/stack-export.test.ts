import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BlobServiceClient, ContainerClient } from "@azure/storage-blob";
import {
  blobNames,
  DEFAULT_CONTAINER,
  ExportOptions,
  exportTimestamp,
  manifestFor,
  parseArgs,
  plaintextSecretPaths,
  run,
} from "../scripts/stack-export";
import { AzuriteServer, startAzurite } from "../tools/local-servers";

const SIG = { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" };
const AT = new Date("2026-11-25T02:17:05.123Z");

/**
 * A stand-in for the Pulumi CLI: answers `stack export` / `stack output` like the real one (with an
 * encrypted secret in the state), logs every call, fails for stack "broken" and returns decrypted
 * secrets for stack "leaky" (what `--show-secrets` would produce).
 */
function fakePulumi(dir: string): { bin: string; calls: () => string[] } {
  const bin = path.join(dir, "pulumi");
  const log = path.join(dir, "calls.log");
  const secret = (field: string, value: string) => JSON.stringify({ ...SIG, [field]: value });
  fs.writeFileSync(
    bin,
    `#!/usr/bin/env bash
echo "$*" >> ${JSON.stringify(log)}
case "$1 $2" in
  "stack export")
    stack=$4
    [ "$stack" = broken ] && { echo "error: no stack named 'broken' found" >&2; exit 255; }
    field=ciphertext; [ "$stack" = leaky ] && field=plaintext
    printf '{"version":3,"deployment":{"secrets_providers":{"type":"service"},"resources":[{"urn":"urn:pulumi:%s::milvus-aks::pulumi:pulumi:Stack::milvus-aks-%s","outputs":{"rootPassword":%s}}]}}\\n' "$stack" "$stack" '${secret("FIELD", "v1:AAAA")}' | sed "s/FIELD/$field/"
    ;;
  "stack output") printf '{"clusterName":"aks-%s","milvusRootPassword":"[secret]"}\\n' "$5" ;;
  *) exit 64 ;;
esac
`,
    { mode: 0o755 },
  );
  return { bin, calls: () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n") : []) };
}

describe("stack:export argument parsing", () => {
  it("accepts stacks, an https account URL and defaults the rest", () => {
    assert.deepEqual(
      parseArgs(
        [
          "--stack",
          "prod",
          "--stack=acme/milvus-aks/dr",
          "--account-url",
          "https://st.blob.core.windows.net",
        ],
        {},
      ),
      {
        options: {
          stacks: ["prod", "acme/milvus-aks/dr"],
          accountUrl: "https://st.blob.core.windows.net",
          container: DEFAULT_CONTAINER,
          prefix: "stack-exports",
          outDir: undefined,
          dryRun: false,
          pulumi: "pulumi",
          cwd: process.cwd(),
        },
      },
    );
  });

  it("takes the account, container and CLI from the environment, and needs no account for --dry-run", () => {
    const env = {
      STACK_EXPORT_ACCOUNT_URL: "https://x.blob.core.windows.net",
      STACK_EXPORT_CONTAINER: "state",
      PULUMI_BIN: "/opt/pulumi",
    };
    const parsed = parseArgs(["--stack", "dev"], env);
    assert.ok("options" in parsed);
    assert.equal(parsed.options.accountUrl, "https://x.blob.core.windows.net");
    assert.equal(parsed.options.container, "state");
    assert.equal(parsed.options.pulumi, "/opt/pulumi");
    const dry = parseArgs(["--stack", "dev", "--dry-run"], {});
    assert.ok("options" in dry);
    assert.equal(dry.options.outDir, path.join("out", "stack-exports"));
  });

  it("reports every problem at once", () => {
    assert.deepEqual(
      parseArgs(
        [
          "--stack",
          "a b",
          "--container",
          "State--Exports",
          "--account-url",
          "http://st.blob.core.windows.net",
          "--verbose",
          "--prefix",
        ],
        {},
      ),
      {
        problems: [
          'unknown flag "--verbose".',
          "--prefix needs a value.",
          '--stack "a b" is not a stack name; use letters, digits, "-", "_", "." as "stack" or "org/project/stack".',
          '--account-url "http://st.blob.core.windows.net" is not an https URL; use https://<account>.blob.core.windows.net (http only for a loopback emulator).',
          '--container "State--Exports" is not a valid container name; use 3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit.',
        ],
      },
    );
    assert.deepEqual(parseArgs([], {}), {
      problems: [
        "no stack given; pass --stack <name> (e.g. --stack prod), once per stack.",
        "--account-url is missing; pass the export account's blob endpoint (https://<account>.blob.core.windows.net), set STACK_EXPORT_ACCOUNT_URL, or use --dry-run.",
      ],
    });
  });
});

describe("stack:export naming and checks", () => {
  it("names blobs by stack and a sortable UTC timestamp", () => {
    assert.equal(exportTimestamp(AT), "2026-11-25T02-17-05Z");
    assert.deepEqual(blobNames("stack-exports", "acme/milvus-aks/prod", AT), {
      dir: "stack-exports/acme/milvus-aks/prod/2026-11-25T02-17-05Z",
      state: "stack-exports/acme/milvus-aks/prod/2026-11-25T02-17-05Z/state.json",
      outputs: "stack-exports/acme/milvus-aks/prod/2026-11-25T02-17-05Z/outputs.json",
      manifest: "stack-exports/acme/milvus-aks/prod/2026-11-25T02-17-05Z/manifest.json",
    });
    assert.ok(
      exportTimestamp(new Date("2026-11-25T10:00:00Z")) > exportTimestamp(new Date("2026-11-25T09:59:59Z")),
    );
  });

  it("finds decrypted secrets in an export and accepts encrypted ones", () => {
    assert.deepEqual(
      plaintextSecretPaths({
        deployment: { resources: [{ outputs: { pw: { ...SIG, plaintext: '"x"' } } }] },
      }),
      ["$.deployment.resources[0].outputs.pw"],
    );
    assert.deepEqual(
      plaintextSecretPaths({
        deployment: { resources: [{ outputs: { pw: { ...SIG, ciphertext: "v1:x" } } }] },
      }),
      [],
    );
  });
});

describe("stack:export end to end", function () {
  this.timeout(90_000);
  let tmp: string;
  let pulumi: ReturnType<typeof fakePulumi>;
  const options = (over: Partial<ExportOptions>): ExportOptions => ({
    stacks: ["prod"],
    container: "state-exports",
    prefix: "stack-exports",
    dryRun: false,
    pulumi: pulumi.bin,
    cwd: tmp,
    ...over,
  });

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "stack-export-"));
    pulumi = fakePulumi(tmp);
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("--dry-run writes state, outputs and a manifest per stack, runs the CLI without --show-secrets, and reports failed stacks", async () => {
    const out = path.join(tmp, "exports");
    const lines: string[] = [];
    const result = await run(
      options({ stacks: ["dev", "broken", "leaky"], dryRun: true, outDir: out }),
      undefined,
      () => AT,
      (l) => lines.push(l),
    );
    assert.deepEqual(pulumi.calls(), [
      "stack export --stack dev --show-secrets=false",
      "stack output --json --stack dev",
      "stack export --stack broken --show-secrets=false",
      "stack export --stack leaky --show-secrets=false",
      "stack output --json --stack leaky",
    ]);
    assert.equal(result.failures.length, 2);
    assert.match(result.failures[0], /^broken: Command failed: .*no stack named 'broken' found/s);
    assert.equal(
      result.failures[1],
      "leaky: the export of leaky contains 1 decrypted secret(s) (first at $.deployment.resources[0].outputs.rootPassword); refusing to store it. Export without --show-secrets.",
    );
    const dir = path.join(out, "stack-exports", "dev", "2026-11-25T02-17-05Z");
    assert.deepEqual(fs.readdirSync(dir).sort(), ["manifest.json", "outputs.json", "state.json"]);
    const state = fs.readFileSync(path.join(dir, "state.json"), "utf8");
    assert.match(state, /"ciphertext":"v1:AAAA"/);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as ReturnType<
      typeof manifestFor
    >;
    assert.equal(manifest.files["state.json"].bytes, Buffer.byteLength(state));
    assert.equal(manifest.restore, "pulumi stack import --stack dev --file state.json");
    assert.ok(
      !fs.existsSync(path.join(out, "stack-exports", "leaky")),
      "nothing is written for a refused export",
    );
    assert.ok(lines.includes(`wrote ${path.join(dir, "manifest.json")}`));
  });

  describe("upload to Azure Blob (Azurite)", () => {
    let azurite: AzuriteServer;
    let container: ContainerClient;
    before(async () => {
      azurite = await startAzurite();
      container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
        "state-exports",
      );
    });
    after(async () => {
      await azurite.stop();
    });

    it("uploads each export once, manifest last, and never overwrites an existing export", async () => {
      const first = await run(
        options({ stacks: ["prod", "dr"] }),
        container,
        () => AT,
        () => undefined,
      );
      assert.deepEqual(first.failures, []);
      const blobs: string[] = [];
      for await (const b of container.listBlobsFlat()) blobs.push(b.name);
      assert.deepEqual(blobs.sort(), [
        "stack-exports/dr/2026-11-25T02-17-05Z/manifest.json",
        "stack-exports/dr/2026-11-25T02-17-05Z/outputs.json",
        "stack-exports/dr/2026-11-25T02-17-05Z/state.json",
        "stack-exports/prod/2026-11-25T02-17-05Z/manifest.json",
        "stack-exports/prod/2026-11-25T02-17-05Z/outputs.json",
        "stack-exports/prod/2026-11-25T02-17-05Z/state.json",
      ]);
      const outputs = await container
        .getBlobClient("stack-exports/prod/2026-11-25T02-17-05Z/outputs.json")
        .downloadToBuffer();
      assert.deepEqual(JSON.parse(outputs.toString()), {
        clusterName: "aks-prod",
        milvusRootPassword: "[secret]",
      });
      const props = await container
        .getBlobClient("stack-exports/prod/2026-11-25T02-17-05Z/state.json")
        .getProperties();
      assert.equal(props.contentType, "application/json");

      const again = await run(
        options({ stacks: ["prod"] }),
        container,
        () => AT,
        () => undefined,
      );
      assert.equal(again.failures.length, 1);
      assert.match(again.failures[0], /^prod: .*(already exists|BlobAlreadyExists)/s);
    });
  });
});
