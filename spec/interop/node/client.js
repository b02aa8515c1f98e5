// Node's `ws` as a client against a duplex server.
//
//   node client.js URL DEFLATE CASE
//
// DEFLATE 1 offers permessage-deflate (ws's default offer), 0 does not.
// CASE "all" runs, on one connection: text, binary, empty, 1 MiB messages,
// fragmented text and binary, a ping (its pong must carry the payload),
// then a close with 4001 "done". CASE "server_close" asks the server to
// close ("close-me"). Prints key=value lines and `OK`, or `FAIL: why` and
// exits 1. Every wait is bounded; the whole run is cut off after 20 s.
"use strict";
const crypto = require("crypto");
const WebSocket = require("ws");

const [url, deflate, kase] = process.argv.slice(2);
const STEP = 5000;
const say = (k, v) => console.log(`${k}=${v}`);
setTimeout(() => fail(new Error("timed out after 20 s")), 20000).unref();

function fail(e) {
  console.log(`FAIL: ${e && e.stack ? e.stack.split("\n")[0] : e}`);
  process.exit(1);
}

const ws = new WebSocket(url, ["chat", "other"], { perMessageDeflate: deflate === "1", maxPayload: 0 });
const inbox = [];
let waiter = null;
ws.on("message", (data, isBinary) => {
  inbox.push({ data, isBinary });
  if (waiter) waiter();
});
ws.on("error", fail);

function next() {
  return new Promise((resolve, reject) => {
    const take = () => {
      waiter = null;
      clearTimeout(t);
      resolve(inbox.shift());
    };
    const t = setTimeout(() => reject(new Error("no message within 5 s")), STEP);
    if (inbox.length) take();
    else waiter = take;
  });
}

function sent(data, opts) {
  return new Promise((resolve, reject) => ws.send(data, opts || {}, (e) => (e ? reject(e) : resolve())));
}

async function echo(data, binary) {
  await sent(data, { binary });
  const m = await next();
  const want = Buffer.isBuffer(data) ? data : Buffer.from(data);
  if (m.isBinary !== binary || !m.data.equals(want))
    throw new Error(`echo mismatch: sent ${binary ? "binary" : "text"} of ${want.length}, ` +
      `got ${m.isBinary ? "binary" : "text"} of ${m.data.length}`);
}

function closed() {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no close within 5 s")), STEP);
    ws.once("close", (code, reason) => {
      clearTimeout(t);
      resolve([code, reason.toString()]);
    });
  });
}

async function run() {
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    setTimeout(() => reject(new Error("no open within 5 s")), STEP).unref();
  });
  say("subprotocol", ws.protocol);
  say("extensions", ws.extensions || "none");
  if (kase === "all") {
    await echo("hello", false);
    await echo("h\u00e9llo \u2713 \u{1F600}", false);
    await echo(Buffer.from([...Array(256).keys()]), true);
    await echo("", false);
    await echo(Buffer.alloc(0), true);
    await echo(crypto.randomBytes(1 << 20), true);
    await echo("x".repeat(1 << 20), false);
    // fragments: three frames of one text message, then of one binary one
    await sent("frag", { fin: false });
    await sent("mented ", { fin: false });
    await sent("\u2713", { fin: true });
    let m = await next();
    if (m.isBinary || m.data.toString() !== "fragmented \u2713") throw new Error(`fragmented text came back as ${m.data}`);
    await sent(Buffer.from([0, 1]), { binary: true, fin: false });
    await sent(Buffer.alloc(70000, 2), { binary: true, fin: true });
    m = await next();
    if (!m.isBinary || m.data.length !== 70002 || m.data[0] !== 0 || m.data[70001] !== 2)
      throw new Error(`fragmented binary came back with ${m.data.length} bytes`);
    say("fragments", "ok");
    const pong = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no pong within 5 s")), STEP);
      ws.once("pong", (data) => {
        clearTimeout(t);
        resolve(data.toString());
      });
    });
    ws.ping("are you there");
    say("pong", (await pong) === "are you there" ? "ok" : "wrong payload");
    await echo("after ping", false);
    const done = closed();
    ws.close(4001, "done");
    const [code, reason] = await done;
    say("close_code", code);
    say("close_reason", reason);
  } else if (kase === "server_close") {
    const done = closed();
    await sent("close-me");
    const [code, reason] = await done;
    say("close_code", code);
    say("close_reason", reason);
  } else {
    throw new Error(`unknown case ${kase}`);
  }
}

run().then(() => {
  console.log("OK");
  process.exit(0);
}, fail);
