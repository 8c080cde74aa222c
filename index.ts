import { loadStackConfig } from "./components/common/config";
import { createStack } from "./components/stack";

// Validation runs before any resource is declared: a bad stack file fails `pulumi preview` at once
// with every problem listed.
const outputs = createStack(loadStackConfig());

// What a DR stack in the paired region reads through a StackReference.
export const resourceGroupName = outputs.resourceGroupName;
export const location = outputs.location;
export const pairedLocation = outputs.pairedLocation;
export const clusterName = outputs.clusterName;
export const oidcIssuerUrl = outputs.oidcIssuerUrl;
export const backupAccountName = outputs.backupAccountName;
export const backupAccountId = outputs.backupAccountId;
export const backupPrimaryBlobEndpoint = outputs.backupPrimaryBlobEndpoint;
export const backupSecondaryBlobEndpoint = outputs.backupSecondaryBlobEndpoint;
export const backupContainerName = outputs.backupContainerName;
export const milvusImageTag = outputs.milvusImageTag;
export const milvusMode = outputs.milvusMode;
// Where restores read from: the primary's read-only secondary on a dr stack, the own account elsewhere.
export const restoreSourceBlobEndpoint = outputs.restoreSourceBlobEndpoint;
export const restoreSourceContainerName = outputs.restoreSourceContainerName;

// Operations: where clients connect, and the worker's registry and image (docs/operations.md "Build and push the image").
export const milvusAddress = outputs.milvusAddress;
export const milvusServiceName = outputs.milvusServiceName;
export const milvusNamespace = outputs.milvusNamespace;
export const milvusRootPassword = outputs.milvusRootPassword;
export const backupRegistryLoginServer = outputs.backupRegistryLoginServer;
// Global Azure names carry a per-deployer suffix (components/common/naming.ts); these outputs say what they are.
export const backupRegistryName = outputs.backupRegistryName;
export const milvusStorageAccountName = outputs.milvusStorageAccountName;
export const backupWorkerImage = outputs.backupWorkerImage;
export const grafanaService = outputs.grafanaService;
export const grafanaAdminPassword = outputs.grafanaAdminPassword;
// The prod stack admits its dr stack's node subnet through its backup firewall (`dr.standbyStack`);
// dr:failover checks that this subnet is in the primary's backupAllowedSubnetIds before anything else.
export const nodeSubnetId = outputs.nodeSubnetId;
export const backupAllowedSubnetIds = outputs.backupAllowedSubnetIds;
// On a dr stack: the primary's Milvus version, which this stack must match (dr:failover checks it).
export const primaryMilvusImageTag = outputs.primaryMilvusImageTag;

// Security (docs/security.md): the CA applications trust for Milvus's TLS, where each application
// user's Secret is, the audit workspace and the disk encryption set of a customer-managed key.
export const milvusCaCertificate = outputs.milvusCaCertificate;
export const milvusUserSecrets = outputs.milvusUserSecrets;
export const logAnalyticsWorkspaceId = outputs.logAnalyticsWorkspaceId;
export const logAnalyticsCustomerId = outputs.logAnalyticsCustomerId;
export const diskEncryptionSetId = outputs.diskEncryptionSetId;
