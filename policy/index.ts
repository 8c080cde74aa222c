import * as path from "node:path";
import { PolicyPack, Policies, ReportViolation } from "@pulumi/policy";
import { StackResource } from "./common";
import {
  enforcementFor,
  environmentOfStack,
  POLICY_PACK_NAME,
  policyDefinitions,
  STACK_ENV_VAR,
} from "./policies";

/**
 * Entry point the Pulumi CLI loads for `pulumi preview|up --policy-pack policy`. Which stack is being
 * checked is not visible to a @pulumi/policy pack, so CI (and people) set MILVUS_AKS_STACK=<stack>;
 * the pack reads that stack's `milvus-aks:environment` and enforces mandatory for staging, prod and dr,
 * advisory for dev. Without it every policy is mandatory: a forgotten variable must not weaken prod.
 */

const resolved = environmentOfStack(process.env[STACK_ENV_VAR], path.resolve(__dirname, ".."));
const environment = "environment" in resolved ? resolved.environment : undefined;
const enforcementLevel = enforcementFor(environment);
if ("reason" in resolved) {
  // stdout belongs to the analyzer handshake (the gRPC port); diagnostics go to stderr.
  console.error(`milvus-aks policy pack: ${resolved.reason}; enforcing every policy as mandatory.`);
}

const policies: Policies = policyDefinitions(false).map((p) =>
  p.scope === "resource"
    ? {
        name: p.name,
        description: p.description,
        validateResource: (args, report: ReportViolation) => {
          for (const message of p.check(args.type, args.props)) report(message);
        },
      }
    : {
        name: p.name,
        description: p.description,
        validateStack: (args, report: ReportViolation) => {
          const resources: StackResource[] = args.resources.map((r) => ({
            type: r.type,
            name: r.urn,
            props: r.props,
          }));
          for (const v of p.check(resources)) report(v.message, v.resource);
        },
      },
);

new PolicyPack(POLICY_PACK_NAME, {
  description: `Production properties of milvus-aks (environment ${environment ?? "unknown"}: ${enforcementLevel}).`,
  enforcementLevel,
  policies,
});
