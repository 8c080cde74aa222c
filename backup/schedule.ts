/**
 * Cron schedules, and `schedule`: a cron-driven loop for hosts without Kubernetes (in the cluster a
 * CronJob does this). One run at a time; retention after each successful run; SIGTERM/SIGINT stop the
 * loop gracefully (a running backup finishes first, a second signal exits at once).
 *
 * This module is the one place that says what a schedule means. The stack's config validation
 * (components/common/config.ts: `backup.schedule`, the maintenance-window clash check), the stale-backup alert
 * (components/monitoring/alertRules.ts) and this loop all use it, so they agree on what is accepted and when it
 * runs. It lives in backup/ because the worker image is built from this directory alone.
 *
 * What a Kubernetes CronJob accepts, from Kubernetes' own code: the API server checks `spec.schedule`
 * with `cron.ParseStandard` of github.com/robfig/cron/v3 v3.0.1 (kubernetes
 * pkg/apis/batch/validation/validation.go `validateScheduleFormat`; the version is pinned in
 * kubernetes' go.mod). In that parser (robfig/cron v3.0.1 parser.go and spec.go):
 *  - exactly five fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12, day of week 0-6.
 *    Day of week 7 is NOT Sunday there ("end of range (7) above maximum (6)"); the CronJob docs say
 *    0-6 too (kubernetes/website concepts/workloads/controllers/cron-jobs.md);
 *  - month names JAN-DEC and day names SUN-SAT in any case, also as range ends (`parseIntOrName`);
 *  - `*` or `?` (the same thing, in any field), ranges `a-b`, steps `/n` (`a/n` runs from a to the
 *    end of the field), comma lists; a repeated value in a list is fine (`getField`, `getRange`);
 *  - the descriptors @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly
 *    (`parseDescriptor`; the CronJob docs list the same table with their five-field equivalents);
 *  - when day of month and day of week are both restricted (neither is a plain `*` or `?`), a day
 *    matching either runs (spec.go `dayMatches`);
 *  - since Kubernetes 1.29 any schedule containing "TZ" is refused: "cannot use TZ or CRON_TZ in
 *    schedule, use timeZone field instead" (same validation.go; the CronJob docs, "Unsupported
 *    TimeZone specification"). No seconds field, no L, W, H or #.
 * Refused here although the API server takes them: `@every <duration>` (ParseStandard accepts it, but
 * its run times count from when the CronJob was created, not from the clock, so neither the
 * maintenance-window check nor the stale-backup threshold can be derived from it) and schedules that
 * never fire ("0 0 30 2 *", accepted by the API server and then never run).
 *
 * Run times come from one library, cron-parser (pinned in both package.json files). It cannot check
 * the Kubernetes dialect by itself: it takes day of week 7, a seconds field and H, L and #, and refuses
 * lists Kubernetes takes ("0-10,5": "duplicate values"), and it reads a `*` with step 1 as a restriction
 * where Kubernetes reads "every". So {@link checkCron} reads the fields the way robfig/cron does and hands
 * cron-parser a canonical expression (each field `*` or its sorted values), which then gives every run
 * time: {@link nextRun}, {@link cronRuns} and {@link cronEvaluator}.
 */
import { CronExpressionParser, type CronExpression } from "cron-parser";
import { describeError, UsageError } from "./errors";
import type { Log } from "./log";

/** A schedule a Kubernetes CronJob accepts, evaluated in UTC. */
export interface Cron {
  /** As written. */
  source: string;
  /** Five fields, each `*` or its sorted values: the form cron-parser evaluates. */
  canonical: string;
}

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: Readonly<Record<string, number>>;
  nameRange?: string;
}

const MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/** robfig/cron v3.0.1 spec.go `bounds`, in field order. */
const FIELDS: readonly FieldSpec[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  {
    name: "month",
    min: 1,
    max: 12,
    names: Object.fromEntries(MONTH_NAMES.map((n, i) => [n, i + 1])),
    nameRange: "JAN-DEC",
  },
  {
    name: "day of week",
    min: 0,
    max: 6,
    names: Object.fromEntries(DAY_NAMES.map((n, i) => [n, i])),
    nameRange: "SUN-SAT",
  },
];

/** robfig/cron `parseDescriptor` (case-sensitive), as the five-field equivalents of the CronJob docs. */
const MACROS: Readonly<Partial<Record<string, string>>> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

const FIVE_FIELDS = 'the five-field form "minute hour day-of-month month day-of-week"';

/** Field values in robfig/cron's terms: the values, and whether a plain `*`/`?` made it unrestricted. */
interface FieldValues {
  values: number[];
  star: boolean;
}

function fieldValue(token: string, f: FieldSpec): number | undefined {
  if (/^\d+$/.test(token)) return Number(token);
  return f.names?.[token.toLowerCase()];
}

/** One field, exactly as robfig/cron v3.0.1 `getField`/`getRange` read it; a string is the reason it is wrong. */
function readField(text: string, f: FieldSpec): FieldValues | string {
  const values = new Set<number>();
  let star = false;
  // strings.FieldsFunc: empty list items are skipped.
  for (const item of text.split(",").filter((s) => s !== "")) {
    const foreign = item.split(/[-/]/).some((t) => /^[\d#()]*[HLW#][\d#()]*$/.test(t));
    const alien = foreign ? " (Kubernetes' cron has no H, L, W or #)" : "";
    const bad = `${f.name} "${item}" is not a number${f.nameRange ? `, name (${f.nameRange})` : ""}, range, list or step${alien}`;
    const slashed = item.split("/");
    const ends = (slashed[0] ?? "").split("-");
    if (slashed.length > 2 || ends.length > 2) return bad;
    const step = slashed.length > 1 ? slashed[1] : undefined;
    const lo = ends[0] ?? "";
    const hi = ends.length > 1 ? ends[1] : undefined;
    let from: number;
    let to: number;
    let every = false;
    if (lo === "*" || lo === "?") {
      // robfig ignores anything after "*-"; refusing it is safer than guessing what was meant.
      if (hi !== undefined) return bad;
      [from, to, every] = [f.min, f.max, true];
    } else {
      const a = fieldValue(lo, f);
      const b = hi === undefined ? a : fieldValue(hi, f);
      if (a === undefined || b === undefined) return bad;
      [from, to] = [a, b];
    }
    let by = 1;
    if (step !== undefined) {
      if (!/^\d+$/.test(step)) return bad;
      by = Number(step);
      // "N/step" means "N-max/step".
      if (hi === undefined) to = f.max;
      if (by > 1) every = false;
    }
    const outside = from < f.min ? from : to > f.max ? to : undefined;
    if (outside !== undefined) {
      const seven =
        f.name === "day of week" && outside === 7 ? " (Kubernetes has no 7 for Sunday: use 0 or SUN)" : "";
      return `${f.name} ${outside} is out of range ${f.min}-${f.max}${seven}`;
    }
    if (from > to) return `${f.name} range ${lo}-${hi ?? ""} starts after it ends`;
    if (by === 0) return `${f.name} step 0 in "${item}" must be 1 or more`;
    for (let v = from; v <= to; v += by) values.add(v);
    star ||= every;
  }
  if (values.size === 0) return `${f.name} "${text}" has no values`;
  return { values: [...values].sort((x, y) => x - y), star };
}

/** What cron-parser evaluates: UTC, starting strictly after `after`. */
function evaluator(canonical: string, after: Date): CronExpression {
  return CronExpressionParser.parse(canonical, { tz: "UTC", currentDate: after });
}

export type CronCheck = { ok: true; cron: Cron } | { ok: false; reason: string };

/**
 * Whether `expr` is a schedule a Kubernetes CronJob accepts and that runs at all; if not, the reason,
 * naming the field and its range (e.g. "hour 25 is out of range 0-23").
 */
export function checkCron(expr: string): CronCheck {
  const no = (reason: string): CronCheck => ({ ok: false, reason });
  if (expr.trim() === "") return no("it is empty");
  if (expr.includes("TZ")) {
    return no(
      'it names a time zone: Kubernetes refuses TZ= and CRON_TZ= in a schedule ("cannot use TZ or CRON_TZ in schedule, use timeZone field instead"); schedules here are UTC',
    );
  }
  let five = expr;
  if (expr.trim().startsWith("@")) {
    const word = expr.trim();
    if (/^@every(\s|$)/.test(word)) {
      return no(
        '@every is not accepted here: its run times depend on when the CronJob was created, not on the clock, so the maintenance-window check and the stale-backup alert cannot be derived from it; write the interval as five fields, e.g. "0 */6 * * *"',
      );
    }
    const macro = MACROS[word];
    if (macro === undefined) {
      return no(`"${word}" is not a schedule macro Kubernetes knows: ${Object.keys(MACROS).join(", ")}`);
    }
    if (word !== expr) return no(`remove the spaces around ${word}: Kubernetes reads "${expr}" differently`);
    five = macro;
  }
  const fields = five.trim().split(/\s+/);
  if (fields.length !== 5) {
    const seconds = fields.length === 6 ? " (Kubernetes has no seconds field)" : "";
    return no(
      `it has ${fields.length} field${fields.length === 1 ? "" : "s"}: expected ${FIVE_FIELDS}${seconds}`,
    );
  }
  const read: FieldValues[] = [];
  for (const [i, f] of FIELDS.entries()) {
    const r = readField(fields[i] ?? "", f);
    if (typeof r === "string") return no(r);
    read.push(r);
  }
  const canonical = read.map((r) => (r.star ? "*" : r.values.join(","))).join(" ");
  const never = `it never matches a date: day of month ${fields[2] ?? ""} does not occur in month ${fields[3] ?? ""}`;
  try {
    // Throws for a day of month no listed month has ("Invalid explicit day of month definition"),
    // and when no run is found ("loop limit exceeded").
    evaluator(canonical, new Date(Date.UTC(2000, 0, 1))).next();
  } catch (e) {
    const why = describeError(e);
    return no(/day of month|loop limit/i.test(why) ? never : `cron-parser refused it: ${why}`);
  }
  return { ok: true, cron: { source: expr, canonical } };
}

/** Undefined when `expr` is accepted, else why not ({@link checkCron}). */
export function cronProblem(expr: string): string | undefined {
  const r = checkCron(expr);
  return r.ok ? undefined : r.reason;
}

/** The worker's `--cron`: a {@link Cron}, or a usage error (exit code 2) giving the reason. */
export function parseCron(expr: string): Cron {
  const r = checkCron(expr);
  if (!r.ok) {
    throw new UsageError(
      `--cron ${JSON.stringify(expr)} is not a valid cron expression: ${r.reason}. Expected 5 fields, e.g. "0 2 * * *" (02:00 UTC daily)`,
    );
  }
  return r.cron;
}

/** cron-parser's evaluator of a checked schedule (UTC), positioned at `after`. */
export function cronEvaluator(cron: Cron, after: Date): CronExpression {
  return evaluator(cron.canonical, after);
}

/** The first run strictly after `after` (UTC). */
export function nextRun(cron: Cron, after: Date): Date {
  try {
    return evaluator(cron.canonical, after).next().toDate();
  } catch {
    throw new UsageError(`--cron ${JSON.stringify(cron.source)} never matches a date`);
  }
}

/** Every run strictly after `from` and before `to` (UTC). */
export function cronRuns(cron: Cron, from: Date, to: Date): Date[] {
  const it = evaluator(cron.canonical, from);
  const runs: Date[] = [];
  for (;;) {
    const t = it.next().toDate();
    if (t.getTime() >= to.getTime()) return runs;
    runs.push(t);
  }
}

export interface ScheduleHooks {
  /** One scheduled run (backups, then retention). */
  run(): Promise<void>;
  now?: () => Date;
  /** The parent process id (tests replace it). @default process.ppid */
  parentPid?: () => number;
}

export interface ScheduleOptions {
  /** Stops the loop like SIGTERM does (the CLI's `io.signal`). */
  signal?: AbortSignal;
  /**
   * Stop, as on SIGTERM, when the parent process exits. Under `npm run` the parent is the shell npm
   * starts for the script; npm forwards SIGTERM to that shell only, and a shell (dash, Debian's sh)
   * that did not exec the worker dies of it without passing it on, leaving the worker running with
   * nobody to stop it. @default true when started by a package manager script (npm_lifecycle_event
   * is set); elsewhere a parent exiting is normal (`nohup ... &`) and the loop goes on.
   */
  stopWhenOrphaned?: boolean;
}

/** How often the loop looks at its parent (and at most how long a stop then takes to be noticed). */
const PARENT_CHECK_MS = 500;

/** Runs until a signal arrives; resolves when the loop has stopped. */
export async function scheduleLoop(
  cron: Cron,
  hooks: ScheduleHooks,
  log: Log,
  signals: NodeJS.Signals[] = ["SIGTERM", "SIGINT"],
  options: ScheduleOptions = {},
) {
  const now = hooks.now ?? (() => new Date());
  const parentPid = hooks.parentPid ?? (() => process.ppid);
  const state = { stopping: false, running: false };
  const isStopping = () => state.stopping;
  let wake: (() => void) | undefined;
  const stop = (signal: string, fields: Record<string, unknown> = {}) => {
    state.stopping = true;
    log.info("schedule.stopping", { signal, waitingForRun: state.running, ...fields });
    wake?.();
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (state.stopping && state.running) {
      log.warn("schedule.abort", { signal: sig }, "second signal: exiting without finishing the current run");
      process.exit(143);
    }
    stop(sig);
  };
  const onAbort = () => {
    if (!state.stopping) stop("abort", { reason: String(options.signal?.reason ?? "aborted") });
  };
  for (const s of signals) process.on(s, onSignal);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const orphanWatch = options.stopWhenOrphaned ?? process.env.npm_lifecycle_event !== undefined;
  const parentAtStart = parentPid();
  const watchdog = orphanWatch
    ? setInterval(() => {
        const parent = parentPid();
        if (parent === parentAtStart || state.stopping) return;
        log.warn(
          "schedule.parent-exited",
          { parentAtStart, parent },
          "the process that started the worker exited (npm's shell, killed by the SIGTERM npm forwards it): stopping as on SIGTERM",
        );
        stop("parent-exited");
      }, PARENT_CHECK_MS)
    : undefined;
  try {
    if (options.signal?.aborted) onAbort();
    while (!state.stopping) {
      const at = nextRun(cron, now());
      log.info("schedule.next", { at: at.toISOString(), cron: cron.source });
      await new Promise<void>((resolve) => {
        // Sleep in bounded steps so clock changes and long waits stay accurate.
        const tick = () => {
          const left = at.getTime() - now().getTime();
          if (state.stopping || left <= 0) {
            wake = undefined;
            resolve();
            return;
          }
          timer = setTimeout(tick, Math.min(left, 60_000));
        };
        let timer: NodeJS.Timeout = setTimeout(tick, 0);
        wake = () => {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        };
      });
      // The signal handler may have set this while we slept.
      if (isStopping()) break;
      state.running = true;
      try {
        await hooks.run();
      } catch (e) {
        // A failed run is reported and the loop continues: the next run may succeed.
        log.event("error", "schedule.run-failed", {}, describeError(e));
      } finally {
        state.running = false;
      }
    }
  } finally {
    for (const s of signals) process.off(s, onSignal);
    options.signal?.removeEventListener("abort", onAbort);
    if (watchdog) clearInterval(watchdog);
    log.info("schedule.stopped");
  }
}
