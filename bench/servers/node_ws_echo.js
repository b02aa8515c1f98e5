// Node `ws` echo server for the benchmarks (npm install in bench/).
//   node bench/servers/node_ws_echo.js PORT
'use strict';
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '..', 'node_modules', 'ws'));

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node_ws_echo.js PORT');
  process.exit(1);
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
