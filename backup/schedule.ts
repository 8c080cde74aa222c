/**
 * schedule: a cron-driven loop for hosts without Kubernetes (in the cluster a CronJob does this).
 * One run at a time; retention after each successful run; SIGTERM/SIGINT stop the loop gracefully
 * (a running backup finishes first, a second signal exits at once).
 */
import { describeError, UsageError } from "./errors";
import type { Log } from "./log";

/** A parsed 5-field cron expression (minute hour day-of-month month day-of-week), evaluated in UTC. */
export interface Cron {
  source: string;
  minutes: Set<number>;
  hours: Set<number>;
  days: Set<number>;
  months: Set<number>;
  weekdays: Set<number>;
  /** Cron semantics: when both day fields are restricted, either may match. */
  dayOr: boolean;
}

const FIELDS: [string, number, number][] = [
  ["minute", 0, 59],
  ["hour", 0, 23],
  ["day of month", 1, 31],
  ["month", 1, 12],
  ["day of week", 0, 7],
];

export function parseCron(expr: string): Cron {
  const parts = expr.trim().split(/\s+/);
  const bad = (why: string) =>
    new UsageError(
      `--cron ${JSON.stringify(expr)} is not a valid cron expression: ${why}. Expected 5 fields, e.g. "0 2 * * *" (02:00 UTC daily)`,
    );
  if (parts.length !== 5) throw bad(`it has ${parts.length} fields`);
  const sets = parts.map((p, i) => {
    const [name, lo, hi] = FIELDS[i] ?? ["field", 0, 0];
    const out = new Set<number>();
    for (const item of p.split(",")) {
      const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(item) as (string | undefined)[] | null;
      if (!m) throw bad(`${name} "${item}" is not a number, range, list or step`);
      const step = m[4] !== undefined ? Number(m[4]) : 1;
      let from = lo;
      let to = hi;
      if (m[1] !== "*") {
        from = Number(m[2]);
        to = m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? hi : from;
      }
      if (from < lo || to > hi || from > to || step < 1)
        throw bad(`${name} "${item}" is outside ${lo}-${hi}`);
      for (let v = from; v <= to; v += step) out.add(i === 4 && v === 7 ? 0 : v);
    }
    return out;
  });
  const [minutes, hours, days, months, weekdays] = sets as [
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
  ];
  return {
    source: expr,
    minutes,
    hours,
    days,
    months,
    weekdays,
    dayOr: parts[2] !== "*" && parts[4] !== "*",
  };
}

/** The first minute strictly after `after` that matches (UTC). */
export function nextRun(cron: Cron, after: Date): Date {
  const t = new Date(after.getTime());
  t.setUTCSeconds(0, 0);
  t.setUTCMinutes(t.getUTCMinutes() + 1);
  for (let i = 0; i < 366 * 24 * 60 * 5; i++) {
    const dom = cron.days.has(t.getUTCDate());
    const dow = cron.weekdays.has(t.getUTCDay());
    const dayOk = cron.dayOr ? dom || dow : dom && dow;
    if (
      cron.months.has(t.getUTCMonth() + 1) &&
      dayOk &&
      cron.hours.has(t.getUTCHours()) &&
      cron.minutes.has(t.getUTCMinutes())
    ) {
      return t;
    }
    t.setUTCMinutes(t.getUTCMinutes() + 1);
  }
  throw new UsageError(`--cron ${JSON.stringify(cron.source)} never matches a date`);
}

export interface ScheduleHooks {
  /** One scheduled run (backups, then retention). */
  run(): Promise<void>;
  now?: () => Date;
}

/** Runs until a signal arrives; resolves when the loop has stopped. */
export async function scheduleLoop(
  cron: Cron,
  hooks: ScheduleHooks,
  log: Log,
  signals: NodeJS.Signals[] = ["SIGTERM", "SIGINT"],
) {
  const now = hooks.now ?? (() => new Date());
  const state = { stopping: false, running: false };
  const isStopping = () => state.stopping;
  let wake: (() => void) | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (state.stopping && state.running) {
      log.warn("schedule.abort", { signal: sig }, "second signal: exiting without finishing the current run");
      process.exit(143);
    }
    state.stopping = true;
    log.info("schedule.stopping", { signal: sig, waitingForRun: state.running });
    wake?.();
  };
  for (const s of signals) process.on(s, onSignal);
  try {
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
    log.info("schedule.stopped");
  }
}
