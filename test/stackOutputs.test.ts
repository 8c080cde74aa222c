import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { FAKE_SUBSCRIPTION, renderStack, ROOT } from "../tools/offline-runtime";

// prod admits its dr stack's subnet once it exists; said existing, the program logs no warning here.
const liveSubnets = {
  [`/subscriptions/${FAKE_SUBSCRIPTION}/resourceGroups/milvus-dr-rg/providers/Microsoft.Network/virtualNetworks/milvus-dr-vnet/subnets/nodes`]:
    { serviceEndpoints: ["Microsoft.Storage"] },
};

/** The output names docs/operations.md lists between its outputs markers. */
function documentedOutputs(): string[] {
  const doc = fs.readFileSync(path.join(ROOT, "docs", "operations.md"), "utf8");
  const block = /<!-- outputs:start -->([\s\S]*?)<!-- outputs:end -->/.exec(doc)?.[1];
  assert.ok(block, "docs/operations.md has no outputs block");
  // Backticked identifiers, minus config values quoted in the prose (e.g. `objectStore: azureBlob`).
  return [...block.matchAll(/`([A-Za-z][A-Za-z0-9]*)`/g)].map((m) => m[1]).sort();
}

describe("stack outputs: what index.ts exports is what the docs list", function () {
  this.timeout(300_000);

  it("runs index.ts (not createStack) and finds every exported output documented, and nothing else", async () => {
    for (const stack of ["prod", "dr"]) {
      const exported = Object.keys(
        (await renderStack(stack, { viaIndex: true, liveSubnets })).outputs,
      ).sort();
      assert.deepEqual(documentedOutputs(), exported, stack);
    }
  });

  it("differs from what createStack() returns, so a test of that value would miss unexported names", async () => {
    const composed = Object.keys((await renderStack("prod", { liveSubnets })).outputs);
    const missing = composed.filter((o) => !documentedOutputs().includes(o)).sort();
    // Internal values the stack composes but does not export (and the docs rightly do not list).
    assert.deepEqual(missing, ["backupWorkerIdentityClientId", "milvusAccessJobName", "vnetId"]);
  });
});
