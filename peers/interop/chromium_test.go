package interop

import (
	"encoding/json"
	"testing"
)

// TestChromium runs Debian's Chromium against our server: a page the test
// serves runs the plan with the browser's WebSocket API, driven by
// playwright-core (js/chromium.mjs). The API can neither fragment nor
// ping; the browser offers permessage-deflate on every connection, so the
// plain sessions also check that our server declines it when compression
// is disabled. wss relies on --ignore-certificate-errors.
func TestChromium(t *testing.T) {
	requireChromium(t)
	recordVersion(t, "playwright-core", npmVersion(t, "playwright-core"))
	srv := startOurServer(t, newTestCerts(t))
	p := planFor(srv, "chromium", clientCaps{})
	userDataDir := t.TempDir() // a fresh profile for each run
	proc := startPeer(t, peerRunTimeout, nil, "node", "js/chromium.mjs", srv.pageURL(), writePlan(t, p), userDataDir)
	lines := proc.output(t)
	if len(lines) == 0 {
		t.Fatalf("the Chromium driver printed nothing")
	}
	var browser struct{ Browser, UserAgent string }
	if err := json.Unmarshal([]byte(lines[0]), &browser); err != nil {
		t.Fatalf("the Chromium driver's first line %q: %v", lines[0], err)
	}
	recordVersion(t, "chromium", browser.Browser)
	t.Logf("user agent: %s", browser.UserAgent)
	t.Run("chromium-client-to-our-server", func(t *testing.T) {
		checkPlan(t, srv, p, parseResults(t, lines[1:]))
	})
}
