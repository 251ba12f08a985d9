package daemon

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cnm/pki"
)

// bootstrapped makes a data dir of a one-node cluster (node 1) and stops
// the node; it returns the config it ran with.
func bootstrapped(t *testing.T) Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.Bootstrap, cfg.AdminUser, cfg.AdminPassword = true, "admin@test", "secret-password"
	n, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Kill()
	cfg.Listen = nil // the reserved listeners are used up
	return cfg
}

// dirDigest sums every file of dir, names, modes, times and contents, so
// that a refused start can be shown to have touched nothing.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", path, info.Mode(), info.ModTime().UnixNano())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func readIdentityFile(t *testing.T, dir string) identity {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatal(err)
	}
	return id
}

// Bootstrap records whose the data dir is: the uid, the cluster (its CA's
// fingerprint) and the addresses.
func TestIdentity_BootstrapRecordsIt(t *testing.T) {
	cfg := bootstrapped(t)
	ca, err := os.ReadFile(filepath.Join(cfg.DataDir, "tls", pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := pki.Fingerprint(ca)
	if err != nil {
		t.Fatal(err)
	}
	want := identity{UID: 1, ClusterID: fp, APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr}
	if got := readIdentityFile(t, cfg.DataDir); got != want {
		t.Fatalf("identity = %+v, want %+v", got, want)
	}
}

// A data dir started under any other identity than its own is refused with
// one clear line before anything opens: no raft, no agent, no file changed.
func TestIdentity_OtherIdentitiesAreRefusedAndNothingIsTouched(t *testing.T) {
	cfg := bootstrapped(t)
	other := t.TempDir()
	otherCA, err := pki.NewCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// prepare changes the data dir or the config before the start.
		prepare func(t *testing.T, dir string, c *Config)
		want    string
	}{
		{"another uid", func(t *testing.T, _ string, c *Config) { c.UID = 5 }, "belongs to node 1"},
		{"another api address (a copy)", func(t *testing.T, _ string, c *Config) { c.APIAddr = "127.0.0.1:1" }, "a copy of a node's data dir"},
		{"another raft address (a copy)", func(t *testing.T, _ string, c *Config) { c.RaftAddr = "127.0.0.1:1" }, "a copy of a node's data dir"},
		{"the CA of another cluster", func(t *testing.T, dir string, _ *Config) {
			writeFile(t, filepath.Join(dir, "tls", pki.CAFile), otherCA.CertPEM)
		}, "belongs to cluster"},
		{"a damaged identity file", func(t *testing.T, dir string, _ *Config) {
			writeFile(t, filepath.Join(dir, identityFile), []byte("{"))
		}, "damaged"},
		{"an identity file without the cluster", func(t *testing.T, dir string, _ *Config) {
			writeFile(t, filepath.Join(dir, identityFile), []byte(`{"uid":1}`))
		}, "damaged"},
		{"no identity file, another uid (a data dir from before identity records)", func(t *testing.T, dir string, c *Config) {
			if err := os.Remove(filepath.Join(dir, identityFile)); err != nil {
				t.Fatal(err)
			}
			c.UID = 5
		}, "belongs to node 1 (its certificate says so)"},
		{"no identity file, another host", func(t *testing.T, dir string, c *Config) {
			if err := os.Remove(filepath.Join(dir, identityFile)); err != nil {
				t.Fatal(err)
			}
			c.APIAddr, c.RaftAddr = "127.0.0.99:1", "127.0.0.99:2"
		}, "does not name host 127.0.0.99"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.DataDir = filepath.Join(other, fmt.Sprint(i))
			if err := os.CopyFS(c.DataDir, os.DirFS(cfg.DataDir)); err != nil {
				t.Fatal(err)
			}
			tc.prepare(t, c.DataDir, &c)
			before := dirDigest(t, c.DataDir)
			n, err := Start(t.Context(), c)
			if err == nil {
				n.Kill()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line saying %q", err, tc.want)
			}
			if dirDigest(t, c.DataDir) != before {
				t.Errorf("the refused start changed the data dir")
			}
		})
	}
}

// cnmd says it in one line and fails.
func TestRun_RefusesADataDirOfAnotherNode(t *testing.T) {
	cfg := bootstrapped(t)
	args := []string{"--uid", "5", "--data-dir", cfg.DataDir, "--api-addr", cfg.APIAddr, "--raft-addr", cfg.RaftAddr}
	err := Run(t.Context(), args, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "belongs to node 1") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run = %v, want one line saying the data dir belongs to node 1", err)
	}
}

// A data dir from before identity records is adopted under its own uid
// (from its certificate) and then knows whose it is.
func TestIdentity_OldDataDirIsAdoptedUnderItsOwnUID(t *testing.T) {
	cfg := bootstrapped(t)
	want := readIdentityFile(t, cfg.DataDir)
	if err := os.Remove(filepath.Join(cfg.DataDir, identityFile)); err != nil {
		t.Fatal(err)
	}
	n, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("resume an old data dir: %v", err)
	}
	n.Kill()
	if got := readIdentityFile(t, cfg.DataDir); got != want {
		t.Fatalf("adopted identity = %+v, want %+v", got, want)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
