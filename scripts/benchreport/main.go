// Command benchreport turns the output of make bench's Go benchmarks into
// the measured part of docs/BENCHMARKS.md: cnm against raw hashicorp/raft
// (daemon/clustertest's BenchmarkRawRaft and BenchmarkAPI), the
// scale curves of httpapi's BenchmarkScale as tables and PNG plots, and the
// machine they ran on.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
)

func main() {
	in := flag.String("in", "", "go test -bench output")
	md := flag.String("md", "docs/BENCHMARKS.md", "document whose report section is rewritten")
	plots := flag.String("plots", "docs/bench", "directory for the PNG plots")
	commit := flag.String("commit", "", "commit the benchmarks ran on")
	flag.Parse()
	if err := run(*in, *md, *plots, *commit); err != nil {
		slog.Error("benchreport", "error", err)
		os.Exit(1)
	}
}

func run(in, md, plots, commit string) error {
	raw, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("read benchmarks: %w", err)
	}
	res := parse(string(raw))
	section, err := report(res, machine(), commit, plots, md)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(plots, 0o755); err != nil {
		return fmt.Errorf("plots dir: %w", err)
	}
	if err := plotScale(res, plots); err != nil {
		return err
	}
	return splice(md, section)
}
