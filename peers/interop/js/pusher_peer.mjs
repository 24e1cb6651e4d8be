// A pusher-js client (its Node build) driven line by line from standard
// input, with the pusher server SDK at hand to sign channel authorizations
// and to call the HTTP API, for peers/interop/pusher_test.go.
//
//   node pusher_peer.mjs HOST PORT KEY APP_ID SECRET [MASTER_KEY|-] [recovery]
//
// recovery turns on the gateway's recovery extension (pusher_recovery.mjs).
// MASTER_KEY, base64 of 32 bytes, is the SDK's encryptionMasterKeyBase64:
// its channel authorizations give pusher-js the shared secret of each
// private-encrypted- channel, and its triggers encrypt for them.
//
// Commands, one JSON object a line on standard input:
//   {"op":"subscribe","channel":C,"user":{"user_id":…,"user_info":…},"secret":S}
//       (user for presence channels; secret, when given, signs instead of
//       the app's: a wrong one must be refused)
//   {"op":"unsubscribe","channel":C}
//   {"op":"client_event","channel":C,"event":E,"data":D}
//   {"op":"trigger","channels":[…],"event":E,"data":D,"exclude_self":bool,"info":I,"secret":S}
//       (through the HTTP API, signed by the SDK)
//   {"op":"trigger_batch","batch":[{"channel":C,"name":E,"data":D},…]}
//   {"op":"get","path":P,"params":{…}}  (a query of the HTTP API, as the SDK's get)
//   {"op":"signin","user":{"id":U,…}}  (pusher-js signin, signed by the SDK)
//   {"op":"send_to_user","user":U,"event":E,"data":D}, {"op":"terminate","user":U}
//   {"op":"disconnect"}, {"op":"connect"}
// What happens comes out as JSON lines on standard output: state, event,
// subscribed, subscription_error, cache_miss, member_added, member_removed, error,
// client_event_sent, trigger, get, signed_in, user_event. The process exits when standard input ends.
import { createRequire } from 'node:module';
import readline from 'node:readline';
import { enableRecovery } from './pusher_recovery.mjs';

const require = createRequire(import.meta.url);
const Pusher = require('pusher-js');
const PusherServer = require('pusher');

const [host, port, key, appId, secret, masterKeyArg, extension] = process.argv.slice(2);
const masterKey = masterKeyArg === '-' ? undefined : masterKeyArg;
if (extension === 'recovery') enableRecovery(Pusher);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const sdk = (s) => new PusherServer({ appId, key, secret: s || secret, host, port, useTLS: false,
  ...(masterKey ? { encryptionMasterKeyBase64: masterKey } : {}) });
const signing = {}; // channel → {user, secret} of its subscribe command
let signinUser = null; // the user_data of the signin command

const client = new Pusher(key, {
  cluster: 'local',
  wsHost: host,
  wsPort: Number(port),
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  userAuthentication: {
    customHandler: (params, callback) => {
      try {
        callback(null, sdk().authenticateUser(params.socketId, signinUser));
      } catch (err) {
        callback(err, null);
      }
    },
  },
  channelAuthorization: {
    customHandler: (params, callback) => {
      const s = signing[params.channelName] || {};
      try {
        callback(null, sdk(s.secret).authorizeChannel(params.socketId, params.channelName, s.user));
      } catch (err) {
        callback(err, null);
      }
    },
  },
});

client.connection.bind('state_change', (s) =>
  out({ type: 'state', previous: s.previous, current: s.current, socket_id: client.connection.socket_id }));
client.connection.bind('error', (e) =>
  out({ type: 'error', error: (e && e.error && e.error.data) || (e && e.data) || String(e) }));

function subscribe(cmd) {
  signing[cmd.channel] = { user: cmd.user, secret: cmd.secret };
  const ch = client.subscribe(cmd.channel);
  ch.bind_global((event, data) => {
    if (!event.startsWith('pusher:')) out({ type: 'event', channel: cmd.channel, event, data });
  });
  ch.bind('pusher:subscription_succeeded', (members) => {
    const o = { type: 'subscribed', channel: cmd.channel };
    if (members && typeof members.count === 'number') {
      o.count = members.count;
      o.me = members.me && members.me.id;
      o.members = {};
      members.each((m) => { o.members[m.id] = m.info; });
    }
    out(o);
  });
  ch.bind('pusher:subscription_error', (e) =>
    out({ type: 'subscription_error', channel: cmd.channel, status: e.status, error: e.error }));
  ch.bind('pusher:cache_miss', () => out({ type: 'cache_miss', channel: cmd.channel }));
  ch.bind('pusher:member_added', (m) => out({ type: 'member_added', channel: cmd.channel, id: m.id, info: m.info }));
  ch.bind('pusher:member_removed', (m) => out({ type: 'member_removed', channel: cmd.channel, id: m.id }));
}

async function run(cmd) {
  switch (cmd.op) {
    case 'subscribe':
      subscribe(cmd);
      break;
    case 'unsubscribe':
      client.unsubscribe(cmd.channel);
      break;
    case 'client_event': {
      const ch = client.channel(cmd.channel);
      try {
        out({ type: 'client_event_sent', ok: !!(ch && ch.trigger(cmd.event, cmd.data)) });
      } catch (err) {
        out({ type: 'client_event_sent', ok: false, error: String(err.message || err) });
      }
      break;
    }
    case 'trigger': {
      const params = cmd.exclude_self ? { socket_id: client.connection.socket_id } : undefined;
      try {
        const res = await sdk(cmd.secret).trigger(cmd.channels, cmd.event, cmd.data,
          cmd.info ? { ...params, info: cmd.info } : params);
        out({ type: 'trigger', status: res.status, body: await res.text() });
      } catch (err) {
        out({ type: 'trigger', status: err.status || 0, body: String(err.body || err.message) });
      }
      break;
    }
    case 'trigger_batch': {
      try {
        const res = await sdk(cmd.secret).triggerBatch(cmd.batch);
        out({ type: 'trigger', status: res.status });
      } catch (err) {
        out({ type: 'trigger', status: err.status || 0, body: String(err.body || err.message) });
      }
      break;
    }
    case 'signin': {
      // Signed in once pusher-js has the user's #server-to-user- channel.
      signinUser = cmd.user;
      client.user.bind_global((event, data) => out({ type: 'user_event', event, data }));
      client.signin();
      await client.user.signinDonePromise;
      for (let i = 0; i < 500 && !(client.user.serverToUserChannel && client.user.serverToUserChannel.subscribed); i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const ch = client.user.serverToUserChannel;
      out({ type: 'signed_in', user: client.user.user_data, channel_subscribed: !!(ch && ch.subscribed) });
      break;
    }
    case 'get': {
      try {
        const res = await sdk(cmd.secret).get({ path: cmd.path, params: cmd.params || {} });
        out({ type: 'get', status: res.status, body: await res.text() });
      } catch (err) {
        out({ type: 'get', status: err.status || 0, body: String(err.body || err.message) });
      }
      break;
    }
    case 'send_to_user':
    case 'terminate': {
      try {
        const res = cmd.op === 'terminate'
          ? await sdk().terminateUserConnections(cmd.user)
          : await sdk().sendToUser(cmd.user, cmd.event, cmd.data);
        out({ type: 'trigger', status: res.status });
      } catch (err) {
        out({ type: 'trigger', status: err.status || 0, body: String(err.body || err.message) });
      }
      break;
    }
    case 'disconnect':
      client.disconnect();
      break;
    case 'connect':
      client.connect();
      break;
    default:
      out({ type: 'bad_command', cmd });
  }
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  if (line.trim() === '') return;
  const cmd = JSON.parse(line);
  queue = queue.then(() => run(cmd));
});
rl.on('close', () => {
  queue.then(() => {
    client.disconnect();
    process.exit(0);
  });
});
