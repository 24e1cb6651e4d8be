// Package benchsrv is what the benchmark servers in peers/bench/servers have
// in common, so that each server's main.go holds only its library's code:
// the flags, the RLIMIT_NOFILE raise, the /stats endpoint the load generator
// samples memory from, CPU and heap profiles, and the set of broadcast
// subscribers.
package benchsrv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// MaxMessage is the read limit the echo handlers set: the largest echo
// message is 64 KiB, above most libraries' default limit.
const MaxMessage = 1 << 20

// Flags are the command line of every benchmark server.
type Flags struct {
	Addr       string // where to listen: 127.0.0.1:0 picks a port
	Compress   bool   // permessage-deflate, with context takeover where the library has it
	CPUProfile string // file for a CPU profile from start to SIGTERM
	MemProfile string // file for a heap profile, written on /stats?gc=1&profile=1
}

// ParseFlags parses the command line.
func ParseFlags() *Flags {
	f := &Flags{}
	flag.StringVar(&f.Addr, "addr", "127.0.0.1:0", "listen `address`")
	flag.BoolVar(&f.Compress, "compress", false, "negotiate permessage-deflate, with context takeover where supported")
	flag.StringVar(&f.CPUProfile, "cpuprofile", "", "write a CPU profile to `file` until SIGTERM")
	flag.StringVar(&f.MemProfile, "memprofile", "", "write a heap profile to `file` on /stats?gc=1&profile=1")
	flag.Parse()
	if f.MemProfile != "" {
		// Per-connection objects are small: sample finely enough to see them.
		runtime.MemProfileRate = 256
	}
	return f
}

// Run serves mux, with /stats added, on f.Addr until SIGTERM or SIGINT, and
// exits. Its first line on standard output is "listening ADDR", which the
// load generator waits for.
func Run(f *Flags, mux *http.ServeMux) {
	ln := Listen(f)
	mux.HandleFunc("/stats", StatsHandler(f))
	srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, state http.ConnState) {
		if state == http.StateHijacked {
			CountUpgraded()
		}
	}}
	go srv.Serve(ln)
	WaitForSignal(f)
	os.Exit(0)
}

// Listen raises RLIMIT_NOFILE, starts the CPU profile if asked, listens on
// f.Addr and prints "listening ADDR". For a server that does not serve
// with net/http's Server (Run does).
func Listen(f *Flags) net.Listener {
	if err := RaiseFileLimit(); err != nil {
		log.Printf("raising RLIMIT_NOFILE: %v", err)
	}
	if f.CPUProfile != "" {
		out, err := os.Create(f.CPUProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			log.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", f.Addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	return ln
}

// WaitForSignal waits for SIGTERM or SIGINT, then stops the CPU profile.
func WaitForSignal(f *Flags) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
	if f.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
}

// CountUpgraded counts a connection handed to the library, for /stats.
func CountUpgraded() { upgraded.Add(1) }

// StatsHandler answers /stats (see serveStats).
func StatsHandler(f *Flags) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { serveStats(w, r, f.MemProfile) }
}

// writeHeapProfile writes the heap as of the last garbage collection.
func writeHeapProfile(path string) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard one, which is as
// far as a process without CAP_SYS_RESOURCE may go.
func RaiseFileLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// Stats is what /stats answers, as JSON.
type Stats struct {
	RSS        int64  `json:"rss"`        // VmRSS of /proc/self/status, bytes
	HeapInuse  uint64 `json:"heapInuse"`  // runtime.MemStats.HeapInuse
	StackInuse uint64 `json:"stackInuse"` // runtime.MemStats.StackInuse
	// OtherSys is runtime.MemStats.OtherSys: the runtime's memory outside
	// the heap that is not its own bookkeeping of heap, stacks and GC,
	// chiefly the netpoller's descriptor state and finalizer records for
	// every socket opened through package net.
	OtherSys    uint64 `json:"otherSys"`
	Goroutines  int    `json:"goroutines"`  // runtime.NumGoroutine
	Subscribers int64  `json:"subscribers"` // broadcast subscribers registered
	Upgraded    int64  `json:"upgraded"`    // connections net/http handed to the library, ever
}

// upgraded counts the connections hijacked from net/http for WebSocket.
var upgraded atomic.Int64

// serveStats answers /stats. With ?gc=1 it first collects garbage and
// returns freed memory to the system, so that RSS counts what is live
// rather than how recently the collector ran; with &profile=1 it then
// writes a heap profile to memProfile, if that is set.
func serveStats(w http.ResponseWriter, r *http.Request, memProfile string) {
	if r.URL.Query().Get("gc") == "1" {
		debug.FreeOSMemory()
		if memProfile != "" && r.URL.Query().Get("profile") == "1" {
			if err := writeHeapProfile(memProfile); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := Stats{
		RSS:         readRSS(),
		HeapInuse:   ms.HeapInuse,
		StackInuse:  ms.StackInuse,
		OtherSys:    ms.OtherSys,
		Goroutines:  runtime.NumGoroutine(),
		Subscribers: subscribers.Load(),
		Upgraded:    upgraded.Load(),
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

// readRSS returns the process's resident set size in bytes, or -1.
func readRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(v, []byte("kB")))), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// IsPublisher reports whether a /broadcast request is the publisher's
// (?publish), whose messages go to every subscriber, rather than a
// subscriber's.
func IsPublisher(r *http.Request) bool { return r.URL.Query().Has("publish") }

// subscribers counts the members of every Hub, for /stats: the load
// generator starts publishing once all its subscribers are registered.
var subscribers atomic.Int64

// Hub is a set of broadcast subscribers. The zero value is empty and ready.
type Hub[T comparable] struct {
	mu   sync.Mutex
	subs map[T]struct{}
}

// Add registers c.
func (h *Hub[T]) Add(c T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = make(map[T]struct{})
	}
	if _, ok := h.subs[c]; !ok {
		h.subs[c] = struct{}{}
		subscribers.Add(1)
	}
}

// Remove unregisters c.
func (h *Hub[T]) Remove(c T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[c]; ok {
		delete(h.subs, c)
		subscribers.Add(-1)
	}
}

// Snapshot appends the subscribers to dst, so that a publisher can send to
// them without holding the hub's lock and can reuse dst.
func (h *Hub[T]) Snapshot(dst []T) []T {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		dst = append(dst, c)
	}
	return dst
}
