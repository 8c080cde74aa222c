import * as assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as yaml from "js-yaml";
import { CERT_MANAGER_CHART, CERT_MANAGER_REPO } from "../components/data/certManager";
import { defaultsFor } from "../components/common/config";
import { KPS_CHART, KPS_REPO } from "../components/monitoring/monitoring";

/**
 * Repository hygiene: the licence matches package.json, Renovate's custom managers still find the pins they
 * are meant to update, the Node.js version in .nvmrc agrees with the worker image and every `engines` range,
 * and every npm dependency is an exact version.
 */

const ROOT = path.resolve(__dirname, "..");
const read = (rel: string): string => fs.readFileSync(path.join(ROOT, rel), "utf8");
const readJson = (rel: string): unknown => JSON.parse(read(rel));

interface PackageJson {
  license?: string;
  engines?: { node?: string };
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}
const rootPackage = readJson("package.json") as PackageJson;
const workerPackage = readJson("backup/package.json") as PackageJson;

// ---------------------------------------------------------------------------------------------------------
// Versions and npm ranges (only what `engines` fields use: comparators, ^, ~, x-ranges and ||).

type Version = [number, number, number];

function parseVersion(text: string): Version {
  const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`not an exact x.y.z version: ${JSON.stringify(text)}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

function compare(a: Version, b: Version): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** One comparator (`>=20.19.0`, `^20.17.0`, `20`, `~1.2`, `*`) as a predicate on versions. */
function comparator(text: string): (v: Version) => boolean {
  const m = /^(>=|<=|>|<|=|\^|~)?v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?$/.exec(text) as
    | (string | undefined)[]
    | null;
  if (!m) throw new Error(`unsupported range comparator ${JSON.stringify(text)}`);
  const op = m[1] ?? "=";
  const parts = [m[2], m[3], m[4]].map((p) => (p === undefined || /^[xX*]$/.test(p) ? undefined : Number(p)));
  const given = parts.findIndex((p) => p === undefined);
  const precision = given === -1 ? 3 : given; // how many leading parts are numbers
  if (precision === 0) return () => true;
  const low: Version = [
    parts[0] ?? 0,
    precision > 1 ? (parts[1] ?? 0) : 0,
    precision > 2 ? (parts[2] ?? 0) : 0,
  ];
  /** The first version past the given precision: 20 -> 21.0.0, 20.1 -> 20.2.0. */
  const next = (p: number): Version =>
    p === 1 ? [low[0] + 1, 0, 0] : p === 2 ? [low[0], low[1] + 1, 0] : [low[0], low[1], low[2] + 1];
  const within = (lo: Version, hi: Version) => (v: Version) => compare(v, lo) >= 0 && compare(v, hi) < 0;
  switch (op) {
    case ">=":
      return (v) => compare(v, low) >= 0;
    case ">":
      return precision === 3 ? (v) => compare(v, low) > 0 : (v) => compare(v, next(precision)) >= 0;
    case "<":
      return (v) => compare(v, low) < 0;
    case "<=":
      return precision === 3 ? (v) => compare(v, low) <= 0 : (v) => compare(v, next(precision)) < 0;
    case "^": {
      const p = low[0] > 0 || precision === 1 ? 1 : low[1] > 0 || precision === 2 ? 2 : 3;
      return within(low, next(p));
    }
    case "~":
      return within(low, next(precision === 1 ? 1 : 2));
    default:
      return within(low, next(precision));
  }
}

/** npm's `satisfies` for the range forms `engines` fields use; anything else throws rather than guess. */
function satisfies(version: string, range: string): boolean {
  const v = parseVersion(version);
  // Every comparator is parsed before any is evaluated, so an unsupported form always throws.
  const alternatives = range.split("||").map((alternative) =>
    alternative
      .trim()
      .replace(/(>=|<=|>|<|=|\^|~)\s+/g, "$1")
      .split(/\s+/)
      .filter((c) => c !== "")
      .map(comparator),
  );
  return alternatives.some((predicates) => predicates.every((p) => p(v)));
}

// ---------------------------------------------------------------------------------------------------------
// The worker image: every stage's base, with ARG defaults substituted.

function dockerfileBaseImages(text: string): string[] {
  const args = new Map<string, string>();
  const stages = new Set<string>();
  const images: string[] = [];
  for (const line of text.split("\n")) {
    const arg = /^ARG\s+([A-Za-z_]\w*)=(\S+)\s*$/.exec(line);
    if (arg) args.set(arg[1], arg[2]);
    const from = /^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$/i.exec(line);
    if (!from) continue;
    const ref = from[1].replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => {
      const name = a ?? b ?? "";
      const value = args.get(name);
      if (value === undefined) throw new Error(`FROM uses $${name}, which has no ARG default`);
      return value;
    });
    if (!stages.has(ref)) images.push(ref);
    if (from[2]) stages.add(from[2]);
  }
  return images;
}

/** The Node.js image the worker runs on, e.g. { image: "node:20.20.2-bookworm-slim", tag, major: 20 }. */
function workerNodeImage(): { image: string; tag: string; major: number } {
  const images = [...new Set(dockerfileBaseImages(read("backup/Dockerfile")))];
  assert.equal(images.length, 1, `backup/Dockerfile stages start from ${images.join(", ")}`);
  const m = /^(?:docker\.io\/)?(?:library\/)?node:((\d+)\.\d+\.\d+[^@\s]*)(?:@sha256:[a-f0-9]{64})?$/.exec(
    images[0],
  );
  assert.ok(m, `backup/Dockerfile is not built on a pinned node image: ${images[0]}`);
  return { image: images[0], tag: m[1], major: Number(m[2]) };
}

// ---------------------------------------------------------------------------------------------------------
// Renovate's custom managers, applied the way Renovate applies them.

interface CustomManager {
  customType: string;
  description?: string;
  managerFilePatterns: string[];
  matchStrings: string[];
  depNameTemplate?: string;
  datasourceTemplate?: string;
  registryUrlTemplate?: string;
  versioningTemplate?: string;
}

interface RenovateConfig {
  rangeStrategy?: string;
  customManagers?: CustomManager[];
  packageRules?: Record<string, unknown>[];
}

interface Capture {
  manager: number;
  file: string;
  depName: string;
  currentValue: string;
}

const SKIPPED_DIRECTORIES = new Set(["node_modules", ".git", "out", "bin", "dist", ".tmp", ".azurite"]);

/** Repository-relative paths of every file Renovate would see (no dependencies or build output). */
function repositoryFiles(dir = ""): string[] {
  const files: string[] = [];
  for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = dir === "" ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRECTORIES.has(entry.name)) files.push(...repositoryFiles(rel));
    } else if (entry.isFile()) {
      files.push(rel);
    }
  }
  return files;
}

/** A `managerFilePatterns` entry; only the `/regex/` form is used here, so a glob is a mistake. */
function filePattern(pattern: string): RegExp {
  const m = /^\/(.+)\/(i?)$/.exec(pattern);
  if (!m) throw new Error(`managerFilePatterns entry ${JSON.stringify(pattern)} is not a /regex/`);
  return new RegExp(m[1], m[2]);
}

/** Renovate evaluates these with RE2: no lookaround, no backreferences. */
function re2Problem(source: string): string | undefined {
  if (/\(\?<?[=!]/.test(source)) return "uses lookaround, which RE2 does not support";
  if (/\\[1-9]|\\k</.test(source)) return "uses a backreference, which RE2 does not support";
  return undefined;
}

/**
 * Every problem with the custom managers against the given file contents, and what they capture: a manager
 * that targets no file, a match string that matches nothing, a capture without depName or currentValue.
 */
function customManagerCaptures(
  config: RenovateConfig,
  contents: ReadonlyMap<string, string>,
): { problems: string[]; captures: Capture[] } {
  const problems: string[] = [];
  const captures: Capture[] = [];
  const managers = config.customManagers ?? [];
  if (managers.length === 0) problems.push("renovate.json has no customManagers");
  managers.forEach((m, index) => {
    const name = `customManagers[${index}] (${m.depNameTemplate ?? m.description ?? "?"})`;
    if (m.customType !== "regex") problems.push(`${name}: customType is ${m.customType}, expected regex`);
    if (!m.datasourceTemplate) problems.push(`${name}: no datasourceTemplate`);
    const patterns = m.managerFilePatterns.map(filePattern);
    const files = [...contents.keys()].filter((f) => patterns.some((p) => p.test(f)));
    if (files.length === 0) problems.push(`${name}: managerFilePatterns match no file in the repository`);
    for (const source of m.matchStrings) {
      const re2 = re2Problem(source);
      if (re2) problems.push(`${name}: ${source} ${re2}`);
      if (!source.includes("(?<currentValue>")) problems.push(`${name}: ${source} captures no currentValue`);
      if (!source.includes("(?<depName>") && !m.depNameTemplate) {
        problems.push(`${name}: ${source} captures no depName and there is no depNameTemplate`);
      }
      let found = 0;
      for (const file of files) {
        for (const match of (contents.get(file) ?? "").matchAll(new RegExp(source, "g"))) {
          found++;
          const depName = match.groups?.depName ?? m.depNameTemplate ?? "";
          const currentValue = match.groups?.currentValue ?? "";
          captures.push({ manager: index, file, depName, currentValue });
        }
      }
      if (found === 0)
        problems.push(`${name}: ${source} matches nothing in ${files.join(", ") || "no file"}`);
    }
  });
  return { problems, captures };
}

const renovate = readJson("renovate.json") as RenovateConfig;
const allFiles = repositoryFiles();
const contentsOf = (files: string[]) => new Map(files.map((f) => [f, read(f)]));
/** Root stack files (test fixtures are not stacks). */
const stackFiles = allFiles.filter((f) => /^Pulumi\.[^/]+\.yaml$/.test(f));

const prod = defaultsFor("prod");
const imageTag = (image: string, repository: string): string => {
  assert.ok(image.startsWith(`${repository}:`), `${image} is not ${repository}:<tag>`);
  return image.slice(repository.length + 1);
};

/** The milvus.imageTag a stack file sets, read as YAML (undefined when it keeps the default). */
function stackMilvusTag(file: string): string | undefined {
  const doc = yaml.load(read(file)) as { config?: Record<string, unknown> } | undefined;
  const milvus = doc?.config?.["milvus-aks:milvus"] as { imageTag?: unknown } | undefined;
  return typeof milvus?.imageTag === "string" ? milvus.imageTag : undefined;
}

/** What each dependency's pin is, read independently of the regexes (per file where it differs). */
const PINNED: Record<string, (file: string) => string | undefined> = {
  "milvusdb/milvus": (file) => (file.endsWith(".yaml") ? stackMilvusTag(file) : prod.milvus.imageTag),
  "quay.io/minio/minio": () => imageTag(prod.minio.image, "quay.io/minio/minio"),
  "quay.io/minio/mc": () => imageTag(prod.minio.clientImage, "quay.io/minio/mc"),
  "kube-prometheus-stack": () => prod.monitoring.chartVersion,
  "cert-manager": () => prod.security.tls.certManagerChartVersion,
  node: () => workerNodeImage().tag,
};

// ---------------------------------------------------------------------------------------------------------

describe("repository hygiene", function () {
  describe("LICENSE", function () {
    // SHA-256 of the Apache License 2.0 from its first line through "END OF TERMS AND CONDITIONS", as
    // published at apache.org/licenses/LICENSE-2.0.txt without its leading blank line.
    const APACHE_2_TERMS_SHA256 = "a6cba85bc92e0cff7a450b1d873c0eaa2e9fc96bf472df0247a26bec77bf3ff9";

    it("is the Apache License 2.0 that package.json declares, unmodified", function () {
      assert.equal(rootPackage.license, "Apache-2.0");
      assert.equal(
        workerPackage.license,
        rootPackage.license,
        "backup/package.json declares another licence",
      );
      const text = read("LICENSE");
      assert.match(text, /^\s*Apache License\n\s*Version 2\.0, January 2004\n/);
      const end = text.indexOf("END OF TERMS AND CONDITIONS\n");
      assert.ok(end > 0, "the terms end marker is missing");
      const terms = text.slice(0, end + "END OF TERMS AND CONDITIONS\n".length).replace(/^\n/, "");
      assert.equal(
        createHash("sha256").update(terms).digest("hex"),
        APACHE_2_TERMS_SHA256,
        "the terms differ from the standard Apache License 2.0 text",
      );
      for (let section = 1; section <= 9; section++) {
        assert.match(text, new RegExp(`\\n {3}${section}\\. [A-Z]`), `section ${section} is missing`);
      }
    });

    it("names the milvus-aks authors in the appendix's copyright line", function () {
      const appendix = read("LICENSE").split("APPENDIX: How to apply the Apache License to your work.")[1];
      assert.ok(appendix, "the appendix is missing");
      assert.match(appendix, /\n {3}Copyright \d{4} the milvus-aks authors\n/);
      assert.doesNotMatch(appendix, /\[yyyy\]|\[name of copyright owner\]/);
      assert.match(appendix, /Licensed under the Apache License, Version 2\.0/);
    });
  });

  describe("renovate.json", function () {
    it("parses, keeps exact npm pins and has the custom managers' required fields", function () {
      assert.equal(typeof renovate, "object");
      assert.equal(renovate.rangeStrategy, "pin");
      for (const m of renovate.customManagers ?? []) {
        assert.ok(Array.isArray(m.managerFilePatterns) && m.managerFilePatterns.length > 0);
        assert.ok(Array.isArray(m.matchStrings) && m.matchStrings.length > 0);
      }
    });

    it("every custom manager regex matches real pins in the files it targets", function () {
      const { problems } = customManagerCaptures(renovate, contentsOf(allFiles));
      assert.deepEqual(problems, []);
    });

    it("captures exactly the pinned value of every pinned image and chart", function () {
      const { captures } = customManagerCaptures(renovate, contentsOf(allFiles));
      const seen = new Set<string>();
      for (const c of captures) {
        const pinned = PINNED[c.depName] as ((file: string) => string | undefined) | undefined;
        assert.ok(pinned, `${c.file}: captured ${c.depName}, for which this test knows no pin`);
        assert.equal(c.currentValue, pinned(c.file), `${c.depName} in ${c.file}`);
        seen.add(c.depName);
      }
      assert.deepEqual(
        [...seen].sort(),
        Object.keys(PINNED).sort(),
        "a pinned dependency has no custom manager",
      );
    });

    it("covers the Milvus tag of every stack file that sets one, and the default in components/common/config.ts", function () {
      const { captures } = customManagerCaptures(renovate, contentsOf(allFiles));
      const files = captures.filter((c) => c.depName === "milvusdb/milvus").map((c) => c.file);
      const expected = [
        ...stackFiles.filter((f) => stackMilvusTag(f) !== undefined),
        "components/common/config.ts",
      ];
      assert.ok(expected.length > 1);
      assert.deepEqual([...files].sort(), expected.sort());
    });

    it("looks charts up in the repositories the program installs them from", function () {
      const charts = (renovate.customManagers ?? []).filter((m) => m.datasourceTemplate === "helm");
      const byName = new Map(charts.map((m) => [m.depNameTemplate, m.registryUrlTemplate]));
      assert.equal(byName.get(KPS_CHART), KPS_REPO);
      assert.equal(byName.get(CERT_MANAGER_CHART), CERT_MANAGER_REPO);
    });

    it("fails when a pin is renamed or reformatted so that its manager no longer finds it", function () {
      const contents = contentsOf(allFiles);
      const renamed = new Map(contents);
      renamed.set(
        "components/common/config.ts",
        contents
          .get("components/common/config.ts")!
          .replace(/\bcertManagerChartVersion:/g, "certManagerVersion:"),
      );
      const stack = stackFiles.find((f) => stackMilvusTag(f) !== undefined)!;
      renamed.set(stack, contents.get(stack)!.replace(/\bimageTag:/g, "image_tag:"));
      renamed.set(
        "backup/Dockerfile",
        contents.get("backup/Dockerfile")!.replace(/ARG NODE_IMAGE=/g, "ARG BASE="),
      );
      const { problems, captures } = customManagerCaptures(renovate, renamed);
      assert.ok(
        problems.some((p) => p.includes("cert-manager") && p.includes("matches nothing")),
        problems.join("\n"),
      );
      assert.ok(
        problems.some((p) => p.includes("matches nothing in backup/Dockerfile")),
        problems.join("\n"),
      );
      assert.ok(!captures.some((c) => c.file === stack), `${stack} still matched after the rename`);
    });

    it("hands the worker image to one manager only, and moves Node.js as a group", function () {
      const rules = renovate.packageRules ?? [];
      assert.ok(
        rules.some(
          (r) =>
            JSON.stringify(r.matchManagers) === '["dockerfile"]' &&
            JSON.stringify(r.matchFileNames) === '["backup/Dockerfile"]' &&
            r.enabled === false,
        ),
        "the built-in dockerfile manager would propose the same update as the custom one",
      );
      const nodeGroup = rules.find(
        (r) => Array.isArray(r.matchDepNames) && r.matchDepNames.includes("node") && r.groupName,
      );
      assert.ok(nodeGroup, "the worker image and .nvmrc must be updated in one pull request");
    });
  });

  describe(".nvmrc", function () {
    const nvmrc = read(".nvmrc").trim();

    it("is one exact Node.js version", function () {
      assert.match(read(".nvmrc"), /^\d+\.\d+\.\d+\n?$/);
    });

    it("has the major of the worker image's Node.js", function () {
      assert.equal(
        parseVersion(nvmrc)[0],
        workerNodeImage().major,
        `.nvmrc ${nvmrc}, ${workerNodeImage().image}`,
      );
    });

    it("satisfies the engines of package.json and backup/package.json", function () {
      for (const [file, pkg] of [
        ["package.json", rootPackage],
        ["backup/package.json", workerPackage],
      ] as const) {
        const range = pkg.engines?.node;
        assert.ok(range, `${file} declares no engines.node`);
        assert.ok(satisfies(nvmrc, range), `.nvmrc ${nvmrc} does not satisfy ${file} engines.node ${range}`);
      }
    });

    it("satisfies the engines of every runtime dependency and of their own dependencies", function () {
      const manifest = (dir: string): PackageJson | undefined => {
        const file = path.join(ROOT, dir, "package.json");
        return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as PackageJson) : undefined;
      };
      const failures: string[] = [];
      let checked = 0;
      for (const dep of Object.keys(rootPackage.dependencies ?? {})) {
        const own = manifest(`node_modules/${dep}`);
        assert.ok(own, `node_modules/${dep} is not installed (run npm ci)`);
        const levels: [string, PackageJson | undefined][] = [[dep, own]];
        for (const sub of Object.keys(own.dependencies ?? {})) {
          levels.push([
            `${dep} > ${sub}`,
            manifest(`node_modules/${dep}/node_modules/${sub}`) ?? manifest(`node_modules/${sub}`),
          ]);
        }
        for (const [name, pkg] of levels) {
          const range = pkg?.engines?.node;
          if (range === undefined) continue;
          checked++;
          if (!satisfies(nvmrc, range)) failures.push(`${name} needs node ${range}`);
        }
      }
      assert.ok(checked > 10, `only ${checked} engines ranges found`);
      assert.deepEqual(failures, [], `.nvmrc ${nvmrc}`);
    });

    it("reads npm ranges the way npm does", function () {
      const cases: [string, string, boolean][] = [
        ["20.20.2", ">=20.19.0", true],
        ["20.18.9", ">=20.19.0", false],
        ["20.20.2", ">=20.20.2", true],
        ["20.20.1", ">=20.20.2", false],
        ["20.20.2", ">= 18", true],
        ["20.20.2", "^20.17.0 || >=22.9.0", true],
        ["20.16.0", "^20.17.0 || >=22.9.0", false],
        ["21.0.0", "^20.17.0 || >=22.9.0", false],
        ["20.20.2", "18 || 20 || >=22", true],
        ["21.7.3", "18 || 20 || >=22", false],
        ["20.20.2", "^18.18.0 || ^20.9.0 || >=21.1.0", true],
        ["20.20.2", ">=22.0.0", false],
        ["20.20.2", "~20.20.0", true],
        ["20.21.0", "~20.20.0", false],
        ["0.2.5", "^0.2.3", true],
        ["0.3.0", "^0.2.3", false],
        ["20.20.2", ">=0.8.x", true],
        ["20.20.2", "*", true],
      ];
      for (const [version, range, expected] of cases) {
        assert.equal(satisfies(version, range), expected, `${version} in ${range}`);
      }
      assert.throws(() => satisfies("20.20.2", "1.0.0 - 2.0.0"), /unsupported range comparator/);
    });
  });

  describe("package.json", function () {
    const EXACT = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;
    const ranges = (pkg: PackageJson): string[] =>
      (["dependencies", "devDependencies", "optionalDependencies", "peerDependencies"] as const).flatMap(
        (field) =>
          Object.entries(pkg[field] ?? {})
            .filter(([, version]) => !EXACT.test(version))
            .map(([name, version]) => `${field}.${name}: ${version}`),
      );

    it("pins js-yaml exactly", function () {
      const version = rootPackage.dependencies?.["js-yaml"];
      assert.ok(version, "js-yaml is not a dependency");
      assert.match(version, EXACT);
      assert.doesNotMatch(version, /[\^~<>=*x|]/);
    });

    it("pins every dependency of package.json and backup/package.json to an exact version", function () {
      assert.deepEqual(ranges(rootPackage), []);
      assert.deepEqual(ranges(workerPackage), []);
    });
  });
});
