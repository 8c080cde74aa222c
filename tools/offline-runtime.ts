import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";
import { getMonitor } from "@pulumi/pulumi/runtime/settings";
import * as yaml from "js-yaml";
import { loadStackConfig, StackConfig } from "../components/common/config";
import { globalName } from "../components/common/naming";
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
  /** The resource options the engine receives with the registration (RegisterResourceRequest). */
  options: RegisteredOptions;
}

/** What `pulumi up` is told about a resource besides its inputs: ordering and lifecycle options. */
export interface RegisteredOptions {
  urn: string;
  /** URNs this resource waits for (explicit `dependsOn`, expanded through components, and input dependencies). */
  dependencies: string[];
  protect: boolean;
  retainOnDelete: boolean;
  ignoreChanges: string[];
  replaceOnChanges: string[];
  deleteBeforeReplace: boolean;
  customTimeouts: { create: string; update: string; delete: string } | undefined;
}

export interface RenderResult {
  stack: string;
  config: StackConfig;
  resources: RenderedResource[];
  outputs: Record<string, unknown>;
  /** Warnings the program logged (e.g. a Kubernetes version near end of life). */
  warnings: string[];
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

export const FAKE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001";
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
    "keyName",
    "workspaceName",
    "vaultName",
    "diskEncryptionSetName",
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
        id: `/subscriptions/${FAKE_SUBSCRIPTION}/resourceGroups/${typeof inputs.resourceGroupName === "string" ? inputs.resourceGroupName : name}`,
      };
    case "azure-native:network:VirtualNetwork": {
      // ARM's ids: .../providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>.
      const vnetId = `/subscriptions/${FAKE_SUBSCRIPTION}/resourceGroups/${rg}/providers/Microsoft.Network/virtualNetworks/${resourceName}`;
      const subnets = Array.isArray(inputs.subnets) ? (inputs.subnets as Record<string, unknown>[]) : [];
      return {
        id: vnetId,
        name: resourceName,
        subnets: subnets.map((sn) => ({ ...sn, id: `${vnetId}/subnets/${String(sn.name)}` })),
      };
    }
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
      const account = globalName("milvusbk", primary, FAKE_SUBSCRIPTION);
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
    case "azure-native:operationalinsights:Workspace":
      // The workspace's customer id is a GUID ARM assigns (what `az monitor log-analytics query -w` takes).
      return { ...base, customerId: "33333333-3333-3333-3333-333333333333" };
    case "azure-native:keyvault:Vault":
      return {
        ...base,
        properties: {
          ...(inputs.properties as object),
          vaultUri: `https://${resourceName}.vault.azure.net/`,
        },
      };
    case "azure-native:keyvault:Key": {
      const vault = typeof inputs.vaultName === "string" ? inputs.vaultName : "vault";
      const keyUri = `https://${vault}.vault.azure.net/keys/${resourceName}`;
      // Key versions are 32 hex characters.
      return { ...base, keyUri, keyUriWithVersion: `${keyUri}/0123456789abcdef0123456789abcdef` };
    }
    case "azure-native:compute:DiskEncryptionSet":
      return {
        ...base,
        identity: { type: "SystemAssigned", principalId: `principal-${name}`, tenantId: FAKE_TENANT },
      };
    case "tls:index/privateKey:PrivateKey":
      // Never a usable key: recognisable, so tests can prove it only travels as a secret.
      return {
        privateKeyPem: `-----BEGIN PRIVATE KEY-----\nmock-private-key-${name}\n-----END PRIVATE KEY-----\n`,
        publicKeyPem: `-----BEGIN PUBLIC KEY-----\nmock-public-key-${name}\n-----END PUBLIC KEY-----\n`,
      };
    case "tls:index/selfSignedCert:SelfSignedCert":
      // A real self-signed CA certificate (public data, tools/fixtures/offline-ca.pem), so consumers of
      // the CA output parse what `pulumi up` would hand them.
      return { certPem: fs.readFileSync(path.join(ROOT, "tools", "fixtures", "offline-ca.pem"), "utf8") };
    default:
      return base;
  }
}

/**
 * The user kubeconfig in the shape AKS returns it from listClusterUserCredential (format `exec`) for an
 * Entra ID cluster: block sequences, `env: null`, `installHint`, `provideClusterInfo: false`, and the
 * device-code login with the first-party server and client ids (Azure/kubelogin#193 and #93 show it
 * verbatim). Exported so tests parse exactly what the program is handed.
 */
export const AKS_USER_KUBECONFIG = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUU2RENDQXRDZ0F3SUJBZ0lRCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K
    server: https://milvus-prod-dns-4f2a9c1b.hcp.westeurope.azmk8s.io:443
  name: milvus-prod-aks
contexts:
- context:
    cluster: milvus-prod-aks
    user: clusterUser_milvus-prod-rg_milvus-prod-aks
  name: milvus-prod-aks
current-context: milvus-prod-aks
kind: Config
preferences: {}
users:
- name: clusterUser_milvus-prod-rg_milvus-prod-aks
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      args:
      - get-token
      - --environment
      - AzurePublicCloud
      - --server-id
      - 6dae42f8-4368-4678-94ff-3960e28e3630
      - --client-id
      - 80faf920-1908-4b52-b5ef-a8e7bedfc67a
      - --tenant-id
      - ${FAKE_TENANT}
      - --login
      - devicecode
      command: kubelogin
      env: null
      installHint: '

        kubelogin is not installed which is required to connect to AAD enabled cluster.


        To learn more, please go to https://aka.ms/aks/kubelogin'
      provideClusterInfo: false
`;

/** ARM's 404 for a resource that is not there, as azure-native's invoke reports it (see getAgentPool). */
function notFound(url: string): Error {
  const details = [
    `GET https://management.azure.com${url}`,
    "--------------------------------------------------------------------------------",
    "RESPONSE 404: 404 Not Found",
    "ERROR CODE: NotFound",
  ].join("\n");
  return Object.assign(new Error(details), { code: 2, details });
}

function mockCall(
  token: string,
  inputs: Record<string, unknown>,
  live: Pick<RenderOptions, "livePools" | "liveSubnets" | "featureStates">,
): Record<string, unknown> {
  const livePools = live.livePools ?? {};
  switch (token) {
    case "azure-native:features:getSubscriptionFeatureRegistration": {
      // ARM's shape (Microsoft.Features 2021-07-01): the state sits under properties.
      const key = `${String(inputs.providerNamespace)}/${String(inputs.featureName)}`;
      const state = live.featureStates?.[key] ?? "Registered";
      return {
        id: `/subscriptions/${FAKE_SUBSCRIPTION}/providers/Microsoft.Features/featureProviders/${String(inputs.providerNamespace)}/subscriptionFeatureRegistrations/${String(inputs.featureName)}`,
        name: inputs.featureName,
        type: "Microsoft.Features/featureProviders/subscriptionFeatureRegistrations",
        properties: { featureName: inputs.featureName, providerNamespace: inputs.providerNamespace, state },
      };
    }
    case "azure-native:authorization:getClientConfig":
      return {
        clientId: "client",
        objectId: "33333333-3333-3333-3333-333333333333",
        subscriptionId: FAKE_SUBSCRIPTION,
        tenantId: FAKE_TENANT,
      };
    case "azure-native:containerservice:listManagedClusterUserCredentials":
      return {
        kubeconfigs: [{ name: "clusterUser", value: Buffer.from(AKS_USER_KUBECONFIG).toString("base64") }],
      };
    case "azure-native:containerservice:getAgentPool": {
      const poolName = String(inputs.agentPoolName);
      const count = livePools[poolName];
      if (count === undefined) {
        // What the provider reports for a pool (or cluster) that does not exist yet: azure-native's
        // azcore error text for ARM's 404, carried as a gRPC error's `details` (the SDK rethrows
        // `new Error(err.details)`, runtime/invoke.ts).
        throw notFound(
          `/subscriptions/${FAKE_SUBSCRIPTION}/resourceGroups/${String(inputs.resourceGroupName)}/providers/Microsoft.ContainerService/managedClusters/${String(inputs.resourceName)}/agentPools/${poolName}`,
        );
      }
      return { name: poolName, count, enableAutoScaling: true };
    }
    case "azure-native:network:getSubnet": {
      const id = `/subscriptions/${FAKE_SUBSCRIPTION}/resourceGroups/${String(inputs.resourceGroupName)}/providers/Microsoft.Network/virtualNetworks/${String(inputs.virtualNetworkName)}/subnets/${String(inputs.subnetName)}`;
      const subnet = live.liveSubnets?.[id];
      if (!subnet) throw notFound(id);
      // The shape of ARM's Subnet (GetSubnetResult): service endpoints carry their service and regions.
      return {
        id,
        name: String(inputs.subnetName),
        addressPrefix: "10.40.0.0/20",
        serviceEndpoints: subnet.serviceEndpoints.map((service) => ({
          service,
          locations: ["*"],
          provisioningState: "Succeeded",
        })),
        provisioningState: "Succeeded",
      };
    }
    default:
      return inputs;
  }
}

export interface RenderOptions {
  /** Stack file to read; defaults to `Pulumi.<stack>.yaml` at the repository root. */
  stackFile?: string;
  /** Extra or replacement config entries (`milvus-aks:key` → value), applied over the file. */
  overrides?: Record<string, unknown>;
  /**
   * Node counts of pools that already exist, by pool name (an update of a deployed cluster); pools not
   * listed do not exist yet (a first `pulumi up`). @default {}
   */
  livePools?: Partial<Record<string, number>>;
  /**
   * Subnets that exist in the subscription, by resource id, with their service endpoints (e.g. the dr
   * stack's node subnet, `Microsoft.Storage`); others answer 404. @default {}
   */
  liveSubnets?: Partial<Record<string, { serviceEndpoints: readonly string[] }>>;
  /** The date version lifecycles are judged at. @default `MILVUS_AKS_TODAY`, else now */
  today?: Date;
  /**
   * Subscription feature states by `Namespace/Feature` (e.g. `Microsoft.Compute/EncryptionAtHost`);
   * unlisted features are Registered. @default {}
   */
  featureStates?: Partial<Record<string, string>>;
  /**
   * Run the program's entry point (`index.ts`, as `pulumi up` does) and return its exports as the
   * outputs, instead of calling createStack(): what a stack really exports. @default false
   */
  viaIndex?: boolean;
}

const readOptions: RegisteredOptions = {
  urn: "",
  dependencies: [],
  protect: false,
  retainOnDelete: false,
  ignoreChanges: [],
  replaceOnChanges: [],
  deleteBeforeReplace: false,
  customTimeouts: undefined,
};

type RegisterCallback = (err: unknown, res: unknown) => void;

/**
 * Makes the MockMonitor that `pulumi.runtime.setMocks` installed also keep the resource options of each
 * registration (everything else, including the runtime's feature flags, stays as setMocks set it).
 */
function recordOptions(monitor: MockMonitor): Map<string, RegisteredOptions> {
  const options = new Map<string, RegisteredOptions>();
  const register = monitor.registerResource.bind(monitor) as (
    req: RegisterRequest,
    cb: RegisterCallback,
  ) => Promise<void>;
  (monitor as unknown as { registerResource: typeof register }).registerResource = async (req, callback) => {
    const timeouts = req.getCustomtimeouts();
    const key = `${req.getType()}::${req.getName()}`;
    await register(req, (err, res) => {
      const urn = (res as { getUrn?: () => string } | undefined)?.getUrn?.() ?? "";
      options.set(key, {
        urn,
        dependencies: req.getDependenciesList(),
        protect: req.getProtect() ?? false,
        retainOnDelete: req.getRetainondelete() ?? false,
        ignoreChanges: req.getIgnorechangesList(),
        replaceOnChanges: req.getReplaceonchangesList(),
        deleteBeforeReplace: req.getDeletebeforereplace(),
        customTimeouts: timeouts
          ? { create: timeouts.getCreate(), update: timeouts.getUpdate(), delete: timeouts.getDelete() }
          : undefined,
      });
      callback(err, res);
    });
  };
  return options;
}

/** The parts of Pulumi's RegisterResourceRequest (proto/resource_pb) the recorder reads. */
interface RegisterRequest {
  getType(): string;
  getName(): string;
  getDependenciesList(): string[];
  getProtect(): boolean | undefined;
  getRetainondelete(): boolean | undefined;
  getIgnorechangesList(): string[];
  getReplaceonchangesList(): string[];
  getDeletebeforereplace(): boolean;
  getCustomtimeouts(): { getCreate(): string; getUpdate(): string; getDelete(): string } | undefined;
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
  const resources: Omit<RenderedResource, "options">[] = [];
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
      call: (args) => mockCall(args.token, args.inputs as Record<string, unknown>, options),
    },
    PROJECT,
    stack,
    true,
  );
  const monitor = getMonitor();
  if (!(monitor instanceof MockMonitor))
    throw new Error("pulumi.runtime.setMocks did not install a MockMonitor");
  const registered = recordOptions(monitor);
  pulumi.runtime.setAllConfig(config);
  const warnings: string[] = [];
  const cfg = loadStackConfig({ today: options.today, warn: (m) => warnings.push(m) });
  let stackOutputs: Record<string, unknown> = {};
  // A program error raised inside an apply (e.g. a prerequisite the subscription lacks) fails the
  // registration that needed the value; Pulumi's runtime reports it as an unhandled rejection, and
  // `pulumi preview` as a failed preview. The render fails with it too, instead of waiting forever.
  let stopListening: () => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    const onRejection = (reason: unknown) => {
      reject(reason instanceof Error ? reason : new Error(String(reason)));
    };
    process.on("unhandledRejection", onRejection);
    stopListening = () => void process.off("unhandledRejection", onRejection);
  });
  let resolved: Record<string, unknown>;
  try {
    const outputs = options.viaIndex
      ? entryPointExports()
      : createStack(cfg, { warn: (m) => warnings.push(m) });
    resolved = await Promise.race([
      failed,
      new Promise<Record<string, unknown>>((resolve) => {
        pulumi.output(outputs).apply((o) => {
          resolve(o as Record<string, unknown>);
          return o;
        });
      }),
    ]);
    stackOutputs = outputs as Record<string, unknown>;
  } finally {
    stopListening();
  }
  // Secret stack outputs stay wrapped like secret inputs, so renders redact them and tests can tell.
  for (const [key, value] of Object.entries(stackOutputs)) {
    if (pulumi.Output.isInstance(value) && (await pulumi.isSecret(value))) {
      resolved[key] = { [SECRET_SIG_KEY]: SECRET_SIG, value: resolved[key] };
    }
  }
  await pulumi.runtime.disconnect();
  const withOptions = resources.map((r) => {
    const opts = registered.get(`${r.type}::${r.name}`);
    // Reads (a StackReference) are not registrations: they carry no options.
    return { ...r, options: opts ?? readOptions };
  });
  return { stack, config: cfg, resources: withOptions, outputs: resolved, warnings };
}

/** `index.ts` evaluated afresh under the current mocks: its exports are the stack's outputs. */
function entryPointExports(): Record<string, unknown> {
  const entry = require.resolve("../index");
  // eslint-disable-next-line @typescript-eslint/no-dynamic-delete
  delete require.cache[entry];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return { ...(require(entry) as Record<string, unknown>) };
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
