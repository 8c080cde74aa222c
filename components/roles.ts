import * as pulumi from "@pulumi/pulumi";
import * as authorization from "@pulumi/azure-native/authorization";

/** Built-in Azure role definition ids (stable GUIDs, https://learn.microsoft.com/azure/role-based-access-control/built-in-roles). */
export const BUILTIN_ROLES = {
  networkContributor: "4d97b98b-1d4f-4787-a291-c67834d212e7",
  storageBlobDataContributor: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
  storageBlobDataReader: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
  aksRbacClusterAdmin: "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
  aksClusterUser: "4abbcc35-e782-43d8-92c5-2d3c1bd2ad53",
  acrPull: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
} as const;

/** Full resource id of a built-in role in the current subscription. */
export function roleDefinitionId(roleGuid: string): pulumi.Output<string> {
  const client = authorization.getClientConfigOutput();
  return pulumi.interpolate`/subscriptions/${client.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${roleGuid}`;
}
