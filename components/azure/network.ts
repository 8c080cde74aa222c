import * as pulumi from "@pulumi/pulumi";
import * as network from "@pulumi/azure-native/network";
import { ENDPOINT_SUBNET_NAME, NODE_SUBNET_NAME } from "../common/naming";

export interface NetworkArgs {
  /** Resource group that holds the VNet. */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region. */
  location: pulumi.Input<string>;
  /** VNet name, fixed so a primary stack can compute this stack's node subnet id (naming.ts). @default none */
  vnetName: string;
  /** VNet address space. @default none: always from the validated stack config. */
  vnetCidr: string;
  /** Subnet for AKS nodes (Azure CNI overlay: pods use a separate, non-VNet range). @default none */
  nodeSubnetCidr: string;
  /** Subnet reserved for private endpoints (storage, registry). @default none */
  endpointSubnetCidr: string;
  /** Tags applied to every resource. @default {} */
  tags?: Record<string, string>;
}

/**
 * VNet with a node subnet and a private-endpoint subnet. Subnets are declared inline on the VNet so a
 * later `pulumi up` does not fight over them (separate Subnet resources plus inline subnets flap).
 */
export class NetworkComponent extends pulumi.ComponentResource {
  public readonly vnetId: pulumi.Output<string>;
  public readonly vnetName: pulumi.Output<string>;
  public readonly nodeSubnetId: pulumi.Output<string>;
  public readonly endpointSubnetId: pulumi.Output<string>;

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:network:Network", name, {}, opts);

    const nodeSubnetName = NODE_SUBNET_NAME;
    const endpointSubnetName = ENDPOINT_SUBNET_NAME;
    const vnet = new network.VirtualNetwork(
      `${name}-vnet`,
      {
        resourceGroupName: args.resourceGroupName,
        virtualNetworkName: args.vnetName,
        location: args.location,
        addressSpace: { addressPrefixes: [args.vnetCidr] },
        subnets: [
          {
            name: nodeSubnetName,
            addressPrefix: args.nodeSubnetCidr,
            // The storage firewall admits only this subnet, which needs the service endpoint.
            serviceEndpoints: [{ service: "Microsoft.Storage" }],
          },
          {
            name: endpointSubnetName,
            addressPrefix: args.endpointSubnetCidr,
            privateEndpointNetworkPolicies: "Enabled",
          },
        ],
        tags: args.tags,
      },
      { parent: this },
    );

    const subnetId = (subnet: string) =>
      vnet.subnets.apply((subnets) => {
        const found = (subnets ?? []).find((s) => s.name === subnet)?.id;
        return found ?? pulumi.interpolate`${vnet.id}/subnets/${subnet}`;
      });
    this.vnetId = vnet.id;
    this.vnetName = vnet.name;
    this.nodeSubnetId = pulumi.output(subnetId(nodeSubnetName));
    this.endpointSubnetId = pulumi.output(subnetId(endpointSubnetName));
    this.registerOutputs({
      vnetId: this.vnetId,
      nodeSubnetId: this.nodeSubnetId,
      endpointSubnetId: this.endpointSubnetId,
    });
  }
}

/** What ARM says about a subnet another stack owns. */
export interface LiveSubnet {
  id: string;
  /** The subnet has the Microsoft.Storage service endpoint a storage firewall rule requires. */
  storageEndpoint: boolean;
}

/**
 * The subnet as it exists now, or undefined while it does not (ARM answers 404). The storage resource
 * provider rejects a firewall rule naming a subnet without the Microsoft.Storage service endpoint
 * (NetworkAclsValidationFailure, SubnetsHaveNoServiceEndpointsConfigured: terraform-provider-azurerm
 * #16547, azure-cli #32434), so a rule may only name a subnet that exists and has it.
 */
export function liveSubnet(
  resourceGroupName: string,
  virtualNetworkName: string,
  subnetName: string,
): pulumi.Output<LiveSubnet | undefined> {
  return pulumi.output(
    network
      .getSubnet({ resourceGroupName, virtualNetworkName, subnetName })
      .then((subnet) => ({
        id: subnet.id ?? "",
        storageEndpoint: (subnet.serviceEndpoints ?? []).some((e) => e.service === "Microsoft.Storage"),
      }))
      .catch((err: unknown) => {
        // ARM answers 404 (ResourceNotFound / NotFound) for a group, VNet or subnet not there yet.
        if (/\b404\b|NotFound/.test(String(err))) return undefined;
        throw err;
      }),
  );
}
