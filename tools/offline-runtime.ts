import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as yaml from "js-yaml";
import { loadStackConfig, StackConfig } from "../components/config";
import { createStack } from "../components/stack";

/**
 * Runs the Pulumi program for a stack under Pulumi's documented mock runtime
 * (`pulumi.runtime.setMocks`), with no cloud credentials, and records every resource it declares.
 * Used by `npm run render` and by the tests, so both see exactly what `pulumi up` would send.
 */

export const ROOT = path.resolve(__dirname, "..");
export const PROJECT = "milvus-aks";

/** Marker Pulumi's RPC layer puts on secret values; mocks receive secrets wrapped in it. */
const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export interface RenderedResource {
  type: string;
  name: string;
  /** Inputs as the engine receives them; secret values stay wrapped (see {@link isSecretValue}). */
  inputs: Record<string, unknown>;
}

export interface RenderResult {
  stack: string;
  config: StackConfig;
  resources: RenderedResource[];
  outputs: Record<string, unknown>;
}

export function isSecretValue(v: unknown): v is { value: unknown } {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG;
}

/** Replaces secret values by "[secret]" so rendered files never contain them. */
export function redactSecrets(v: unknown): unknown {
  if (isSecretValue(v)) return "[secret]";
  if (Array.isArray(v)) return v.map(redactSecrets);
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactSecrets(x)]));
  }
  return v;
}

/** Unwraps secrets to their values (for assertions that need the content, e.g. schema checks). */
export function revealSecrets(v: unknown): unknown {
  if (isSecretValue(v)) return revealSecrets(v.value);
  if (Array.isArray(v)) return v.map(revealSecrets);
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revealSecrets(x)]));
  }
  return v;
}

/** Reads `Pulumi.<stack>.yaml` into the string map the Pulumi CLI hands a program. */
export function readStackFile(file: string): Record<string, string> {
  const doc = yaml.load(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> } | undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc?.config ?? {})) {
    out[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return out;
}

const FAKE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001";
const FAKE_TENANT = "00000000-0000-0000-0000-000000000002";

/** Plausible provider-computed outputs, so downstream `apply`s see realistic shapes. */
function computedOutputs(
  type: string,
  name: string,
  inputs: Record<string, unknown>,
): Record<string, unknown> {
  const rg = typeof inputs.resourceGroupName === "string" ? inputs.resourceGroupName : "rg";
  // The most specific name input a resource has (a container's own name, not its account's).
  const nameKeys = [
    "containerName",
    "agentPoolName",
    "configName",
    "resourceName",
    "accountName",
    "virtualNetworkName",
    "registryName",
    "resourceGroupName",
    "name",
  ];
  const resourceName = nameKeys.map((k) => inputs[k]).find((v) => typeof v === "string") ?? name;
  const provider = type.split(":")[1] ?? "unknown";
  const kind = type.split(":")[2] ?? "unknown";
  const id = `/subscriptions/${FAKE_SUBSCRIPTION}/resourceGroups/${rg}/providers/Microsoft.${provider}/${kind}/${resourceName}`;
  const base: Record<string, unknown> = { id, name: resourceName };
  switch (type) {
    case "azure-native:resources:ResourceGroup":
      return {
        name: inputs.resourceGroupName ?? name,
        id: `/subscriptions/${FAKE_SUBSCRIPTION}/resourceGroups/${name}`,
      };
    case "azure-native:containerservice:ManagedCluster":
      return {
        ...base,
        oidcIssuerProfile: {
          enabled: true,
          issuerURL: `https://oidc.example.invalid/${FAKE_TENANT}/${resourceName}/`,
        },
        identityProfile: {
          kubeletidentity: {
            objectId: "11111111-1111-1111-1111-111111111111",
            clientId: "22222222-2222-2222-2222-222222222222",
          },
        },
        fqdn: `${resourceName}.hcp.westeurope.azmk8s.io`,
      };
    case "azure-native:storage:StorageAccount":
      return {
        ...base,
        primaryEndpoints: { blob: `https://${resourceName}.blob.core.windows.net/` },
        secondaryEndpoints: { blob: `https://${resourceName}-secondary.blob.core.windows.net/` },
      };
    case "azure-native:managedidentity:UserAssignedIdentity":
      return {
        ...base,
        // Per identity (by Pulumi name), so tests can tell which identity a role or annotation names.
        clientId: `client-${name}`,
        principalId: `principal-${name}`,
        tenantId: FAKE_TENANT,
      };
    case "pulumi:pulumi:StackReference": {
      // A dr stack's view of its primary: the outputs a render of that stack exports.
      const primary = String(inputs.name).split("/").pop() ?? "prod";
      const account = `milvusbk${primary}`;
      return {
        name: inputs.name,
        outputs: {
          backupAccountId: `/subscriptions/${FAKE_SUBSCRIPTION}/resourceGroups/milvus-${primary}-rg/providers/Microsoft.Storage/storageAccounts/${account}`,
          backupAccountName: account,
          backupSecondaryBlobEndpoint: `https://${account}-secondary.blob.core.windows.net/`,
          backupContainerName: "milvus-backups",
          milvusImageTag: "v2.6.24",
          milvusMode: "cluster",
          location: "westeurope",
        },
        secretOutputNames: [],
      };
    }
    case "random:index/randomPassword:RandomPassword":
      // Deterministic, recognisable values: tests look for them to prove secrets never leak in plain text.
      return { result: `mock-secret-${name}`.padEnd(Number(inputs.length ?? 16), "x") };
    case "azure-native:containerregistry:Registry":
      return { ...base, loginServer: `${resourceName}.azurecr.io` };
    default:
      return base;
  }
}

const FAKE_KUBECONFIG = [
  "apiVersion: v1",
  "kind: Config",
  "clusters: [{name: aks, cluster: {server: 'https://aks.invalid:443'}}]",
  "contexts: [{name: aks, context: {cluster: aks, user: clusterUser}}]",
  "current-context: aks",
  "users: [{name: clusterUser, user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: kubelogin, args: [get-token, --login, devicecode, --server-id, 6dae42f8-4368-4678-94ff-3960e28e3630]}}}]",
].join("\n");

function mockCall(token: string, inputs: Record<string, unknown>): Record<string, unknown> {
  switch (token) {
    case "azure-native:authorization:getClientConfig":
      return {
        clientId: "client",
        objectId: "33333333-3333-3333-3333-333333333333",
        subscriptionId: FAKE_SUBSCRIPTION,
        tenantId: FAKE_TENANT,
      };
    case "azure-native:containerservice:listManagedClusterUserCredentials":
      return {
        kubeconfigs: [{ name: "clusterUser", value: Buffer.from(FAKE_KUBECONFIG).toString("base64") }],
      };
    default:
      return inputs;
  }
}

export interface RenderOptions {
  /** Stack file to read; defaults to `Pulumi.<stack>.yaml` at the repository root. */
  stackFile?: string;
  /** Extra or replacement config entries (`milvus-aks:key` → value), applied over the file. */
  overrides?: Record<string, unknown>;
}

/** Runs the program for one stack under mocks; serialised because the Pulumi runtime is global. */
let queue: Promise<unknown> = Promise.resolve();
export function renderStack(stack: string, options: RenderOptions = {}): Promise<RenderResult> {
  const run = queue.then(() => renderNow(stack, options));
  queue = run.catch(() => undefined);
  return run;
}

async function renderNow(stack: string, options: RenderOptions): Promise<RenderResult> {
  const file = options.stackFile ?? path.join(ROOT, `Pulumi.${stack}.yaml`);
  const config = readStackFile(file);
  for (const [k, v] of Object.entries(options.overrides ?? {})) {
    config[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
  const resources: RenderedResource[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        resources.push({ type: args.type, name: args.name, inputs: args.inputs as Record<string, unknown> });
        return {
          id: `${args.name}-id`,
          state: {
            ...(args.inputs as Record<string, unknown>),
            ...computedOutputs(args.type, args.name, args.inputs as Record<string, unknown>),
          },
        };
      },
      call: (args) => mockCall(args.token, args.inputs as Record<string, unknown>),
    },
    PROJECT,
    stack,
    true,
  );
  pulumi.runtime.setAllConfig(config);
  const cfg = loadStackConfig();
  const outputs = createStack(cfg);
  const resolved = await new Promise<Record<string, unknown>>((resolve) => {
    pulumi.output(outputs).apply((o) => {
      resolve(o as Record<string, unknown>);
      return o;
    });
  });
  // Secret stack outputs stay wrapped like secret inputs, so renders redact them and tests can tell.
  for (const [key, value] of Object.entries(outputs as Record<string, unknown>)) {
    if (pulumi.Output.isInstance(value) && (await pulumi.isSecret(value))) {
      resolved[key] = { [SECRET_SIG_KEY]: SECRET_SIG, value: resolved[key] };
    }
  }
  await pulumi.runtime.disconnect();
  return { stack, config: cfg, resources, outputs: resolved };
}

/** Kubernetes objects (not providers, Helm releases or components) among the rendered resources. */
export function kubernetesObjects(result: RenderResult): RenderedResource[] {
  return result.resources.filter(
    (r) =>
      r.type.startsWith("kubernetes:") &&
      typeof r.inputs.kind === "string" &&
      typeof r.inputs.apiVersion === "string",
  );
}
