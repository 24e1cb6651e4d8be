// A receiver of the gateway's Pusher webhooks that checks each with the
// pusher server SDK's own webhook code, for
// peers/interop/pusher_channels_test.go.
//
//   node pusher_webhooks.mjs KEY SECRET
//
// It listens on 127.0.0.1 at a free port, prints {"type":"listening",
// "port"}, then one line per POST: {"type":"webhook","valid","valid_other",
// "events"}, where valid is the SDK's verdict with the app's key and
// secret and valid_other with another secret (which must be false). It
// exits when standard input ends.
import { createRequire } from 'node:module';
import http from 'node:http';

const require = createRequire(import.meta.url);
const PusherServer = require('pusher');

const [key, secret] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const sdk = (s) => new PusherServer({ appId: '1', key, secret: s });

const server = http.createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const request = { headers: req.headers, rawBody: body };
    const hook = sdk(secret).webhook(request);
    const valid = hook.isValid();
    out({ type: 'webhook', valid, valid_other: sdk(secret + 'x').webhook(request).isValid(),
      events: valid ? hook.getEvents() : [] });
    res.writeHead(200).end();
  });
});
server.listen(0, '127.0.0.1', () => out({ type: 'listening', port: server.address().port }));
process.stdin.resume();
process.stdin.on('end', () => { server.close(); process.exit(0); });
