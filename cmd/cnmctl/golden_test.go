package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

var update = flag.Bool("update", false, "rewrite cmd/cnmctl/testdata/golden from the real binary's output")

// buildCnmctl builds this package's binary: the tests below run the real
// program, as an operator does.
func buildCnmctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cnmctl")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command builds cnmctl for this test: %v", err)
	}
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// normalise replaces what differs from run to run (ports the OS chose,
// task ids, times, the term) so that the output can be compared.
var normalise = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<task-id>"},
	{regexp.MustCompile(`(127\.0\.0\.\d+):\d{4,5}`), "$1:<port>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d`), "<time>"},
	{regexp.MustCompile(`term \d+`), "term <n>"},
}

// TestGolden_TheRealBinaryAgainstARealCluster runs cnmctl commands against
// a 3-node cluster and compares what they print, and their exit status,
// with testdata/golden (go test ./cmd/cnmctl -run Golden -update rewrites
// it; read the diff).
func TestGolden_TheRealBinaryAgainstARealCluster(t *testing.T) {
	bin := buildCnmctl(t)
	c := clustertest.Start(t, 3, clustertest.Options{})
	c.Leader(15 * time.Second)
	c.MustDo(1, "PUT", "/v1/cluster/policy", map[string]any{"default_shards_placement": "sparse"}, 200)
	c.MustDo(1, "POST", "/v1/bdbs", map[string]any{"name": "orders", "memory_size": 1 << 30, "shards_count": 2, "replication": true}, 200)
	var urls []string
	for _, uid := range c.UIDs() {
		urls = append(urls, "https://"+c.Member(uid).Cfg.APIAddr)
	}
	env := append(os.Environ(), "CNM_URL="+strings.Join(urls, ","), "CNM_USER="+clustertest.AdminUser,
		"CNM_PASSWORD="+clustertest.AdminPassword, "HOME="+t.TempDir(), "CNM_CONFIG=")
	steps := []struct {
		name string
		args []string
		exit int
	}{
		{"status", []string{"status"}, exitOK},
		{"node-list", []string{"node", "list"}, exitOK},
		{"db-list", []string{"db", "list"}, exitOK},
		{"maintenance-on-dry-run", []string{"node", "2", "maintenance", "on", "--dry-run"}, exitOK},
		{"maintenance-on-wait", []string{"node", "2", "maintenance", "on", "--wait", "--progress", "none"}, exitOK},
		{"status-in-maintenance", []string{"status"}, exitOK},
		{"maintenance-on-again", []string{"node", "2", "maintenance", "on", "--wait", "--progress", "none"}, exitOK},
		{"maintenance-off-wait", []string{"node", "2", "maintenance", "off", "--wait", "--progress", "none"}, exitOK},
		{"action-list", []string{"action", "list"}, exitOK},
		{"policy-get-yaml", []string{"policy", "get", "-o", "yaml"}, exitOK},
		{"users-json", []string{"user", "list", "-o", "json"}, exitOK},
		{"enslave-unknown-node", []string{"node", "9", "enslave"}, exitError},
		{"usage-error", []string{"db", "list", "extra"}, exitUsage},
	}
	for _, st := range steps {
		cmd := exec.Command(bin, st.args...)
		cmd.Env = env
		var out, errs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errs
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := fmt.Sprintf("$ cnmctl %s\n%s--- stderr\n%s--- exit %d\n", strings.Join(st.args, " "), out.String(), errs.String(), code)
		for _, n := range normalise {
			got = n.re.ReplaceAllString(got, n.with)
		}
		if code != st.exit {
			t.Errorf("%s: exit %d, want %d\n%s", st.name, code, st.exit, got)
		}
		path := filepath.Join("testdata", "golden", st.name+".txt")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (go test ./cmd/cnmctl -run Golden -update writes it)", st.name, err)
		}
		if got != string(want) {
			t.Errorf("%s: the output differs from %s\n--- got\n%s--- want\n%s", st.name, path, got, want)
		}
	}
}
