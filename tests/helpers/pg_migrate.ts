/**
 * A process that migrates a database and prints the versions it applied as JSON: the
 * migration test starts two of them at once (`deno run -A tests/helpers/pg_migrate.ts URL`).
 */

import { migrate } from "../../src/storage/metadata/migrations.ts";
import { connect } from "../../src/storage/postgres/client.ts";

const sql = connect(Deno.args[0]!, { max: 1 });
try {
  console.log(JSON.stringify(await migrate(sql)));
} finally {
  await sql.end();
}
