// The recovery extension of the gateway (docs/pusher.md) for pusher-js,
// its Node or its web build, unchanged: the last event id of each channel
// is read from the messages, and each pusher:subscribe (pusher-js sends
// them again when it reconnects) asks for the channel's id and for the
// events after the last id seen.
//
//   import { enableRecovery } from './pusher_recovery.mjs';
//   const lastIds = enableRecovery(Pusher); // before new Pusher(...)
//
// The ids are kept per channel name for every client of the Pusher class:
// one client per process or page.
export function enableRecovery(Pusher) {
  const last = new Map(); // channel name → the id of the last event seen
  const createWebSocket = Pusher.Runtime.createWebSocket;
  Pusher.Runtime.createWebSocket = function (url) {
    const socket = createWebSocket.call(this, url);
    socket.addEventListener('message', (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      if (!m || typeof m.channel !== 'string') return;
      if (m.event === 'pusher_internal:subscription_succeeded') {
        let d = m.data;
        try {
          d = JSON.parse(d);
        } catch {}
        if (d && typeof d.id === 'string') last.set(m.channel, d.id);
      } else if (typeof m.id === 'string') {
        last.set(m.channel, m.id);
      }
    });
    return socket;
  };
  const sendEvent = Pusher.prototype.send_event;
  Pusher.prototype.send_event = function (name, data, channel) {
    if (name === 'pusher:subscribe' && data && typeof data.channel === 'string') {
      data = { ...data, recovery: true };
      if (last.has(data.channel)) data.since = last.get(data.channel);
    }
    return sendEvent.call(this, name, data, channel);
  };
  return last;
}
