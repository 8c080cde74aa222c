import { Props, record, str } from "./common";

/**
 * Storage accounts: HTTPS only, TLS 1.2+, no anonymous blob access, no shared keys (identities only),
 * a firewall that denies by default; the backup account must also be RA-GZRS, because the dr stack
 * restores from its read-only secondary endpoint, which GZRS does not expose before an account failover.
 */

export const STORAGE_ACCOUNT = "azure-native:storage:StorageAccount";
/** Prefix of the backup account name (components/stack.ts: `globalNameOutput("milvusbk", stack)`). */
export const BACKUP_ACCOUNT_PREFIX = "milvusbk";
const TLS_OK = ["TLS1_2", "TLS1_3"];

export function storageAccountHardening(type: string, props: Props): string[] {
  if (type !== STORAGE_ACCOUNT) return [];
  const name = str(props.accountName) ?? "(generated name)";
  const subject = `storage account ${name}`;
  const problems: string[] = [];
  const expect = (actual: unknown, wanted: unknown, setting: string, why: string) => {
    if (actual !== wanted) {
      problems.push(
        `${subject}: ${setting} is ${JSON.stringify(actual ?? null)}; set it to ${JSON.stringify(wanted)} (${why}).`,
      );
    }
  };
  expect(props.enableHttpsTrafficOnly, true, "enableHttpsTrafficOnly", "no plain HTTP");
  const tls = str(props.minimumTlsVersion);
  if (tls === undefined || !TLS_OK.includes(tls)) {
    problems.push(`${subject}: minimumTlsVersion is ${JSON.stringify(tls ?? null)}; set it to "TLS1_2".`);
  }
  expect(props.allowBlobPublicAccess, false, "allowBlobPublicAccess", "no anonymous reads");
  expect(
    props.allowSharedKeyAccess,
    false,
    "allowSharedKeyAccess",
    "Entra ID identities only, no account keys",
  );
  expect(
    record(props.networkRuleSet).defaultAction,
    "Deny",
    "networkRuleSet.defaultAction",
    "only the allowed subnets get through",
  );
  const sku = str(record(props.sku).name);
  if (name.startsWith(BACKUP_ACCOUNT_PREFIX) && sku !== "Standard_RAGZRS") {
    problems.push(
      `${subject}: sku ${JSON.stringify(sku ?? null)} is not "Standard_RAGZRS"; the backup account must be zone- and geo-redundant with a readable secondary for the dr stack.`,
    );
  }
  return problems;
}
