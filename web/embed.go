// Package web holds the browser client duplex.js, its types and the demo
// pages, which duplex serve embeds and serves.
package web

import "embed"

// Files are the client and the demo pages, at the root of the FS.
//
//go:embed duplex.js duplex.d.ts index.html chat.html ticker.html dashboard.html cursors.html demo.css demo.js
var Files embed.FS
