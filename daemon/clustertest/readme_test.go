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

// pointAt makes a README example talk to node 1 of the test cluster.
func pointAt(c *clustertest.Cluster, s string) string {
	s = strings.ReplaceAll(s, "https://127.0.0.1:9443", "https://"+c.Member(1).Cfg.APIAddr)
	s = strings.ReplaceAll(s, "$PW", clustertest.AdminPassword)
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
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+filepath.Join(c.Member(1).Cfg.DataDir, "tls", "ca.crt"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python example: %v", err)
	}
	expectQueuedRemoveThenDone(t, c, out)
}
