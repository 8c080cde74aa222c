import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { parseStackConfig } from "../../components/common/config";

/** Every problem parseStackConfig reports for a raw stack config (the one InputPropertiesError); [] when accepted. */
export function configErrors(raw: Record<string, unknown>, stack = "t"): pulumi.InputPropertyErrorDetails[] {
  try {
    parseStackConfig(stack, raw);
  } catch (err) {
    assert.ok(
      pulumi.InputPropertiesError.isInstance(err),
      `expected InputPropertiesError, got ${String(err)}`,
    );
    return err.errors;
  }
  return [];
}

/** The smallest valid prod stack config: every other key takes its default. */
export const validProd = () => ({
  environment: "prod",
  location: "westeurope",
  adminGroupObjectIds: ["9b3e7d21-4c6a-4f08-8e5d-7a2b1c9f0e34"],
  dr: { pairedLocation: "northeurope" },
});
