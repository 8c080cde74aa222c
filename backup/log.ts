/**
 * Logs and progress on stderr (stdout is reserved for `--json` output), through pino: one JSON object
 * per line off a terminal (what Kubernetes log collection expects) or with `--json`, short readable
 * lines and a progress bar (progress.ts) on a terminal.
 *
 * Secrets never reach a line: pino's path redaction censors the fields named like credentials, and
 * every string value (and the message) goes through {@link redactText} for credentials embedded in
 * text (connection strings, SAS URLs, `user:password@` URLs). Both work on values before
 * serialization, so a line is always valid JSON (a `{"resetPassword": 1}` field stays a number).
 */
import pino from "pino";
import { redact as redactText } from "./errors";
import { chooseOutput, ProgressBar, PROGRESS_LINE_INTERVAL_MS, type OutputChoice } from "./progress";

export type Level = "info" | "warn" | "error";

export interface LogSink {
  isTTY?: boolean;
  columns?: number;
  write(s: string): boolean;
}

export interface LogOptions {
  /** `--json`: JSON lines and no progress bar even when the sink is a terminal. */
  json?: boolean;
}

/** Field names whose values pino replaces with {@link CENSOR}, at the top level or one level down. */
const SECRET_FIELDS = [
  "password",
  "token",
  "accountKey",
  "AccountKey",
  "sharedAccessSignature",
  "SharedAccessSignature",
  "sasToken",
  "sig",
  "connectionString",
  "clientSecret",
  "secret",
];
export const REDACT_PATHS: readonly string[] = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]);
export const CENSOR = "***";

/** Any other field whose name says secret: its string value is censored too (numbers, e.g. counts, stay). */
const SECRET_NAME = /password|passwd|secret|token|accountkey|connectionstring|sharedaccesssignature/i;

/** Copies a log object with every string redacted (plain objects and arrays, a few levels deep). */
export function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return redactText(value);
  if (depth > 6 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = typeof v === "string" && SECRET_NAME.test(k) ? CENSOR : scrub(v, depth + 1);
  }
  return out;
}

/** Keys pino writes itself; the rest of a line are the event's fields. */
const OWN_KEYS = new Set(["level", "event", "message", "time"]);

/** One readable line for a terminal from one of pino's JSON lines: `warn: message  key=value ...`. */
export function textLine(json: string): string {
  const o = JSON.parse(json) as Record<string, unknown>;
  const extra = Object.entries(o)
    .filter(([k]) => !OWN_KEYS.has(k))
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  const level = typeof o.level === "string" ? o.level : "info";
  const prefix = level === "info" ? "" : `${level}: `;
  const text = typeof o.message === "string" ? o.message : String(o.event);
  return `${prefix}${text}${extra ? `  ${extra}` : ""}\n`;
}

export class Log {
  readonly output: OutputChoice;
  private readonly logger: pino.Logger;
  private readonly bar: ProgressBar | undefined;
  private lastProgress = 0;
  readonly warnings: string[] = [];

  constructor(
    private readonly sink: LogSink = process.stderr,
    quiet = false,
    options: LogOptions = {},
  ) {
    this.output = chooseOutput({ isTTY: sink.isTTY, json: options.json, quiet });
    this.bar = this.output.progress === "bar" ? new ProgressBar(sink) : undefined;
    const text = this.output.logs === "text";
    const destination = {
      write: (line: string) => {
        if (!text) return this.sink.write(line);
        this.bar?.clear();
        return this.sink.write(textLine(line));
      },
    };
    this.logger = pino(
      {
        level: quiet ? "warn" : "info",
        base: undefined,
        messageKey: "message",
        // The time goes after the event and its fields (formatters.log) rather than pino's place right
        // after the level, so a line reads `{"level":"warn","event":"prune.immutable",...}`.
        timestamp: false,
        formatters: {
          level: (label) => ({ level: label }),
          log: (obj) => ({ ...(scrub(obj) as Record<string, unknown>), time: new Date().toISOString() }),
        },
        redact: { paths: [...REDACT_PATHS], censor: CENSOR },
      },
      destination,
    );
  }

  event(level: Level, event: string, fields: Record<string, unknown> = {}, message?: string): void {
    if (level === "warn") this.warnings.push(message ?? event);
    const obj = { event, ...fields };
    if (message === undefined) this.logger[level](obj);
    else this.logger[level](obj, redactText(message));
  }

  info(event: string, fields?: Record<string, unknown>, message?: string) {
    this.event("info", event, fields, message);
  }

  warn(event: string, fields?: Record<string, unknown>, message?: string) {
    this.event("warn", event, fields, message);
  }

  /** A progress bar on a terminal; off a terminal, a progress line at most every 10 seconds. */
  progress(label: string, done: number, total: number, fields: Record<string, unknown> = {}): void {
    if (this.output.progress === "none") return;
    if (this.bar) {
      this.bar.update(label, done, total);
      return;
    }
    const now = Date.now();
    if (done < total && now - this.lastProgress < PROGRESS_LINE_INTERVAL_MS) return;
    this.lastProgress = now;
    this.info("progress", { step: label, done, total, ...fields });
  }

  /** Ends any progress bar before the process prints its final line. */
  close(): void {
    this.bar?.stop();
  }
}
