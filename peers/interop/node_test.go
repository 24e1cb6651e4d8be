package interop

import (
	"testing"
	"time"
)

// peerRunTimeout bounds a client peer's run of its whole plan.
const peerRunTimeout = 150 * time.Second

// TestNodeWS runs Node's ws against our server and our client.
func TestNodeWS(t *testing.T) {
	requireNode(t)
	recordVersion(t, "node", commandOutput(t, "node", "--version"))
	recordVersion(t, "ws", npmVersion(t, "ws"))
	certs := newTestCerts(t)

	t.Run("ws-client-to-our-server", func(t *testing.T) {
		srv := startOurServer(t, certs)
		p := planFor(srv, "ws", clientCaps{fragments: true, ping: true})
		proc := startPeer(t, peerRunTimeout, nil, "node", "js/ws_client.mjs", writePlan(t, p))
		checkPlan(t, srv, p, parseResults(t, proc.output(t)))
	})

	t.Run("our-client-to-ws-server", func(t *testing.T) {
		testOurClient(t, startScriptServer(t, certs, "node", "js/ws_server.mjs"))
	})
}
