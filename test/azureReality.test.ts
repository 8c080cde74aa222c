import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as yaml from "js-yaml";
import { v5 as uuidv5 } from "uuid";
import { kubeloginKubeconfig, poolCount } from "../components/azure/aksCluster";
import {
  AKS_KUBERNETES_VERSIONS,
  backupDaysLost,
  backupsInMaintenance,
  checkKubernetesVersion,
  defaultsFor,
  GZRS_REGIONS,
  MAINTENANCE_DAYS,
  supportedKubernetesMinors,
  upgradeMinutesEstimate,
  WEEKDAYS,
} from "../components/common/config";
import { globalName, nodeSubnetResourceId } from "../components/common/naming";
import { BUILTIN_ROLES, roleAssignmentName } from "../components/azure/roles";
import {
  AKS_USER_KUBECONFIG,
  FAKE_SUBSCRIPTION,
  RenderedResource,
  RenderResult,
  renderStack,
  ROOT,
} from "../tools/offline-runtime";
import { configErrors, validProd } from "./support/config";

/**
 * Facts about Azure and AKS that a first `pulumi up` depends on, each encoded against its upstream
 * source (cited beside the code under test), so a mock written to match the code cannot hide them.
 */

type Obj = Record<string, unknown>;
const day = (iso: string) => new Date(`${iso}T00:00:00Z`);
const ofType = (r: RenderResult, type: string) =>
  r.resources.filter((x) => x.type === `azure-native:${type}`);
const named = (r: RenderResult, name: string): RenderedResource => {
  const found = r.resources.find((x) => x.name === name);
  assert.ok(found, `no resource named ${name}`);
  return found;
};
const SUBSCRIPTION = "00000000-0000-0000-0000-000000000001";

describe("AKS Kubernetes versions (AKS release calendar, injected dates)", () => {
  it("knows the calendar's GA and end-of-life dates for 1.33 to 1.37", () => {
    assert.deepEqual(
      Object.fromEntries(Object.entries(AKS_KUBERNETES_VERSIONS).filter(([m]) => m >= "1.33")),
      {
        "1.33": { ga: "2025-06-30", endOfLife: "2026-07-31" },
        "1.34": { ga: "2025-11-30", endOfLife: "2026-11-30" },
        "1.35": { ga: "2026-03-31", endOfLife: "2027-03-31" },
        "1.36": { ga: "2026-06-30", endOfLife: "2027-06-30" },
        "1.37": { ga: "2026-10-31", endOfLife: "2027-10-31" },
      },
    );
    assert.deepEqual(supportedKubernetesMinors(day("2026-11-27")), ["1.34", "1.35", "1.36", "1.37"]);
    assert.deepEqual(supportedKubernetesMinors(day("2026-12-01")), ["1.35", "1.36", "1.37"]);
  });

  it("rejects 1.33 after its end of life with how to pick a version", () => {
    const verdict = checkKubernetesVersion("1.33", "westeurope", day("2026-08-01"));
    assert.ok(verdict.error);
    assert.match(verdict.error.fix, /1\.33 reached end of life on 2026-07-31/);
    assert.match(verdict.error.fix, /`az aks get-versions -l westeurope -o table`/);
    assert.match(verdict.error.allowed, /1\.34, 1\.35, 1\.36/);
    // The same version on a day it was supported is fine: the verdict follows the date, not the clock.
    assert.deepEqual(checkKubernetesVersion("1.33.5", "westeurope", day("2026-01-15")), {});
  });

  it("warns within 60 days of end of life, and not before", () => {
    assert.deepEqual(checkKubernetesVersion("1.36", "westeurope", day("2027-04-30")), {});
    const near = checkKubernetesVersion("1.36", "westeurope", day("2027-05-02"));
    assert.equal(near.error, undefined);
    assert.match(near.warning ?? "", /ends support for 1\.36 on 2027-06-30 \(59 days from now\)/);
  });

  it("rejects minors the calendar does not list as GA", () => {
    assert.match(
      checkKubernetesVersion("1.38", "", day("2026-11-27")).error?.fix ?? "",
      /not in the AKS release calendar/,
    );
    assert.match(
      checkKubernetesVersion("1.37", "", day("2026-09-15")).error?.fix ?? "",
      /not generally available on AKS before 2026-10-31/,
    );
  });

  it("ships a supported default and supported stack files, and the config rejects an old one", async () => {
    assert.equal(defaultsFor("prod").kubernetesVersion, "1.36");
    for (const stack of ["dev", "staging", "prod", "dr"]) {
      const r = await renderStack(stack, { today: day("2026-11-27") });
      assert.equal(r.config.kubernetesVersion, "1.36", stack);
      assert.deepEqual(
        r.warnings.filter((w) => w.startsWith("kubernetesVersion")),
        [],
        stack,
      );
    }
    const errors = configErrors({ ...validProd(), kubernetesVersion: "1.33" });
    assert.deepEqual(
      errors.map((e) => e.propertyPath),
      ["kubernetesVersion"],
    );
  });

  it("npm run render prints the warning, judged at MILVUS_AKS_TODAY", () => {
    const render = (today: string) =>
      spawnSync(
        process.execPath,
        [require.resolve("ts-node/dist/bin.js"), "--transpile-only", "tools/render.ts", "prod"],
        {
          cwd: ROOT,
          encoding: "utf8",
          env: { ...process.env, MILVUS_AKS_TODAY: today },
        },
      );
    const near = render("2027-05-15");
    assert.equal(near.status, 0, near.stderr);
    assert.match(
      near.stderr,
      /^warning: kubernetesVersion 1\.36: AKS ends support for 1\.36 on 2027-06-30 \(46 days from now\)/m,
    );
    const far = render("2026-11-27");
    assert.equal(far.status, 0, far.stderr);
    assert.doesNotMatch(far.stderr, /warning: kubernetesVersion/);
    // A render is a first deploy: prod's dr subnet does not exist yet, which the render says too.
    assert.match(far.stderr, /^warning: dr\.standbyStack: the dr stack's node subnet .* does not exist yet/m);
  });

  it("logs the 60-day warning through the program at preview time", async () => {
    const r = await renderStack("prod", {
      today: day("2026-11-27"),
      overrides: { "milvus-aks:kubernetesVersion": "1.34" },
      // An update of a deployed prod whose dr stack exists: the version warning is the only one.
      liveSubnets: {
        [nodeSubnetResourceId(FAKE_SUBSCRIPTION, "dr")]: { serviceEndpoints: ["Microsoft.Storage"] },
      },
    });
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0] ?? "", /AKS ends support for 1\.34 on 2026-11-30 \(3 days from now\)/);
  });
});

describe("AKS user kubeconfig and kubelogin", () => {
  // The fixture is the shape AKS returns: block sequences, env: null, installHint, devicecode login.
  const before = yaml.load(AKS_USER_KUBECONFIG) as { users: { name: string; user: { exec: Obj } }[] };

  it("the fixture has AKS's shape", () => {
    assert.match(AKS_USER_KUBECONFIG, /\n {6}args:\n {6}- get-token\n/);
    const exec = before.users[0]?.user.exec;
    assert.ok(exec);
    assert.equal(exec.env, null);
    assert.equal(exec.provideClusterInfo, false);
    assert.match(String(exec.installHint), /aka\.ms\/aks\/kubelogin/);
    assert.deepEqual((exec.args as string[]).slice(-2), ["--login", "devicecode"]);
  });

  it("rewrites it into valid YAML whose exec user logs in through the Azure CLI", () => {
    const after = yaml.load(kubeloginKubeconfig(AKS_USER_KUBECONFIG)) as typeof before;
    assert.equal(after.users.length, 1);
    const user = after.users[0];
    assert.ok(user);
    assert.equal(user.name, "clusterUser_milvus-prod-rg_milvus-prod-aks");
    assert.deepEqual(user.user.exec, {
      ...before.users[0]?.user.exec,
      args: ["get-token", "--login", "azurecli", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630"],
    });
    // Everything else (clusters, contexts, current context) is untouched.
    const { users: _u1, ...restBefore } = before as unknown as Obj;
    const { users: _u2, ...restAfter } = after as unknown as Obj;
    assert.deepEqual(restAfter, restBefore);
  });

  it("handles flow-style args and other argument orders too", () => {
    const flow = AKS_USER_KUBECONFIG.replace(
      /args:\n(?: {6}- .*\n)+/,
      "args: [get-token, --login, devicecode, --server-id, 6dae42f8-4368-4678-94ff-3960e28e3630]\n",
    );
    assert.notEqual(flow, AKS_USER_KUBECONFIG);
    const after = yaml.load(kubeloginKubeconfig(flow)) as typeof before;
    assert.deepEqual(after.users[0]?.user.exec.args, [
      "get-token",
      "--login",
      "azurecli",
      "--server-id",
      "6dae42f8-4368-4678-94ff-3960e28e3630",
    ]);
  });

  it("refuses a kubeconfig without a kubelogin user", () => {
    assert.throws(
      () =>
        kubeloginKubeconfig("apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: x\n"),
      /no kubelogin exec user/,
    );
  });
});

describe("AKS node pools: one operation at a time, valid counts", () => {
  let prod: RenderResult;
  before(async () => {
    prod = await renderStack("prod");
  });

  it("creates the data pools one after another, then the maintenance windows", () => {
    const urn = (name: string) => named(prod, name).options.urn;
    const deps = (name: string) => named(prod, name).options.dependencies;
    assert.ok(deps("milvus-prod-data2").includes(urn("milvus-prod-data1")));
    assert.ok(deps("milvus-prod-data3").includes(urn("milvus-prod-data2")));
    assert.ok(!deps("milvus-prod-data1").some((d) => d.includes("AgentPool")));
    assert.ok(deps("milvus-prod-aksManagedAutoUpgradeSchedule").includes(urn("milvus-prod-data3")));
    assert.ok(
      deps("milvus-prod-aksManagedNodeOSUpgradeSchedule").includes(
        urn("milvus-prod-aksManagedAutoUpgradeSchedule"),
      ),
    );
  });

  it("makes every Kubernetes object wait for all pools through the provider", () => {
    const provider = named(prod, "milvus-prod-k8s");
    for (const pool of ["data1", "data2", "data3"]) {
      assert.ok(provider.options.dependencies.includes(named(prod, `milvus-prod-${pool}`).options.urn), pool);
    }
    const k8sObjects = prod.resources.filter((r) => r.type.startsWith("kubernetes:"));
    assert.ok(k8sObjects.length > 20);
  });

  it("poolCount keeps the live count inside [minCount, maxCount]", () => {
    assert.equal(poolCount({ minCount: 2, maxCount: 6 }, undefined), 2);
    assert.equal(poolCount({ minCount: 2, maxCount: 6 }, 1), 2);
    assert.equal(poolCount({ minCount: 2, maxCount: 6 }, 4), 4);
    assert.equal(poolCount({ minCount: 2, maxCount: 6 }, 9), 6);
  });

  it("sends the live count, lifted to a raised minCount (the failover raises dr's minCount)", async () => {
    const dr = await renderStack("dr", {
      overrides: { "milvus-aks:nodePools": { data: { minCount: 2, maxCount: 6 } } },
      livePools: { system: 4, data1: 1, data2: 3, data3: 1 },
    });
    const counts = ofType(dr, "containerservice:AgentPool").map((p) => [
      p.inputs.agentPoolName,
      p.inputs.count,
    ]);
    assert.deepEqual(counts, [
      ["data1", 2],
      ["data2", 3],
      ["data3", 2],
    ]);
    const [cluster] = ofType(dr, "containerservice:ManagedCluster");
    assert.ok(cluster);
    assert.equal((cluster.inputs.agentPoolProfiles as Obj[])[0]?.count, 4);
    for (const p of ofType(dr, "containerservice:AgentPool")) assert.deepEqual(p.options.ignoreChanges, []);
    // A first deployment (no pools yet) starts every pool at its minimum.
    assert.deepEqual(
      ofType(prod, "containerservice:AgentPool").map((p) => p.inputs.count),
      [2, 2, 2],
    );
  });
});

describe("global Azure names and regions", () => {
  it("derives storage and registry names that fit Azure's rules and differ between deployers", () => {
    const a = globalName("milvusbk", "prod", SUBSCRIPTION);
    const b = globalName("milvusbk", "prod", "11111111-2222-3333-4444-555555555555");
    assert.notEqual(a, b);
    assert.equal(a, globalName("milvusbk", "prod", SUBSCRIPTION.toUpperCase()));
    const long = globalName("milvusdata", "a-very-long-stack-name-for-testing", SUBSCRIPTION);
    for (const name of [a, b, long]) {
      // "Naming rules and restrictions for Azure resources": storage accounts 3-24, lower case and digits.
      assert.match(name, /^[a-z0-9]{3,24}$/);
    }
    // Truncation shortens the stack part, never the suffix: two long stacks still get distinct names.
    assert.equal(long.length, 24);
    assert.notEqual(long, globalName("milvusdata", "a-very-long-stack-name-for-testing-2", SUBSCRIPTION));
    assert.match(globalName("milvusacr", "prod", SUBSCRIPTION, 50), /^[a-z0-9]{5,50}$/);
  });

  it("names and exports every global name with the deployer's suffix", async () => {
    const prod = await renderStack("prod");
    const suffix = globalName("x", "prod", SUBSCRIPTION).slice(-6);
    assert.deepEqual(
      ofType(prod, "storage:StorageAccount").map((a) => a.inputs.accountName),
      [`milvusbkprod${suffix}`],
    );
    assert.deepEqual(
      ofType(prod, "containerregistry:Registry").map((a) => a.inputs.registryName),
      [`milvusacrprod${suffix}`],
    );
    assert.equal(prod.outputs.backupAccountName, `milvusbkprod${suffix}`);
    assert.equal(prod.outputs.backupRegistryName, `milvusacrprod${suffix}`);
    assert.equal(prod.outputs.milvusStorageAccountName, "");
  });

  it("accepts only regions with RA-GZRS for the backup account", () => {
    assert.ok(GZRS_REGIONS.includes("westeurope") && GZRS_REGIONS.includes("northeurope"));
    assert.deepEqual(configErrors({ ...validProd() }), []);
    const errors = configErrors({ ...validProd(), location: "italynorth" });
    assert.deepEqual(
      errors.map((e) => e.propertyPath),
      ["location"],
    );
    assert.match(
      errors[0]?.reason ?? "",
      /location = "italynorth" is invalid: expected a region with geo-zone-redundant storage/,
    );
  });
});

describe("cluster access per environment", () => {
  it("gives prod and dr an admin group of their own, apart from dev and staging", async () => {
    const groups = async (stack: string) => (await renderStack(stack)).config.adminGroupObjectIds;
    const production = [...(await groups("prod")), ...(await groups("dr"))];
    const preProduction = [...(await groups("dev")), ...(await groups("staging"))];
    assert.ok(production.length > 0 && preProduction.length > 0);
    // Whoever administers dev or staging (and the PR preview identity, which may join that group)
    // must not be cluster-admin on prod through a shared group.
    assert.deepEqual(
      production.filter((g) => preProduction.includes(g)),
      [],
    );
  });
});

describe("role assignments", () => {
  it("pins the built-in role GUIDs of the Azure built-in roles reference", () => {
    assert.deepEqual(BUILTIN_ROLES, {
      networkContributor: "4d97b98b-1d4f-4787-a291-c67834d212e7",
      reader: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
      storageBlobDataOwner: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
      storageBlobDataContributor: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
      storageBlobDataReader: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
      aksRbacClusterAdmin: "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
      aksRbacReader: "7f6c6a51-bcf8-42ba-9220-52d62157d7db",
      aksClusterUser: "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
      acrPull: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
      keyVaultCryptoServiceEncryptionUser: "e147488a-f6f5-4113-8e2d-b22465e65bf6",
      keyVaultCryptoOfficer: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
    });
  });

  it("names each assignment by a UUIDv5 of scope, role and principal", () => {
    const n = roleAssignmentName("/subscriptions/s/x", BUILTIN_ROLES.acrPull, "P");
    assert.equal(n, roleAssignmentName("/subscriptions/S/X", BUILTIN_ROLES.acrPull, "p"));
    assert.notEqual(n, roleAssignmentName("/subscriptions/s/x", BUILTIN_ROLES.reader, "P"));
    assert.match(n, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(
      n,
      uuidv5(`/subscriptions/s/x|${BUILTIN_ROLES.acrPull}|p`, "5d0c8f47-63b1-4f7e-9b0e-4a0f6f2f7a11"),
    );
  });

  it("keys admin assignments by group, so removing one group leaves the others alone", async () => {
    const groups = ["9b3e7d21-4c6a-4f08-8e5d-7a2b1c9f0e34", "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"];
    const both = await renderStack("prod", { overrides: { "milvus-aks:adminGroupObjectIds": groups } });
    const second = await renderStack("prod", {
      overrides: { "milvus-aks:adminGroupObjectIds": [groups[1]] },
    });
    const admins = (r: RenderResult) =>
      ofType(r, "authorization:RoleAssignment")
        .filter((a) => String(a.inputs.roleDefinitionId).endsWith(BUILTIN_ROLES.aksRbacClusterAdmin))
        .map((a) => [a.name, a.inputs.roleAssignmentName]);
    const [, kept] = admins(both);
    assert.ok(kept);
    assert.deepEqual(admins(second), [kept]);
    assert.equal(kept[0], `milvus-prod-rbac-admin-${groups[1] ?? ""}`);
    for (const a of ofType(both, "authorization:RoleAssignment")) {
      assert.match(String(a.inputs.roleAssignmentName), /^[0-9a-f-]{36}$/, a.name);
    }
  });
});

describe("maintenance windows", () => {
  it("staggers environments: dev, then staging, then prod two days later, dr on its own day", () => {
    assert.deepEqual(MAINTENANCE_DAYS, {
      dev: "Monday",
      staging: "Tuesday",
      prod: "Thursday",
      dr: "Saturday",
    });
    const idx = (e: keyof typeof MAINTENANCE_DAYS) => WEEKDAYS.indexOf(MAINTENANCE_DAYS[e]);
    assert.ok(idx("staging") + 2 <= idx("prod"));
    assert.equal(new Set(Object.values(MAINTENANCE_DAYS)).size, 4);
  });

  it("sizes each window for the pools' worst-case upgrade", async () => {
    // prod: system pool 5 nodes at 33% surge = 3 batches; 3 data pools of 6 nodes, 1 at a time = 18;
    // each batch 10 min new node + 40 min drain + 5 min soak.
    const prod = await renderStack("prod");
    assert.equal(upgradeMinutesEstimate(prod.config.nodePools, 3, 40), 21 * 55);
    assert.equal(prod.config.maintenance.durationHours, 20);
    const dev = await renderStack("dev");
    assert.equal(upgradeMinutesEstimate(dev.config.nodePools, 1, 40), 4 * 55);
    assert.equal(dev.config.maintenance.durationHours, 4);
    const tooShort = configErrors({ ...validProd(), maintenance: { durationHours: 8 } });
    assert.deepEqual(
      tooShort.map((e) => e.propertyPath),
      ["maintenance.durationHours"],
    );
    assert.match(
      tooShort[0]?.reason ?? "",
      /expected at least 20 hours: an upgrade of this cluster can take 19\.3 h/,
    );
    const tooBig = configErrors({
      ...validProd(),
      nodePools: { data: { vmSize: "Standard_E16ds_v5", minCount: 2, maxCount: 10, osDiskSizeGB: 256 } },
    });
    // A 24 h window (the longest AKS allows) also swallows the daily backup: both are reported.
    assert.deepEqual(
      tooBig.map((e) => e.propertyPath),
      ["nodePools.data.maxCount", "backup.schedule"],
    );
    assert.match(tooBig[0]?.reason ?? "", /inside one 24 h maintenance window \(estimated 30\.3 h/);
  });

  it("rejects a schedule whose only backup of a day starts inside or within 2 h of the window", () => {
    const window = { day: "Thursday", startHourUtc: 4, durationHours: 20 } as const;
    assert.deepEqual(backupsInMaintenance("0 2 * * *", window), []);
    assert.deepEqual(backupsInMaintenance("30 2 * * *", window), ["Thursday 02:30"]);
    assert.deepEqual(backupsInMaintenance("0 12 * * *", window), ["Thursday 12:00"]);
    assert.deepEqual(backupsInMaintenance("0 */6 * * 4", window), [
      "Thursday 06:00",
      "Thursday 12:00",
      "Thursday 18:00",
    ]);
    // A window that wraps past Saturday midnight into Sunday.
    const wrap = { day: "Saturday", startHourUtc: 20, durationHours: 8 } as const;
    assert.deepEqual(backupsInMaintenance("0 1 * * 0", wrap), ["Sunday 01:00"]);
    const errors = configErrors({ ...validProd(), backup: { schedule: "0 6 * * *" } });
    assert.deepEqual(
      errors.map((e) => e.propertyPath),
      ["backup.schedule"],
    );
    assert.match(errors[0]?.reason ?? "", /that day's only backups and clash: Thursday 06:00/);
    // A six-hourly schedule keeps Thursday 00:00 outside the window: accepted, its other runs only wait.
    assert.deepEqual(backupDaysLost("0 */6 * * *", window), []);
    assert.deepEqual(configErrors({ ...validProd(), backup: { schedule: "0 */6 * * *" } }), []);
  });
});
