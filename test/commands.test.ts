/**
 * Every entry point's command line, run as the programs they are: `--help` prints the usage with its
 * flags, environment variables and exit codes and exits 0; an unknown flag prints one line naming it
 * and the usage hint and exits 2. Plus the parser they share, the worker's usage as the image runs it,
 * the bench's verdict and the worker's report of a backup that does not exist.
 */
import * as assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { main as bench, missedTargets, type BenchResult } from "../bench/backup.bench";
import type { BlobStore } from "../backup/blobStore";
import { main as worker } from "../backup/cli";
import { parseCommandLine, usageError, usageText, type CommandSpec } from "../backup/cliArgs";

const ROOT = path.resolve(__dirname, "..");

interface EntryPoint {
  /** The npm script. */
  script: string;
  file: string;
  /** Arguments before the flag under test (the worker's command). */
  prefix?: string[];
  /** First line of --help. */
  usage: string;
}

const ENTRY_POINTS: EntryPoint[] = [
  { script: "worker", file: "backup/cli.ts", usage: "usage: npm run -s worker -- <command> [flags]" },
  {
    script: "worker",
    file: "backup/cli.ts",
    prefix: ["restore"],
    usage: "usage: npm run -s worker -- <command> [flags]",
  },
  {
    script: "worker",
    file: "backup/cli.ts",
    prefix: ["test-restore"],
    usage: "usage: npm run -s worker -- <command> [flags]",
  },
  {
    script: "worker",
    file: "backup/cli.ts",
    prefix: ["restore-rbac"],
    usage: "usage: npm run -s worker -- <command> [flags]",
  },
  {
    script: "render",
    file: "tools/render.ts",
    usage: "usage: npm run -s render -- [--stack] <stack> [--file <path>]",
  },
  {
    script: "restore-job",
    file: "tools/restore-job.ts",
    usage: "usage: npm run -s restore-job -- --stack <stack> ",
  },
  { script: "dr:drill", file: "scripts/dr-drill.ts", usage: "usage: npm run -s dr:drill -- [--rows <n>] " },
  {
    script: "dr:failover",
    file: "scripts/dr-failover.ts",
    usage: "usage: npm run -s dr:failover -- --from ",
  },
  {
    script: "stack:export",
    file: "scripts/stack-export.ts",
    usage: "usage: npm run -s stack:export -- --stack ",
  },
  {
    script: "bench",
    file: "bench/backup.bench.ts",
    usage: "usage: npm run -s bench -- [--rows <n>[,<n>...]]",
  },
  { script: "demo", file: "scripts/demo.ts", usage: "usage: npm run -s demo" },
  {
    script: "check:preview",
    file: "scripts/check-preview.ts",
    usage: "usage: npm run -s check:preview -- <preview.json | -> [--allow <urn> ...]",
  },
];

/** Runs an entry point the way its npm script does (ts-node, transpile only). */
function runProgram(
  file: string,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [require.resolve("ts-node/dist/bin.js"), "--transpile-only", file, ...args],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      resolve({ code, stdout, stderr });
    });
  });
}

describe("entry points: --help and unknown flags", function () {
  this.timeout(240_000);

  it("covers every npm script that runs a program, with the file it runs", function () {
    const scripts = (
      JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
        scripts: Record<string, string>;
      }
    ).scripts;
    // `exec` in front (the worker's script) replaces npm's shell by the program; the file is what counts.
    const programs = Object.entries(scripts).flatMap(([name, command]) => {
      const m = /^(?:exec )?ts-node --transpile-only (\S+)$/.exec(command);
      return m ? [`${name} ${m[1]}`] : [];
    });
    const tested = [...new Set(ENTRY_POINTS.map((e) => `${e.script} ${e.file}`))];
    assert.deepEqual(tested.sort(), programs.sort());
  });

  type Run = Awaited<ReturnType<typeof runProgram>>;
  const runs = new Map<EntryPoint, { help?: Run; bogus?: Run }>();
  before(async function () {
    const jobs = ENTRY_POINTS.flatMap((e) => (["help", "bogus"] as const).map((flag) => ({ e, flag })));
    // Two programs at a time: the machine's two cores are shared.
    const lane = async () => {
      for (let job = jobs.shift(); job; job = jobs.shift()) {
        const { e, flag } = job;
        const r = await runProgram(e.file, [...(e.prefix ?? []), `--${flag}`]);
        runs.set(e, { ...runs.get(e), [flag]: r });
      }
    };
    await Promise.all([lane(), lane()]);
  });
  const resultOf = (e: EntryPoint) => {
    const r = runs.get(e);
    assert.ok(r?.help && r.bogus, "the program did not run");
    return { help: r.help, bogus: r.bogus };
  };

  for (const e of ENTRY_POINTS) {
    const name = [e.script, ...(e.prefix ?? [])].join(" ");
    it(`${name} --help prints its usage, flags, environment variables and exit codes; exit 0`, function () {
      const { help } = resultOf(e);
      assert.equal(help.code, 0, help.stderr);
      assert.equal(help.stderr, "");
      assert.ok(help.stdout.startsWith(e.usage), help.stdout.split("\n")[0]);
      assert.match(help.stdout, /^ {2}(-h, )?--help\b/m);
      assert.match(help.stdout, /^environment variables/m);
      assert.match(help.stdout, /^exit codes: 0 .*\b2 bad/m);
      if (e.script === "worker") {
        assert.match(help.stdout, /--storage-account-url <url> +\[AZURE_STORAGE_ACCOUNT_URL\]/);
        if (e.prefix?.[0] === "restore") assert.match(help.stdout, /\nrestore --backup <backupId>/);
        if (e.prefix?.[0] === "test-restore")
          assert.match(
            help.stdout,
            /\ntest-restore \[--collection <name> \.\.\.\] \[--sample-rows <n>\] \[--searches <n>\]\n/,
          );
        if (e.prefix?.[0] === "restore-rbac")
          assert.match(
            help.stdout,
            /\nrestore-rbac --backup <rbacId> \[--passwords-dir <dir>\] \[--dry-run\]\n/,
          );
      }
    });

    it(`${name} --bogus prints one line naming the flag and the usage hint; exit 2`, function () {
      const { bogus } = resultOf(e);
      assert.equal(bogus.code, 2, bogus.stderr);
      assert.equal(bogus.stdout, "");
      const lines = bogus.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, bogus.stderr);
      assert.match(lines[0] ?? "", /unknown flag "--bogus"/);
      assert.match(lines[0] ?? "", /see (`npm run -s [a-z:-]+ -- )?--help/);
    });
  }

  it("the worker in its image names `node dist/cli.js` in its usage", function () {
    // Compiled as backup/Dockerfile does; the image runs /app/dist/cli.js from /app.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "worker-image-"));
    try {
      const tsc = spawnSync(
        process.execPath,
        [
          require.resolve("typescript/bin/tsc"),
          "-p",
          "backup/tsconfig.build.json",
          "--outDir",
          path.join(dir, "dist"),
        ],
        { cwd: ROOT, encoding: "utf8" },
      );
      assert.equal(tsc.status, 0, tsc.stdout);
      // The image installs backup/package.json's dependencies; a fresh clone has only the root's, at the
      // same versions (the lockfiles are kept identical, test/worker-units.test.ts), so either serves.
      const env = {
        ...process.env,
        NODE_PATH: [path.join(ROOT, "backup", "node_modules"), path.join(ROOT, "node_modules")].join(
          path.delimiter,
        ),
      };
      const help = spawnSync(process.execPath, ["dist/cli.js", "--help"], {
        cwd: dir,
        env,
        encoding: "utf8",
      });
      assert.equal(help.status, 0, help.stderr);
      assert.equal(help.stdout.split("\n")[0], "usage: node dist/cli.js <command> [flags]");
      const bogus = spawnSync(process.execPath, ["dist/cli.js", "list", "--bogus"], {
        cwd: dir,
        env,
        encoding: "utf8",
      });
      assert.equal(bogus.status, 2);
      assert.equal(
        bogus.stderr,
        'error: list: unknown flag "--bogus"; list accepts --collection, --database plus the connection flags (see --help)\n',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the shared parser (backup/cliArgs.ts)", function () {
  const flags = {
    "--stack": { type: "string", multiple: true, help: "" },
    "--to": { type: "string", help: "" },
    "--count": { type: "string", help: "" },
    "--dry-run": { type: "boolean", help: "" },
  } as const;

  it("reads values, repeats, inline values, booleans and positionals", function () {
    const line = parseCommandLine(
      ["--stack", "a", "--stack=b", "--to", "dr", "--dry-run", "pos", "--count", "-3"],
      flags,
      { maxPositionals: 1 },
    );
    assert.deepEqual(
      [...line.values],
      [
        ["--stack", ["a", "b"]],
        ["--to", ["dr"]],
        ["--count", ["-3"]],
      ],
    );
    assert.deepEqual([...line.flags], ["--dry-run"]);
    assert.deepEqual(line.positionals, ["pos"]);
    assert.deepEqual(line.problems, []);
    assert.equal(line.help, false);
    assert.equal(parseCommandLine(["-h"], flags).help, true);
  });

  it("reports every problem in argument order, never a flag's value", function () {
    const line = parseCommandLine(
      ["--to", "--count", "5", "--tokn=s3cret", "--dry-run=yes", "--to", "x", "--to", "y", "-z", "stray"],
      flags,
    );
    assert.deepEqual(line.problems, [
      { kind: "missing-value", flag: "--to" },
      { kind: "unknown-flag", flag: "--tokn", inlineValue: true },
      { kind: "unexpected-value", flag: "--dry-run" },
      { kind: "repeated", flag: "--to" },
      { kind: "unknown-flag", flag: "-z", inlineValue: false },
      { kind: "positional", index: 10, value: "stray" },
    ]);
    // The flag a missing value swallowed is read again as a flag.
    assert.deepEqual(line.values.get("--count"), ["5"]);
    assert.deepEqual(line.values.get("--to"), ["x"]);
    assert.doesNotMatch(JSON.stringify(line.problems.slice(0, 5)), /s3cret|yes/);
  });

  it("formats the help and the one-line usage error", function () {
    const spec: CommandSpec = {
      name: "demo-cmd",
      invocation: "npm run -s demo-cmd --",
      synopsis: "--to <stack>",
      description: "Does a thing.",
      flags: { "--to": { type: "string", value: "<stack>", help: "where to\nand why" } },
      env: [["DEMO_VAR", "what it sets"]],
      exitCodes: "0 ok, 2 bad usage",
    };
    assert.equal(
      usageText(spec),
      [
        "usage: npm run -s demo-cmd -- --to <stack>",
        "",
        "Does a thing.",
        "",
        "flags:",
        "  --to <stack>  where to",
        "                and why",
        "  -h, --help    print this help and exit",
        "",
        "environment variables:",
        "  DEMO_VAR  what it sets",
        "",
        "exit codes: 0 ok, 2 bad usage",
      ].join("\n"),
    );
    assert.equal(
      usageError(spec, ["first.", "second"]),
      "demo-cmd: first; second (see `npm run -s demo-cmd -- --help`)",
    );
  });
});

describe("bench verdict", function () {
  const result = (over: Partial<BenchResult> = {}): BenchResult => ({
    rows: 100_000,
    rawInsertRate: 5000,
    rawReadRate: 10_000,
    backupRate: 9000,
    restoreRate: 6000,
    backupWall: 12,
    restoreWall: 18,
    backupBytes: 52_500_000,
    rawVectorBytes: 51_200_000,
    backupRss: 260 * 2 ** 20,
    restoreRss: 370 * 2 ** 20,
    ...over,
  });

  it("names every target missed, and nothing when all are met", function () {
    assert.deepEqual(missedTargets([result(), result({ rows: 400_000 })]), []);
    assert.deepEqual(
      missedTargets([
        result({ backupRate: 2500 }),
        result({ rows: 400_000, restoreRate: 3000, backupBytes: 60_000_000, restoreRss: 500 * 2 ** 20 }),
      ]),
      [
        "backup 0.25x of raw read at 100,000 rows (target >= 0.8x)",
        "restore 0.60x of raw insert at 400,000 rows (target >= 0.8x)",
        "size 1.172x of raw vector bytes at 400,000 rows (target <= 1.1x)",
        "peak RSS of restore 1.35x for 400,000 vs 100,000 rows (target <= 1.2x)",
      ],
    );
    // A rate that could not be measured is a miss, not a pass.
    assert.equal(missedTargets([result({ backupRate: NaN })]).length, 1);
  });

  it("exits 1 and says which target was missed, 0 when every target is met", async function () {
    const run = async (measured: BenchResult, argv = ["--rows", "20000"]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await bench(argv, { out: (l) => out.push(l), err: (l) => err.push(l) }, (rows) =>
        Promise.resolve({ ...measured, rows }),
      );
      return { code, out: out.join("\n"), err: err.join("\n") };
    };
    const slow = await run(result({ backupRate: 2500 }));
    assert.equal(slow.code, 1);
    assert.match(
      slow.err,
      /\nbench: 1 target\(s\) missed:\n {2}- backup 0\.25x of raw read at 20,000 rows \(target >= 0\.8x\)$/,
    );
    const fine = await run(result());
    assert.equal(fine.code, 0, fine.err);
    assert.match(fine.out, /\nbench: every target met$/);
    assert.deepEqual(await run(result(), ["--rows", "100000,10"]), {
      code: 2,
      out: "",
      err:
        "bench: --rows takes a comma-separated list of row counts >= 1000, e.g. --rows 100000,400000 " +
        "(see `npm run -s bench -- --help`)",
    });
  });
});

describe("worker verify of a backup that does not exist", function () {
  it("says the backup does not exist, not that it failed verification", async function () {
    const empty: BlobStore = {
      location: "memory://backups",
      ensureContainer: () => Promise.resolve(),
      put: () => Promise.reject(new Error("read-only")),
      get: (name) => Promise.reject(new Error(`no blob ${name}`)),
      exists: () => Promise.resolve(false),
      list: async function* () {
        // An empty container.
      },
      delete: () => Promise.resolve("missing"),
      tryLease: () => Promise.resolve(undefined),
      leaseHolder: () => Promise.resolve(undefined),
    };
    let stdout = "";
    let stderr = "";
    const code = await worker(["verify", "--backup", "docs-20260101T000000Z-abcdef"], {
      stdout: { write: (s: string) => ((stdout += s), true) },
      stderr: { write: (s: string) => ((stderr += s), true) } as unknown as NodeJS.WritableStream,
      env: { BACKUP_CONTAINER: "backups", AZURE_STORAGE_CONNECTION_STRING: "UseDevelopmentStorage=true" },
      store: () => empty,
    });
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.equal(
      stderr.trim().split("\n").at(-1),
      "error: backup docs-20260101T000000Z-abcdef not found in memory://backups; run `list` to see the available backups",
    );
    assert.doesNotMatch(stderr, /failed verification/);
  });
});

describe("worker command line through the shared parser", function () {
  const run = async (argv: string[]) => {
    let stdout = "";
    let stderr = "";
    const code = await worker(argv, {
      stdout: { write: (s: string) => ((stdout += s), true) },
      stderr: { write: (s: string) => ((stderr += s), true) } as unknown as NodeJS.WritableStream,
      env: {},
    });
    return { code, stdout, stderr: stderr.trim() };
  };

  it("names a mistyped flag or stray argument but never its value, exit 2", async function () {
    const accepts = "list accepts --collection, --database plus the connection flags (see --help)";
    const cases: [string[], string][] = [
      [
        ["list", "--milvus-tokn=root:Sup3rSecret"],
        `error: list: unknown flag "--milvus-tokn" (its value is not shown); ${accepts}`,
      ],
      [
        ["list", "root:Sup3rSecret"],
        `error: list: unknown argument #2 (not shown: it may be a secret); ${accepts}`,
      ],
      [
        ["list", "--json=root:Sup3rSecret"],
        "error: list: --json takes no value (its value is not shown; see `list --help`)",
      ],
      [
        ["--milvus-token=root:Sup3rSecret", "list"],
        'error: unknown flag "--milvus-token" before the command; the command comes first, one of backup, restore, test-restore, list, verify, prune, schedule, apply-access, backup-rbac, restore-rbac, list-rbac (see --help)',
      ],
    ];
    for (const [argv, line] of cases) {
      assert.deepEqual(await run(argv), { code: 2, stdout: "", stderr: line }, argv.join(" "));
    }
  });

  it("prints a command's help even on a broken command line", async function () {
    const r = await run(["restore", "--bogus", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^usage: npm run -s worker -- <command> \[flags\]\n\nrestore --backup <backupId>/);
  });
});
