// Command drill runs a real multi-process cnm cluster through failures
// while clients submit, cancel and read node actions through random nodes,
// then checks the recorded history for linearizability against a model of
// the action table (porcupine) and the final state for invariants. It exits
// non-zero on any violation. See docs/RELIABILITY.md.
//
// It owns the nodes' processes, their faults and the verdict, and must
// never reach a node other than as a client, a supervisor or the machine
// would (the API, signals, iptables, the disk), nor import cnm's own
// packages: a check that shared the product's code or its view of the
// state would share its bugs. Every fault it applies it also repairs, as
// the next iteration, and the final checks, assume a whole cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	nodes      int
	iterations int
	clients    int
	bin        string
	dir        string
	seed       uint64
	nemeses    []string
	keep       bool
	hostBase   int
	backend    string
	writers    int // per database, with the redis backend
}

var allNemeses = []string{"kill-leader", "kill-random", "partition-leader", "partition-minority", "rolling-restart", "full-restart", "remove-rejoin", "remove-fail",
	"pause-leader", "pause-target", "term-restart", "term-all", "disk-full", "bitflip", "kill-cnmd-only", "kill-redis-server", calm}

func main() {
	var c config
	var nemeses string
	flag.IntVar(&c.nodes, "nodes", 3, "cluster size")
	flag.IntVar(&c.iterations, "n", 6, "nemesis iterations")
	flag.IntVar(&c.clients, "clients", 4, "concurrent clients")
	flag.StringVar(&c.bin, "bin", "bin/cnmd", "cnmd binary")
	flag.StringVar(&c.dir, "dir", "", "work directory (default: a new temp dir)")
	flag.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	flag.StringVar(&nemeses, "nemeses", strings.Join(allNemeses, ","), "nemeses to cycle through")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory")
	flag.IntVar(&c.hostBase, "host-base", 40, "node i listens on 127.0.0.(host-base+i)")
	flag.StringVar(&c.backend, "backend", backendRedis, "the nodes' --shard-backend: redis (shard processes, with writers checking every acknowledged write) or file")
	flag.IntVar(&c.writers, "writers", 3, "writers per database (with -backend redis)")
	flag.Parse()
	if c.backend != backendRedis && c.backend != backendFile {
		fmt.Fprintf(os.Stderr, "drill: -backend %q: want redis or file\n", c.backend)
		os.Exit(2)
	}
	c.nemeses = strings.Split(nemeses, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	violations, err := run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "drill:", err)
		os.Exit(2)
	}
	if violations > 0 {
		fmt.Printf("drill: %d violations\n", violations)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) (int, error) {
	bin, err := prepare(&c)
	if err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(c.seed, c.seed^0x9e3779b97f4a7c15))
	fmt.Printf("drill: %d nodes, %d iterations, %d clients, %s shards, seed %d, dir %s\n", c.nodes, c.iterations, c.clients, c.backend, c.seed, c.dir)
	// Shard processes outlive the cnmd that started them: the drill reaps
	// them as init would, and kills every one of them at the end.
	if err := becomeSubreaper(); err != nil {
		fmt.Println("drill: cannot reap orphaned shard processes:", err)
	}
	stopReaper := make(chan struct{})
	go reaper(stopReaper)
	defer close(stopReaper)
	cl := newCluster(bin, c.dir, c.backend, c.nodes, c.hostBase)
	cl.mountDisks()
	var out outcome
	defer func() { cl.tearDown(out, c.keep) }()
	if err := cl.up(ctx); err != nil {
		return 0, fmt.Errorf("start cluster: %w", err)
	}
	if err := cl.createDBs(ctx); err != nil {
		return 0, fmt.Errorf("create the databases: %w", err)
	}
	stopWriters := func() {}
	if c.backend == backendRedis {
		// Seeded apart from rng, so that a seed still replays the faults.
		if stopWriters, err = cl.startWriters(ctx, c.writers, c.seed^0x5eed); err != nil {
			out.err = fmt.Errorf("the databases take no writes: %w", err)
			return 0, out.err
		}
	}
	rec, mon, t := cl.underFaults(ctx, c, rng)
	out.violations += t.violations
	out.found = append(out.found, t.report...)
	cl.heal()
	if err := cl.restartDead(ctx); err != nil {
		stopWriters()
		out.err = fmt.Errorf("bring nodes back: %w", err)
		return out.violations, out.err
	}
	// The writers go on until every action has ended, so that the gaps of
	// the last actions are measured too.
	settleErr := waitTerminal(ctx, cl)
	stopWriters()
	problems := check(ctx, cl, rec, settleErr)
	mon.poll(ctx, cl, cl.nodes[0])
	problems = append(problems, mon.overlaps()...)
	problems = append(problems, mon.delayFailures()...)
	if cl.data != nil {
		problems = append(problems, cl.checkData(ctx, mon, os.Stdout)...)
	}
	out.violations += len(problems)
	out.found = append(out.found, problems...)
	for _, p := range problems {
		fmt.Println("drill: VIOLATION", p)
	}
	fmt.Printf("drill: %d operations (%d submitted and acknowledged, %d unknown outcomes), %d violations\n",
		len(rec.ops), rec.acked(), rec.unknown(), out.violations)
	fmt.Printf("drill: iterations: %d ok, %d skipped, %d violations\n", t.ok, t.skipped, t.violations)
	for _, r := range t.report {
		fmt.Println("drill:", r)
	}
	return out.violations, nil
}

// prepare makes the work directory (a new temp dir when c.dir is empty)
// and returns the absolute path of the cnmd binary, as the nodes run from
// other directories.
func prepare(c *config) (string, error) {
	if c.dir == "" {
		d, err := os.MkdirTemp("", "cnm-drill.")
		if err != nil {
			return "", err
		}
		c.dir = d
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return "", err
	}
	// Absolute, to tell the drill's shard processes by their working
	// directory.
	dir, err := filepath.Abs(c.dir)
	if err != nil {
		return "", err
	}
	c.dir = dir
	return filepath.Abs(c.bin)
}

// outcome is what the teardown must know of a run: whether to keep the
// evidence, and what to repeat at the very end of the output.
type outcome struct {
	violations int
	found      []string // every violation, for the summary at the very end
	err        error
}

// underFaults runs the clients and the monitor while the nemeses strike,
// and returns once all three have stopped.
func (c *cluster) underFaults(ctx context.Context, cfg config, rng *rand.Rand) (*recorder, *monitor, tally) {
	rec := newRecorder()
	c.rec = rec
	mon := newMonitor()
	wctx, stopWork := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { rec.workload(wctx, c, cfg.clients, rng.Uint64()); done <- struct{}{} }()
	go func() { mon.run(wctx, c); done <- struct{}{} }()

	i := 0
	t := iterate(ctx, cfg.iterations, cfg.nemeses, func(name string) error {
		i++
		from := time.Now().UnixNano()
		err := c.nemesis(ctx, name, rng)
		c.nemesisRuns = append(c.nemesisRuns, window{kind: name, label: fmt.Sprintf("iteration %d %s", i, name), from: from, to: time.Now().UnixNano()})
		return err
	}, os.Stdout)
	stopWork()
	<-done
	<-done
	return rec, mon, t
}

// tearDown stops the cluster. A run that found violations or failed keeps
// its work directory and prints the evidence; another removes it unless
// keep.
func (c *cluster) tearDown(out outcome, keep bool) {
	failed := out.violations > 0 || out.err != nil
	c.heal()
	c.stopAll()
	// After the nodes, which would start them again, and before the
	// disks are let go, which their open files would keep busy.
	if err := c.stopShards(); err != nil {
		fmt.Println("drill:", err)
	}
	c.unmountDisks(failed || keep)
	if !failed {
		if !keep {
			os.RemoveAll(c.dir)
		}
		return
	}
	// Evidence: node logs, data dirs, op logs.
	fmt.Printf("drill: work directory kept: %s\n", c.dir)
	for _, n := range c.nodes {
		tailLog(n.log, 15)
	}
	// Again after the logs, so that the end of the output, all a CI page
	// may show, says what went wrong.
	for _, r := range out.found {
		fmt.Println("drill: VIOLATION", r)
	}
	if out.err != nil {
		fmt.Println("drill:", out.err)
	}
}

// tally counts the outcomes of the nemesis iterations.
type tally struct {
	ok, skipped, violations int
	report                  []string // one line per violation
}

// iterate runs n iterations, cycling through nemeses, and prints one line
// for each: ok, skipped (the nemesis could not apply its fault; see
// errSkipped) or VIOLATION.
func iterate(ctx context.Context, n int, nemeses []string, nemesis func(name string) error, w io.Writer) tally {
	var t tally
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		name := nemeses[i%len(nemeses)]
		start := time.Now()
		err := nemesis(name)
		switch {
		case errors.Is(err, errSkipped):
			t.skipped++
			fmt.Fprintf(w, "drill: iteration %d %-18s skipped: %v\n", i+1, name, err)
		case err != nil:
			t.violations++
			t.report = append(t.report, fmt.Sprintf("iteration %d %s: %v", i+1, name, err))
			fmt.Fprintf(w, "drill: iteration %d %-18s VIOLATION %v\n", i+1, name, err)
		default:
			t.ok++
			fmt.Fprintf(w, "drill: iteration %d %-18s ok (%s)\n", i+1, name, time.Since(start).Round(time.Millisecond))
		}
	}
	return t
}

// tailLog prints the last n lines of a node's log.
func tailLog(path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	fmt.Printf("drill: --- last %d lines of %s ---\n", min(n, len(lines)), path)
	for _, l := range lines[max(0, len(lines)-n):] {
		fmt.Println(l)
	}
}
