// Runs piston-client (npm) against the service: `node run_piston.mjs URL REQUEST_JSON`.
// REQUEST_JSON: {"language", "code", "config"}. Prints the client's answer as JSON.
import piston from "piston-client";

const [server, request] = process.argv.slice(2);
const { language, code, config } = JSON.parse(request);
const client = piston({ server });
const runtimes = await client.runtimes();
const result = await client.execute(language, code, config);
console.log(JSON.stringify({ runtimes, result }));
