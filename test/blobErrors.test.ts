import * as assert from "node:assert/strict";
import { RestError } from "@azure/storage-blob";
import { restErrorStatus } from "../backup/blobStore";

describe("storage error texts", () => {
  it("names the HTTP status and code when the service answered", () => {
    const e = new RestError("denied", { statusCode: 403, code: "AuthorizationFailure" });
    assert.equal(restErrorStatus(e), " (HTTP 403, AuthorizationFailure)");
    assert.equal(restErrorStatus(new RestError("gone", { statusCode: 404 })), " (HTTP 404)");
  });

  it("never says HTTP ? when no response came back: only the code, or nothing", () => {
    assert.equal(restErrorStatus(new RestError("reset", { code: "ECONNRESET" })), " (ECONNRESET)");
    assert.equal(restErrorStatus(new RestError("odd")), "");
    assert.equal(restErrorStatus(new Error("not a storage error")), "");
  });
});
