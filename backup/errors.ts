/**
 * Failures the worker reports to operators: one line saying what failed, for which collection or
 * backup, and what to do. Anything else reaching the CLI's top level is an unexpected bug and is still
 * reported as one line (never a stack trace, which may carry connection details).
 */
export class WorkerError extends Error {
  constructor(
    message: string,
    /** Process exit code: 2 = bad usage or settings, 1 = operation failed. */
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "WorkerError";
  }
}

/** A usage or settings problem (exit code 2). */
export class UsageError extends WorkerError {
  constructor(message: string) {
    super(message, 2);
    this.name = "UsageError";
  }
}

/** Thrown when a restore or backup is stopped: SIGTERM, or its collection lock was lost. */
export class AbortedError extends WorkerError {
  constructor(why: string, where: string) {
    super(`stopped (${why}) ${where}`);
    this.name = "AbortedError";
  }
}

/** Throws {@link AbortedError} once `signal` is aborted; its reason says why (e.g. "SIGTERM"). */
export function stopIfAborted(signal: AbortSignal | undefined, where: string): void {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    throw new AbortedError(typeof reason === "string" ? reason : "aborted", where);
  }
}

/** gRPC failures that say Milvus could not be reached rather than that it refused the request. */
export function isMilvusUnavailable(e: unknown): boolean {
  return /\b(UNAVAILABLE|DEADLINE_EXCEEDED|ECONNREFUSED|ECONNRESET)\b/.test(describeError(e));
}

export interface MilvusStatus {
  code?: number;
  error_code?: string | number;
  reason?: string;
  detail?: string;
}

/**
 * Throws unless a Milvus status reports success. The Node SDK reports failures in `code` (non-zero)
 * and `reason` while `error_code` may still read "Success", so `code` is authoritative; `error_code`
 * is only consulted for servers that predate `code`.
 */
export function checkStatus(status: MilvusStatus | undefined, what: string): void {
  if (status === undefined) throw new WorkerError(`${what}: the server returned no status`);
  const code = status.code ?? 0;
  const legacy = status.error_code;
  const legacyFailed = legacy !== undefined && legacy !== "Success" && legacy !== 0;
  if (code !== 0 || legacyFailed) {
    const reason = (status.reason ?? status.detail ?? "").trim() || String(legacy);
    throw new WorkerError(`${what}: ${reason} (code ${code})`);
  }
}

/** Removes credentials from text that may echo a connection string, token or URL with a SAS. */
export function redact(text: string): string {
  return text
    .replace(/(AccountKey|SharedAccessSignature|sig)=[^;&\s"]+/gi, "$1=***")
    .replace(/(token|password)(["']?\s*[:=]\s*["']?)[^\s"',;]+/gi, "$1$2***")
    .replace(/\b([A-Za-z0-9_.-]+):([^@\s/]+)@/g, "$1:***@");
}

/** One line describing any thrown value, with secrets removed. */
export function describeError(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return redact(text.split("\n")[0] ?? text);
}
