// Starts fauxqs, an SQS emulator, listening on 127.0.0.1 only (its own CLI
// listens on every interface), with its request log off.
//   node tests/fauxqs.mjs INSTALL_DIR PORT
// Queue URLs are then http://127.0.0.1:PORT/000000000000/NAME: fauxqs finds a
// queue by its exact URL, and builds it from the Host header it is sent.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [installDir, port] = process.argv.slice(2);
const dist = join(installDir, "node_modules", "fauxqs", "dist");
const { buildApp } = await import(pathToFileURL(join(dist, "app.js")).href);
const { SqsStore } = await import(pathToFileURL(join(dist, "sqs", "sqsStore.js")).href);
// No host name of its own ("sqs.REGION.localhost" by default): queue URLs are
// built from the address the client used.
const sqsStore = new SqsStore();
sqsStore.host = "";
const server = buildApp({ logger: false, stores: { sqsStore } });
await server.listen({ port: Number(port), host: "127.0.0.1" });
console.log(`fauxqs listening on http://127.0.0.1:${port}`);
