/**
 * Pins "today" for every test (and the renders they spawn): Kubernetes version lifecycles are judged
 * against the AKS calendar at this date, so the suite gives the same answer on any day. Tests of the
 * calendar itself pass their own dates.
 */
export const TEST_TODAY = "2026-11-27";
process.env.MILVUS_AKS_TODAY ??= TEST_TODAY;
