import * as assert from "node:assert/strict";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { defaultsFor, isValidCron, parseStackConfig } from "../components/common/config";
import { readStackFile } from "../tools/offline-runtime";
import { validProd } from "./support/config";

/** Turns the CLI-style string map of a stack file into the object parseStackConfig reads. */
function rawFrom(file: string): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(readStackFile(file))) {
    if (!k.startsWith("milvus-aks:")) continue;
    raw[k.slice("milvus-aks:".length)] = /^\s*[[{]/.test(v) ? JSON.parse(v) : v;
  }
  return raw;
}

function problemsOf(fn: () => unknown): pulumi.InputPropertyErrorDetails[] {
  try {
    fn();
  } catch (err) {
    assert.ok(
      pulumi.InputPropertiesError.isInstance(err),
      `expected InputPropertiesError, got ${String(err)}`,
    );
    return err.errors;
  }
  assert.fail("expected the config to be rejected");
}

describe("stack configuration", () => {
  it("reports every mistake of a broken stack file in one error", () => {
    const errors = problemsOf(() =>
      parseStackConfig("broken", rawFrom(path.join(__dirname, "fixtures/Pulumi.broken.yaml"))),
    );
    const paths = errors.map((e) => e.propertyPath).sort();
    assert.deepEqual(paths, [
      "adminGroupObjectIds",
      "backup.retentionDay",
      "backup.retentionDays",
      "backup.schedule",
      "dr.pairedLocation",
      "kubernetesVersion",
      "milvus.imageTag",
      "milvus.imageTag",
      "milvus.mode",
      "milvus.queryNode.replicas",
      "nodePools.data.minCount",
      "zone",
      "zones",
      "zones",
    ]);
    const byPath = (p: string) => errors.filter((e) => e.propertyPath === p).map((e) => e.reason);
    assert.match(
      byPath("zones")[0] ?? "",
      /zones = \["1","4"\] is invalid: expected distinct zones from "1", "2", "3"/,
    );
    assert.match(byPath("zones")[1] ?? "", /all three zones \["1","2","3"\] in prod/);
    assert.match(
      byPath("backup.retentionDays")[0] ?? "",
      /= 0 is invalid: expected an integer from 1 to 36500 days/,
    );
    assert.match(
      byPath("nodePools.data.minCount")[0] ?? "",
      /= 5 is invalid: expected a value no larger than nodePools\.data\.maxCount \(2\)/,
    );
    assert.match(byPath("kubernetesVersion")[0] ?? "", /"v1\.33-latest" is invalid/);
    assert.match(byPath("milvus.mode")[0] ?? "", /"standalone" is invalid: expected "cluster" in prod/);
    assert.match(byPath("dr.pairedLocation")[0] ?? "", /a region different from location/);
    // Typos: unknown keys get the closest known key; a nested key set without --path gets the command.
    assert.deepEqual(byPath("zone"), [
      'zone = ["1","2","3"] is invalid: expected a key of milvus-aks (did you mean zones?). Rename zone to zones in Pulumi.<stack>.yaml, or `pulumi config rm milvus-aks:zone` and set milvus-aks:zones.',
    ]);
    assert.deepEqual(byPath("backup.retentionDay"), [
      "backup.retentionDay = 7 is invalid: expected a key of backup (did you mean backup.retentionDays?). Rename backup.retentionDay to backup.retentionDays in Pulumi.<stack>.yaml, or `pulumi config rm --path milvus-aks:backup.retentionDay` and set milvus-aks:backup.retentionDays with --path.",
    ]);
    assert.deepEqual(byPath("milvus.queryNode.replicas"), [
      'milvus.queryNode.replicas = "3" is invalid: expected the nested key milvus.queryNode.replicas, not a top-level key whose name contains dots. Set it with `pulumi config set --path milvus-aks:milvus.queryNode.replicas 3` (without --path it became a top-level key named "milvus.queryNode.replicas"); remove that one with `pulumi config rm milvus-aks:milvus.queryNode.replicas`.',
    ]);
    // Each problem once.
    assert.equal(new Set(errors.map((e) => e.reason)).size, errors.length);
    // Each message says how to fix it.
    for (const e of errors) assert.ok(e.reason.length > 40 && /\. \S/.test(e.reason), e.reason);
  });

  it("names the key, the bad value and the allowed values in the error message", () => {
    try {
      parseStackConfig("x", { ...validProd(), backup: { retentionDays: -3 } });
      assert.fail("should throw");
    } catch (err) {
      assert.ok(err instanceof Error);
      assert.match(err.message, /Stack "x" has 1 configuration problem\(s\):/);
      assert.match(
        err.message,
        /backup\.retentionDays = -3 is invalid: expected an integer from 1 to 36500 days\. Set it with `pulumi config set --path milvus-aks:backup\.retentionDays 30`/,
      );
    }
  });

  it("reports a missing environment and location", () => {
    const errors = problemsOf(() => parseStackConfig("empty", { dr: { pairedLocation: "northeurope" } }));
    assert.deepEqual(errors.map((e) => e.propertyPath).sort(), [
      "adminGroupObjectIds",
      "environment",
      "location",
    ]);
    assert.match(
      errors.find((e) => e.propertyPath === "environment")?.reason ?? "",
      /\(missing\) is invalid: expected one of dev, staging, prod, dr/,
    );
  });

  it("accepts numbers given as strings by `pulumi config set`", () => {
    const cfg = parseStackConfig("p", { ...validProd(), backup: { retentionDays: "14" } });
    assert.equal(cfg.backup.retentionDays, 14);
  });

  it("rejects cluster mode with fewer than three zones outside dev, and even etcd or small MinIO clusters", () => {
    const errors = problemsOf(() =>
      parseStackConfig("s", {
        environment: "staging",
        location: "westeurope",
        adminGroupObjectIds: ["6f1c2a5e-8d3b-4b7e-9a41-2c5d8e7f9b10"],
        zones: ["1", "2"],
        milvus: { mode: "cluster" },
        etcd: { replicas: 2 },
        minio: { replicas: 2 },
        dr: { pairedLocation: "northeurope" },
      }),
    );
    assert.deepEqual(errors.map((e) => e.propertyPath).sort(), [
      "etcd.replicas",
      "milvus.mode",
      "minio.replicas",
    ]);
  });

  it("rejects a standalone Milvus with more than one replica", () => {
    const errors = problemsOf(() =>
      parseStackConfig("d", { ...validProd(), environment: "dev", milvus: { standalone: { replicas: 3 } } }),
    );
    assert.deepEqual(
      errors.map((e) => e.propertyPath),
      ["milvus.standalone.replicas"],
    );
    assert.match(errors[0]?.reason ?? "", /expected an integer from 1 to 1/);
  });

  it("rejects a drain timeout shorter than Milvus's graceful stop, requests above limits and overlapping networks", () => {
    const errors = problemsOf(() =>
      parseStackConfig("p", {
        ...validProd(),
        drainTimeoutMinutes: 30,
        milvus: { dataNode: { requests: { cpu: "8" }, limits: { cpu: "4" } } },
        network: { podCidr: "10.10.0.0/16", dnsServiceIp: "10.200.0.10" },
      }),
    );
    assert.deepEqual(errors.map((e) => e.propertyPath).sort(), [
      "drainTimeoutMinutes",
      "milvus.dataNode.requests.cpu",
      "network.dnsServiceIp",
      "network.podCidr",
    ]);
  });

  it("rejects a paired region that is not the Azure pair, and immutability longer than retention", () => {
    const errors = problemsOf(() =>
      parseStackConfig("p", {
        ...validProd(),
        dr: { pairedLocation: "eastus" },
        backup: { retentionDays: 7, immutabilityDays: 30 },
      }),
    );
    assert.deepEqual(errors.map((e) => e.propertyPath).sort(), [
      "backup.immutabilityDays",
      "dr.pairedLocation",
    ]);
    assert.match(
      errors.find((e) => e.propertyPath === "dr.pairedLocation")?.reason ?? "",
      /northeurope, the Azure pair of westeurope/,
    );
  });

  it("loads the committed prod and dev stack files", () => {
    const prod = parseStackConfig("prod", rawFrom(path.join(__dirname, "../Pulumi.prod.yaml")));
    assert.deepEqual(prod.zones, ["1", "2", "3"]);
    assert.equal(prod.milvus.mode, "cluster");
    assert.equal(prod.production, true);
    const dev = parseStackConfig("dev", rawFrom(path.join(__dirname, "../Pulumi.dev.yaml")));
    assert.deepEqual(dev.zones, ["1"]);
    assert.equal(dev.milvus.mode, "standalone");
    assert.equal(dev.etcd.replicas, 1);
  });

  describe("defaults", () => {
    it("gives prod the production shape", () => {
      const d = defaultsFor("prod");
      assert.equal(d.production, true);
      assert.deepEqual(d.zones, ["1", "2", "3"]);
      assert.equal(d.milvus.mode, "cluster");
      assert.equal(d.milvus.mixCoord.replicas, 2);
      assert.equal(d.milvus.queryNode.requests.memory, d.milvus.queryNode.limits.memory);
      assert.equal(d.etcd.replicas, 3);
      // 2 MinIO pods per zone: EC:3 keeps write quorum through a zone loss (components/data/erasure.ts).
      assert.equal(d.minio.replicas, 6);
      assert.equal(d.etcd.diskSizeGi, 128);
      assert.equal(d.drainTimeoutMinutes, 40);
      assert.equal(d.backup.schedule, "0 2 * * *");
      assert.equal(d.backup.retentionDays, 30);
      assert.equal(d.milvus.imageTag, "v2.6.24");
    });

    it("keeps dev small", () => {
      const d = defaultsFor("dev");
      assert.equal(d.production, false);
      assert.deepEqual(d.zones, ["1"]);
      assert.equal(d.milvus.mode, "standalone");
      assert.equal(d.milvus.standalone.replicas, 1);
      assert.deepEqual(d.nodePools.data, {
        vmSize: "Standard_D4ds_v5",
        minCount: 1,
        maxCount: 2,
        osDiskSizeGB: 128,
      });
    });
  });

  it("validates cron expressions as a Kubernetes CronJob does", () => {
    // Names, "?" and the macros are Kubernetes schedules too (test/libraries.test.ts has the details).
    for (const ok of [
      "0 2 * * *",
      "*/15 * * * *",
      "0 0-6/2 * * 1-5",
      "30 1 1,15 * *",
      "@daily",
      "0 2 * * MON",
      "0 2 * * SUN",
      "0 2 * * ?",
    ])
      assert.equal(isValidCron(ok), true, ok);
    for (const bad of [
      "0 2 * *",
      "60 2 * * *",
      "0 24 * * *",
      "0 2 32 * *",
      "0 2 * * 7",
      "@every 1h",
      "TZ=UTC 0 2 * * *",
      "0 0 2 * * *",
    ]) {
      assert.equal(isValidCron(bad), false, bad);
    }
  });
});
