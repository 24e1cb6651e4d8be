// demo.js: what the demo pages share. Not part of the client package.
import { Client } from '/duplex.js';

/** @param {string} id */
export const $ = (id) => document.getElementById(id);

/**
 * Makes a demo page's client for this gateway's /ws, shows its state in
 * #state and exposes it as globalThis.client, for the console and the
 * end-to-end tests. The page adds its listeners, then calls connect().
 */
export function demoClient() {
  const url = (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws';
  const client = new Client(url);
  globalThis.client = client;
  /** @param {string} s */
  const show = (s) => {
    const el = $('state');
    el.textContent = s;
    el.dataset.state = s;
  };
  client.on('state', show);
  return {
    client,
    connect() {
      client.connect();
      show(client.state);
    },
  };
}
