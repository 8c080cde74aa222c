/**
 * Progress and logs on stderr (stdout is reserved for `--json` output): a progress bar on a terminal,
 * otherwise one JSON line per step, which is what Kubernetes log collection expects.
 */
import { redact } from "./errors";

export type Level = "info" | "warn" | "error";

export interface LogSink {
  isTTY?: boolean;
  columns?: number;
  write(s: string): boolean;
}

export class Log {
  private readonly tty: boolean;
  private lastProgress = 0;
  private barShown = false;
  readonly warnings: string[] = [];

  constructor(
    private readonly sink: LogSink = process.stderr,
    private readonly quiet = false,
  ) {
    this.tty = Boolean(sink.isTTY);
  }

  private clearBar() {
    if (this.barShown) {
      this.sink.write("\r\x1b[K");
      this.barShown = false;
    }
  }

  event(level: Level, event: string, fields: Record<string, unknown> = {}, message?: string): void {
    if (level === "warn") this.warnings.push(message ?? event);
    if (this.quiet && level === "info") return;
    if (this.tty) {
      this.clearBar();
      const extra = Object.entries(fields)
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" ");
      const prefix = level === "info" ? "" : `${level}: `;
      this.sink.write(redact(`${prefix}${message ?? event}${extra ? `  ${extra}` : ""}`) + "\n");
      return;
    }
    const line = { time: new Date().toISOString(), level, event, ...(message ? { message } : {}), ...fields };
    this.sink.write(redact(JSON.stringify(line)) + "\n");
  }

  info(event: string, fields?: Record<string, unknown>, message?: string) {
    this.event("info", event, fields, message);
  }

  warn(event: string, fields?: Record<string, unknown>, message?: string) {
    this.event("warn", event, fields, message);
  }

  /** A progress bar on a terminal; off a terminal, a progress line at most every 10 seconds. */
  progress(label: string, done: number, total: number, fields: Record<string, unknown> = {}): void {
    if (this.quiet) return;
    const now = Date.now();
    const finished = done >= total;
    if (this.tty) {
      if (!finished && now - this.lastProgress < 100) return;
      this.lastProgress = now;
      const width = Math.max(10, Math.min(40, (this.sink.columns ?? 80) - 50));
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const filled = Math.round(frac * width);
      this.sink.write(
        `\r\x1b[K${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(frac * 100).toFixed(1)}% ${done}/${total}`,
      );
      this.barShown = true;
      if (finished) {
        this.sink.write("\n");
        this.barShown = false;
      }
      return;
    }
    if (!finished && now - this.lastProgress < 10_000) return;
    this.lastProgress = now;
    this.info("progress", { step: label, done, total, ...fields });
  }

  /** Ends any progress bar before the process prints its final line. */
  close(): void {
    this.clearBar();
  }
}
