// Node's `ws` as a server for a duplex client.
//
//   node server.js DEFLATE
//
// Listens on 127.0.0.1 on a free port and prints `port=N`. Serves one
// connection, then prints what it saw as key=value lines and `OK`, and
// exits; gives up after 20 s. DEFLATE 1 accepts permessage-deflate. The
// handler echoes every message, except:
//   "frag"      -> a text message sent as three fragments
//   "ping-me"   -> a ping with payload "node-ping"; once its pong is back,
//                  "pong=ok" (or "pong=wrong payload")
//   "close-me"  -> closes with 4003 "node-bye"
"use strict";
const { WebSocketServer } = require("ws");

const deflate = process.argv[2] === "1";
setTimeout(() => {
  console.log("FAIL: timed out after 20 s");
  process.exit(1);
}, 20000).unref();

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  perMessageDeflate: deflate,
  maxPayload: 0,
  handleProtocols: (protocols) => (protocols.has("chat") ? "chat" : false),
});
wss.on("listening", () => console.log(`port=${wss.address().port}`));
wss.on("connection", (ws, req) => {
  console.log(`path=${req.url}`);
  console.log(`user_agent=${req.headers["user-agent"] || ""}`);
  console.log(`subprotocol=${ws.protocol}`);
  console.log(`extensions=${ws.extensions || "none"}`);
  ws.on("message", (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text === "frag") {
      ws.send("one ", { fin: false });
      ws.send("two ", { fin: false });
      ws.send("three", { fin: true });
    } else if (text === "ping-me") {
      ws.once("pong", (p) => ws.send(p.toString() === "node-ping" ? "pong=ok" : "pong=wrong payload"));
      ws.ping("node-ping");
    } else if (text === "close-me") {
      ws.close(4003, "node-bye");
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on("close", (code, reason) => {
    console.log(`close_code=${code}`);
    console.log(`close_reason=${reason.toString()}`);
    console.log("OK");
    process.exit(0);
  });
});
