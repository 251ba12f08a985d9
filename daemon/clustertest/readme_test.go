package clustertest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

// readmeBlock returns the first fenced block of lang in README.md that
// contains want.
func readmeBlock(t *testing.T, lang, want string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```")
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], want) {
			return m[1]
		}
	}
	t.Fatalf("README.md has no %s block with %q", lang, want)
	return ""
}

// pointAt makes a README example talk to the test cluster: node i of the
// local cluster (127.0.0.i:9443) is member i, and the password and CA the
// example reads from .cluster are the test cluster's.
func pointAt(c *clustertest.Cluster, s string) string {
	for _, uid := range c.UIDs() {
		s = strings.ReplaceAll(s, fmt.Sprintf("https://127.0.0.%d:9443", uid), "https://"+c.Member(uid).Cfg.APIAddr)
	}
	s = strings.ReplaceAll(s, "$PW", clustertest.AdminPassword)
	s = strings.ReplaceAll(s, `open(".cluster/admin-password").read().strip()`, `"`+clustertest.AdminPassword+`"`)
	s = strings.ReplaceAll(s, `".cluster/node-1/tls/ca.crt"`, `"`+filepath.Join(c.Member(1).Cfg.DataDir, "tls", "ca.crt")+`"`)
	return strings.ReplaceAll(s, `"PASSWORD"`, `"`+clustertest.AdminPassword+`"`)
}

func expectQueuedRemoveThenDone(t *testing.T, c *clustertest.Cluster, out []byte) {
	t.Helper()
	var a actionObj
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("example printed %q: %v", out, err)
	}
	if a.Status != "queued" || a.TaskID == "" || a.Name != "remove_node" || a.NodeUID != "1" {
		t.Fatalf("example answered %s", out)
	}
	clustertest.Eventually(t, 30*time.Second, func() error {
		r, err := c.Do(2, "GET", "/v1/nodes/1/actions/remove", nil)
		if err != nil {
			return err
		}
		var got actionObj
		_ = json.Unmarshal(r.Body, &got)
		if got.Status != "completed" {
			return fmt.Errorf("remove is %s", got.Status)
		}
		return nil
	})
	c.MustDo(2, "GET", "/v1/nodes/1", nil, http.StatusNotFound)
}

func TestReadme_CurlRemoveExampleRunsVerbatim(t *testing.T) {
	line := ""
	for _, l := range strings.Split(readmeBlock(t, "sh", "actions/remove"), "\n") {
		if strings.HasPrefix(l, "curl ") && strings.Contains(l, "actions/remove") {
			line = l
		}
	}
	if line == "" {
		t.Fatal("no curl line in the README's remove example")
	}
	c := clustertest.Start(t, 3, clustertest.Options{})
	c.Leader(10 * time.Second)
	out, err := exec.Command("bash", "-c", pointAt(c, line)).Output()
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	expectQueuedRemoveThenDone(t, c, out)
}

func TestReadme_PythonRemoveExampleRunsVerbatim(t *testing.T) {
	script := readmeBlock(t, "python", "actions/remove")
	python := ""
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import requests").Run() == nil {
			python = p
			break
		}
	}
	if python == "" {
		t.Fatal("no python3 with the requests module (make deps installs python3-requests)")
	}
	c := clustertest.Start(t, 3, clustertest.Options{})
	c.Leader(10 * time.Second)
	cmd := exec.Command(python, "-c", pointAt(c, script))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python example: %v", err)
	}
	if !strings.Contains(script, "dry_run=true") {
		expectQueuedRemoveThenDone(t, c, out)
		return
	}
	// The README's Python example plans the removal: a plan, and nothing
	// stored.
	var plan struct {
		Plan []struct {
			Kind string `json:"kind"`
		} `json:"plan"`
	}
	if err := json.Unmarshal(out, &plan); err != nil || len(plan.Plan) == 0 || plan.Plan[len(plan.Plan)-1].Kind != "remove_member" {
		t.Fatalf("python dry run printed %s (%v), want a plan ending in remove_member", out, err)
	}
	c.MustDo(2, "GET", "/v1/nodes/1/actions/remove", nil, http.StatusNotFound)
	c.MustDo(2, "GET", "/v1/nodes/1", nil, http.StatusOK)
}
