import * as pulumi from "@pulumi/pulumi";
import * as features from "@pulumi/azure-native/features";

/**
 * A subscription feature's registration state (Microsoft.Features subscriptionFeatureRegistrations,
 * API 2021-07-01: NotRegistered, Pending, Registering, Registered, Unregistering, Unregistered). A
 * feature the subscription never asked for may answer 404 instead of a state; that is NotRegistered.
 */
export function featureRegistrationState(
  providerNamespace: string,
  featureName: string,
): pulumi.Output<string> {
  return pulumi.output(
    (async () => {
      try {
        const reg = await features.getSubscriptionFeatureRegistration({ providerNamespace, featureName });
        return reg.properties.state ?? "NotRegistered";
      } catch (err) {
        if (/\b404\b|NotFound/.test(String(err))) return "NotRegistered";
        throw err;
      }
    })(),
  );
}

/** The message for a feature a setting needs but the subscription has not registered. */
export function unregisteredFeatureMessage(
  setting: string,
  providerNamespace: string,
  featureName: string,
  state: string,
  why: string,
): string {
  return (
    `${setting} is true, but the subscription's ${providerNamespace}/${featureName} feature is ${state}: ${why} ` +
    `Register it once per subscription: \`az feature register --namespace ${providerNamespace} --name ${featureName}\`, ` +
    `wait until \`az feature show --namespace ${providerNamespace} --name ${featureName} --query properties.state\` says Registered, ` +
    `then \`az provider register -n ${providerNamespace}\` and run \`pulumi preview\` again; or set ${setting} to false.`
  );
}

/**
 * True once Microsoft.Compute/EncryptionAtHost is registered; fails the preview with the commands to
 * run otherwise, before any resource changes. AKS still documents the registration as a prerequisite
 * ("Host-based encryption on AKS"), and a pool asking for encryption at host in a subscription
 * without it fails only when AKS creates the pool, halfway through an `up`.
 */
export function encryptionAtHostReady(enabled: boolean): pulumi.Output<boolean> {
  if (!enabled) return pulumi.output(false);
  const ns = "Microsoft.Compute";
  const name = "EncryptionAtHost";
  return featureRegistrationState(ns, name).apply((state) => {
    if (state !== "Registered") {
      throw new Error(
        unregisteredFeatureMessage(
          "security.encryption.atHost",
          ns,
          name,
          state,
          "AKS refuses node pools with encryption at host in such a subscription.",
        ),
      );
    }
    return true;
  });
}
