// Node's `ws` as a client of a duplex server with an accept hook.
//
//   node accept_client.js URL
//
// Connects once. Accepted: prints opened=1, the first message as got=...,
// closes with 1000 and prints close_code. Refused: prints status, the
// WWW-Authenticate header and the body. Then `OK`, or `FAIL: why` and exit
// status 1. Every wait is bounded; the whole run is cut off after 20 s.
"use strict";
const WebSocket = require("ws");

const [url] = process.argv.slice(2);
const say = (k, v) => console.log(`${k}=${v}`);
setTimeout(() => fail(new Error("timed out after 20 s")), 20000).unref();

function fail(e) {
  console.log(`FAIL: ${e && e.stack ? e.stack.split("\n")[0] : e}`);
  process.exit(1);
}

function done() {
  console.log("OK");
  process.exit(0);
}

const ws = new WebSocket(url, { perMessageDeflate: false });
// with a listener, ws hands a non-101 answer over instead of failing
ws.on("unexpected-response", (req, res) => {
  say("status", res.statusCode);
  say("www_authenticate", res.headers["www-authenticate"]);
  let body = "";
  res.setEncoding("utf8");
  res.on("data", (chunk) => (body += chunk));
  res.on("end", () => {
    say("body", JSON.stringify(body));
    done();
  });
  res.on("error", fail);
});
ws.on("open", () => say("opened", 1));
ws.on("message", (data) => {
  say("got", data.toString());
  ws.close(1000, "done");
});
ws.on("close", (code) => {
  say("close_code", code);
  done();
});
ws.on("error", fail);
