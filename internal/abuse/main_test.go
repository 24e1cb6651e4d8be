package abuse

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// mode is DUPLEX_ABUSE: "short", "full", or "" (the suite is skipped).
var mode = os.Getenv("DUPLEX_ABUSE")

// full reports whether the suite runs at the sizes of the issue.
func full() bool { return mode == "full" }

// size picks the count of the short or the full run.
func size(short, fullSize int) int {
	if full() {
		return fullSize
	}
	return short
}

// duplexBin is the binary under attack, built once by TestMain.
var duplexBin string

func TestMain(m *testing.M) {
	if spec := os.Getenv(probeEnv); spec != "" {
		os.Exit(probeMain(spec))
	}
	if mode != "" && mode != "short" && mode != "full" {
		fmt.Fprintf(os.Stderr, "DUPLEX_ABUSE=%q: want short or full\n", mode)
		os.Exit(2)
	}
	if mode == "" {
		// Without DUPLEX_ABUSE the tests skip themselves; nothing to build.
		os.Exit(m.Run())
	}
	if bin := os.Getenv("DUPLEX_ABUSE_BIN"); bin != "" {
		// A binary built elsewhere, such as from another revision.
		duplexBin = bin
		code := m.Run()
		printSummary()
		os.Exit(code)
	}
	dir, err := os.MkdirTemp("", "duplex-abuse")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	duplexBin = filepath.Join(dir, "duplex")
	out, err := exec.Command("go", "build", "-o", duplexBin, "github.com/duplexws/duplex/cmd/duplex").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	printSummary()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needSuite skips the test unless DUPLEX_ABUSE asks for the suite.
func needSuite(t *testing.T) {
	t.Helper()
	if mode == "" {
		t.Skip("the abuse suite runs with DUPLEX_ABUSE=short or full (make abuse-short, make abuse)")
	}
	t.Cleanup(func() {
		// A case that failed before its attack (the server would not
		// start with the configuration the fix needs) still gets a row.
		summary.Lock()
		ran := summary.ran[t.Name()]
		summary.Unlock()
		if t.Failed() && !ran {
			addSummary(fmt.Sprintf("| %s | FAIL before the attack: see its log | – | – | – |", t.Name()))
		}
	})
}

// ranCase records that the test of t reported a case.
func ranCase(t *testing.T) {
	name, _, _ := strings.Cut(t.Name(), "/")
	summary.Lock()
	if summary.ran == nil {
		summary.ran = make(map[string]bool)
	}
	summary.ran[name] = true
	summary.Unlock()
}

// summary collects one line of figures per case, printed at the end.
var summary struct {
	sync.Mutex
	rows []string
	ran  map[string]bool // top-level tests that reported a case
}

func addSummary(row string) {
	summary.Lock()
	summary.rows = append(summary.rows, row)
	summary.Unlock()
}

func printSummary() {
	summary.Lock()
	defer summary.Unlock()
	if len(summary.rows) == 0 {
		return
	}
	sort.Strings(summary.rows)
	var b strings.Builder
	fmt.Fprintf(&b, "\nabuse suite (%s): RSS and Go heap in MiB before / during (max) / after; healthy p99 before / during\n", mode)
	if os.Geteuid() == 0 {
		b.WriteString("(server and healthy client at nice -10, the attacker at 0)\n")
	} else {
		b.WriteString("(not root: server, healthy client and attacker at one CPU priority)\n")
	}
	b.WriteString("| case | result | RSS | heap | p99 |\n|---|---|---|---|---|\n")
	for _, r := range summary.rows {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	fmt.Print(b.String())
}
