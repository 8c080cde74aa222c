import { list, num, Props, record, StackResource, str, Violation } from "./common";

/** AKS: Standard tier, autoscaled pools with sane bounds, every pool spread over the region's zones. */

export const MANAGED_CLUSTER = "azure-native:containerservice:ManagedCluster";
export const AGENT_POOL = "azure-native:containerservice:AgentPool";
/** Zones a production cluster must span: all three of a region's availability zones (AKS "Availability zones"). */
export const REQUIRED_ZONES = ["1", "2", "3"];
/** Tiers with the uptime SLA; "Free" has none. */
const SLA_TIERS = ["Standard", "Premium"];

function poolProblems(subject: string, pool: Props): string[] {
  const problems: string[] = [];
  if (pool.enableAutoScaling !== true) {
    problems.push(
      `${subject}: cluster autoscaler is off; set enableAutoScaling: true with minCount and maxCount.`,
    );
    return problems;
  }
  const min = num(pool.minCount);
  const max = num(pool.maxCount);
  if (min === undefined || max === undefined) {
    problems.push(
      `${subject}: autoscaler bounds missing (minCount ${String(pool.minCount)}, maxCount ${String(pool.maxCount)}); set both.`,
    );
  } else if (min > max || max < 1 || min < 0) {
    problems.push(
      `${subject}: autoscaler bounds minCount ${min} / maxCount ${max} are invalid; need 0 <= minCount <= maxCount and maxCount >= 1.`,
    );
  }
  return problems;
}

/** Resource check: ManagedCluster tier and inline pools, AgentPool autoscaling. */
export function aksClusterSettings(type: string, props: Props): string[] {
  if (type === MANAGED_CLUSTER) {
    const problems: string[] = [];
    const tier = str(record(props.sku).tier);
    if (tier === undefined || !SLA_TIERS.includes(tier)) {
      problems.push(
        `ManagedCluster sku.tier is ${JSON.stringify(tier ?? null)}; production clusters need "Standard" (uptime SLA, more API server capacity).`,
      );
    }
    for (const p of list(props.agentPoolProfiles)) {
      const pool = record(p);
      problems.push(...poolProblems(`node pool "${str(pool.name) ?? "?"}"`, pool));
    }
    return problems;
  }
  if (type === AGENT_POOL) {
    return poolProblems(`node pool "${str(props.agentPoolName) ?? "?"}"`, props);
  }
  return [];
}

function zonesOf(pool: Props): string[] {
  return list(pool.availabilityZones).map(String);
}

function missing(zones: string[]): string[] {
  return REQUIRED_ZONES.filter((z) => !zones.includes(z));
}

/**
 * Stack check: the system pool spans all three zones, and the user pools together cover all three
 * (one zonal pool per zone is the intended shape: zonal Premium disks pin pods to their zone).
 * Stack-level because per-zone pools are separate AgentPool resources.
 */
export function aksZoneRedundancy(resources: StackResource[]): Violation[] {
  const clusters = resources.filter((r) => r.type === MANAGED_CLUSTER);
  const pools = resources.filter((r) => r.type === AGENT_POOL);
  const violations: Violation[] = [];
  for (const cluster of clusters) {
    const inline = list(cluster.props.agentPoolProfiles).map(record);
    const systemPools = inline.filter((p) => p.mode === "System");
    if (systemPools.length === 0) {
      violations.push({ resource: cluster.name, message: "ManagedCluster has no System-mode node pool." });
    }
    for (const p of systemPools) {
      const gap = missing(zonesOf(p));
      if (gap.length > 0) {
        violations.push({
          resource: cluster.name,
          message: `system pool "${str(p.name) ?? "?"}" runs in zones [${zonesOf(p).join(", ")}], missing ${gap.join(", ")}; set availabilityZones to ["1", "2", "3"].`,
        });
      }
    }
    // Pools belong to this cluster when they name it, or when it is the only cluster in the stack.
    const clusterName = str(cluster.props.resourceName) ?? str(cluster.props.name);
    const own = pools.filter(
      (p) => clusters.length === 1 || (clusterName !== undefined && p.props.resourceName === clusterName),
    );
    const userPools = [
      ...inline.filter((p) => p.mode === "User"),
      ...own.map((p) => p.props).filter((p) => p.mode === "User"),
    ];
    if (userPools.length === 0) {
      violations.push({
        resource: cluster.name,
        message: "no User-mode node pool: workloads would land on the tainted system pool.",
      });
      continue;
    }
    const covered = [...new Set(userPools.flatMap(zonesOf))].sort();
    const gap = missing(covered);
    if (gap.length > 0) {
      violations.push({
        resource: cluster.name,
        message: `user node pools cover zones [${covered.join(", ")}], missing ${gap.join(", ")}; add a zonal pool per missing zone.`,
      });
    }
  }
  return violations;
}
