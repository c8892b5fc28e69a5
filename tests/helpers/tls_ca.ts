/**
 * Test helper: a private CA and a server certificate for 127.0.0.1 and localhost it signed,
 * made with `openssl` (P-256 keys, valid two days), as the README's TLS section shows.
 */

import { join } from "node:path";

/** A CA and the server certificate it signed, as files under one folder and as PEM text. */
export interface TestCertificates {
  /** The CA certificate, PEM. */
  readonly ca: string;
  /** The CA certificate's file (`NAME-ca.crt`). */
  readonly caFile: string;
  /** The server certificate's file, for `http.tls.certificate`. */
  readonly certificate: string;
  /** The server key's file, for `http.tls.key`. */
  readonly key: string;
  /** The server certificate, PEM. */
  readonly cert: string;
  /** The server key, PEM. */
  readonly keyPem: string;
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
}

/**
 * Makes under `dir` a CA (`NAME-ca.crt`, `NAME-ca.key`) and a server certificate (`NAME.crt`,
 * `NAME.key`) for 127.0.0.1 and localhost (subjectAltName) signed by it.
 */
export async function makeCertificates(dir: string, name: string): Promise<TestCertificates> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-keyout",
    `${name}-ca.key`,
    "-out",
    `${name}-ca.crt`,
    "-days",
    "2",
    "-subj",
    `/CN=${name} test CA`,
  );
  await openssl(
    dir,
    "req",
    ...ec,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    "/CN=localhost",
  );
  await Deno.writeTextFile(join(dir, `${name}.ext`), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${name}-ca.crt`,
    "-CAkey",
    `${name}-ca.key`,
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
  );
  return {
    ca: await Deno.readTextFile(join(dir, `${name}-ca.crt`)),
    caFile: join(dir, `${name}-ca.crt`),
    certificate: join(dir, `${name}.crt`),
    key: join(dir, `${name}.key`),
    cert: await Deno.readTextFile(join(dir, `${name}.crt`)),
    keyPem: await Deno.readTextFile(join(dir, `${name}.key`)),
  };
}
