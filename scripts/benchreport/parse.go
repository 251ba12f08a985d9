package main

import (
	"regexp"
	"strconv"
	"strings"
)

// results are benchmark metrics by name (without the -GOMAXPROCS suffix)
// and unit ("ns/op", "p50-ms", "ops/s", ...). A benchmark seen twice
// keeps its last figures.
type results map[string]map[string]float64

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)

func parse(out string) results {
	res := results{}
	for line := range strings.SplitSeq(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		fields := strings.Fields(m[3])
		metrics := map[string]float64{}
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			metrics[fields[i+1]] = v
		}
		res[m[1]] = metrics
	}
	return res
}

// get returns one metric, and whether the run measured it.
func (r results) get(name, unit string) (float64, bool) {
	v, ok := r[name][unit]
	return v, ok
}
