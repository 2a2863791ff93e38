// MQTT.js as a peer of the project's broker: one scenario per run, chosen on
// the command line, printing one JSON object per line of what MQTT.js saw.
// Driven by tests/test_interop_mqttjs.py, which asserts on those lines.
//
//   node peer.mjs SCENARIO URL VERSION [OPTIONS-JSON]
//
// Every scenario ends within its own bound (BOUND_MS): on time-out it prints
// {"error": "timeout"} and exits 2, so a hung peer fails the test, not CI.
import mqtt from "mqtt";

const [scenario, url, versionText, optionsText] = process.argv.slice(2);
const protocolVersion = Number(versionText);
const v5 = protocolVersion === 5;
const extra = optionsText ? JSON.parse(optionsText) : {};
const BOUND_MS = 15000;

const timer = setTimeout(() => {
  print({ error: "timeout" });
  process.exit(2);
}, BOUND_MS);

function print(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

function options(clientId, more = {}) {
  return { protocolVersion, clientId, reconnectPeriod: 0, connectTimeout: 5000, ...extra, ...more };
}

// A connected client whose messages are collected from the first one, and
// the CONNACK it got: { client, connack, inbox }.
function connect(clientId, more = {}) {
  const client = mqtt.connect(url, options(clientId, more));
  const inbox = { seen: [], waiting: null };
  client.on("message", (topic, payload, packet) => {
    inbox.seen.push(describe(topic, payload, packet));
    if (inbox.waiting && inbox.seen.length >= inbox.waiting.count) {
      inbox.waiting.resolve(inbox.seen.slice(0, inbox.waiting.count));
    }
  });
  return new Promise((resolve, reject) => {
    client.once("connect", (connack) => resolve({ client, connack, inbox }));
    client.once("error", (error) => {
      client.end(true);
      reject(error);
    });
  });
}

// The first `count` messages of an inbox, once they are there.
function messages(inbox, count) {
  if (inbox.seen.length >= count) return Promise.resolve(inbox.seen.slice(0, count));
  return new Promise((resolve) => {
    inbox.waiting = { count, resolve };
  });
}

function describe(topic, payload, packet) {
  const properties = packet.properties ?? {};
  const message = { topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain };
  if (properties.userProperties) message.userProperties = properties.userProperties;
  if (properties.contentType) message.contentType = properties.contentType;
  if (properties.responseTopic) message.responseTopic = properties.responseTopic;
  if (properties.correlationData) message.correlationData = properties.correlationData.toString();
  if (properties.messageExpiryInterval !== undefined) {
    message.messageExpiryInterval = properties.messageExpiryInterval;
  }
  return message;
}

const PROPERTIES = {
  userProperties: { origin: "mqttjs" },
  contentType: "text/plain",
  responseTopic: "mqttjs/replies",
  correlationData: Buffer.from("c-1"),
  messageExpiryInterval: 3600,
};

const scenarios = {
  // QoS 0, 1 and 2 both ways through one subscription; MQTT 5 properties.
  async roundtrip() {
    const { client, inbox } = await connect(`mqttjs-rt-${protocolVersion}`);
    const granted = await client.subscribeAsync("mqttjs/rt/#", { qos: 2 });
    print({ granted: granted.map((g) => g.qos) });
    for (const qos of [0, 1, 2]) {
      await client.publishAsync(`mqttjs/rt/${qos}`, `payload ${qos}`, {
        qos,
        ...(v5 ? { properties: PROPERTIES } : {}),
      });
    }
    for (const message of (await messages(inbox, 3)).sort((a, b) => a.qos - b.qos)) print(message);
    await client.unsubscribeAsync("mqttjs/rt/#");
    await client.endAsync();
  },

  // A retained message reaches a later subscriber with the retain flag; an
  // empty retained payload clears it.
  async retained() {
    const { client: publisher } = await connect(`mqttjs-rp-${protocolVersion}`);
    await publisher.publishAsync("mqttjs/ret", "kept", { qos: 1, retain: true });
    const first = await connect(`mqttjs-r1-${protocolVersion}`);
    await first.client.subscribeAsync("mqttjs/ret", { qos: 1 });
    print({ subscriber: 1, ...(await messages(first.inbox, 1))[0] });
    await first.client.endAsync();
    await publisher.publishAsync("mqttjs/ret", "", { qos: 1, retain: true });
    const second = await connect(`mqttjs-r2-${protocolVersion}`);
    await second.client.subscribeAsync("mqttjs/ret", { qos: 1 });
    // Nothing retained is left: the first message is this later one.
    await publisher.publishAsync("mqttjs/ret", "live", { qos: 1 });
    print({ subscriber: 2, ...(await messages(second.inbox, 1))[0] });
    await Promise.all([second.client.endAsync(), publisher.endAsync()]);
  },

  // The will of a client whose connection drops without DISCONNECT.
  async will() {
    const watcher = await connect(`mqttjs-ww-${protocolVersion}`);
    await watcher.client.subscribeAsync("mqttjs/will", { qos: 1 });
    const { client: doomed } = await connect(`mqttjs-wd-${protocolVersion}`, {
      will: { topic: "mqttjs/will", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    doomed.stream.destroy();
    print((await messages(watcher.inbox, 1))[0]);
    doomed.end(true);
    await watcher.client.endAsync();
  },

  // A persistent session keeps its subscription and queues QoS 1 messages
  // while its client is away.
  async session() {
    const id = `mqttjs-ps-${protocolVersion}`;
    const persistent = v5
      ? { clean: false, properties: { sessionExpiryInterval: 300 } }
      : { clean: false };
    const fresh = await connect(id, { clean: true });
    await fresh.client.endAsync();
    const subscriber = await connect(id, persistent);
    print({ sessionPresent: subscriber.connack.sessionPresent });
    await subscriber.client.subscribeAsync("mqttjs/ps", { qos: 1 });
    await subscriber.client.endAsync();
    const { client: publisher } = await connect(`mqttjs-pp-${protocolVersion}`);
    for (const n of [1, 2, 3]) await publisher.publishAsync("mqttjs/ps", `queued ${n}`, { qos: 1 });
    await publisher.endAsync();
    const back = await connect(id, persistent);
    print({ sessionPresent: back.connack.sessionPresent });
    for (const message of await messages(back.inbox, 3)) print(message);
    await back.client.endAsync();
  },

  // A refused CONNECT: MQTT.js's error and its code.
  async refused() {
    try {
      const { client } = await connect(`mqttjs-no-${protocolVersion}`, {
        username: "nobody",
        password: "wrong",
      });
      print({ connected: true });
      await client.endAsync();
    } catch (error) {
      print({ refused: error.code });
    }
  },

  // Topic aliases both ways (MQTT 5): MQTT.js aliases what it sends, the
  // broker aliases what it sends to a client that allows it.
  async aliases() {
    const { client, connack, inbox } = await connect("mqttjs-alias", {
      autoUseTopicAlias: true,
      autoAssignTopicAlias: true,
      properties: { topicAliasMaximum: 8 },
    });
    print({ brokerAliases: connack.properties?.topicAliasMaximum ?? 0 });
    await client.subscribeAsync("mqttjs/alias/#", { qos: 1 });
    const topic = "mqttjs/alias/a-topic-long-enough-to-alias";
    for (const n of [1, 2, 3, 4]) await client.publishAsync(topic, `n${n}`, { qos: 1 });
    for (const message of await messages(inbox, 4)) print(message);
    await client.endAsync();
  },
};

async function main() {
  const run = scenarios[scenario];
  if (run === undefined) {
    print({ error: `unknown scenario ${scenario}` });
    process.exit(2);
  }
  await run();
  clearTimeout(timer);
}

main().catch((error) => {
  print({ error: String(error), code: error.code });
  process.exit(1);
});
