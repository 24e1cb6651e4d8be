package interop

import "testing"

const pythonPeer = "py/websockets_peer.py"

// TestPythonWebsockets runs Python's websockets (Debian's package, on
// asyncio) against our server and our client.
func TestPythonWebsockets(t *testing.T) {
	recordVersion(t, "websockets", requirePython(t))
	recordVersion(t, "python", commandOutput(t, pythonPath, "--version"))
	certs := newTestCerts(t)

	t.Run("websockets-client-to-our-server", func(t *testing.T) {
		srv := startOurServer(t, certs)
		p := planFor(srv, "websockets", clientCaps{fragments: true, ping: true})
		proc := startPeer(t, peerRunTimeout, nil, pythonPath, pythonPeer, "client", writePlan(t, p))
		checkPlan(t, srv, p, parseResults(t, proc.output(t)))
	})

	t.Run("our-client-to-websockets-server", func(t *testing.T) {
		testOurClient(t, startScriptServer(t, certs, pythonPath, pythonPeer, "server"))
	})
}
