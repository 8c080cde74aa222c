import {
  containersOf,
  isSealed,
  k8sKind,
  k8sSubject,
  list,
  podTemplate,
  Props,
  record,
  str,
  walkStrings,
  WORKLOAD_KINDS,
} from "./common";

/**
 * No plaintext credentials. Three checks:
 * 1. Literal credentials anywhere: storage account keys, connection strings with keys, SAS signatures
 *    and private keys in any property of any resource (outside Kubernetes Secrets, where they belong).
 * 2. Environment variables and ConfigMap keys named like credentials with literal values: those land
 *    in plain text in the pod spec or ConfigMap, whether or not the program marked them secret.
 *    Use `valueFrom.secretKeyRef` / a Secret instead.
 * 3. Kubernetes Secret `data`/`stringData` values must be Pulumi secrets, so they are encrypted in the
 *    state and redacted in previews. This is checkable only when secretness is observable: under the
 *    offline render (mocks). @pulumi/policy unwraps secrets before a real validation runs
 *    (pulumi/pulumi-policy#241), so the pack passes `secretsObservable: false` and relies on checks 1-2
 *    there; @pulumi/kubernetes additionally marks Secret data as secret outputs in the state.
 */

/** Names that carry credentials; `_FILE`/`_PATH`/`_DIR` variants point at mounted files, which is the fix. */
const CREDENTIAL_NAME =
  /(PASSWORD|PASSWD|SECRET|TOKEN|CONNECTION_?STRING|CREDENTIALS?|(^|_)KEY$|ACCESS_?KEY|API_?KEY|PRIVATE_?KEY)/i;
const REFERENCE_SUFFIX = /_(FILE|PATH|DIR)$/i;

export function looksLikeCredentialName(name: string): boolean {
  return CREDENTIAL_NAME.test(name) && !REFERENCE_SUFFIX.test(name);
}

const LITERAL_PATTERNS: { pattern: RegExp; what: string }[] = [
  { pattern: /AccountKey=[A-Za-z0-9+/]{20,}={0,2}/, what: "a storage account key (connection string)" },
  { pattern: /SharedAccessKey=[A-Za-z0-9+/]{20,}={0,2}/, what: "a shared access key (connection string)" },
  { pattern: /[?&]sig=[A-Za-z0-9%+/]{20,}/, what: "a SAS token signature" },
  { pattern: /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/, what: "a private key" },
];

function literalCredentials(subject: string, root: unknown, skip: (path: string) => boolean): string[] {
  const problems: string[] = [];
  walkStrings(root, (path, value) => {
    if (skip(path)) return;
    const hit = LITERAL_PATTERNS.find((p) => p.pattern.test(value));
    if (hit)
      problems.push(
        `${subject}: ${path} contains ${hit.what} in plain text; use a managed identity or a Pulumi secret in a Kubernetes Secret.`,
      );
  });
  return problems;
}

export interface SecretsContext {
  /** Whether sealed (Pulumi secret) values can be told apart from plain ones. @default true */
  secretsObservable?: boolean;
}

/**
 * Inputs of the TLS provider that are private keys by design (pulumi-tls: `private_key_pem` and
 * `ca_private_key_pem` are sensitive inputs of tls_self_signed_cert, tls_locally_signed_cert and
 * tls_cert_request, which the provider stores as secrets): where the key must go to sign.
 */
const TLS_KEY_INPUTS: Readonly<Partial<Record<string, readonly string[]>>> = {
  "tls:index/selfSignedCert:SelfSignedCert": ["privateKeyPem"],
  "tls:index/locallySignedCert:LocallySignedCert": ["caPrivateKeyPem"],
  "tls:index/certRequest:CertRequest": ["privateKeyPem"],
};

export function noPlaintextSecrets(type: string, props: Props, ctx: SecretsContext = {}): string[] {
  const tlsKeys = TLS_KEY_INPUTS[type];
  if (tlsKeys !== undefined) {
    // The key belongs here; it must still be a Pulumi secret (observable under the offline render).
    return ctx.secretsObservable === false
      ? []
      : tlsKeys
          .filter((k) => props[k] !== undefined && !isSealed(props[k]))
          .map(
            (k) =>
              `${type.split(":").pop() ?? type}: ${k} is not a Pulumi secret; wrap it in pulumi.secret().`,
          );
  }
  const kind = k8sKind(type);
  const subject = kind
    ? k8sSubject(type, props)
    : `${type.split(":").pop() ?? type} ${str(props.accountName) ?? str(props.resourceName) ?? ""}`.trim();
  const isSecret = kind === "Secret";
  // Secret payloads are where credentials belong; check 3 covers them.
  const problems = literalCredentials(
    subject,
    props,
    (path) => isSecret && /^(data|stringData)\./.test(path),
  );

  if (kind !== undefined && WORKLOAD_KINDS.includes(kind)) {
    const pod = podTemplate(kind, props);
    for (const c of pod ? containersOf(pod.spec) : []) {
      for (const e of list(c.spec.env).map(record)) {
        const name = str(e.name) ?? "";
        const value = e.value;
        if (!looksLikeCredentialName(name) || value === undefined || value === "") continue;
        problems.push(
          `${subject} container "${c.name}": env ${name} has a literal value; use valueFrom.secretKeyRef (a literal is stored in plain text in the pod spec).`,
        );
      }
    }
  }

  if (kind === "ConfigMap") {
    for (const [key, value] of Object.entries(record(props.data))) {
      if (looksLikeCredentialName(key.replace(/[.-]/g, "_")) && value !== "" && value !== undefined) {
        problems.push(
          `${subject}: key ${key} looks like a credential; ConfigMaps are plain text, put it in a Secret.`,
        );
      }
    }
  }

  if (isSecret && ctx.secretsObservable !== false) {
    for (const field of ["data", "stringData"]) {
      // A whole payload marked secret covers every key in it.
      if (isSealed(props[field])) continue;
      for (const [key, value] of Object.entries(record(props[field]))) {
        if (!isSealed(value) && value !== "") {
          problems.push(
            `${subject}: ${field}.${key} is not a Pulumi secret; wrap it with pulumi.secret() or generate it with @pulumi/random so the state stores it encrypted.`,
          );
        }
      }
    }
  }
  return problems;
}
