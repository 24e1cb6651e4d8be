package websocket_test

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// module is this repository's module path.
const module = "github.com/duplexws/duplex"

// foreignDeps lists the packages pkg imports, directly or not, when built
// for goos, that are neither in the standard library nor pkg itself nor
// one of the module's internal/ packages (whose own imports the list
// includes, so they are held to the same rule).
func foreignDeps(t *testing.T, goos, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg)
	cmd.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s (GOOS=%s): %v\n%s", pkg, goos, err, stderr)
	}
	var foreign []string
	for _, p := range strings.Fields(string(out)) {
		if p == pkg || strings.HasPrefix(p, module+"/internal/") || strings.HasPrefix(p, pkg+"/internal/") {
			continue
		}
		foreign = append(foreign, p)
	}
	return foreign
}

// TestStandardLibraryOnly: the library package websocket imports nothing
// outside the standard library but the module's own internal packages,
// which import nothing outside it either, on every platform it builds
// for; users of the library get no dependency with it.
func TestStandardLibraryOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, goos := range []string{"linux", "darwin", "windows", "freebsd"} {
		if foreign := foreignDeps(t, goos, module+"/websocket"); len(foreign) > 0 {
			t.Errorf("GOOS=%s: websocket imports %v, outside the standard library", goos, foreign)
		}
	}
	// The check sees a dependency where there is one: the gateway has
	// client_golang.
	if foreign := foreignDeps(t, runtime.GOOS, module+"/gateway"); !strings.Contains(strings.Join(foreign, " "), "github.com/prometheus/client_golang/prometheus") {
		t.Errorf("the gateway's non-standard imports %v do not show client_golang: the check is blind", foreign)
	}
}
