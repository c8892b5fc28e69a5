/**
 * The standard process metrics, computed at each scrape (a few microseconds, no permission
 * needed): resident memory, start time and CPU time.
 */

import process from "node:process";
import { ComputedFamily } from "./families.ts";

/** The process families, named as Prometheus's client libraries name them. */
export function processFamilies(): ComputedFamily[] {
  // performance.timeOrigin: when this process's main isolate started, in epoch milliseconds.
  const startSeconds = Math.round(performance.timeOrigin) / 1000;
  return [
    new ComputedFamily({
      name: "process_cpu_seconds_total",
      help: "Total user and system CPU time spent in seconds.",
      type: "counter",
    }, () => {
      const { user, system } = process.cpuUsage();
      return [{ value: (user + system) / 1e6 }];
    }),
    new ComputedFamily({
      name: "process_resident_memory_bytes",
      help: "Resident memory size in bytes.",
      type: "gauge",
    }, () => [{ value: Deno.memoryUsage().rss }]),
    new ComputedFamily({
      name: "process_start_time_seconds",
      help: "Start time of the process since unix epoch in seconds.",
      type: "gauge",
    }, () => [{ value: startSeconds }]),
  ];
}
