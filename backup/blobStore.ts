/**
 * The backup container in Azure Blob Storage: a connection string for Azurite/development, or the
 * account URL with DefaultAzureCredential (workload identity in the cluster; no keys anywhere).
 */
import { DefaultAzureCredential } from "@azure/identity";
import { BlobServiceClient, ContainerClient, RestError } from "@azure/storage-blob";
import { describeError, WorkerError } from "./errors";

export interface BlobInfo {
  name: string;
  size: number;
  lastModified: Date;
}

export type DeleteOutcome = "deleted" | "missing" | "immutable";

export interface BlobStore {
  /** Where the backups live, without credentials (for messages). */
  readonly location: string;
  ensureContainer(): Promise<void>;
  put(name: string, data: Buffer): Promise<void>;
  get(name: string): Promise<Buffer>;
  exists(name: string): Promise<boolean>;
  list(prefix: string): AsyncIterable<BlobInfo>;
  delete(name: string): Promise<DeleteOutcome>;
}

export interface StorageSettings {
  container: string;
  connectionString?: string;
  accountUrl?: string;
}

const RETRY = { maxTries: 4, tryTimeoutInMs: 120_000, retryDelayInMs: 500, maxRetryDelayInMs: 8_000 };

export class AzureBlobStore implements BlobStore {
  readonly location: string;
  private readonly container: ContainerClient;

  constructor(s: StorageSettings) {
    let service: BlobServiceClient;
    try {
      if (s.connectionString) {
        service = BlobServiceClient.fromConnectionString(s.connectionString, { retryOptions: RETRY });
      } else if (s.accountUrl) {
        service = new BlobServiceClient(s.accountUrl, new DefaultAzureCredential(), { retryOptions: RETRY });
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
    this.container = service.getContainerClient(s.container);
    this.location = `${service.url.replace(/\?.*$/, "").replace(/\/$/, "")}/${s.container}`;
  }

  private fail(what: string, e: unknown): never {
    if (e instanceof WorkerError) throw e;
    const status =
      e instanceof RestError ? ` (HTTP ${e.statusCode ?? "?"}${e.code ? `, ${e.code}` : ""})` : "";
    throw new WorkerError(`${what} in ${this.location} failed${status}: ${describeError(e)}`);
  }

  async ensureContainer(): Promise<void> {
    try {
      await this.container.createIfNotExists();
    } catch (e) {
      // Without permission to create containers, an existing container is still usable.
      if (e instanceof RestError && e.statusCode === 403) return;
      this.fail("creating the container", e);
    }
  }

  async put(name: string, data: Buffer): Promise<void> {
    try {
      await this.container.getBlockBlobClient(name).uploadData(data, {
        blockSize: 8 * 1024 * 1024,
        concurrency: 4,
        blobHTTPHeaders: {
          blobContentType: name.endsWith(".json") ? "application/json" : "application/octet-stream",
        },
      });
    } catch (e) {
      this.fail(`uploading ${name}`, e);
    }
  }

  async get(name: string): Promise<Buffer> {
    try {
      return await this.container
        .getBlobClient(name)
        .downloadToBuffer(undefined, undefined, { concurrency: 4 });
    } catch (e) {
      if (e instanceof RestError && e.statusCode === 404) {
        throw new WorkerError(`${name} is missing from ${this.location}`);
      }
      this.fail(`downloading ${name}`, e);
    }
  }

  async exists(name: string): Promise<boolean> {
    try {
      return await this.container.getBlobClient(name).exists();
    } catch (e) {
      this.fail(`checking ${name}`, e);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    try {
      for await (const b of this.container.listBlobsFlat({ prefix })) {
        yield {
          name: b.name,
          size: b.properties.contentLength ?? 0,
          lastModified: b.properties.lastModified,
        };
      }
    } catch (e) {
      if (e instanceof RestError && e.statusCode === 404 && e.code === "ContainerNotFound") {
        throw new WorkerError(
          `container ${this.location} does not exist; check --container/BACKUP_CONTAINER`,
        );
      }
      this.fail("listing backups", e);
    }
  }

  async delete(name: string): Promise<DeleteOutcome> {
    try {
      await this.container.getBlobClient(name).delete();
      return "deleted";
    } catch (e) {
      if (e instanceof RestError) {
        if (e.statusCode === 404) return "missing";
        if (isImmutabilityError(e)) return "immutable";
      }
      this.fail(`deleting ${name}`, e);
    }
  }
}

/** Blob deletes refused by a time-based retention policy or legal hold (WORM). */
export function isImmutabilityError(e: { statusCode?: number; code?: string; message?: string }): boolean {
  return (
    (e.statusCode === 409 || e.statusCode === 403) &&
    /immutab|legalhold|legal hold|retention policy/i.test(`${e.code ?? ""} ${e.message ?? ""}`)
  );
}
