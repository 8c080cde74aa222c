import * as pulumi from "@pulumi/pulumi";
import * as authorization from "@pulumi/azure-native/authorization";
import { v5 as uuidv5 } from "uuid";

/**
 * Built-in Azure role definition ids. These GUIDs are the same in every tenant; each one here was
 * checked against "Azure built-in roles" (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles),
 * and test/azureReality.test.ts pins them, so a mistyped GUID (which ARM rejects only at `up`) cannot come back.
 */
export const BUILTIN_ROLES = {
  networkContributor: "4d97b98b-1d4f-4787-a291-c67834d212e7",
  reader: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
  storageBlobDataOwner: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
  storageBlobDataContributor: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
  storageBlobDataReader: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
  aksRbacClusterAdmin: "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
  aksRbacReader: "7f6c6a51-bcf8-42ba-9220-52d62157d7db",
  aksClusterUser: "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
  acrPull: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
  // Wrap and unwrap with a key: what a disk encryption set's and a storage account's identity need.
  keyVaultCryptoServiceEncryptionUser: "e147488a-f6f5-4113-8e2d-b22465e65bf6",
  // Create and manage keys: what the identity running `pulumi up` needs on an RBAC-mode vault.
  keyVaultCryptoOfficer: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
} as const;
export type BuiltinRole = keyof typeof BUILTIN_ROLES;

/** Full resource id of a built-in role in the current subscription. */
export function roleDefinitionId(roleGuid: string): pulumi.Output<string> {
  const client = authorization.getClientConfigOutput();
  return pulumi.interpolate`/subscriptions/${client.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${roleGuid}`;
}

/** Namespace of this project's role-assignment names (UUIDv5, RFC 9562 §5.5). Never change it. */
const ROLE_ASSIGNMENT_NAMESPACE = "5d0c8f47-63b1-4f7e-9b0e-4a0f6f2f7a11";

/**
 * The role assignment's name, a GUID derived from what the assignment is: scope, role and principal.
 * ARM allows one assignment per (scope, role, principal) and answers a second one under another name
 * with 409 RoleAssignmentExists ("Troubleshoot Azure RBAC": "The role assignment already exists").
 * With a random name that happens whenever Pulumi loses track of an assignment (a re-import, a list
 * that shifted); with this name a re-created assignment is the same ARM resource, so the PUT succeeds.
 */
export function roleAssignmentName(scope: string, roleGuid: string, principalId: string): string {
  return uuidv5(
    `${scope.toLowerCase()}|${roleGuid.toLowerCase()}|${principalId.toLowerCase()}`,
    ROLE_ASSIGNMENT_NAMESPACE,
  );
}

export interface RoleGrant {
  /** Resource id the role applies to. */
  scope: pulumi.Input<string>;
  role: BuiltinRole;
  principalId: pulumi.Input<string>;
  /** Omitted when not known in advance (the deploying identity may be a user or a service principal). */
  principalType?: "Group" | "ServicePrincipal" | "User";
}

/**
 * One role assignment with a deterministic name. `key` names the logical resource: it must identify
 * the principal (never a list index), so removing one group from a list leaves the others untouched.
 */
export function grantRole(
  key: string,
  grant: RoleGrant,
  opts: pulumi.CustomResourceOptions,
): authorization.RoleAssignment {
  const roleGuid = BUILTIN_ROLES[grant.role];
  return new authorization.RoleAssignment(
    key,
    {
      scope: grant.scope,
      principalId: grant.principalId,
      principalType: grant.principalType,
      roleDefinitionId: roleDefinitionId(roleGuid),
      roleAssignmentName: pulumi
        .all([grant.scope, grant.principalId])
        .apply(([scope, principal]) => roleAssignmentName(scope, roleGuid, principal)),
    },
    opts,
  );
}
