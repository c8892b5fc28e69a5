/**
 * Starts the registry: reads the configuration, builds the app, serves it (src/serve.ts),
 * and shuts down gracefully on SIGINT/SIGTERM.
 */

import { createApp } from "./src/app.ts";
import { ConfigError, loadConfig, USAGE } from "./src/config.ts";
import { StartupError } from "./src/errors.ts";
import { serve } from "./src/serve.ts";

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
  let app;
  try {
    app = await createApp(config);
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    console.error(error.message);
    return 2;
  }
  const server = serve(app, config, ({ hostname, port }) => {
    console.log(
      `registry listening on http://${hostname}:${port}/v2/, storing in ${config.dataDir}`,
    );
  });
  // The app drains first (new requests get 503, requests in flight get the grace period),
  // and only then does the server stop listening: Deno.serve's shutdown() makes the bodies
  // of requests in flight unreadable (denoland/deno#36809).
  let stopping = false;
  const stop = async () => {
    if (stopping) Deno.exit(0); // a second signal: stop waiting
    stopping = true;
    const grace = config.shutdownGraceMs;
    console.log(`shutting down: finishing in-flight requests (at most ${grace / 1000} s)`);
    app.close();
    const hard = setTimeout(() => {
      console.log("shutdown: grace period over, exiting");
      Deno.exit(0);
    }, grace + 3000);
    Deno.unrefTimer(hard);
    await app.drain(grace);
    await server.shutdown();
  };
  const onSignal = () => void stop();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  await server.finished;
  return 0;
}

if (import.meta.main) Deno.exit(await main());
