/**
 * Starts the registry: reads the configuration, builds the app, serves it with Deno.serve,
 * and shuts down gracefully on SIGINT/SIGTERM.
 */

import { createApp } from "./src/app.ts";
import { ConfigError, loadConfig, USAGE } from "./src/config.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = loadConfig(Deno.args, Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (config === "help") {
    console.log(USAGE);
    return 0;
  }
  const app = await createApp(config);
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: ({ hostname, port }) => {
      console.log(
        `registry listening on http://${hostname}:${port}/v2/, storing in ${config.dataDir}`,
      );
    },
  }, app);
  const stop = () => {
    console.log("shutting down: finishing in-flight requests");
    app.close();
    server.shutdown();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  return 0;
}

if (import.meta.main) Deno.exit(await main());
