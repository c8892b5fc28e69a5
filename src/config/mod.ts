/**
 * The configuration: one table of settings (settings.ts) read from a CNCF Distribution-style
 * config.yml, the environment and the command line (load.ts). No other module reads the
 * environment, the command line or the configuration file.
 */

export {
  type AccessPolicy,
  type AuthConfig,
  type Config,
  ConfigError,
  type CorsConfig,
  DEFAULTS,
  type GcConfig,
  type LogLevel,
  type NotificationEndpoint,
  type RetentionRule,
  type S3Config,
  type TokenAuthConfig,
} from "./types.ts";
export { CONFIG_PATH_VARIABLE } from "./setting.ts";
export { type Invocation, loadConfig, parseCommandLine, printConfig } from "./load.ts";
export { USAGE } from "./usage.ts";
