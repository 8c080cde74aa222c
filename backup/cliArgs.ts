/**
 * The one command-line parser behind every entry point: the worker (`backup/cli.ts`), render,
 * restore-job, dr:drill, dr:failover, stack:export, check:preview, bench and demo. It lives in
 * `backup/` because the worker's image is built from that directory alone (backup/Dockerfile copies
 * `backup/*.ts`); the repository's tools import it from here.
 *
 * Tokens come from `node:util` `parseArgs` (built into Node 20, no dependency). It runs with
 * `strict: false` and `tokens: true`, and the strictness is applied here, because strict mode
 * cannot serve these commands as they are:
 * - it throws at the first problem, while restore-job, stack:export and dr:failover report every
 *   problem of a command line at once;
 * - its messages quote the argument (`Unexpected argument 'root:s3cret'`), and the worker must never
 *   echo a value: a mistyped `--milvus-tokn=user:password` or a stray argument may be a secret;
 * - in non-strict mode a string flag swallows the next argument even when it is a flag
 *   (`--to --max-age-hours 0`); that is reported as a missing value and the swallowed flag is read
 *   again as a flag of its own, as the hand-written parsers this replaces did.
 * Unknown flags are still always rejected: every command turns a problem into exit code 2.
 */
import { parseArgs } from "node:util";

export interface FlagSpec {
  /** "string" takes a value (`--flag v` or `--flag=v`); "boolean" takes none. */
  type: "string" | "boolean";
  /** May be given more than once; every value is kept in order. */
  multiple?: boolean;
  /** One-letter alias, e.g. "h" for -h. */
  short?: string;
  /** Placeholder shown in the help, e.g. "<path>". */
  value?: string;
  /** What it does, shown in the help (may span lines: later lines are indented). */
  help: string;
}

/** Flags by their long name including the dashes, e.g. `"--file"`. `--help`/`-h` is always added. */
export type FlagSpecs = Record<string, FlagSpec>;

export type ArgProblem =
  /** `inlineValue`: the flag was written `--flag=value`; the value is deliberately not kept. */
  | { kind: "unknown-flag"; flag: string; inlineValue: boolean }
  | { kind: "missing-value"; flag: string }
  | { kind: "unexpected-value"; flag: string }
  | { kind: "repeated"; flag: string }
  /** `index`: position in the argument list given to the parser, from 0. */
  | { kind: "positional"; index: number; value: string };

export interface CommandLine {
  /** Values of string flags by long name (`"--stack"`), in the order given. */
  values: Map<string, string[]>;
  /** Boolean flags that were given, by long name (`"--dry-run"`). */
  flags: Set<string>;
  positionals: string[];
  problems: ArgProblem[];
  /** `--help` or `-h` was given: the caller prints its usage and exits 0, whatever else is wrong. */
  help: boolean;
}

const HELP: FlagSpec = { type: "boolean", short: "h", help: "print this help and exit" };

/** Splits `argv` by `specs`; never throws: everything wrong is in `problems`, in argument order. */
export function parseCommandLine(
  argv: readonly string[],
  specs: FlagSpecs,
  opts: { maxPositionals?: number } = {},
): CommandLine {
  const all: FlagSpecs = { "--help": HELP, ...specs };
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const [flag, s] of Object.entries(all)) {
    options[flag.replace(/^--/, "")] = s.short ? { type: s.type, short: s.short } : { type: s.type };
  }
  const maxPositionals = opts.maxPositionals ?? 0;
  const out: CommandLine = {
    values: new Map(),
    flags: new Set(),
    positionals: [],
    problems: [],
    help: false,
  };
  let start = 0;
  // Restarted once per string flag that swallowed a flag as its value (see the module comment).
  read: for (;;) {
    const { tokens } = parseArgs({
      args: argv.slice(start),
      options,
      strict: false,
      allowPositionals: true,
      tokens: true,
    });
    for (const t of tokens) {
      const index = start + t.index;
      if (t.kind === "option-terminator") continue;
      if (t.kind === "positional") {
        out.positionals.push(t.value);
        if (out.positionals.length > maxPositionals)
          out.problems.push({ kind: "positional", index, value: t.value });
        continue;
      }
      const flag = `--${t.name}`;
      const spec = all[flag] as FlagSpec | undefined;
      if (!spec) {
        out.problems.push({ kind: "unknown-flag", flag: t.rawName, inlineValue: t.inlineValue === true });
        continue;
      }
      if (spec.type === "boolean") {
        if (t.value !== undefined) out.problems.push({ kind: "unexpected-value", flag });
        else if (flag === "--help") out.help = true;
        else out.flags.add(flag);
        continue;
      }
      if (t.value === undefined || (!t.inlineValue && t.value.startsWith("--"))) {
        out.problems.push({ kind: "missing-value", flag });
        if (t.value !== undefined) {
          start = index + 1;
          continue read;
        }
        continue;
      }
      const list = out.values.get(flag) ?? [];
      if (list.length > 0 && !spec.multiple) {
        out.problems.push({ kind: "repeated", flag });
        continue;
      }
      list.push(t.value);
      out.values.set(flag, list);
    }
    return out;
  }
}

/** The problem in words. Never shows a flag's value; a stray positional is quoted (see the worker for where it is not). */
export function describeArgProblem(p: ArgProblem): string {
  switch (p.kind) {
    case "unknown-flag":
      return `unknown flag ${JSON.stringify(p.flag)}${p.inlineValue ? " (its value is not shown)" : ""}`;
    case "missing-value":
      return `${p.flag} needs a value`;
    case "unexpected-value":
      return `${p.flag} takes no value`;
    case "repeated":
      return `${p.flag} given more than once`;
    case "positional":
      return `unexpected argument ${JSON.stringify(p.value)}`;
  }
}

export interface CommandSpec {
  /** Name in messages, e.g. "render" (as the npm script is called). */
  name: string;
  /** How it is run, e.g. "npm run -s render --": usage lines and the `--help` hint start with it. */
  invocation: string;
  /** What follows the invocation in the usage line, e.g. "[--stack] <stack> [--file <path>]". */
  synopsis: string;
  /** A few lines on what it does. */
  description: string;
  flags: FlagSpecs;
  /** Positional arguments and their help, e.g. [["<stack>", "the stack to render"]]. */
  positionals?: [string, string][];
  /** Environment variables it reads, with what for; empty means none (the help says so). */
  env: [string, string][];
  /** Exit codes, e.g. "0 ok, 1 ..., 2 bad usage". */
  exitCodes: string;
}

function table(rows: [string, string][]): string[] {
  const width = Math.max(0, ...rows.map(([k]) => k.length)) + 2;
  return rows.flatMap(([k, v]) => {
    const [first = "", ...rest] = v.split("\n");
    return [`  ${k.padEnd(width)}${first}`.trimEnd(), ...rest.map((l) => `  ${" ".repeat(width)}${l}`)];
  });
}

/** The `--help` text: usage line, description, positionals, flags, environment, exit codes. */
export function usageText(spec: CommandSpec): string {
  const flags: [string, string][] = Object.entries({ ...spec.flags, "--help": HELP }).map(([flag, s]) => [
    `${s.short ? `-${s.short}, ` : ""}${flag}${s.value ? ` ${s.value}` : ""}`,
    `${s.help}${s.multiple ? " (repeatable)" : ""}`,
  ]);
  return [
    // A command without arguments is shown without npm's "--" separator.
    `usage: ${spec.synopsis ? `${spec.invocation} ${spec.synopsis}` : spec.invocation.replace(/ --$/, "")}`,
    "",
    spec.description,
    ...(spec.positionals?.length ? ["", "arguments:", ...table(spec.positionals)] : []),
    "",
    "flags:",
    ...table(flags),
    "",
    "environment variables:",
    ...(spec.env.length > 0 ? table(spec.env) : ["  none"]),
    "",
    `exit codes: ${spec.exitCodes}`,
  ].join("\n");
}

/** The one line a usage error prints: every problem, then where the usage is. Exit code 2 goes with it. */
export function usageError(spec: Pick<CommandSpec, "name" | "invocation">, problems: string[]): string {
  // Problems written as sentences lose their full stop, or the joined line would read ".;".
  const parts = problems.map((p) => p.replace(/\.$/, ""));
  return `${spec.name}: ${parts.join("; ")} (see \`${spec.invocation} --help\`)`;
}

/** Output of an entry point's `main`: one call per line (tests capture it; programs print it). */
export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

export const processIo: Io = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
};

/** A whole number flag value >= min, or a problem naming the flag (the value is a number, safe to show). */
export function wholeNumber(
  flag: string,
  raw: string | undefined,
  min: number,
  fallback: number,
  problems: string[],
): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    problems.push(`${flag} must be a whole number >= ${min}, got ${JSON.stringify(raw)}`);
    return fallback;
  }
  return n;
}
