/**
 * Progress of a backup, restore or verify. On a terminal (and without `--json`) a cli-progress bar
 * with rate and ETA; anywhere else (a pod, a pipe, `--json`) a JSON `progress` log line at most every
 * 10 seconds and one at the end, which is what Kubernetes log collection expects.
 */
import { SingleBar } from "cli-progress";

export interface OutputChoice {
  /** Human-readable lines (a terminal) or one JSON object per line. */
  logs: "text" | "json";
  /** A redrawn bar, periodic `progress` log lines, or nothing (quiet). */
  progress: "bar" | "lines" | "none";
}

/**
 * What the worker writes to its log stream: text and a progress bar only when that stream is a
 * terminal and the run did not ask for machine output (`--json`); quiet runs show no progress.
 */
export function chooseOutput(o: { isTTY?: boolean; json?: boolean; quiet?: boolean }): OutputChoice {
  const terminal = o.isTTY === true && o.json !== true;
  return {
    logs: terminal ? "text" : "json",
    progress: o.quiet === true ? "none" : terminal ? "bar" : "lines",
  };
}

/** Off a terminal, progress lines come at most this often (plus one when a step finishes). */
export const PROGRESS_LINE_INTERVAL_MS = 10_000;

/** Width of the bar on a terminal `columns` wide: what is left of the line, 10 to 40 characters. */
export function barWidth(columns: number | undefined): number {
  return Math.max(10, Math.min(40, (columns ?? 80) - 50));
}

/** The bar's line: label, bar, percentage, done/total, rate since the step began, and ETA. */
export const BAR_FORMAT = "{label} [{bar}] {percentage}% {value}/{total} | {rate}/s | ETA {eta_formatted}";

export interface BarStream {
  isTTY?: boolean;
  columns?: number;
  write(s: string): boolean;
}

/**
 * The stream cli-progress draws on: the log stream, minus the save/restore-cursor sequences its bar
 * writes at start and stop. The bar always sits on the current line, and log lines are written
 * between redraws, so restoring the cursor saved at start would jump back over them.
 */
function barStream(stream: BarStream): BarStream {
  return {
    isTTY: true,
    get columns() {
      return stream.columns;
    },
    write: (s: string) => (s === "\x1b7" || s === "\x1b8" ? true : stream.write(s)),
  };
}

/** One bar at a time on a terminal; a new label (another collection, another step) starts a new bar. */
export class ProgressBar {
  private bar: SingleBar | undefined;
  private label = "";
  private started = 0;
  private startDone = 0;

  constructor(private readonly stream: BarStream) {}

  /** Whether a bar is on screen (a log line must clear it first). */
  get active(): boolean {
    return this.bar !== undefined;
  }

  update(label: string, done: number, total: number): void {
    if (this.bar && label !== this.label) this.stop();
    const now = Date.now();
    if (!this.bar) {
      this.label = label;
      this.started = now;
      this.startDone = done;
      this.bar = new SingleBar({
        stream: barStream(this.stream) as unknown as NodeJS.WritableStream,
        format: BAR_FORMAT,
        barsize: barWidth(this.stream.columns),
        barCompleteChar: "#",
        barIncompleteChar: "-",
        // Redraw on every tick: a log line written between updates clears the bar's line.
        forceRedraw: true,
        hideCursor: false,
        // Lines longer than the terminal are cut, and the terminal's wrapping is never switched off
        // (which a process killed mid-bar would leave off).
        linewrap: true,
        // The CLI handles SIGTERM/SIGINT itself (stop after the current batch).
        gracefulExit: false,
      });
      // Started at the first report, so the first draw already shows how far the step is.
      this.bar.start(total, done, { label, rate: "0" });
    }
    const seconds = (now - this.started) / 1000;
    const rate = seconds > 0 ? Math.round((done - this.startDone) / seconds) : 0;
    this.bar.setTotal(total);
    this.bar.update(done, { rate: String(rate) });
    if (done >= total) this.stop();
  }

  /** Draws the bar one last time and ends its line. */
  stop(): void {
    const bar = this.bar;
    this.bar = undefined;
    bar?.stop();
  }

  /** Removes the bar's line before a log line; the bar's next tick (100 ms) draws it again below. */
  clear(): void {
    if (!this.bar) return;
    this.stream.write("\r\x1b[K");
  }
}
