package main

// Gaps: how long writers of a database could not get an acknowledged
// write while something ran (an action, a nemesis, a step of an action).

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// longestGap is the longest interval between consecutive acknowledged
// writes that overlaps [from, to]. acks are sorted; lo and hi, when the
// writers started and stopped, bound the intervals as acknowledgements
// would (an interval still open when the writers stopped counts up to
// then). A window outside [lo, hi] is not measured: -1.
func longestGap(acks []int64, lo, hi, from, to int64) int64 {
	g, _ := longestGapAt(acks, lo, hi, from, to)
	return g
}

// longestGapAt is longestGap and when that gap began (ns).
func longestGapAt(acks []int64, lo, hi, from, to int64) (gap, start int64) {
	if to < lo || from > hi || to < from {
		return -1, 0
	}
	from, to = max(from, lo), min(to, hi)
	// The first interval that ends after from: (acks[i-1], acks[i]).
	i := sort.Search(len(acks), func(i int) bool { return acks[i] > from })
	prev := lo
	if i > 0 {
		prev = acks[i-1]
	}
	var best, began int64
	for {
		next := hi
		if i < len(acks) {
			next = acks[i]
		}
		if next-prev > best {
			best, began = next-prev, prev
		}
		if next >= to || i >= len(acks) {
			return best, began
		}
		prev = next
		i++
	}
}

// window is something that ran from from to to (ns): an action (kind is
// its name), a nemesis iteration, or an action's step. db is the one
// database it concerns, 0 for all; slots, when set, the one shard's slot
// range (assigned_slots) whose writes it concerns.
type window struct {
	kind     string
	label    string
	db       int
	slots    string
	from, to int64
}

// gapRow is one kind of window: how many ran, and for each database the
// longest gap overlapping one of them and which one it was.
type gapRow struct {
	kind  string
	runs  int
	gap   map[int]int64 // db uid → longest gap, ns (-1: none measured)
	where map[int]string
	began map[int]int64 // when the longest gap began, ns: to find it in the nodes' logs
}

// gapTable computes a row per kind of window, in the order kinds first
// appear in order (then any others, sorted). acks are each database's
// acknowledgements in time order.
func gapTable(windows []window, acks map[int][]ackAt, lo, hi int64, order []string) []gapRow {
	type sel struct {
		db    int
		slots string
	}
	times := map[sel][]int64{}
	timesOf := func(db int, slots string) []int64 {
		k := sel{db, slots}
		if t, ok := times[k]; ok {
			return t
		}
		var t []int64
		for _, a := range acks[db] {
			if slots == "" || slotsContain(slots, a.slot) {
				t = append(t, a.at)
			}
		}
		times[k] = t
		return t
	}
	rows := map[string]*gapRow{}
	for _, w := range windows {
		r := rows[w.kind]
		if r == nil {
			r = &gapRow{kind: w.kind, gap: map[int]int64{}, where: map[int]string{}, began: map[int]int64{}}
			rows[w.kind] = r
		}
		r.runs++
		for db := range acks {
			if w.db != 0 && w.db != db {
				continue
			}
			if _, ok := r.gap[db]; !ok {
				r.gap[db] = -1
			}
			if g, began := longestGapAt(timesOf(db, w.slots), lo, hi, w.from, w.to); g > r.gap[db] {
				r.gap[db], r.where[db], r.began[db] = g, w.label, began
			}
		}
	}
	var kinds []string
	for _, k := range order {
		if rows[k] != nil {
			kinds = append(kinds, k)
		}
	}
	var rest []string
	for k := range rows {
		if !slices.Contains(kinds, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	var out []gapRow
	for _, k := range append(kinds, rest...) {
		out = append(out, *rows[k])
	}
	return out
}

// printGapTable writes the table: a line per kind, a column per database.
func printGapTable(w io.Writer, rows []gapRow, dbs []*dbState) {
	var b strings.Builder
	fmt.Fprintf(&b, "drill:   %-32s %5s", "while", "runs")
	for _, d := range dbs {
		fmt.Fprintf(&b, " %12s", d.spec.name)
	}
	fmt.Fprintln(w, b.String())
	for _, r := range rows {
		b.Reset()
		fmt.Fprintf(&b, "drill:   %-32s %5d", r.kind, r.runs)
		worst, at := int64(-1), ""
		for _, d := range dbs {
			g, ok := r.gap[d.uid]
			if !ok || g < 0 {
				fmt.Fprintf(&b, " %12s", "-")
				continue
			}
			fmt.Fprintf(&b, " %12s", time.Duration(g).Round(time.Millisecond))
			if g > worst {
				worst, at = g, fmt.Sprintf("%s: %s, from %s", d.spec.name, r.where[d.uid], time.Unix(0, r.began[d.uid]).UTC().Format("15:04:05.000"))
			}
		}
		if at != "" {
			fmt.Fprintf(&b, "   (longest in %s)", at)
		}
		fmt.Fprintln(w, b.String())
	}
}
