/**
 * Runs one worker command in a process of its own and reports its peak RSS, so the benchmark measures
 * the worker's memory and not the benchmark's. Output: the worker's stdout, then on fd 3 one JSON line
 * {"code":..,"maxRssBytes":..} (when BENCH_REPORT_FD=3). Internal to `npm run bench` (bench/backup.bench.ts spawns it with fd 3
 * piped); its arguments are the worker's, parsed by the worker (`--help` prints the worker's usage).
 */
import * as fs from "node:fs";
import { main } from "../backup/cli";

void main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  invocation: "node -r ts-node/register/transpile-only bench/worker-process.ts",
}).then((code) => {
  // resourceUsage().maxRSS is in KiB on Linux.
  const report = JSON.stringify({ code, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + "\n";
  // Only when the benchmark says fd 3 is its pipe: started by hand, fd 3 may be anything (libuv's own).
  if (process.env.BENCH_REPORT_FD === "3") fs.writeSync(3, report);
  process.exit(code);
});
