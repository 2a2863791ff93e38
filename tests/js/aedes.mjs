// aedes, the Node.js MQTT 3.1.1 broker, as a peer of the project's clients:
// `node aedes.mjs` listens on a free 127.0.0.1 port, prints
// {"listening": PORT} and serves until its standard input closes (the test
// holding the pipe ends or dies), so it never outlives its test.
// Driven by tests/test_interop_aedes.py.
import { createServer } from "node:net";
import { Aedes } from "aedes";

const broker = await Aedes.createBroker();
const server = createServer(broker.handle);

function stop() {
  server.close();
  broker.close(() => process.exit(0));
}

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + "\n");
});
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
