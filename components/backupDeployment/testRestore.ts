import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { POD_DEFAULTS, restrictedContainerSecurity } from "../data/podSpec";
import { TEST_RESTORE_DEFAULTS, type TestRestoreConfig } from "../common/configSchema";
import { APP, appLabels, DATA_NAMESPACE, DATA_POOL_LABEL, DATA_POOL_VALUE } from "../common/naming";
import { testRestoreGroup, type TestRestoreAlertTarget } from "../monitoring/alertRules";
import { PROMETHEUS_SELECTOR_LABELS } from "../monitoring/monitoring";
import { backupWorkerDefaults, WORKER_CA_DIR, WORKER_GRACE_SECONDS } from "./backupWorker";

export interface TestRestoreArgs {
  /** Worker image reference (the backup worker's, BackupWorkerComponent.image). @default none: required */
  image: pulumi.Input<string>;
  /** Milvus gRPC address reachable in-cluster, host:port. @default none: required */
  milvusAddress: pulumi.Input<string>;
  /**
   * Blob endpoint the backups are read from: on a dr stack the primary's read-only geo-secondary
   * (restoreSourceBlobEndpoint), which the worker identity may only read. @default none: required
   */
  sourceBlobEndpoint: pulumi.Input<string>;
  /** Container holding the backups at that endpoint. @default none: required */
  sourceContainerName: pulumi.Input<string>;
  /**
   * ConfigMap with the CA bundle `ca.crt` Milvus's certificate chains to, as for the backup worker;
   * empty: Milvus serves plaintext. @default ""
   */
  milvusCaConfigMapName?: string;
  /** Schedule and RTO (`backup.testRestore`). @default {@link TEST_RESTORE_DEFAULTS} */
  config?: TestRestoreConfig;
  /** Rows compared per collection (`--sample-rows`). @default the worker's (backup/testRestore.ts DEFAULT_SAMPLE_ROWS, 100) */
  sampleRows?: number;
  /** Searches per collection (`--searches`). @default the worker's (backup/testRestore.ts DEFAULT_SEARCHES, 5) */
  searches?: number;
  /**
   * Namespace of the Job: the backup worker's, whose ServiceAccount (workload identity, reader on the
   * source account) and Milvus credentials Secret it uses. @default "milvus"
   */
  namespace?: string;
}

/**
 * `backup.testRestore` of a parsed stack configuration, or its defaults when the configuration carries
 * none (the schema always fills it in; a hand-built config in a test may not).
 */
export function testRestoreConfig(backup: object): TestRestoreConfig {
  const found = (backup as { testRestore?: Partial<TestRestoreConfig> }).testRestore;
  return { ...TEST_RESTORE_DEFAULTS, ...found };
}

/** Names and limits of the test restore CronJob, as one pure function (unit-tested). */
export function testRestoreDefaults() {
  const worker = backupWorkerDefaults();
  return {
    name: "milvus-test-restore",
    // The backup worker's: same identity (it may read the source account) and Milvus user.
    serviceAccountName: worker.serviceAccountName,
    credentialsSecretName: worker.credentialsSecretName,
    // Two runs at once would measure each other's load, not the restore.
    concurrencyPolicy: "Forbid",
    // A failed check is the finding: a retry would hide it and double the load; the alert reports it.
    backoffLimit: 0,
    // Restores of every collection plus checks; a hung run is ended well before next week's.
    activeDeadlineSeconds: 12 * 3600,
    startingDeadlineSeconds: 3600,
    successfulJobsHistoryLimit: 3,
    failedJobsHistoryLimit: 3,
    ttlSecondsAfterFinished: 14 * 24 * 3600,
    resources: worker.resources,
    runAsUser: worker.runAsUser,
  };
}

/**
 * The worker's command line of the scheduled test restore: every collection with a backup; the sample
 * and search counts are the worker's own defaults unless given (the program does not load the worker).
 */
export function testRestoreCommand(sampleRows?: number, searches?: number): string[] {
  return [
    "test-restore",
    ...(sampleRows === undefined ? [] : ["--sample-rows", String(sampleRows)]),
    ...(searches === undefined ? [] : ["--searches", String(searches)]),
  ];
}

/** What the alerts watch: the CronJob, its schedule and deadlines, and the RTO. */
export function testRestoreAlertTarget(namespace: string, config: TestRestoreConfig): TestRestoreAlertTarget {
  const d = testRestoreDefaults();
  return {
    namespace,
    cronJobName: d.name,
    schedule: config.schedule,
    graceSeconds: d.startingDeadlineSeconds + d.activeDeadlineSeconds,
    rtoSeconds: config.rtoMinutes * 60,
  };
}

/**
 * The weekly test restore: a CronJob that runs the worker's `test-restore` against the backups the
 * stack would restore in a failover (on the dr stack the primary's geo-secondary), so restores are
 * proven and their duration measured before they are needed, plus the PrometheusRule that alerts when
 * no run has passed within the schedule, a run failed, or a run took longer than the RTO.
 */
export class TestRestoreComponent extends pulumi.ComponentResource {
  public readonly cronJobName: string;
  public readonly alertTarget: TestRestoreAlertTarget;

  constructor(name: string, args: TestRestoreArgs, opts?: pulumi.ComponentResourceOptions) {
    super("milvus-aks:backup:TestRestore", name, {}, opts);
    const d = testRestoreDefaults();
    const namespace = args.namespace ?? DATA_NAMESPACE;
    const config = args.config ?? TEST_RESTORE_DEFAULTS;
    // The backup app name: the worker's egress NetworkPolicy and Milvus's ingress admit these pods.
    const labels = appLabels(APP.backup, "test-restore");
    const ca = args.milvusCaConfigMapName;

    const env = [
      { name: "MILVUS_ADDRESS", value: args.milvusAddress },
      { name: "BACKUP_CONTAINER", value: args.sourceContainerName },
      { name: "AZURE_STORAGE_ACCOUNT_URL", value: args.sourceBlobEndpoint },
      {
        name: "MILVUS_TOKEN",
        valueFrom: { secretKeyRef: { name: d.credentialsSecretName, key: "MILVUS_TOKEN" } },
      },
      ...(ca ? [{ name: "MILVUS_CA_FILE", value: `${WORKER_CA_DIR}/ca.crt` }] : []),
    ];

    this.cronJobName = d.name;
    new k8s.batch.v1.CronJob(
      `${name}-cronjob`,
      {
        metadata: { name: d.name, namespace, labels },
        spec: {
          schedule: config.schedule,
          timeZone: "Etc/UTC",
          concurrencyPolicy: d.concurrencyPolicy,
          startingDeadlineSeconds: d.startingDeadlineSeconds,
          successfulJobsHistoryLimit: d.successfulJobsHistoryLimit,
          failedJobsHistoryLimit: d.failedJobsHistoryLimit,
          jobTemplate: {
            metadata: { labels },
            spec: {
              backoffLimit: d.backoffLimit,
              activeDeadlineSeconds: d.activeDeadlineSeconds,
              ttlSecondsAfterFinished: d.ttlSecondsAfterFinished,
              template: {
                metadata: { labels: { ...labels, "azure.workload.identity/use": "true" } },
                spec: {
                  serviceAccountName: d.serviceAccountName,
                  restartPolicy: "Never",
                  ...POD_DEFAULTS,
                  // On SIGTERM the worker stops the running step and drops the scratch collection
                  // (backup/testRestore.ts); same budget as the backup and restore Jobs.
                  terminationGracePeriodSeconds: WORKER_GRACE_SECONDS,
                  nodeSelector: { [DATA_POOL_LABEL]: DATA_POOL_VALUE },
                  securityContext: {
                    runAsNonRoot: true,
                    fsGroup: d.runAsUser,
                    seccompProfile: { type: "RuntimeDefault" },
                  },
                  containers: [
                    {
                      name: "test-restore",
                      image: args.image,
                      imagePullPolicy: "IfNotPresent",
                      args: testRestoreCommand(args.sampleRows, args.searches),
                      env,
                      resources: d.resources,
                      securityContext: restrictedContainerSecurity(d.runAsUser),
                      volumeMounts: [
                        { name: "tmp", mountPath: "/tmp" },
                        ...(ca ? [{ name: "milvus-ca", mountPath: WORKER_CA_DIR, readOnly: true }] : []),
                      ],
                    },
                  ],
                  volumes: [
                    { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
                    ...(ca ? [{ name: "milvus-ca", configMap: { name: ca } }] : []),
                  ],
                },
              },
            },
          },
        },
      },
      { parent: this },
    );

    this.alertTarget = testRestoreAlertTarget(namespace, config);
    // Its own PrometheusRule: Prometheus selects rules by this label in every namespace
    // (monitoring.ts: ruleSelector, ruleNamespaceSelector {}).
    new k8s.apiextensions.CustomResource(
      `${name}-rules`,
      {
        apiVersion: "monitoring.coreos.com/v1",
        kind: "PrometheusRule",
        metadata: {
          name: d.name,
          namespace,
          labels: { ...appLabels("milvus-aks", "alerts"), ...PROMETHEUS_SELECTOR_LABELS },
        },
        spec: { groups: [testRestoreGroup(this.alertTarget)] },
      },
      { parent: this },
    );

    this.registerOutputs({ cronJobName: this.cronJobName });
  }
}
