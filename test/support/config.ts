import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { parseStackConfig } from "../../components/config";

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
