import * as pulumi from "@pulumi/pulumi";
import * as network from "@pulumi/azure-native/network";

export interface NetworkArgs {
  /** Resource group that holds the VNet. */
  resourceGroupName: pulumi.Input<string>;
  /** Azure region. */
  location: pulumi.Input<string>;
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

    const nodeSubnetName = "nodes";
    const endpointSubnetName = "endpoints";
    const vnet = new network.VirtualNetwork(
      `${name}-vnet`,
      {
        resourceGroupName: args.resourceGroupName,
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
