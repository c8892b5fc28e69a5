/**
 * The logger: the only writer to the console. Lines are JSON objects (`json`) or `key=value`
 * text (`text`), each with a time, a level and a message. Lines below the configured level are
 * dropped before they are built. By default lines go to standard error in batches (at most a
 * few milliseconds late), so that an access line per request costs no write system call per
 * request; `flush` writes what is pending (main calls it before exiting). The log goes to
 * standard output; only a one-line reason why the registry cannot start goes to standard
 * error.
 */

/** Log levels, most severe first. */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** Extra fields of a log line. */
export type LogFields = Readonly<Record<string, string | number | boolean | null | undefined>>;

/** Writes log lines. */
export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  /** Whether lines of `level` are written. */
  enabled(level: LogLevel): boolean;
  /** Writes every pending line now. */
  flush(): void;
}

/** Options of `createLogger`. */
export interface LoggerOptions {
  readonly level?: LogLevel;
  readonly format?: "json" | "text";
  /** Where finished lines go, one call per line (default: batched writes to standard output). */
  readonly sink?: (line: string) => void;
  /** The clock (tests). */
  readonly now?: () => Date;
}

const RANK: Readonly<Record<LogLevel, number>> = { error: 0, warn: 1, info: 2, debug: 3 };

/** Makes a logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const threshold = RANK[options.level ?? "info"];
  const json = options.format === "json";
  const now = options.now ?? (() => new Date());
  // One ISO string per millisecond, not one per line.
  let lastMs = -1;
  let lastIso = "";
  const isoNow = () => {
    const date = now();
    const ms = date.getTime();
    if (ms !== lastMs) {
      lastMs = ms;
      lastIso = date.toISOString();
    }
    return lastIso;
  };
  const batch = options.sink ? null : new LineBatch();
  const sink = options.sink ?? ((line: string) => batch!.push(line));
  const write = (level: LogLevel, message: string, fields?: LogFields) => {
    if (RANK[level] > threshold) return;
    const time = isoNow();
    sink(json ? jsonLine(time, level, message, fields) : textLine(time, level, message, fields));
  };
  return {
    error: (message, fields) => write("error", message, fields),
    warn: (message, fields) => write("warn", message, fields),
    info: (message, fields) => write("info", message, fields),
    debug: (message, fields) => write("debug", message, fields),
    enabled: (level) => RANK[level] <= threshold,
    flush: () => batch?.flush(),
  };
}

function jsonLine(time: string, level: LogLevel, msg: string, fields?: LogFields): string {
  const entry: Record<string, unknown> = { time, level, msg };
  if (fields) {
    for (const key in fields) if (fields[key] !== undefined) entry[key] = fields[key];
  }
  return JSON.stringify(entry);
}

const BARE = /^[A-Za-z0-9_.:/@+-]+$/;

function textValue(value: string | number | boolean | null): string {
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : `"${value}"`;
  if (typeof value === "boolean" || value === null) return String(value);
  return BARE.test(value) ? value : JSON.stringify(value);
}

function textLine(time: string, level: LogLevel, msg: string, fields?: LogFields): string {
  let line = `time=${time} level=${level} msg=${JSON.stringify(msg)}`;
  if (fields) {
    for (const key in fields) {
      const value = fields[key];
      if (value !== undefined) line += ` ${key}=${textValue(value)}`;
    }
  }
  return line;
}

const encoder = new TextEncoder();

/** Writes all of `bytes` to standard output. */
function writeStdout(bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
}

/**
 * Lines gathered and written together, on the next timer tick (5 ms) or when the buffer is
 * full. Each line is encoded into one reused buffer as it comes, so a line's string dies young
 * and a batch costs no joined string or new byte array (at tens of thousands of access lines a
 * second, that garbage cost more than building the lines). A line too long for the buffer is
 * written on its own, after what was pending.
 */
export class LineBatch {
  readonly #buffer: Uint8Array;
  readonly #write: (bytes: Uint8Array) => void;
  #used = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;

  /**
   * A batch writing with `write` (default: standard output) in writes of at most `size` bytes,
   * but for a line longer than that, which goes in a write of its own.
   */
  constructor(write: (bytes: Uint8Array) => void = writeStdout, size = 64 * 1024) {
    this.#write = write;
    this.#buffer = new Uint8Array(size);
  }

  /** Adds a line (without its newline). */
  push(line: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 code unit, and a newline follows
    const most = 3 * line.length + 1;
    if (most > this.#buffer.length - this.#used) {
      this.flush();
      if (most > this.#buffer.length) {
        this.#write(encoder.encode(`${line}\n`));
        return;
      }
    }
    this.#used += encoder.encodeInto(line, this.#buffer.subarray(this.#used)).written;
    this.#buffer[this.#used++] = 0x0a;
    if (this.#timer === null) {
      const timer = setTimeout(() => this.flush(), 5);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /** Writes what is pending now. */
  flush(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#used === 0) return;
    const used = this.#used;
    this.#used = 0;
    this.#write(this.#buffer.subarray(0, used));
  }
}
