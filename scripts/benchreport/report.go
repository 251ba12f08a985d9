package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

const (
	startMarker = "<!-- bench-report:start -->"
	endMarker   = "<!-- bench-report:end -->"
	rawApply    = "BenchmarkRawRaft/apply_seq"
)

// scaleSizes and scaleOps are what httpapi's BenchmarkScale measures.
var scaleSizes = []int{1_000, 10_000, 100_000}

type scaleOp struct {
	op, label string
	target    float64 // ms at 10k shards; 0: none
}

var scaleOps = []scaleOp{
	{"get_shards", "`GET /v1/shards`", 5},
	{"get_nodes", "`GET /v1/nodes` (100 nodes)", 5},
	{"get_node", "`GET /v1/nodes/2`", 5},
	{"get_bdbs", "`GET /v1/bdbs`", 5},
	{"get_actions", "`GET /v1/nodes/actions` (400 records)", 5},
	{"plan_maintenance_on", "`maintenance_on` plan of a whole node (`?dry_run`)", 50},
	{"plan_enslave_node", "`enslave_node` plan (`?dry_run`)", 50},
	{"snapshot_restore", "FSM snapshot + restore", 1000},
	{"log_replay", "replay of the log that built the model", 0},
}

func scaleName(n int, op string) string { return fmt.Sprintf("BenchmarkScale/shards=%d/%s", n, op) }

func ms(ns float64) float64 { return ns / 1e6 }

// fmtMS prints a duration in ms with three significant figures.
func fmtMS(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	case v >= 1:
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.3f ms", v)
}

type row struct{ cells []string }

func table(b *bytes.Buffer, head []string, rows []row) {
	fmt.Fprintf(b, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, r := range rows {
		fmt.Fprintf(b, "| %s |\n", strings.Join(r.cells, " | "))
	}
	b.WriteString("\n")
}

// inTurns is a parallelPair benchmark's figures: the ops/s of its second
// side, the first side's ops/s in the same rounds, and their ratio; false
// when the run does not have it.
func inTurns(r results, name string) (ops, first, ratio float64, ok bool) {
	ratio, ok = r.get(name, "of-first")
	if !ok || ratio <= 0 {
		return 0, 0, 0, false
	}
	ops, _ = r.get(name, "ops/s")
	return ops, ops / ratio, ratio, true
}

// followerReads is the row of the reads through a follower: against the
// leader's reads of the rounds they took turns with, when the run has
// them, else against the leader's own benchmark.
func followerReads(r results, rf, rl float64) row {
	ratio, lead, with := rf/rl, rl, "on the leader"
	if _, first, v, ok := inTurns(r, "BenchmarkAPI/read_16_follower"); ok {
		ratio, lead, with = v, first, "on the leader, in turns"
	}
	return row{[]string{"16 clients, linearizable reads/s via a follower", fmt.Sprintf("%.0f", rf), fmt.Sprintf("%.0f %s", lead, with),
		fmt.Sprintf("%.2f×", ratio), "≥ 0.8× of the leader", verdict(ratio >= 0.8)}}
}

// writeSeq is BenchmarkWriteParts' sequential part: cnm's write, raw
// raft's Apply over TCP and over TLS and a bare HTTPS round trip, in turns.
const writeSeq = "BenchmarkWriteParts/seq"

// writeRows are the rows of the write targets. When the run has
// BenchmarkWriteParts, the targets are judged on its figures, taken in
// turns with raw raft's, and the figures of BenchmarkAPI against
// BenchmarkRawRaft, measured a benchmark apart, follow as they were.
func writeRows(r results, lead, raw, w16, a16 float64) []row {
	apart := []row{
		{[]string{"sequential write p50, via the leader", fmtMS(lead), fmtMS(raw) + " (Apply)", fmt.Sprintf("%.2f×", lead/raw), "≤ 1.3×", verdict(lead/raw <= 1.3)}},
		{[]string{"16 clients, writes/s", fmt.Sprintf("%.0f", w16), fmt.Sprintf("%.0f", a16), fmt.Sprintf("%.2f×", w16/a16), "≥ 0.9×", verdict(w16/a16 >= 0.9)}},
	}
	w, ok := r.get(writeSeq, "write-ms")
	o16, raw16, v16, ok16 := inTurns(r, "BenchmarkWriteParts/16_tcp")
	if !ok || !ok16 {
		return apart
	}
	tcp, _ := r.get(writeSeq, "apply-tcp-ms")
	for i := range apart {
		apart[i].cells[0] += ", a benchmark apart"
		apart[i].cells[4], apart[i].cells[5] = "—", "—"
	}
	return []row{
		{[]string{"sequential write p50, via the leader, in turns with raw raft's Apply", fmtMS(w), fmtMS(tcp) + " (Apply, in turns)", fmt.Sprintf("%.2f×", w/tcp), "≤ 1.3×", verdict(w/tcp <= 1.3)}},
		apart[0],
		{[]string{"16 clients, writes/s, in rounds taking turns with raw raft's 16 appliers", fmt.Sprintf("%.0f", o16), fmt.Sprintf("%.0f in turns", raw16), fmt.Sprintf("%.2f×", v16), "≥ 0.9×", verdict(v16 >= 0.9)}},
		apart[1],
	}
}

// writeParts is the table of where a write's time goes, from
// BenchmarkWriteParts/seq, when the run has it.
func writeParts(b *bytes.Buffer, r results) {
	w, ok := r.get(writeSeq, "write-ms")
	if !ok {
		return
	}
	get := func(unit string) float64 { v, _ := r.get(writeSeq, unit); return v }
	side := func(label, unit string) row {
		in, alone := get(unit), get(unit+"-raw")
		return row{[]string{label, fmtMS(in), fmtMS(alone), fmt.Sprintf("%+.3f ms", in-alone)}}
	}
	rest := get("rest-ms")
	b.WriteString("### Where a write's time goes\n\n")
	b.WriteString("`daemon/clustertest` `BenchmarkWriteParts`: in one process and in turns, one call each, raw raft over " +
		"TCP and over mutual TLS applies a command, cnm takes `PUT /v1/cluster/policy` through its leader, and a bare " +
		"Go HTTPS server answers a PUT of the same size to the same client. Raft's phases are its own timers " +
		"(go-metrics, means), gathered for the raw TLS cluster's commands and for cnm's apart.\n\n")
	table(b, []string{"part of a write", "inside cnm", "raw raft over TLS, alone", "difference"}, []row{
		{[]string{"a write through the leader, p50", fmtMS(w), "—", "—"}},
		{[]string{"raft's Apply, p50", "—", fmtMS(get("apply-tls-ms")), "—"}},
		side("raft's commit: the leader's dispatch until a quorum has stored the entry", "commit-ms"),
		side("of which the leader's store, fsync included", "store-leader-ms"),
		side("of which a follower's store, fsync included", "store-follower-ms"),
		side("the FSM's Apply of one entry", "fsm-ms"),
		{[]string{"one HTTPS round trip to a bare Go server, p50", fmtMS(get("https-ms")), "—", "—"}},
		{[]string{"left to cnm: the write, less raft's Apply over TLS and that round trip", fmt.Sprintf("%s (%.0f%% of the write)", fmtMS(rest), 100*rest/w), "—", "—"}},
	})
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func report(r results, mach, commit, plots, md string) (string, error) {
	var b bytes.Buffer
	b.WriteString(startMarker + "\n## Measured by `make bench`\n\n")
	fmt.Fprintf(&b, "Written by `scripts/benchreport` from one run of the Go benchmarks, %s", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	if commit != "" {
		fmt.Fprintf(&b, ", commit %s", commit)
	}
	b.WriteString(". " + mach + "\n\n")
	b.WriteString("Every figure is set against raw hashicorp/raft measured in the same run " +
		"(`daemon/clustertest` `BenchmarkRawRaft`: three members in one process over TCP loopback, cnm's raft " +
		"configuration and stores, 200-byte commands; the rows that say so, the same over mutual TLS, as " +
		"cnm's raft runs): compare the ratios, not the milliseconds, " +
		"as this machine is shared and its speed moves from run to run.\n\n")

	raw, ok := r.get(rawApply, "p50-ms")
	if !ok {
		return "", fmt.Errorf("the run has no %s p50", rawApply)
	}
	b.WriteString("### Writes and reads\n\n")
	b.WriteString("cnm: `daemon/clustertest` `BenchmarkAPI`, three in-process nodes with the product's raft " +
		"timing, HTTPS with keep-alive clients, `PUT /v1/cluster/policy` as the write (one raft entry), " +
		"`GET /v1/nodes/actions` as the read; 16 clients where it says so. The failover rows are " +
		"`BenchmarkFailover`: the leader killed (no leadership transfer) while a `maintenance_on` runs on " +
		"another node, against `BenchmarkRawRaftFailover`: raft's leader shut down until another member " +
		"has applied a command.\n\n")
	var rows []row
	get := func(name, unit string) float64 { v, _ := r.get(name, unit); return v }
	lead, fol := get("BenchmarkAPI/write_seq_leader", "p50-ms"), get("BenchmarkAPI/write_seq_follower", "p50-ms")
	extra := fol - lead
	if v, ok := r.get("BenchmarkAPI/write_seq_follower", "extra-ms"); ok {
		extra = v // measured against writes through the leader in turn with these
	}
	w16, a16 := get("BenchmarkAPI/write_16_leader", "ops/s"), get("BenchmarkRawRaft/apply_16", "ops/s")
	rows = append(rows, writeRows(r, lead, raw, w16, a16)...)
	rows = append(rows, row{[]string{"extra latency of a write via a follower", fmt.Sprintf("%+.2f ms", extra), "—", fmt.Sprintf("%+.2f× Apply", extra/raw), "≤ +0.25 ms", verdict(extra <= 0.25)}})
	// Raft over mutual TLS, as cnm's raft runs: what of a write is raft's
	// own cost over TLS, and what cnm adds to it.
	if rawTLS, ok := r.get(rawApply+"_tls", "p50-ms"); ok {
		t16 := get("BenchmarkRawRaft/apply_16_tls", "ops/s")
		rows = append(rows,
			row{[]string{"raw raft over mutual TLS (cnm's raft transport): sequential Apply p50", "—", fmtMS(rawTLS), fmt.Sprintf("%.2f× Apply over TCP", rawTLS/raw), "—", "—"}})
		if w, ok := r.get(writeSeq, "write-ms"); ok {
			tls := get(writeSeq, "apply-tls-ms")
			rows = append(rows, row{[]string{"sequential write p50 via the leader, in turns with raft over TLS", fmtMS(w), fmtMS(tls) + " (Apply, TLS, in turns)", fmt.Sprintf("%.2f×", w/tls), "—", "—"}})
		} else {
			rows = append(rows, row{[]string{"sequential write p50 via the leader, against raft over TLS", fmtMS(lead), fmtMS(rawTLS) + " (Apply, TLS)", fmt.Sprintf("%.2f×", lead/rawTLS), "—", "—"}})
		}
		if w, tls16, v, ok := inTurns(r, "BenchmarkWriteParts/16_tls"); ok {
			rows = append(rows, row{[]string{"16 clients, writes/s, in rounds taking turns with raft over TLS", fmt.Sprintf("%.0f", w), fmt.Sprintf("%.0f in turns", tls16), fmt.Sprintf("%.2f×", v), "—", "—"}})
		} else {
			rows = append(rows, row{[]string{"16 clients, writes/s, against raft over TLS", fmt.Sprintf("%.0f", w16), fmt.Sprintf("%.0f", t16), fmt.Sprintf("%.2f×", w16/t16), "—", "—"}})
		}
	}
	stale, vl := get("BenchmarkAPI/read_16_stale_leader", "ops/s"), get("BenchmarkRawRaft/verify_leader_16", "ops/s")
	rows = append(rows, row{[]string{"16 clients, `?stale=true` reads/s on the leader", fmt.Sprintf("%.0f", stale), fmt.Sprintf("%.0f Apply/s", a16), fmt.Sprintf("%.1f× raft writes/s", stale/a16), "—", "—"}})
	// The ceiling of a read raft has no part in: a bare HTTPS server, the
	// same clients, in turns.
	if s, bare, v, ok := inTurns(r, "BenchmarkAPI/read_16_stale_bare"); ok {
		rows = append(rows, row{[]string{"the same, in rounds taking turns with a bare Go HTTPS server", fmt.Sprintf("%.0f", s), fmt.Sprintf("%.0f bare HTTPS, in turns", bare), fmt.Sprintf("%.2f× the bare server", v), "—", "—"}})
	}
	rl, rf := get("BenchmarkAPI/read_16_leader", "ops/s"), get("BenchmarkAPI/read_16_follower", "ops/s")
	rows = append(rows,
		row{[]string{"16 clients, linearizable reads/s on the leader", fmt.Sprintf("%.0f", rl), fmt.Sprintf("%.0f VerifyLeader/s", vl), fmt.Sprintf("%.2f×", rl/vl), "—", "—"}},
		followerReads(r, rf, rl))
	if w, ok := r.get("BenchmarkFailover", "write-ms"); ok {
		rf, _ := r.get("BenchmarkRawRaftFailover", "ns/op")
		rfm := ms(rf)
		claim, _ := r.get("BenchmarkFailover", "claim-ms")
		step, _ := r.get("BenchmarkFailover", "step-ms")
		rows = append(rows,
			row{[]string{"leader killed → first write accepted via a survivor", fmtMS(w), fmtMS(rfm) + " (to a new leader's Apply)", fmt.Sprintf("%.2f×", w/rfm), "hold (≤ 1.2×)", verdict(w/rfm <= 1.2)}},
			row{[]string{"leader killed → the running action claimed by the new leader", fmtMS(claim), "—", fmt.Sprintf("%.2f× raft's failover", claim/rfm), "≤ 800 ms", verdict(claim <= 800)}},
			row{[]string{"leader killed → the action's next step committed (a shard move of ~1 s was in flight)", fmtMS(step), "—", "—", "—", "—"}})
	}
	table(&b, []string{"measurement", "cnm", "raw raft", "ratio", "target", ""}, rows)
	writeParts(&b, r)

	var actionRows []row
	for _, size := range []string{"1k", "10k"} {
		name := "BenchmarkEnslaveAtScale/shards=" + size
		step, ok := r.get(name, "ms/step")
		if !ok {
			continue
		}
		steps, _ := r.get(name, "steps")
		write, _ := r.get(name, "write-ms")
		// Raw raft's Apply in turns with the cluster's writes just before
		// each action, when the run has it, else BenchmarkRawRaft's.
		apply, yard := raw, fmtMS(raw)+" (Apply)"
		if v, ok := r.get(name, "apply-ms"); ok && v > 0 {
			apply, yard = v, fmtMS(v)+" (Apply, just before)"
		}
		perStep := func(label string, v float64) row {
			return row{[]string{label, fmtMS(v), yard, fmt.Sprintf("%.1f×", v/apply), "≤ 2× one write", verdict(v/apply <= 2)}}
		}
		actionRows = append(actionRows, perStep(fmt.Sprintf("`enslave_node` at %s shards, %.0f failovers an action: time per step", size, steps), step))
		for _, k := range []struct{ unit, label string }{
			{"ms/step-own", "the actions whose replicas were on the leader's own node"},
			{"ms/step-peer", "the actions whose replicas were on another node"},
		} {
			if v, ok := r.get(name, k.unit); ok {
				actionRows = append(actionRows, perStep("of which "+k.label, v))
			}
		}
		actionRows = append(actionRows,
			row{[]string{fmt.Sprintf("all the steps, against a write through this cluster's API just before (%s)", fmtMS(write)), fmtMS(step), "—",
				fmt.Sprintf("%.2f× that write", step/write), "—", "—"}})
	}
	if len(actionRows) > 0 {
		b.WriteString("### An action at scale\n\n")
		b.WriteString("`daemon/clustertest` `BenchmarkEnslaveAtScale`: three in-process nodes (file backend) holding " +
			"10 or 100 replicated databases of 50 shards (1,000 or 10,000 shards, placed sparse), and `enslave_node` of a " +
			"node other than the leader, timed by the action's own start and end in its record. A failover promotes the " +
			"replica through the agent of its node: the leader's own, which answers in the leader's process, or another " +
			"node's, one round trip between nodes; the placement pairs the nodes in a ring, so each action's replicas " +
			"are all on one node, and the actions alternate between the two kinds. Before each " +
			"action, 30 sequential `PUT /v1/cluster/policy` through the leader, in turns with 30 of raw raft's " +
			"`Apply` in the same process, give the cost of one write of the same cluster and of raw raft at " +
			"the same moments (the p50s); the steps are set against that Apply.\n\n")
		table(&b, []string{"measurement", "cnm", "raw raft", "ratio", "target", ""}, actionRows)
	}

	b.WriteString("### Scale\n\n")
	b.WriteString("`httpapi` `BenchmarkScale`: a model of 100 nodes (one serving the API, 99 registered as a join " +
		"registers them, with no process behind them), replicated databases of 50 shards, and the action " +
		"table full: four finished records per node (400 in all, the most 100 nodes can hold) of 100 steps " +
		"and 200 events each. Reads as admin, answers written to a counting writer; plans are `?dry_run` " +
		"POSTs of node 2, which holds 1% of the shards. \"× Apply\" is the figure at 10k shards over raw " +
		"raft's sequential Apply p50.\n\n")
	head := []string{"at N shards"}
	for _, n := range scaleSizes {
		head = append(head, fmt.Sprintf("%dk", n/1000))
	}
	head = append(head, "× Apply (10k)", "target (10k)", "")
	rows = nil
	for _, op := range scaleOps {
		cells := []string{op.label}
		for _, n := range scaleSizes {
			if v, ok := r.get(scaleName(n, op.op), "ns/op"); ok {
				cells = append(cells, fmtMS(ms(v)))
			} else {
				cells = append(cells, "—")
			}
		}
		v10, ok := r.get(scaleName(10_000, op.op), "ns/op")
		switch {
		case !ok:
			cells = append(cells, "—", "—", "")
		case op.target == 0:
			cells = append(cells, fmt.Sprintf("%.1f×", ms(v10)/raw), "—", "")
		default:
			cells = append(cells, fmt.Sprintf("%.1f×", ms(v10)/raw), "< "+fmtMS(op.target), verdict(ms(v10) < op.target))
		}
		rows = append(rows, row{cells})
	}
	for _, m := range []struct{ unit, label string }{{"model-MiB", "heap the model holds"}, {"rss-MiB", "RSS of the process holding it"}} {
		cells := []string{m.label}
		for _, n := range scaleSizes {
			if v, ok := r.get(scaleName(n, "memory"), m.unit); ok {
				cells = append(cells, fmt.Sprintf("%.0f MiB", v))
			} else {
				cells = append(cells, "—")
			}
		}
		v10, _ := r.get(scaleName(10_000, "memory"), m.unit)
		cells = append(cells, "—", "< 100 MiB", verdict(v10 < 100))
		rows = append(rows, row{cells})
	}
	table(&b, head, rows)
	rel, err := filepath.Rel(filepath.Dir(md), plots)
	if err != nil {
		return "", fmt.Errorf("plots path: %w", err)
	}
	for _, p := range plotFiles {
		fmt.Fprintf(&b, "![%s](%s)\n\n", p.title, filepath.ToSlash(filepath.Join(rel, p.file)))
	}
	b.WriteString(endMarker + "\n")
	return b.String(), nil
}

// machine describes where the run happened.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = fmt.Sprintf(", load average %s %s %s when the report was written", f[0], f[1], f[2])
		}
	}
	return fmt.Sprintf("Machine: %d CPUs (%s), %s, %s%s.", runtime.NumCPU(), model, kernel, runtime.Version(), load)
}

// splice replaces the report section of md (or appends it).
func splice(md, section string) error {
	old, err := os.ReadFile(md)
	if err != nil {
		return fmt.Errorf("read %s: %w", md, err)
	}
	doc := string(old)
	i, j := strings.Index(doc, startMarker), strings.Index(doc, endMarker)
	switch {
	case i >= 0 && j > i:
		doc = doc[:i] + section + strings.TrimPrefix(doc[j+len(endMarker):], "\n")
	default:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", md, err)
	}
	return nil
}
