/**
 * The backup container in Azure Blob Storage: a connection string for Azurite/development, or the
 * account URL with DefaultAzureCredential (workload identity in the cluster; no keys anywhere).
 *
 * Every request goes through @azure/storage-blob's own retry policy (exponential backoff) plus a small
 * per-try policy of ours that the SDK lacks: a client-side timeout on each try, waiting out Retry-After,
 * and retrying the transient statuses the SDK does not (408, 429, 502, 504). A download whose body ends
 * early or stalls is read again. When retries run out on a transient cause the error is a
 * StorageUnavailableError, so callers can tell "storage was unreachable, retry" from damage.
 */
import { STATUS_CODES } from "node:http";
import { finished, type Readable } from "node:stream";
import { DefaultAzureCredential } from "@azure/identity";
import {
  BlobServiceClient,
  RestError,
  StorageRetryPolicyType,
  type BlobLeaseClient,
  type BlockBlobClient,
  type ContainerClient,
  type StoragePipelineOptions,
} from "@azure/storage-blob";
import { operation as retryOperation } from "retry";
import { describeError, WorkerError } from "./errors";

export interface BlobInfo {
  name: string;
  size: number;
  lastModified: Date;
}

export type DeleteOutcome = "deleted" | "missing" | "immutable";

export interface Lease {
  readonly name: string;
  /** Renews the lease; throws WorkerError when it was lost (e.g. expired and taken by another holder). */
  renew(): Promise<void>;
  /** Releases the lease; never throws for an already expired lease. */
  release(): Promise<void>;
}

export interface BlobStore {
  /** Where the backups live, without credentials (for messages). */
  readonly location: string;
  ensureContainer(): Promise<void>;
  put(name: string, data: Buffer): Promise<void>;
  get(name: string): Promise<Buffer>;
  exists(name: string): Promise<boolean>;
  list(prefix: string): AsyncIterable<BlobInfo>;
  delete(name: string): Promise<DeleteOutcome>;
  /**
   * Takes a blob lease on `name` (creating an empty blob first if missing) for `seconds` (15-60, Azure's
   * range) and records `holder` (free text, e.g. "restore documents by pod x since <ISO time>") in the
   * blob's metadata. Returns undefined when another holder has an active lease, with that holder's text
   * available through `leaseHolder(name)`.
   */
  tryLease(name: string, seconds: number, holder: string): Promise<Lease | undefined>;
  /** The holder text recorded on a lock blob, or undefined. */
  leaseHolder(name: string): Promise<string | undefined>;
}

/** Timing of the retries of one blob request. */
export interface RetryTiming {
  /** Tries of one request, the first included. */
  maxTries: number;
  /** Base of the exponential backoff: retry n waits min((2^(n-1) - 1) x this, maxRetryDelayInMs). */
  retryDelayInMs: number;
  maxRetryDelayInMs: number;
  /** Limit on one try (request sent, answer and body received), enforced client-side. */
  tryTimeoutInMs: number;
}

/**
 * The retry timing of every blob request, in one place.
 *
 * - 8 tries, exponential backoff from 1 s capped at 30 s. The SDK's EXPONENTIAL policy waits
 *   min((2^(n-1) - 1) x 1 s, 30 s) before retry n (@azure/storage-common StorageRetryPolicyV2.js,
 *   calculateDelay), so the waits are 0, 1, 3, 7, 15, 30 and 30 s: 86 s between the first and the
 *   eighth try, which rides out a 30-60 s storage outage or throttling episode instead of failing a
 *   backup that has run for an hour.
 * - 60 s per try. No request carries more than BLOCK_BYTES (8 MiB), so a try slower than 60 s
 *   (under 140 KB/s) is stalled, not slow. The SDK only sends this as the server-side `timeout` query
 *   parameter (StorageRetryPolicyV2.js) and the HTTP client has no timeout of its own, so without
 *   the client-side limit in perTryPolicy a stalled connection would hang the worker forever.
 */
export const STORAGE_RETRY: Readonly<RetryTiming> = Object.freeze({
  maxTries: 8,
  retryDelayInMs: 1_000,
  maxRetryDelayInMs: 30_000,
  tryTimeoutInMs: 60_000,
});

/** Largest body of one request: uploads above it go as blocks, downloads are read in blocks of it. */
const BLOCK_BYTES = 8 * 1024 * 1024;

export interface StorageSettings {
  container: string;
  connectionString?: string;
  accountUrl?: string;
  /**
   * Overrides of STORAGE_RETRY, for tests only (so a timeout test takes seconds, not minutes).
   * tryTimeoutInMs should stay at least 1000: the SDK also sends it to the server in whole seconds.
   */
  retry?: Partial<RetryTiming>;
}

/**
 * Storage stayed unreachable or throttling through all retries: transient, not damage. The message
 * names the operation and location (never credentials) and tells the operator to retry.
 */
export class StorageUnavailableError extends WorkerError {
  constructor(
    readonly what: string,
    readonly where: string,
    readonly tries: number,
    readonly seconds: number,
    readonly reason: string,
  ) {
    super(
      `${what} in ${where} failed after ${tries} ${tries === 1 ? "try" : "tries"} over ${seconds} s: ${reason}; ` +
        "the storage account was unreachable or throttling: this is transient, retry the command",
    );
    this.name = "StorageUnavailableError";
  }
}

/** Statuses that mean "try again later" (timeouts, throttling, gateways, server errors). */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** Error codes of connections that failed or timed out; TIMEOUT is perTryPolicy's. */
const TRANSIENT_CODES = new Set([
  "ETIMEDOUT",
  "ESOCKETTIMEDOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "TIMEOUT",
  "REQUEST_SEND_ERROR",
]);

/** Transient statuses the SDK's retry policy returns as final (it retries only 500 and 503). */
const RETRIED_HERE = new Set([408, 429, 502, 504]);

/** "HTTP 429 Too Many Requests (ServerBusy)". */
function statusLine(status: number, code: string | undefined): string {
  const text = STATUS_CODES[status];
  return `HTTP ${status}${text ? ` ${text}` : ""}${code ? ` (${code})` : ""}`;
}

/** The parts of @azure/core-rest-pipeline's request, response and pipeline that perTryPolicy uses. */
interface SignalLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void): void;
  removeEventListener(type: "abort", listener: () => void): void;
}
interface TryRequest {
  abortSignal?: SignalLike;
}
interface TryResponse {
  status: number;
  headers: { get(name: string): string | undefined };
  readableStreamBody?: NodeJS.ReadableStream;
}
interface TryPolicy {
  name: string;
  sendRequest(request: TryRequest, next: (request: TryRequest) => Promise<TryResponse>): Promise<TryResponse>;
}
interface CorePipeline {
  addPolicy(policy: TryPolicy, options: { afterPhase: "Retry" }): void;
  getOrderedPolicies(): { name: string }[];
}

const PER_TRY_POLICY = "workerPerTryPolicy";
/** Tries made of each request (the SDK's retry policy sends the same request object again). */
const triesOf = new WeakMap<object, number>();

type RestErrorOptions = ConstructorParameters<typeof RestError>[1];

/** A response body that did not arrive in full within the per-try timeout. */
class BodyTimeoutError extends Error {
  readonly code = "TIMEOUT";
  constructor(ms: number) {
    super(`the response body did not arrive within the per-try timeout of ${ms / 1000} s`);
    this.name = "BodyTimeoutError";
  }
}

/** The backoff before retry `attempt + 1`, as the SDK's EXPONENTIAL policy computes it. */
function backoffMs(t: RetryTiming, attempt: number): number {
  return Math.min((2 ** (attempt - 1) - 1) * t.retryDelayInMs, t.maxRetryDelayInMs);
}

function sleep(ms: number, signal?: SignalLike): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

/**
 * Retry-After of a response in ms: `retry-after-ms`, `x-ms-retry-after-ms`, then `Retry-After` in
 * seconds or as an HTTP date; the headers core-rest-pipeline's throttlingRetryStrategy reads
 * (@typespec/ts-http-runtime retryStrategies/throttlingRetryStrategy.js), a policy @azure/storage-blob
 * removes from its pipeline (Pipeline.js: removePolicy({ phase: "Retry" })).
 */
function retryAfterMs(response: TryResponse): number | undefined {
  for (const header of ["retry-after-ms", "x-ms-retry-after-ms"]) {
    const ms = Number(response.headers.get(header) ?? "x");
    if (Number.isFinite(ms) && ms >= 0) return ms;
  }
  const value = response.headers.get("retry-after");
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * Runs once per try, inside the SDK's storageRetryPolicy (which in 12.30 retries only 500, 503 and
 * network errors, ignores Retry-After, and has no client-side timeout: @azure/storage-common
 * StorageRetryPolicyV2.js shouldRetry and sendRequest).
 *
 * - Aborts a try that has not finished within tryTimeoutInMs, body included, and reports it as a
 *   TIMEOUT error, which the SDK retries. (The SDK would not retry the HTTP client's own AbortError.)
 * - Waits out Retry-After (capped at maxRetryDelayInMs) on a transient status before the SDK's backoff.
 * - Hands 408, 429, 502 and 504, which the SDK would return as final, back as a 503 ServerBusy error
 *   (the status Azure Storage itself throttles with), so the SDK retries them too.
 */
function perTryPolicy(t: RetryTiming): TryPolicy {
  return {
    name: PER_TRY_POLICY,
    async sendRequest(request, next) {
      const tries = (triesOf.get(request) ?? 0) + 1;
      triesOf.set(request, tries);
      const outer = request.abortSignal;
      const abort = new AbortController();
      const forward = () => {
        abort.abort();
      };
      outer?.addEventListener("abort", forward);
      const timeout = () =>
        new RestError(`no answer within the per-try timeout of ${t.tryTimeoutInMs / 1000} s`, {
          code: "TIMEOUT",
          request,
        } as RestErrorOptions);
      // What the timer finds when it fires: the body being read, if the answer has come.
      const state: { body?: Readable; timedOut: boolean } = { timedOut: false };
      const timer = setTimeout(() => {
        state.timedOut = true;
        // A body being read fails with the timeout (the SDK's download stream then resumes or the
        // store reads again); a request still waiting for its answer is aborted.
        if (state.body) state.body.destroy(new BodyTimeoutError(t.tryTimeoutInMs));
        else abort.abort();
      }, t.tryTimeoutInMs);
      const done = () => {
        clearTimeout(timer);
        outer?.removeEventListener("abort", forward);
      };
      let response: TryResponse;
      request.abortSignal = abort.signal;
      try {
        response = await next(request);
      } catch (e) {
        done();
        if (state.timedOut) throw timeout();
        throw e;
      } finally {
        request.abortSignal = outer;
      }
      state.body = response.readableStreamBody as Readable | undefined;
      if (state.body) finished(state.body, done);
      else done();
      const status = response.status;
      if (!TRANSIENT_STATUS.has(status) || tries >= t.maxTries) return response;
      const wait = retryAfterMs(response);
      if (wait !== undefined) await sleep(Math.min(wait, t.maxRetryDelayInMs), outer);
      if (!RETRIED_HERE.has(status)) return response;
      // Never the final error: on the last try (tries === maxTries) the response is returned above.
      throw new RestError(statusLine(status, response.headers.get("x-ms-error-code")), {
        statusCode: 503,
        code: "ServerBusy",
        request,
        response,
      } as RestErrorOptions);
    },
  };
}

/** Adds perTryPolicy right inside the SDK's retry policy of the client's (shared) pipeline. */
function addPerTryPolicy(service: BlobServiceClient, t: RetryTiming): void {
  // The SDK has no public hook for a per-try policy: its v1 Pipeline keeps the core pipeline it
  // builds in `_corePipeline` (@azure/storage-blob Pipeline.js, getCoreClientOptions), shared by the
  // container and blob clients derived from the service client.
  const core = (service as unknown as { pipeline?: { _corePipeline?: CorePipeline } }).pipeline
    ?._corePipeline;
  if (!core) throw new Error("@azure/storage-blob has no _corePipeline: review backup/blobStore.ts");
  core.addPolicy(perTryPolicy(t), { afterPhase: "Retry" });
  const names = core.getOrderedPolicies().map((p) => p.name);
  const retry = names.indexOf("storageRetryPolicy");
  if (retry < 0 || names.indexOf(PER_TRY_POLICY) < retry) {
    throw new Error(
      `unexpected @azure/storage-blob pipeline ${names.join(", ")}: review backup/blobStore.ts`,
    );
  }
}

/** Whether a failure that survived the SDK's retries is transient (storage unreachable or busy). */
function isTransient(e: unknown): boolean {
  if (e instanceof RestError) {
    if (e.statusCode !== undefined) return TRANSIENT_STATUS.has(e.statusCode);
    if (e.code !== undefined && TRANSIENT_CODES.has(e.code)) return true;
    return e.code === "PARSE_ERROR" && /unclosed root tag|error reading response/i.test(e.message);
  }
  return isBodyFailure(e);
}

/**
 * A download body that ended early, was cut off or stalled: the SDK's download stream reports these
 * as AbortError (its source emitted "aborted"; the store never aborts a download itself) or, once its
 * own range retries ran out, as "Data corruption failure: received less data than required"
 * (@azure/storage-blob utils/RetriableReadableStream.js, utils/utils.js streamToBuffer).
 */
function isBodyFailure(e: unknown): boolean {
  if (!(e instanceof Error) || e instanceof RestError) return false;
  const code = (e as { code?: unknown }).code;
  return (
    e.name === "AbortError" ||
    (typeof code === "string" && TRANSIENT_CODES.has(code)) ||
    /received less data than required|drains before getting enough data|cannot be completed in timeout|^aborted$/i.test(
      e.message,
    )
  );
}

/** One line saying what went wrong, for StorageUnavailableError. */
function causeOf(e: unknown): string {
  if (e instanceof RestError) {
    const text = describeError(e);
    if (e.statusCode !== undefined) {
      // Answers to HEAD requests have no body: their error code is only in a header.
      const line = statusLine(e.statusCode, e.code ?? e.response?.headers.get("x-ms-error-code"));
      return text ? `${line}: ${text}` : line;
    }
    if (e.code) return `${e.code}: ${text}`;
  }
  if (isBodyFailure(e)) return `the download was cut off or stalled (${describeError(e)})`;
  return describeError(e);
}

/** Tries of the request an error came from (1 when unknown). */
function requestTries(e: unknown): number {
  const request = e instanceof RestError ? (e.request as object | undefined) : undefined;
  return (request && triesOf.get(request)) ?? 1;
}

const isStatus = (e: unknown, ...statuses: number[]): e is RestError =>
  e instanceof RestError && e.statusCode !== undefined && statuses.includes(e.statusCode);

/** Holder text as a metadata value (printable ASCII; other bytes and "%" percent-encoded). */
function encodeHolder(text: string): string {
  let out = "";
  for (const b of Buffer.from(text, "utf8")) {
    out +=
      b >= 0x20 && b < 0x7f && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, "0")}`;
  }
  // HTTP trims header values: keep leading and trailing spaces.
  return out.replace(/^ | $/g, "%20");
}

function decodeHolder(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

const HOLDER_KEY = "holder";

export class AzureBlobStore implements BlobStore {
  readonly location: string;
  private readonly container: ContainerClient;
  private readonly retry: RetryTiming;

  constructor(s: StorageSettings) {
    const r = s.retry;
    this.retry = {
      maxTries: r?.maxTries ?? STORAGE_RETRY.maxTries,
      retryDelayInMs: r?.retryDelayInMs ?? STORAGE_RETRY.retryDelayInMs,
      maxRetryDelayInMs: r?.maxRetryDelayInMs ?? STORAGE_RETRY.maxRetryDelayInMs,
      tryTimeoutInMs: r?.tryTimeoutInMs ?? STORAGE_RETRY.tryTimeoutInMs,
    };
    const options: StoragePipelineOptions = {
      retryOptions: { retryPolicyType: StorageRetryPolicyType.EXPONENTIAL, ...this.retry },
    };
    let service: BlobServiceClient;
    try {
      if (s.connectionString) {
        service = BlobServiceClient.fromConnectionString(s.connectionString, options);
      } else if (s.accountUrl) {
        service = new BlobServiceClient(s.accountUrl, new DefaultAzureCredential(), options);
      } else {
        throw new WorkerError("no storage configured");
      }
    } catch (e) {
      throw new WorkerError(
        `invalid storage settings: ${describeError(e)}. Check --storage-connection-string/AZURE_STORAGE_CONNECTION_STRING ` +
          "or --storage-account-url/AZURE_STORAGE_ACCOUNT_URL",
        2,
      );
    }
    addPerTryPolicy(service, this.retry);
    this.container = service.getContainerClient(s.container);
    this.location = `${service.url.replace(/\?.*$/, "").replace(/\/$/, "")}/${s.container}`;
  }

  /**
   * Throws the WorkerError for a failed operation: StorageUnavailableError when the cause is
   * transient (the retries are spent), else what failed with the HTTP status. `storeTries` counts
   * the operation's own repeats (downloads read again), `started` is when it began.
   */
  private fail(what: string, e: unknown, started: number, storeTries = 1): never {
    if (e instanceof WorkerError) throw e;
    if (isTransient(e)) {
      const tries = storeTries - 1 + requestTries(e);
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      throw new StorageUnavailableError(what, this.location, tries, seconds, causeOf(e));
    }
    const status = restErrorStatus(e);
    throw new WorkerError(`${what} in ${this.location} failed${status}: ${describeError(e)}`);
  }

  async ensureContainer(): Promise<void> {
    const started = Date.now();
    try {
      await this.container.createIfNotExists();
    } catch (e) {
      // Without permission to create containers, an existing container is still usable.
      if (isStatus(e, 403)) return;
      this.fail("creating the container", e, started);
    }
  }

  async put(name: string, data: Buffer): Promise<void> {
    const started = Date.now();
    try {
      await this.container.getBlockBlobClient(name).uploadData(data, {
        blockSize: BLOCK_BYTES,
        maxSingleShotSize: BLOCK_BYTES,
        concurrency: 4,
        blobHTTPHeaders: {
          blobContentType: name.endsWith(".json") ? "application/json" : "application/octet-stream",
        },
      });
    } catch (e) {
      this.fail(`uploading ${name}`, e, started);
    }
  }

  /**
   * The whole blob, read in blocks pinned to the ETag seen first (a blob replaced meanwhile fails
   * with 412 instead of mixing versions). A body cut off or stalled beyond the SDK's own resumption,
   * or a blob replaced while read, is read again, up to maxTries reads in all.
   *
   * The SDK's retry policy repeats single requests; reading again means a new getProperties (a new
   * ETag) and a new download, so these repeats are a `retry` operation, waiting the SDK's own backoff
   * between reads (0, 1, 3, 7 ... x retryDelayInMs, capped).
   */
  async get(name: string): Promise<Buffer> {
    const started = Date.now();
    const blob = this.container.getBlobClient(name);
    const readOnce = async (): Promise<Buffer> => {
      const props = await blob.getProperties();
      const size = props.contentLength ?? 0;
      if (size === 0) return Buffer.alloc(0);
      return await blob.downloadToBuffer(0, size, {
        blockSize: BLOCK_BYTES,
        concurrency: 4,
        conditions: { ifMatch: props.etag },
      });
    };
    const waits = Array.from({ length: Math.max(0, this.retry.maxTries - 1) }, (_, i) =>
      backoffMs(this.retry, i + 1),
    );
    const reads = retryOperation(waits);
    return await new Promise<Buffer>((resolve, reject) => {
      reads.attempt((attempt) => {
        readOnce().then(resolve, (e: unknown) => {
          try {
            if (isStatus(e, 404)) throw new WorkerError(`${name} is missing from ${this.location}`);
            const readAgain = isBodyFailure(e) || isStatus(e, 412);
            if (readAgain && reads.retry(e instanceof Error ? e : new Error(String(e)))) return;
            this.fail(`downloading ${name}`, e, started, attempt);
          } catch (failure) {
            reject(failure instanceof Error ? failure : new Error(String(failure)));
          }
        });
      });
    });
  }

  async exists(name: string): Promise<boolean> {
    const started = Date.now();
    try {
      return await this.container.getBlobClient(name).exists();
    } catch (e) {
      this.fail(`checking ${name}`, e, started);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    const started = Date.now();
    try {
      for await (const b of this.container.listBlobsFlat({ prefix })) {
        yield {
          name: b.name,
          size: b.properties.contentLength ?? 0,
          lastModified: b.properties.lastModified,
        };
      }
    } catch (e) {
      if (isStatus(e, 404) && e.code === "ContainerNotFound") {
        throw new WorkerError(
          `container ${this.location} does not exist; check --container/BACKUP_CONTAINER`,
        );
      }
      this.fail("listing backups", e, started);
    }
  }

  async delete(name: string): Promise<DeleteOutcome> {
    const started = Date.now();
    try {
      await this.container.getBlobClient(name).delete();
      return "deleted";
    } catch (e) {
      if (e instanceof RestError) {
        if (e.statusCode === 404) return "missing";
        if (isImmutabilityError(e)) return "immutable";
      }
      this.fail(`deleting ${name}`, e, started);
    }
  }

  async tryLease(name: string, seconds: number, holder: string): Promise<Lease | undefined> {
    if (!Number.isInteger(seconds) || seconds < 15 || seconds > 60) {
      throw new WorkerError(`a lease on ${name} must last 15-60 s (Azure's range), not ${seconds}`);
    }
    const started = Date.now();
    const blob = this.container.getBlockBlobClient(name);
    const lease = blob.getBlobLeaseClient();
    try {
      try {
        await lease.acquireLease(seconds);
      } catch (e) {
        if (!isStatus(e, 404) || e.code === "ContainerNotFound") throw e;
        try {
          await blob.upload("", 0, { conditions: { ifNoneMatch: "*" } });
        } catch (c) {
          // Created meanwhile by another taker: fine, the lease decides.
          if (!isStatus(c, 409, 412)) throw c;
        }
        await lease.acquireLease(seconds);
      }
    } catch (e) {
      if (isStatus(e, 409) && e.code === "LeaseAlreadyPresent") return undefined;
      this.fail(`taking a lease on ${name}`, e, started);
    }
    try {
      await blob.setMetadata(
        { [HOLDER_KEY]: encodeHolder(holder) },
        { conditions: { leaseId: lease.leaseId } },
      );
    } catch (e) {
      await lease.releaseLease().catch(() => undefined);
      this.fail(`recording the holder of ${name}`, e, started);
    }
    return new BlobLease(name, blob, lease, (what, e, t0) => this.fail(what, e, t0), this.location);
  }

  async leaseHolder(name: string): Promise<string | undefined> {
    const started = Date.now();
    try {
      const props = await this.container.getBlobClient(name).getProperties();
      const value = props.metadata?.[HOLDER_KEY];
      return value ? decodeHolder(value) : undefined;
    } catch (e) {
      if (isStatus(e, 404)) return undefined;
      this.fail(`reading the holder of ${name}`, e, started);
    }
  }
}

/** A lease taken by AzureBlobStore.tryLease. */
class BlobLease implements Lease {
  private released = false;

  constructor(
    readonly name: string,
    private readonly blob: BlockBlobClient,
    private readonly lease: BlobLeaseClient,
    private readonly fail: (what: string, e: unknown, started: number) => never,
    private readonly location: string,
  ) {}

  async renew(): Promise<void> {
    if (this.released) {
      throw new WorkerError(
        `the lease on ${this.name} in ${this.location} was released; it cannot be renewed`,
      );
    }
    const started = Date.now();
    try {
      await this.lease.renewLease();
    } catch (e) {
      // 409: the lease expired and another holder took it (or it was broken); 404: the blob is gone.
      if (isStatus(e, 404, 409, 412)) {
        throw new WorkerError(
          `lost the lease on ${this.name} in ${this.location}${restErrorStatus(e)}: ` +
            "it expired and another holder may have taken it",
        );
      }
      this.fail(`renewing the lease on ${this.name}`, e, started);
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const started = Date.now();
    // Clear the holder text first (it needs the lease), then release. 404/409/412 mean the lease
    // already expired (and maybe went to another holder) or the blob is gone: nothing to release.
    try {
      await this.blob.setMetadata({}, { conditions: { leaseId: this.lease.leaseId } });
      await this.lease.releaseLease();
    } catch (e) {
      if (isStatus(e, 404, 409, 412)) return;
      this.fail(`releasing the lease on ${this.name}`, e, started);
    }
  }
}

/**
 * Whether a storage error means this store takes no writes: the primary's read-only geo-secondary
 * (RA-GZRS secondary endpoint: reads only, "Azure Storage redundancy", read access to data in the
 * secondary region), a Storage Blob Data Reader identity, or a read/list-only SAS (Azurite answers
 * those with HTTP 403, measured).
 */
export function isReadOnlyRefusal(e: unknown): boolean {
  return /\b403\b|AuthorizationPermissionMismatch|AuthorizationFailure|read-only|ReadOnly/i.test(
    describeError(e),
  );
}

/** Blob deletes refused by a time-based retention policy or legal hold (WORM). */
export function isImmutabilityError(e: { statusCode?: number; code?: string; message?: string }): boolean {
  return (
    (e.statusCode === 409 || e.statusCode === 403) &&
    /immutab|legalhold|legal hold|retention policy/i.test(`${e.code ?? ""} ${e.message ?? ""}`)
  );
}

/**
 * ` (HTTP 403, AuthorizationFailure)` for a storage error; a RestError without a status never reached
 * the service (a connection or parse error), so only its code is named, never "HTTP ?".
 */
export function restErrorStatus(e: unknown): string {
  // By name, as @azure/core-rest-pipeline's isRestError does: two installed copies of the SDK (the
  // worker's and the project's) make `instanceof` unreliable.
  if (!(e instanceof Error) || e.name !== "RestError") return "";
  const { statusCode, code } = e as RestError;
  const parts = [statusCode !== undefined ? `HTTP ${String(statusCode)}` : "", code ?? ""].filter(Boolean);
  return parts.length > 0 ? ` (${parts.join(", ")})` : "";
}
