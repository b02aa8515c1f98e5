// Node `ws` fan-out server for bench/fanout.sh (npm install in bench/), with
// the broadcast loop of the ws README: wss.clients.forEach + readyState.
//   node bench/servers/node_ws_fanout.js PORT [MODE [TOPICS]]
// Every connection is put in TOPICS sets (default 1; ws has no topics, so a
// Map of Sets stands in for them, for the idle-memory figure), then gets the
// text message "ready". MODE fanout (default): each message goes to every
// client, the sender included; chat: to every client but the sender.
'use strict';
const path = require('path');
const { WebSocketServer, WebSocket } = require(path.join(__dirname, '..', 'node_modules', 'ws'));

const port = Number(process.argv[2]);
const mode = process.argv[3] || 'fanout';
const ntopics = Number(process.argv[4] || '1');
if (!port || (mode !== 'fanout' && mode !== 'chat')) {
  console.error('usage: node_ws_fanout.js PORT [fanout|chat [TOPICS]]');
  process.exit(1);
}

const topics = new Map();
for (let i = 1; i <= ntopics; i++) topics.set('topic' + i, new Set());

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  for (const set of topics.values()) set.add(ws);
  ws.send('ready');
  if (mode === 'fanout') {
    ws.on('message', (data, isBinary) => {
      wss.clients.forEach((client) => {
        if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
      });
    });
  } else {
    ws.on('message', (data, isBinary) => {
      wss.clients.forEach((client) => {
        if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
      });
    });
  }
  ws.on('close', () => {
    for (const set of topics.values()) set.delete(ws);
  });
  ws.on('error', () => {});
});
