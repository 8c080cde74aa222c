/**
 * Runs one worker command in a process of its own and reports its peak RSS, so the benchmark measures
 * the worker's memory and not the benchmark's. Output: the worker's stdout, then on fd 3 one JSON line
 * {"code":..,"maxRssBytes":..}.
 */
import * as fs from "node:fs";
import { main } from "../backup/cli";

void main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
  (code) => {
    // resourceUsage().maxRSS is in KiB on Linux.
    fs.writeSync(3, JSON.stringify({ code, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + "\n");
    process.exit(code);
  },
);
