/**
 * The three kinds of values the stack config takes from libraries instead of hand-written parsers:
 * cron schedules (backup/schedule.ts, cron-parser), Kubernetes quantities (decimal.js and apimachinery's
 * suffix table) and IPv4 CIDR blocks (ipaddr.js). Every accepted form has a broken neighbour that is
 * refused, with the reason.
 */
import * as assert from "node:assert/strict";
import { backupStaleAfterSeconds, maxCronIntervalSeconds } from "../components/monitoring/alertRules";
import {
  backupsInMaintenance,
  checkQuantity,
  compareQuantities,
  isValidCron,
  WEEKDAYS,
  type MaintenanceConfig,
} from "../components/common/config";
import { checkCron, cronRuns, nextRun, parseCron, scheduleLoop } from "../backup/schedule";
import { Log } from "../backup/log";
import { configErrors, validProd } from "./support/config";

const reasonOf = (expr: string) => {
  const r = checkCron(expr);
  return r.ok ? "accepted" : r.reason;
};

describe("cron schedules: what a Kubernetes CronJob accepts (backup/schedule.ts)", function () {
  it("accepts names, ? and the macros, and reads them as their numeric forms", function () {
    // [schedule, its numeric equivalent]: both accepted, same runs.
    const same: [string, string][] = [
      ["0 2 * * SUN", "0 2 * * 0"],
      ["0 2 * * sun", "0 2 * * 0"],
      ["0 2 * * ?", "0 2 * * *"],
      ["0 2 ? * MON-FRI", "0 2 * * 1-5"],
      ["30 1 * JAN,jul *", "30 1 * 1,7 *"],
      ["@daily", "0 0 * * *"],
      ["@midnight", "0 0 * * *"],
      ["@weekly", "0 0 * * 0"],
      ["@monthly", "0 0 1 * *"],
      ["@yearly", "0 0 1 1 *"],
      ["@annually", "0 0 1 1 *"],
      ["@hourly", "0 * * * *"],
      // A value listed twice is fine for Kubernetes (cron-parser alone refuses it).
      ["0-10,5 2 * * *", "0-10 2 * * *"],
      // "*/1" is "every" for Kubernetes: with a restricted day of week only that day runs.
      ["0 0 */1 * 1", "0 0 * * 1"],
    ];
    const from = new Date("2026-11-25T12:34:00Z");
    for (const [expr, numeric] of same) {
      assert.equal(reasonOf(expr), "accepted", expr);
      assert.equal(isValidCron(expr), true, expr);
      const runs = (e: string) => {
        const c = parseCron(e);
        let t = from;
        return Array.from({ length: 5 }, () => (t = nextRun(c, t)).toISOString());
      };
      assert.deepEqual(runs(expr), runs(numeric), expr);
    }
  });

  it("refuses day of week 7: Kubernetes' parser (robfig/cron v3.0.1) stops at 6", function () {
    // robfig/cron v3.0.1 spec.go: dow = bounds{0, 6, ...}; the API server answers
    // "end of range (7) above maximum (6): 7". Sunday is 0 or SUN.
    const seven = "day of week 7 is out of range 0-6 (Kubernetes has no 7 for Sunday: use 0 or SUN)";
    assert.equal(reasonOf("0 2 * * 7"), seven);
    assert.equal(reasonOf("0 2 * * 5-7"), seven);
    assert.equal(reasonOf("0 2 * * 0"), "accepted");
    assert.equal(reasonOf("0 2 * * 5-6"), "accepted");
  });

  it("refuses everything else with the field, the value and the range", function () {
    const cases: [string, string][] = [
      ["0 25 * * *", "hour 25 is out of range 0-23"],
      ["61 * * * *", "minute 61 is out of range 0-59"],
      ["0 2 32 * *", "day of month 32 is out of range 1-31"],
      ["0 2 0 * *", "day of month 0 is out of range 1-31"],
      ["0 2 * 13 *", "month 13 is out of range 1-12"],
      ["5-2 * * * *", "minute range 5-2 starts after it ends"],
      ["*/0 * * * *", 'minute step 0 in "*/0" must be 1 or more'],
      ["x * * * *", 'minute "x" is not a number, range, list or step'],
      ["0 2 * * MONDAY", 'day of week "MONDAY" is not a number, name (SUN-SAT), range, list or step'],
      [
        "0 2 * * 5L",
        `day of week "5L" is not a number, name (SUN-SAT), range, list or step (Kubernetes' cron has no H, L, W or #)`,
      ],
      ["H 2 * * *", `minute "H" is not a number, range, list or step (Kubernetes' cron has no H, L, W or #)`],
      [
        "@every 1h",
        '@every is not accepted here: its run times depend on when the CronJob was created, not on the clock, so the maintenance-window check and the stale-backup alert cannot be derived from it; write the interval as five fields, e.g. "0 */6 * * *"',
      ],
      [
        "@reboot",
        '"@reboot" is not a schedule macro Kubernetes knows: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly',
      ],
      [
        "TZ=UTC 0 2 * * *",
        'it names a time zone: Kubernetes refuses TZ= and CRON_TZ= in a schedule ("cannot use TZ or CRON_TZ in schedule, use timeZone field instead"); schedules here are UTC',
      ],
      [
        "CRON_TZ=Europe/Paris 0 2 * * *",
        'it names a time zone: Kubernetes refuses TZ= and CRON_TZ= in a schedule ("cannot use TZ or CRON_TZ in schedule, use timeZone field instead"); schedules here are UTC',
      ],
      [
        "0 0 2 * * *",
        'it has 6 fields: expected the five-field form "minute hour day-of-month month day-of-week" (Kubernetes has no seconds field)',
      ],
      [
        "0 2 * *",
        'it has 4 fields: expected the five-field form "minute hour day-of-month month day-of-week"',
      ],
      ["0 0 30 2 *", "it never matches a date: day of month 30 does not occur in month 2"],
      ["", "it is empty"],
    ];
    for (const [expr, reason] of cases) {
      assert.equal(reasonOf(expr), reason, expr);
      assert.equal(isValidCron(expr), false, expr);
    }
  });

  it("puts the reason into the config error and the worker's usage error", function () {
    const errors = configErrors({ ...validProd(), backup: { schedule: "0 25 * * *" } });
    assert.deepEqual(
      errors.map((e) => e.reason),
      [
        'backup.schedule = "0 25 * * *" is invalid: expected a Kubernetes CronJob schedule in UTC: five fields such as "0 2 * * *" (names such as SUN or JAN allowed) or a macro such as @daily; here hour 25 is out of range 0-23. Set it with `pulumi config set --path milvus-aks:backup.schedule \'0 2 * * *\'` or in Pulumi.<stack>.yaml.',
      ],
    );
    assert.deepEqual(configErrors({ ...validProd(), backup: { schedule: "0 2 * * SUN" } }), []);
    assert.deepEqual(configErrors({ ...validProd(), backup: { schedule: "@daily" } }), []);
    assert.throws(
      () => parseCron("0 2 * * 7"),
      (e: Error) =>
        e.message ===
        '--cron "0 2 * * 7" is not a valid cron expression: day of week 7 is out of range 0-6 (Kubernetes has no 7 for Sunday: use 0 or SUN). Expected 5 fields, e.g. "0 2 * * *" (02:00 UTC daily)',
    );
  });

  it("gives the worker's loop the runs the config validation checks against the maintenance window", async function () {
    // Each day's 24 h window (and the 2 h lead before it) catches that day's runs: the union over the
    // week is every run the validation sees, which must be the runs the worker's loop sleeps until.
    const week = (expr: string) =>
      [
        ...new Set(
          WEEKDAYS.flatMap((day) =>
            backupsInMaintenance(expr, { day, startHourUtc: 0, durationHours: 24 } as MaintenanceConfig),
          ),
        ),
      ].sort();
    const sunday = new Date(Date.UTC(2026, 0, 4));
    const label = (d: Date) => `${WEEKDAYS[d.getUTCDay()] ?? ""} ${d.toISOString().slice(11, 16)}`;
    for (const expr of [
      "0 2 * * *",
      "0 2 * * SUN",
      "@daily",
      "0 */6 * * 1-5",
      "15 3 1,15 * 3",
      "0 22 * * SAT",
    ]) {
      const cron = parseCron(expr);
      const worker: string[] = [];
      for (let t = new Date(sunday.getTime() - 1); ; ) {
        t = nextRun(cron, t);
        if (t.getTime() >= sunday.getTime() + 7 * 24 * 3600_000) break;
        worker.push(label(t));
      }
      assert.ok(worker.length > 0, expr);
      assert.deepEqual(week(expr), [...new Set(worker)].sort(), expr);
    }
    // A wrong run time would show: "0 2 * * SUN" runs on Sunday only.
    assert.deepEqual(week("0 2 * * SUN"), ["Sunday 02:00"]);

    // The loop itself sleeps until nextRun's time (it logs it before sleeping), and stops on the
    // abort signal the CLI passes it.
    const lines: string[] = [];
    const stop = new AbortController();
    const now = new Date("2026-11-25T12:00:00Z"); // a Wednesday
    const loop = scheduleLoop(
      parseCron("0 2 * * SUN"),
      { now: () => now, run: () => Promise.resolve() },
      new Log({ write: (s) => (lines.push(s), true) }),
      [],
      { signal: stop.signal, stopWhenOrphaned: false },
    );
    stop.abort();
    await loop;
    const events = lines.map((l) => JSON.parse(l) as { event: string; at?: string });
    assert.deepEqual(
      events.map((e) => e.event),
      ["schedule.next", "schedule.stopping", "schedule.stopped"],
    );
    assert.equal(events[0]?.at, "2026-11-29T02:00:00.000Z");
    assert.equal(
      events[0]?.at,
      cronRuns(parseCron("0 2 * * 0"), now, new Date("2027-01-01T00:00:00Z"))[0]?.toISOString(),
    );
  });

  it("derives the same stale-backup threshold for a schedule and its numeric form", function () {
    const grace = 7 * 3600;
    const stale = (schedule: string) =>
      backupStaleAfterSeconds({
        namespace: "milvus",
        cronJobName: "milvus-backup",
        schedule,
        graceSeconds: grace,
      });
    assert.equal(stale("@daily"), stale("0 0 * * *"));
    assert.equal(stale("@daily"), 24 * 3600 + grace);
    assert.equal(stale("0 2 * * SUN"), stale("0 2 * * 0"));
    assert.equal(stale("0 2 * * SUN"), 7 * 24 * 3600 + grace);
    assert.equal(stale("@weekly"), 7 * 24 * 3600 + grace);
    assert.equal(stale("@monthly"), 31 * 24 * 3600 + grace);
    assert.equal(stale("0 2 * * MON-FRI"), 3 * 24 * 3600 + grace); // Friday 02:00 to Monday 02:00
    // "*/1" is "every day": Monday only, a week, as Kubernetes runs it (not every day, as "OR" would be).
    assert.equal(maxCronIntervalSeconds("0 0 */1 * 1"), 7 * 24 * 3600);
    assert.throws(() => maxCronIntervalSeconds("0 2 * * 7"), /day of week 7 is out of range 0-6/);
    assert.throws(() => maxCronIntervalSeconds("@every 24h"), /@every is not accepted here/);
    // The threshold is the longest gap between the worker's own consecutive runs.
    for (const expr of ["0 2 * * *", "0 1,13 * * 1-5", "0 3 1 * *", "*/20 9-17 * * MON-FRI"]) {
      const cron = parseCron(expr);
      let t = new Date("2027-01-01T00:00:00Z");
      let longest = 0;
      for (let i = 0; i < 400; i++) {
        const n = nextRun(cron, t);
        if (i > 0) longest = Math.max(longest, (n.getTime() - t.getTime()) / 1000);
        t = n;
      }
      assert.equal(maxCronIntervalSeconds(expr), longest, expr);
    }
  });
});

describe("Kubernetes quantities (decimal.js with apimachinery's suffixes)", function () {
  const value = (q: string) => {
    const r = checkQuantity(q);
    assert.ok(r.ok, `${q}: ${r.ok ? "" : r.reason}`);
    return r.value.toString();
  };

  it("compares across suffixes and forms, exactly", function () {
    assert.ok(compareQuantities("500m", "1") < 0);
    assert.ok(compareQuantities("1", "500m") > 0);
    assert.ok(compareQuantities("1Gi", "1G") > 0);
    assert.ok(compareQuantities("1G", "1Gi") < 0);
    assert.equal(compareQuantities("1e3", "1k"), 0);
    assert.equal(compareQuantities("0.5Gi", "512Mi"), 0);
    assert.equal(compareQuantities("700m", "0.7"), 0); // 0.7000000000000001 in floating point
    assert.ok(compareQuantities("9007199254740993", "9007199254740992") > 0); // 2^53 + 1: beyond doubles
    assert.equal(compareQuantities("1000000n", "1m"), 0);
    assert.equal(compareQuantities("1000u", "1m"), 0);
    assert.equal(compareQuantities(".5", "500m"), 0);
    assert.equal(compareQuantities("1.", "1"), 0);
    assert.equal(compareQuantities("+2", "2"), 0);
    assert.equal(compareQuantities("1E3", "1k"), 0); // an exponent: "E3" is not a suffix
    assert.equal(value("1E"), "1000000000000000000"); // "E" alone is exa
    assert.equal(value("2Ei"), (2n ** 61n).toString());
    assert.equal(value("1e-3"), "0.001");
    assert.equal(value("32Gi"), String(32 * 1024 ** 3));
  });

  it("refuses what Kubernetes refuses, with the reason", function () {
    const reason = (q: string) => {
      const r = checkQuantity(q);
      return r.ok ? "accepted" : r.reason;
    };
    const suffixes = "n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, or an exponent such as e3";
    assert.equal(reason("8GB"), `the suffix "GB" of "8GB" is not one of Kubernetes' (${suffixes})`);
    assert.equal(reason("1K"), `the suffix "K" of "1K" is not one of Kubernetes' (${suffixes})`);
    assert.equal(reason("1mi"), `the suffix "mi" of "1mi" is not one of Kubernetes' (${suffixes})`);
    assert.equal(
      reason("1e3k"),
      `"1e3k" is not a number Kubernetes reads (digits, an optional sign and fraction, then ${suffixes})`,
    );
    assert.equal(
      reason("1e1.5"),
      `"1e1.5" is not a number Kubernetes reads (digits, an optional sign and fraction, then ${suffixes})`,
    );
    assert.equal(
      reason("1.2.3"),
      `"1.2.3" is not a number Kubernetes reads (digits, an optional sign and fraction, then ${suffixes})`,
    );
    assert.equal(
      reason("1.2.3Gi"),
      `"1.2.3Gi" is not a number Kubernetes reads (digits, an optional sign and fraction, then ${suffixes})`,
    );
    assert.equal(reason("Gi"), '"Gi" does not start with a number');
    assert.equal(reason(""), '"" does not start with a number');
    assert.equal(reason(" 1"), '" 1" does not start with a number');
    assert.equal(reason("Infinity"), '"Infinity" does not start with a number');
    assert.equal(
      reason("0x10"),
      `"0x10" is not a number Kubernetes reads (digits, an optional sign and fraction, then ${suffixes})`,
    );
  });

  it("checks requests against limits in the stack config across suffixes", function () {
    const sizing = (requests: Record<string, string>, limits: Record<string, string>) =>
      configErrors({ ...validProd(), milvus: { dataNode: { requests, limits } } }).map((e) => e.reason);
    assert.deepEqual(sizing({ cpu: "500m", memory: "0.5Gi" }, { cpu: "1", memory: "512Mi" }), []);
    assert.deepEqual(sizing({ cpu: "700m", memory: "1e9" }, { cpu: "0.7", memory: "1G" }), []);
    assert.deepEqual(sizing({ cpu: "1", memory: "1Gi" }, { cpu: "1", memory: "1G" }), [
      'milvus.dataNode.requests.memory = "1Gi" is invalid: expected no more than milvus.dataNode.limits.memory (1G). Kubernetes rejects requests above limits.',
    ]);
    assert.deepEqual(sizing({ cpu: "1001m", memory: "1Gi" }, { cpu: "1", memory: "1Gi" }), [
      'milvus.dataNode.requests.cpu = "1001m" is invalid: expected no more than milvus.dataNode.limits.cpu (1). Kubernetes rejects requests above limits.',
    ]);
    assert.deepEqual(sizing({ cpu: "2", memory: "8GB" }, { cpu: "2", memory: "8Gi" }), [
      'milvus.dataNode.requests.memory = "8GB" is invalid: expected a memory quantity such as "8Gi"; the suffix "GB" of "8GB" is not one of Kubernetes\' (n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, or an exponent such as e3). Set it with `pulumi config set --path milvus-aks:milvus.dataNode.requests.memory 16Gi` or in Pulumi.<stack>.yaml.',
    ]);
    assert.deepEqual(sizing({ cpu: "-1", memory: "8Gi" }, { cpu: "2", memory: "8Gi" }), [
      'milvus.dataNode.requests.cpu = "-1" is invalid: expected a CPU quantity such as "2" or "500m"; Kubernetes rejects negative requests and limits. Set it with `pulumi config set --path milvus-aks:milvus.dataNode.requests.cpu 4` or in Pulumi.<stack>.yaml.',
    ]);
    // Query nodes need memory requests equal to limits: equal in value, in any form.
    const queryNode = (requests: string, limits: string) =>
      configErrors({
        ...validProd(),
        milvus: { queryNode: { requests: { memory: requests }, limits: { memory: limits } } },
      }).map((e) => e.propertyPath);
    assert.deepEqual(queryNode("32Gi", "32768Mi"), []);
    assert.deepEqual(queryNode("32G", "32Gi"), ["milvus.queryNode.requests.memory"]);
  });
});

describe("IPv4 CIDR blocks (ipaddr.js)", function () {
  const network = (n: Record<string, string>) =>
    configErrors({ ...validProd(), network: n }).map(
      (e) => `${e.propertyPath}: ${e.reason.split(" is invalid: expected ")[1]?.split(". ")[0] ?? ""}`,
    );

  it("accepts the defaults and ranges that only touch", function () {
    assert.deepEqual(network({}), []);
    // The endpoint subnet starts right after the node subnet ends (10.10.15.255 / 10.10.16.0).
    assert.deepEqual(network({ nodeSubnetCidr: "10.10.0.0/20", endpointSubnetCidr: "10.10.16.0/32" }), []);
    // A subnet as large as the VNet is inside it; a host address with its prefix names its block.
    assert.deepEqual(
      network({
        vnetCidr: "10.10.0.0/16",
        nodeSubnetCidr: "10.10.0.0/17",
        endpointSubnetCidr: "10.10.255.0/24",
      }),
      [],
    );
    assert.deepEqual(network({ nodeSubnetCidr: "10.10.1.0/20" }), []);
    // Service range right after the VNet; DNS on the service range's last address.
    assert.deepEqual(network({ serviceCidr: "10.11.0.0/16", dnsServiceIp: "10.11.255.255" }), []);
  });

  it("refuses overlaps and escapes, including by one address and by nesting either way", function () {
    assert.deepEqual(network({ nodeSubnetCidr: "10.10.0.0/20", endpointSubnetCidr: "10.10.15.255/32" }), [
      "network.endpointSubnetCidr: a range that does not overlap network.nodeSubnetCidr (10.10.0.0/20)",
    ]);
    // Node subnet /15 reaches past the /16 VNet (and so covers the endpoint subnet too).
    assert.deepEqual(network({ nodeSubnetCidr: "10.10.0.0/15" }), [
      "network.nodeSubnetCidr: a range inside network.vnetCidr (10.10.0.0/16)",
      "network.endpointSubnetCidr: a range that does not overlap network.nodeSubnetCidr (10.10.0.0/15)",
    ]);
    assert.deepEqual(network({ endpointSubnetCidr: "10.11.0.0/24" }), [
      "network.endpointSubnetCidr: a range inside network.vnetCidr (10.10.0.0/16)",
    ]);
    // A pod range that contains the VNet overlaps it; so does one inside it.
    assert.deepEqual(network({ podCidr: "10.0.0.0/8" }), [
      "network.podCidr: a range outside network.vnetCidr (10.10.0.0/16)",
    ]);
    assert.deepEqual(network({ serviceCidr: "10.10.128.0/24", dnsServiceIp: "10.10.128.10" }), [
      "network.serviceCidr: a range outside network.vnetCidr (10.10.0.0/16)",
    ]);
    assert.deepEqual(network({ podCidr: "0.0.0.0/0" }), [
      "network.podCidr: a range outside network.vnetCidr (10.10.0.0/16)",
    ]);
    assert.deepEqual(network({ dnsServiceIp: "10.101.0.0" }), [
      "network.dnsServiceIp: an address inside network.serviceCidr (10.100.0.0/16)",
    ]);
  });

  it("refuses what is not an IPv4 CIDR or address", function () {
    for (const bad of [
      "10.10.0.0/33",
      "300.1.1.1/16",
      "10.10/16",
      "010.10.0.0/16",
      "10.10.0.0",
      "fd00::/8",
    ]) {
      assert.deepEqual(
        network({ vnetCidr: bad, nodeSubnetCidr: "10.10.0.0/20" }),
        ["network.vnetCidr: an IPv4 CIDR such as 10.10.0.0/16"],
        bad,
      );
    }
    for (const bad of ["10.100.0.256", "10.100.10", "10.100.0.10/32"]) {
      assert.deepEqual(network({ dnsServiceIp: bad }), ["network.dnsServiceIp: an IPv4 address"], bad);
    }
  });
});
