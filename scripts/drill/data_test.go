package main

import (
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

func TestWriteAcked_OnlyAnOKAndAReplicaCountingWAITAcknowledge(t *testing.T) {
	boom := errors.New("i/o timeout")
	for _, tc := range []struct {
		name       string
		replicated bool
		setErr     error
		waitN      int64
		waitErr    error
		want       bool
	}{
		{"replicated, WAIT 1", true, nil, 1, nil, true},
		{"replicated, WAIT counts two", true, nil, 2, nil, true},
		{"replicated, WAIT 0: no replica has it", true, nil, 0, nil, false},
		{"replicated, WAIT failed", true, nil, 0, boom, false},
		{"replicated, WAIT failed after counting", true, nil, 1, boom, false},
		{"replicated, SET failed", true, boom, 1, nil, false},
		{"not replicated, OK", false, nil, 0, nil, true},
		{"not replicated, SET failed", false, boom, 0, nil, false},
	} {
		if got := writeAcked(tc.replicated, tc.setErr, tc.waitN, tc.waitErr); got != tc.want {
			t.Errorf("%s: acknowledged = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAckLog_KeepsAcknowledgedAndUnknownApart(t *testing.T) {
	var l ackLog
	l.record("k1", "v1", true, 30)
	l.record("k2", "v2", false, 10)
	l.record("k3", "v3", true, 20)
	if len(l.acked) != 2 || l.acked["k1"] != (ackedWrite{"v1", 30}) || l.acked["k3"] != (ackedWrite{"v3", 20}) {
		t.Errorf("acked = %v, want k1 and k3 with their values and times", l.acked)
	}
	if len(l.unknown) != 1 || l.unknown["k2"] != "v2" {
		t.Errorf("unknown = %v, want k2 only", l.unknown)
	}
	if got := l.sorted(); !slices.Equal(got, []ackAt{{20, keySlot("k3")}, {30, keySlot("k1")}}) {
		t.Errorf("acks = %v, want the acknowledgements only, in order, with their keys' slots", got)
	}
}

func TestReadVerdict(t *testing.T) {
	for _, tc := range []struct {
		want, got string
		found     bool
		lost      bool
	}{
		{"v", "v", true, false},
		{"v", "", false, true},
		{"v", "w", true, true},
		{"v", "", true, true}, // an empty value is not the one written
	} {
		if why := readVerdict(tc.want, tc.got, tc.found); (why != "") != tc.lost {
			t.Errorf("readVerdict(%q, %q, %v) = %q, want lost=%v", tc.want, tc.got, tc.found, why, tc.lost)
		}
	}
}

func TestLongestGap(t *testing.T) {
	acks := []int64{10, 20, 25, 60, 62, 100}
	for _, tc := range []struct {
		name             string
		lo, hi, from, to int64
		want             int64
	}{
		{"a window inside one gap gets all of it", 0, 200, 30, 40, 35},
		{"the longest of the gaps a window overlaps", 0, 200, 22, 61, 35},
		{"a gap touching the window's start only by its end is out", 0, 200, 60, 61, 2},
		{"a window from an ack on starts there", 0, 200, 25, 26, 35},
		{"before the first ack, from the writers' start", 0, 200, 1, 5, 10},
		{"after the last ack, up to the writers' stop", 0, 200, 150, 300, 100},
		{"a window over everything", 0, 200, -5, 500, 100},
		{"an instant", 0, 200, 62, 62, 38},
		{"outside the writing", 0, 200, 300, 400, -1},
		{"before the writing", 50, 200, 0, 40, -1},
		{"reversed", 0, 200, 40, 30, -1},
	} {
		if got := longestGap(acks, tc.lo, tc.hi, tc.from, tc.to); got != tc.want {
			t.Errorf("%s: longestGap(%d..%d) = %d, want %d", tc.name, tc.from, tc.to, got, tc.want)
		}
	}
	if got := longestGap(nil, 0, 100, 10, 20); got != 100 {
		t.Errorf("no ack at all: gap %d, want the whole writing (100)", got)
	}
}

func TestGapTable_PerKindAndDatabase(t *testing.T) {
	at := func(slot int, times ...int64) []ackAt {
		var out []ackAt
		for _, t := range times {
			out = append(out, ackAt{t, slot})
		}
		return out
	}
	acks := map[int][]ackAt{
		1: at(5, 0, 10, 50, 60, 100),
		2: append(append(at(5, 0), at(7000, 30)...), at(5, 35, 100)...),
	}
	windows := []window{
		{kind: "remove", label: "r1", from: 12, to: 14},            // db 1: 40, db 2: 30
		{kind: "remove", label: "r2", from: 31, to: 33},            // db 1: 40, db 2: 5
		{kind: "kill-leader", label: "k", from: 70, to: 80},        // db 1: 40, db 2: 65
		{kind: "failover step", label: "f", db: 2, from: 1, to: 2}, // db 2 only: 30
		// Only the writes to slots 0-99 of db 2: 0, 35, 100.
		{kind: "move step", label: "m", db: 2, slots: "0-99", from: 31, to: 33},
	}
	rows := gapTable(windows, acks, 0, 100, []string{"kill-leader", "remove"})
	if len(rows) != 4 || rows[0].kind != "kill-leader" || rows[1].kind != "remove" || rows[2].kind != "failover step" || rows[3].kind != "move step" {
		t.Fatalf("rows = %+v, want kill-leader, remove (the order given), then failover step and move step", rows)
	}
	rm := rows[1]
	if rm.runs != 2 || rm.gap[1] != 40 || rm.gap[2] != 30 || rm.where[2] != "r1" {
		t.Errorf("remove row = %+v, want 2 runs, db 1 40, db 2 30 (in r1)", rm)
	}
	if k := rows[0]; k.gap[1] != 40 || k.gap[2] != 65 {
		t.Errorf("kill-leader row = %+v, want db 1 40, db 2 65", k)
	}
	f := rows[2]
	if _, ok := f.gap[1]; ok || f.gap[2] != 30 {
		t.Errorf("failover row = %+v, want db 2 only, 30", f)
	}
	if m := rows[3]; m.gap[2] != 35 {
		t.Errorf("move row = %+v, want db 2's slots 0-99 only: 35", m)
	}
}

func TestStepTrack_AStepRunsFromTheLastPollBeforeItToTheFirstAfter(t *testing.T) {
	var s stepTrack
	s.see(3, 0, 100, 90, 0, []actionEvent{{0, "starting on leader 1 (term 2)"}}) // step 1 runs
	s.see(3, 0, 300, 90, 0, nil)
	s.see(3, 2, 500, 90, 0, []actionEvent{ // steps 1 and 2 done, 3 runs
		{0, "step 2/3: shard 4 failed over to its replica 9 on node 2"}, {0, "step 1/3: shard 3 moved from node 1 to node 2"},
		{0, "step 2/3 waits: node 2 does not answer"}})
	s.see(3, 2, 700, 90, 0, []actionEvent{{0, "resumed by leader 3 (term 3) at step 3 of 3"}})
	s.see(3, 3, 900, 90, 800, []actionEvent{{0, "step 3/3: endpoint 1:1 rebound to node 3"}, {0, "completed"}})
	got := s.steps()
	want := []stepRun{
		{"shard 3 moved from node 1 to node 2", 90, 500},
		{"shard 4 failed over to its replica 9 on node 2", 300, 500},
		{"endpoint 1:1 rebound to node 3", 300, 900},
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps = %+v\nwant %+v", got, want)
	}
	m := newMonitor()
	m.steps["task-1"] = &s
	ws := m.stepWindows(map[string]shardView{"3": {UID: "3", BDB: 1, Slots: "0-99"}, "4": {UID: "4", BDB: 2, Slots: "100-199"}})
	kinds := map[string]int{}
	for _, w := range ws {
		kinds[w.kind] = w.db
		if want := map[string]string{"move step": "0-99", "failover step": "100-199"}[w.kind]; w.slots != want {
			t.Errorf("%s window of slots %q, want %q (its shard's, or all for an endpoint)", w.kind, w.slots, want)
		}
	}
	if len(ws) != 3 || kinds["move step"] != 1 || kinds["failover step"] != 2 || kinds["endpoint rebind step"] != 1 {
		t.Errorf("windows = %+v, want a move of db 1, a failover of db 2, a rebind of db 1", ws)
	}
}

func TestKeySlot_IsRedisClusters(t *testing.T) {
	// CLUSTER KEYSLOT of a real Redis, and the CRC16/XMODEM check value.
	for key, want := range map[string]int{"foo": 12182, "bar": 5061, "123456789": 0x31c3, "{foo}.x": 12182, "a{}b": 13694, "db1:w0:1": 11153} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestSlotsContain(t *testing.T) {
	for _, tc := range []struct {
		slots string
		slot  int
		want  bool
	}{
		{"0-2729", 0, true}, {"0-2729", 2729, true}, {"0-2729", 2730, false},
		{"0-9,20-29", 25, true}, {"0-9,20-29", 15, false}, {"7", 7, true}, {"", 0, false},
	} {
		if got := slotsContain(tc.slots, tc.slot); got != tc.want {
			t.Errorf("slotsContain(%q, %d) = %v, want %v", tc.slots, tc.slot, got, tc.want)
		}
	}
}

// make test runs the redis drill over every nemesis once: its N must be
// the number of nemeses.
func TestMakefile_TestDrillCoversEveryNemesis(t *testing.T) {
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\$\(MAKE\) --no-print-directory drill N=(\d+)\n`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the Makefile's test target runs no redis drill (drill N=...)")
	}
	if n, _ := strconv.Atoi(string(m[1])); n != len(allNemeses) {
		t.Errorf("make test runs drill N=%d, there are %d nemeses", n, len(allNemeses))
	}
}

func TestProcState_ReadsThisProcess(t *testing.T) {
	st, ppid, comm := procState(os.Getpid())
	if st == "" || ppid != os.Getppid() || comm == "" {
		t.Errorf("procState(self) = %q %d %q", st, ppid, comm)
	}
	if gone(os.Getpid()) {
		t.Error("this process counts as gone")
	}
	if st, _, _ := procState(1 << 30); st != "" {
		t.Errorf("procState of no process = %q", st)
	}
}
