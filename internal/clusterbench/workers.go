package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"
)

// maxPerWorker is the most connections one load-generator process opens:
// each process may hold 20,000 descriptors, and a worker needs a few more
// than its connections.
const maxPerWorker = 15000

// workerProc is a worker process the coordinator started and talks to.
type workerProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// share is the clients one worker opens.
type share struct{ first, count int }

// workerShares splits n clients into the fewest workers of at most
// maxPerWorker, as even as they come.
func workerShares(n int) []share {
	workers := (n + maxPerWorker - 1) / maxPerWorker
	var out []share
	for w, first := 0, 0; w < workers; w++ {
		count := (n - first) / (workers - w)
		out = append(out, share{first, count})
		first += count
	}
	return out
}

// startWorkers starts enough workers for n clients and gives each its
// share of them, from client 0 on; it returns when every worker has
// connected its clients. j is the job of them all: First and Count are
// set per worker.
func startWorkers(n int, j job) ([]*workerProc, connected, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, connected{}, err
	}
	var (
		procs []*workerProc
		total connected
	)
	for _, share := range workerShares(n) {
		cmd := exec.Command(self, "-worker")
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, total, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, total, err
		}
		if err := cmd.Start(); err != nil {
			stopWorkers(procs)
			return nil, total, err
		}
		p := &workerProc{cmd: cmd, in: in, out: bufio.NewReader(out)}
		procs = append(procs, p)
		pj := j
		pj.First, pj.Count = share.first, share.count
		if err := p.send(pj); err != nil {
			stopWorkers(procs)
			return nil, total, err
		}
	}
	// The workers connect at the same time; each answers when it is done.
	results, err := askAll(procs, nil, func(p *workerProc) (connected, error) {
		var c connected
		return c, p.receive(&c)
	})
	if err != nil {
		stopWorkers(procs)
		return nil, total, err
	}
	for _, r := range results {
		total.Clients += r.Clients
		total.Failed += r.Failed
		total.Errors = append(total.Errors, r.Errors...)
		total.Seconds = max(total.Seconds, r.Seconds)
	}
	return procs, total, nil
}

// askAll sends cmd (unless nil) to every worker and reads their answers,
// all at once.
func askAll[T any](procs []*workerProc, cmd *command, read func(*workerProc) (T, error)) ([]T, error) {
	results := make([]T, len(procs))
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() {
			if cmd != nil {
				if errs[i] = p.send(cmd); errs[i] != nil {
					return
				}
			}
			results[i], errs[i] = read(p)
		})
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

func (p *workerProc) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = p.in.Write(append(b, '\n'))
	return err
}

func (p *workerProc) receive(v any) error {
	line, err := p.out.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("worker %d: %w", p.cmd.Process.Pid, err)
	}
	return json.Unmarshal(line, v)
}

// ask sends cmd to every worker, sums their answers and merges their
// latency samples.
func ask(procs []*workerProc, cmd command) (answer, []weighted, error) {
	answers, err := askAll(procs, &cmd, func(p *workerProc) (answer, error) {
		var a answer
		return a, p.receive(&a)
	})
	var sum answer
	for _, a := range answers {
		sum.Received += a.Received
		sum.Duplicates += a.Duplicates
		sum.Missing += a.Missing
		sum.Gapped += a.Gapped
		sum.Extra += a.Extra
		sum.Disconnected += a.Disconnected
		sum.Pushes += a.Pushes
	}
	return sum, mergeLatencies(answers), err
}

type weighted struct {
	d      time.Duration
	weight float64
}

// mergeLatencies weighs each worker's sample by how many latencies it
// stands for, so that a worker's share of the percentiles is its share of
// the deliveries.
func mergeLatencies(answers []answer) []weighted {
	var all []weighted
	for _, a := range answers {
		if len(a.Latencies) == 0 {
			continue
		}
		w := float64(a.Measured) / float64(len(a.Latencies))
		for _, d := range a.Latencies {
			all = append(all, weighted{time.Duration(d), w})
		}
	}
	slices.SortFunc(all, func(a, b weighted) int { return int(a.d - b.d) })
	return all
}

// percentile returns the latency below or at which the fraction q of the
// weighted sample lies.
func percentile(all []weighted, q float64) time.Duration {
	var total float64
	for _, w := range all {
		total += w.weight
	}
	var seen float64
	for _, w := range all {
		seen += w.weight
		if seen >= q*total {
			return w.d
		}
	}
	return 0
}

// stopWorkers closes the workers' stdin, which makes them close their
// connections and exit, and waits for them (killing one that takes more
// than a minute, by its PID).
func stopWorkers(procs []*workerProc) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			p.in.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(io.Discard, p.out)
				p.cmd.Wait()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(time.Minute):
				p.cmd.Process.Kill()
				<-done
			}
		})
	}
	wg.Wait()
}

// pids returns the workers' process ids.
func pids(procs []*workerProc) []int {
	var ids []int
	for _, p := range procs {
		ids = append(ids, p.cmd.Process.Pid)
	}
	return ids
}
