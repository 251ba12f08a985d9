package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run's output as go test prints it, cut down to what the report reads.
const fixture = `goos: linux
BenchmarkRawRaft/apply_seq-2         	    2000	   1340060 ns/op	         1.000 p50-ms	         3.846 p99-ms
BenchmarkRawRaft/apply_16-2          	    2000	    345783 ns/op	      4000 ops/s
BenchmarkRawRaft/verify_leader_16-2  	    2000	      6526 ns/op	    150000 ops/s
BenchmarkRawRaft/apply_seq_tls-2    	    1000	   1340060 ns/op	         1.250 p50-ms	         3.000 p99-ms
BenchmarkRawRaft/apply_16_tls-2     	    1000	   1340060 ns/op	      3500 ops/s
BenchmarkAPI/write_seq_leader-2      	    1000	   1717891 ns/op	         1.500 p50-ms	         3.670 p99-ms
BenchmarkAPI/write_seq_follower-2    	    1000	   1704393 ns/op	         1.600 p50-ms	         3.727 p99-ms	         0.3000 extra-ms
BenchmarkAPI/write_16_leader-2       	    1000	    463546 ns/op	      3800 ops/s
BenchmarkAPI/read_16_stale_leader-2  	    1000	     68599 ns/op	     14000 ops/s
BenchmarkAPI/read_16_leader-2        	    1000	     91402 ns/op	     10000 ops/s
BenchmarkAPI/read_16_stale_bare-2    	    1000	     91402 ns/op	         0.8000 of-first	     12000 ops/s
BenchmarkAPI/read_16_follower-2      	    1000	    182838 ns/op	      9000 ops/s	         0.7500 of-first
BenchmarkFailover-2   	       3	1440790594 ns/op	       373.0 claim-ms	      1133 step-ms	       500.0 write-ms
BenchmarkRawRaftFailover-2   	       3	 400000000 ns/op
BenchmarkEnslaveAtScale/shards=1k-2   	       1	1470600175 ns/op	         6.818 ms/step	         1.033 step/write	       170.0 steps	         6.602 write-ms
BenchmarkEnslaveAtScale/shards=10k-2  	       2	13147404543 ns/op	         7.384 ms/step	         1.500 ms/step-own	         2.100 ms/step-peer	         0.9388 step/write	      1700 steps	         7.866 write-ms
BenchmarkScale/shards=1000/get_shards-2 	20	 700000 ns/op	 139.29 MB/s
BenchmarkScale/shards=10000/get_shards-2 	20	 7000000 ns/op	 139.29 MB/s
BenchmarkScale/shards=100000/get_shards-2 	20	 70000000 ns/op	 139.29 MB/s
BenchmarkScale/shards=10000/plan_maintenance_on-2 	20	 60000000 ns/op
BenchmarkScale/shards=10000/memory-2 	20	 18.05 ns/op	 15.75 model-MiB	 56.90 rss-MiB
PASS
`

func TestParse(t *testing.T) {
	r := parse(fixture)
	for _, tc := range []struct {
		name, unit string
		want       float64
	}{
		{"BenchmarkRawRaft/apply_seq", "p50-ms", 1},
		{"BenchmarkRawRaft/apply_seq", "ns/op", 1340060},
		{"BenchmarkAPI/write_16_leader", "ops/s", 3800},
		{"BenchmarkScale/shards=10000/memory", "rss-MiB", 56.90},
	} {
		if got, ok := r.get(tc.name, tc.unit); !ok || got != tc.want {
			t.Errorf("%s %s = %v (%v), want %v", tc.name, tc.unit, got, ok, tc.want)
		}
	}
	if _, ok := r.get("goos: linux", "ns/op"); ok || len(r) != 21 {
		t.Errorf("parsed %d benchmarks, want the 21 lines that are benchmarks", len(r))
	}
}

// The report says, for each target, whether this run met it, and the
// section replaces the previous one without touching the rest.
func TestRun_WritesSectionAndPlots(t *testing.T) {
	const before, after = "# Benchmarks\n\nwritten by hand\n\n", "\n## Also by hand\n"
	doc, plots := reportOf(t, fixture, before+startMarker+"\nold figures\n"+endMarker+"\n"+after, "abc1234")
	wantAll(t, doc,
		before, after, "commit abc1234",
		"| sequential write p50, via the leader | 1.50 ms | 1.00 ms (Apply) | 1.50× | ≤ 1.3× | **not met** |",
		"| extra latency of a write via a follower | +0.30 ms | — | +0.30× Apply | ≤ +0.25 ms | **not met** |",
		"| 16 clients, writes/s | 3800 | 4000 | 0.95× | ≥ 0.9× | met |",
		"| raw raft over mutual TLS (cnm's raft transport): sequential Apply p50 | — | 1.25 ms | 1.25× Apply over TCP | — | — |",
		"| sequential write p50 via the leader, against raft over TLS | 1.50 ms | 1.25 ms (Apply, TLS) | 1.20× | — | — |",
		"| 16 clients, writes/s, against raft over TLS | 3800 | 3500 | 1.09× | — | — |",
		"| 16 clients, linearizable reads/s via a follower | 9000 | 12000 on the leader, in turns | 0.75× | ≥ 0.8× of the leader | **not met** |",
		"| the same, in rounds taking turns with a bare Go HTTPS server | 12000 | 15000 bare HTTPS, in turns | 0.80× the bare server | — | — |",
		"| `GET /v1/shards` | 0.700 ms | 7.00 ms | 70.0 ms | 7.0× | < 5.00 ms | **not met** |",
		"| `maintenance_on` plan of a whole node (`?dry_run`) | — | 60.0 ms | — | 60.0× | < 50.0 ms | **not met** |",
		"| `enslave_node` at 10k shards, 1700 failovers an action: time per step | 7.38 ms | 1.00 ms (Apply) | 7.4× | ≤ 2× one write | **not met** |",
		"| of which the actions whose replicas were on the leader's own node | 1.50 ms | 1.00 ms (Apply) | 1.5× | ≤ 2× one write | met |",
		"| of which the actions whose replicas were on another node | 2.10 ms | 1.00 ms (Apply) | 2.1× | ≤ 2× one write | **not met** |",
		"| all the steps, against a write through this cluster's API just before (7.87 ms) | 7.38 ms | — | 0.94× that write | — | — |",
		"| `enslave_node` at 1k shards, 170 failovers an action: time per step | 6.82 ms | 1.00 ms (Apply) | 6.8× | ≤ 2× one write | **not met** |",
		"| leader killed → first write accepted via a survivor | 500 ms | 400 ms (to a new leader's Apply) | 1.25× | hold (≤ 1.2×) | **not met** |",
		"| leader killed → the running action claimed by the new leader | 373 ms | — | 0.93× raft's failover | ≤ 800 ms | met |",
		"![GET latency against the number of shards](bench/scale-reads.png)",
	)
	if strings.Contains(doc, "old figures") || strings.Count(doc, startMarker) != 1 {
		t.Errorf("the old section is still there:\n%s", doc)
	}
	for _, p := range plotFiles {
		st, err := os.Stat(filepath.Join(plots, p.file))
		if err != nil || st.Size() == 0 {
			t.Errorf("plot %s: %v", p.file, err)
		}
	}
}

// BenchmarkWriteParts' figures, taken in turns with raw raft's.
const writePartsFixture = `BenchmarkWriteParts/seq-2 	    2000	   4000000 ns/op	         1.100 apply-tcp-ms	         1.120 apply-tls-ms	         1.200 commit-ms	         1.180 commit-ms-raw	         0.01000 fsm-ms	         0.002000 fsm-ms-raw	         0.1200 https-ms	         0.1400 rest-ms	         0.5500 store-follower-ms	         0.5300 store-follower-ms-raw	         0.4500 store-leader-ms	         0.4400 store-leader-ms-raw	         1.380 write-ms
BenchmarkWriteParts/16_tcp-2 	    2000	    600000 ns/op	         0.8500 of-first	      3400 ops/s
BenchmarkWriteParts/16_tls-2 	    2000	    600000 ns/op	         1.100 of-first	      3850 ops/s
BenchmarkEnslaveAtScale/shards=10k-2  	       3	13147404543 ns/op	         2.400 ms/step	         1.800 ms/step-own	         2.600 ms/step-peer	         1.500 step/write	      1700 steps	         1.600 write-ms	         1.250 apply-ms
`

// With BenchmarkWriteParts in the run, the write targets are judged on
// the figures taken in turns with raw raft's, the ones a benchmark apart
// stay as information, and the write is taken apart; with raw raft's
// Apply taken before each action, the steps are judged against it.
func TestRun_JudgesWritesInTurns(t *testing.T) {
	doc, _ := reportOf(t, fixture+writePartsFixture, "# Benchmarks\n", "")
	wantAll(t, doc,
		"| sequential write p50, via the leader, in turns with raw raft's Apply | 1.38 ms | 1.10 ms (Apply, in turns) | 1.25× | ≤ 1.3× | met |",
		"| sequential write p50, via the leader, a benchmark apart | 1.50 ms | 1.00 ms (Apply) | 1.50× | — | — |",
		"| 16 clients, writes/s, in rounds taking turns with raw raft's 16 appliers | 3400 | 4000 in turns | 0.85× | ≥ 0.9× | **not met** |",
		"| 16 clients, writes/s, a benchmark apart | 3800 | 4000 | 0.95× | — | — |",
		"| sequential write p50 via the leader, in turns with raft over TLS | 1.38 ms | 1.12 ms (Apply, TLS, in turns) | 1.23× | — | — |",
		"| 16 clients, writes/s, in rounds taking turns with raft over TLS | 3850 | 3500 in turns | 1.10× | — | — |",
		"### Where a write's time goes",
		"| raft's commit: the leader's dispatch until a quorum has stored the entry | 1.20 ms | 1.18 ms | +0.020 ms |",
		"| of which a follower's store, fsync included | 0.550 ms | 0.530 ms | +0.020 ms |",
		"| the FSM's Apply of one entry | 0.010 ms | 0.002 ms | +0.008 ms |",
		"| one HTTPS round trip to a bare Go server, p50 | 0.120 ms | — | — |",
		"| left to cnm: the write, less raft's Apply over TLS and that round trip | 0.140 ms (10% of the write) | — | — |",
		// The steps against raw raft's Apply of the same moments.
		"| `enslave_node` at 10k shards, 1700 failovers an action: time per step | 2.40 ms | 1.25 ms (Apply, just before) | 1.9× | ≤ 2× one write | met |",
		"| of which the actions whose replicas were on another node | 2.60 ms | 1.25 ms (Apply, just before) | 2.1× | ≤ 2× one write | **not met** |",
	)
	if strings.Contains(doc, "| sequential write p50, via the leader | ") {
		t.Errorf("the write target is still judged on the figures a benchmark apart:\n%s", doc)
	}
}

// wantAll fails t for each of wants that doc lacks.
func wantAll(t *testing.T, doc string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q:\n%s", want, doc)
		}
	}
}

// reportOf runs the report on the benchmark output in, into a document
// that held md, and returns the document and the plots' directory.
func reportOf(t *testing.T, in, md, commit string) (doc, plots string) {
	t.Helper()
	dir := t.TempDir()
	inPath, mdPath, plots := filepath.Join(dir, "bench.txt"), filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "bench")
	if err := os.WriteFile(inPath, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(inPath, mdPath, plots, commit); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(mdPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), plots
}

func TestRun_RefusesARunWithoutTheYardstick(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	if err := os.WriteFile(in, []byte("BenchmarkScale/shards=1000/get_shards-2 20 700000 ns/op\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "B.md")
	if err := os.WriteFile(md, []byte("# B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, md, filepath.Join(dir, "p"), ""); err == nil || !strings.Contains(err.Error(), "apply_seq") {
		t.Fatalf("run = %v, want an error naming the missing raw raft figure", err)
	}
}
