package main

// The data drill's verdict: every acknowledged key reads back with its
// value, and the gaps in acknowledged writes, per action and per nemesis.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// switchOverTarget is the longest a master switch-over should keep a
// database from acknowledging writes (issue 11). Above it the summary
// says so; it is a target, not a promise the drill enforces.
const switchOverTarget = time.Second

// checkData reads every database back once the writers stopped, prints
// the accounting and the gap table, and returns the violations: every
// acknowledged key lost, every key that could not be read back.
func (c *cluster) checkData(ctx context.Context, mon *monitor, w io.Writer) []string {
	var problems []string
	shards := c.shardList(ctx)
	acks := map[int][]ackAt{}
	for _, d := range c.dbs {
		r := c.readBack(ctx, d)
		d.mu.Lock()
		acks[d.uid] = d.log.sorted()
		d.mu.Unlock()
		repl := "replicated"
		if !d.spec.replication {
			repl = "not replicated"
		}
		fmt.Fprintf(w, "drill: data: db %d %s (%s, %s): %d acknowledged, %d lost, %d unknown outcomes (%d of them written)\n",
			d.uid, d.spec.name, repl, d.spec.persistence, r.acked, len(r.lost), r.unknown, r.unknownWritten)
		if r.unread > 0 {
			problems = append(problems, fmt.Sprintf("db %s: %d keys could not be read back: %v", d.spec.name, r.unread, r.readErr))
		}
		for i, l := range r.lost {
			if i == 10 {
				problems = append(problems, fmt.Sprintf("db %s: %d more keys lost", d.spec.name, len(r.lost)-i))
				break
			}
			problems = append(problems, fmt.Sprintf("db %s: acknowledged write lost: %s", d.spec.name, c.describeLost(l, d.uid, shards)))
		}
	}
	lo, hi := c.data.start, c.data.stop
	windows := []window{{kind: "whole run", label: "the whole run", from: lo, to: hi}}
	windows = append(windows, mon.actionWindows()...)
	byUID := map[string]shardView{}
	for _, s := range shards {
		byUID[s.UID] = s
	}
	windows = append(windows, mon.stepWindows(byUID)...)
	// The same once more for those no fault overlapped: what the action
	// or step itself cost.
	var faults []window
	for _, r := range c.nemesisRuns {
		if r.kind != calm {
			faults = append(faults, r)
		}
	}
	for _, w := range windows {
		if w.kind == "whole run" || slices.Contains(allNemeses, w.kind) || overlapsAny(w, faults) {
			continue
		}
		w.kind += quiet
		windows = append(windows, w)
	}
	windows = append(windows, c.nemesisRuns...)
	order := []string{"whole run"}
	for _, k := range append(slices.Clone(actionNames), "failover step", "move step", "endpoint rebind step") {
		order = append(order, k, k+quiet)
	}
	order = append(order, allNemeses...)
	rows := gapTable(windows, acks, lo, hi, order)
	fmt.Fprintf(w, "drill: data: longest time without an acknowledged write, per database, while each ran (%s of writing):\n",
		time.Duration(hi-lo).Round(time.Second))
	printGapTable(w, rows, c.dbs)
	for _, r := range rows {
		if r.kind != "failover step" && r.kind != "failover step"+quiet {
			continue
		}
		var worst int64
		for _, g := range r.gap {
			worst = max(worst, g)
		}
		verdict := "within"
		if time.Duration(worst) > switchOverTarget {
			verdict = "ABOVE"
		}
		fmt.Fprintf(w, "drill: data: master switch-overs (%s, %d, the writes to the shard's slots, to within a 200 ms poll): longest gap %s, %s the %s target\n",
			r.kind, r.runs, time.Duration(worst).Round(time.Millisecond), verdict, switchOverTarget)
	}
	for _, n := range c.notes {
		fmt.Fprintln(w, "drill: note:", n)
	}
	return problems
}

// quiet marks a row of the windows no fault overlapped.
const quiet = ", no nemesis"

func overlapsAny(w window, runs []window) bool {
	for _, r := range runs {
		if w.from < r.to && r.from < w.to {
			return true
		}
	}
	return false
}

// shardList reads the shards (empty when no node answers).
func (c *cluster) shardList(ctx context.Context) []shardView {
	for _, n := range c.running() {
		var shards []shardView
		st, b, err := c.do(ctx, n, "GET", "/v1/shards", nil)
		if err == nil && st == 200 && json.Unmarshal(b, &shards) == nil {
			return shards
		}
	}
	return nil
}

// describeLost says what is known of a lost key: when it was
// acknowledged, the shard its slot belongs to now, and the nemeses that
// struck after it was acknowledged.
func (c *cluster) describeLost(l lostWrite, db int, shards []shardView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", l.key, l.why)
	slot := keySlot(l.key)
	fmt.Fprintf(&b, "; slot %d", slot)
	for _, s := range shards {
		if s.BDB == db && s.Role == "master" && slotsContain(s.Slots, slot) {
			fmt.Fprintf(&b, " (shard %s, master on node %s now)", s.UID, s.NodeUID)
		}
	}
	if l.at != 0 {
		fmt.Fprintf(&b, "; acknowledged at %s (%s into the writing)", time.Unix(0, l.at).UTC().Format("15:04:05.000"),
			time.Duration(l.at-c.data.start).Round(time.Millisecond))
		var after []string
		for _, n := range c.nemesisRuns {
			if n.to > l.at {
				after = append(after, n.label)
			}
		}
		if len(after) > 3 {
			after = after[:3]
		}
		if len(after) > 0 {
			fmt.Fprintf(&b, "; nemeses running then or next: %s", strings.Join(after, ", "))
		}
	}
	return b.String()
}

// keySlot is the Redis Cluster hash slot of a key: CRC16 (XMODEM) of the
// key, or of its {hash tag}, modulo 16384. The drill computes it itself:
// the product's own function is what it checks.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// slotsContain reports whether an assigned_slots value ("0-2729",
// "0-99,200-299", "5") holds slot.
func slotsContain(slots string, slot int) bool {
	for part := range strings.SplitSeq(slots, ",") {
		lo, hi, ok := strings.Cut(strings.TrimSpace(part), "-")
		if !ok {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		z, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && a <= slot && slot <= z {
			return true
		}
	}
	return false
}

// note keeps a line for the end of the summary.
func (c *cluster) note(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notes = append(c.notes, s)
}
