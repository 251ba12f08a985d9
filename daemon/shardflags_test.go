package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFlags_ShardBackendAndPorts(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		backend   string
		low, high int
	}{
		{"defaults", nil, nil, AutoShardBackend(), 30000, 30999},
		{"auto", map[string]string{"CNM_SHARD_BACKEND": "auto"}, nil, AutoShardBackend(), 30000, 30999},
		{"env", map[string]string{"CNM_SHARD_BACKEND": "redis", "CNM_SHARD_PORTS": "31000-31010"}, nil, ShardBackendRedis, 31000, 31010},
		{"flags win over env", map[string]string{"CNM_SHARD_BACKEND": "redis", "CNM_SHARD_PORTS": "31000-31010"},
			[]string{"--shard-backend", "file", "--shard-ports", "40000-40000"}, ShardBackendFile, 40000, 40000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.ShardBackend != tc.backend || c.ShardPortLow != tc.low || c.ShardPortHigh != tc.high {
				t.Errorf("got backend %q ports %d-%d, want %q %d-%d", c.ShardBackend, c.ShardPortLow, c.ShardPortHigh, tc.backend, tc.low, tc.high)
			}
		})
	}
}

func TestParseFlags_RefusesBadShardPorts(t *testing.T) {
	for _, ports := range []string{"30000", "a-b", "30000-", "1000-2000", "2000-1023", "31000-30000", "60000-70000", "-1-5"} {
		_, _, err := ParseFlags([]string{"--shard-ports", ports}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--shard-ports") {
			t.Errorf("--shard-ports %q: %v, want an error naming the flag", ports, err)
		}
	}
}

func TestConfigValidate_ShardBackend(t *testing.T) {
	_, lookErr := exec.LookPath("redis-server")
	base := Config{UID: 1, DataDir: "/d", APIAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	tests := []struct {
		name    string
		mut     func(*Config)
		path    string // PATH while validating; "" keeps it
		want    string // "" accepts
		noRedis bool   // redis-server is needed and missing
	}{
		{"file by default", func(*Config) {}, "", "", false},
		{"unknown backend", func(c *Config) { c.ShardBackend = "memcached" }, "", "--shard-backend", false},
		{"redis without redis-server", func(c *Config) { c.ShardBackend = ShardBackendRedis }, t.TempDir(), "redis-server not found", false},
		{"redis with a bad range", func(c *Config) { c.ShardBackend, c.ShardPortLow, c.ShardPortHigh = ShardBackendRedis, 9, 8 }, "", "--shard-ports", false},
		{"redis", func(c *Config) { c.ShardBackend = ShardBackendRedis }, "", "", lookErr != nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noRedis {
				// A failure, not a skip: make test runs make deps first.
				t.Fatal("redis-server is not installed: make deps installs it")
			}
			if tc.path != "" {
				t.Setenv("PATH", tc.path)
			}
			c := base
			tc.mut(&c)
			err := c.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error naming %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestRun_RedisBackendWithoutRedisServerFailsBeforeTouchingTheDataDir(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir := filepath.Join(t.TempDir(), "data")
	args := []string{"--uid", "1", "--data-dir", dir, "--api-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--bootstrap", "--admin-user", "admin@test", "--admin-password", "secret-password", "--shard-backend", "redis"}
	err := Run(t.Context(), args, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "redis-server not found") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run = %v, want one line saying redis-server is missing", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the data dir was touched: stat = %v", err)
	}
}

func TestNewBackend_IsTheConfiguredShardStore(t *testing.T) {
	for _, tc := range []struct{ backend, want string }{
		{"", "*agent.FileBackend"},
		{ShardBackendFile, "*agent.FileBackend"},
		{ShardBackendRedis, "*agent.RedisBackend"},
	} {
		n := &Node{cfg: Config{DataDir: t.TempDir(), APIAddr: "127.0.0.1:9443", ShardBackend: tc.backend,
			ShardPortLow: DefaultShardPortLow, ShardPortHigh: DefaultShardPortHigh, Logger: slog.New(slog.DiscardHandler)}}
		b, err := n.newBackend(nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.backend, err)
		}
		if got := fmt.Sprintf("%T", b); got != tc.want {
			t.Errorf("--shard-backend %q: got %s, want %s", tc.backend, got, tc.want)
		}
		if _, err := os.Stat(filepath.Join(n.cfg.DataDir, "shards")); err != nil {
			t.Errorf("--shard-backend %q: no shard dir in the data dir: %v", tc.backend, err)
		}
	}
}

func TestParseFlags_AutoBackendIsRedisWhereRedisServerIsInstalled(t *testing.T) {
	withRedis := t.TempDir()
	if err := os.WriteFile(filepath.Join(withRedis, "redis-server"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"redis-server in PATH", withRedis, ShardBackendRedis},
		{"no redis-server", t.TempDir(), ShardBackendFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", tc.path)
			for _, args := range [][]string{nil, {"--shard-backend", "auto"}} {
				c, _, err := ParseFlags(args, func(string) string { return "" }, io.Discard)
				if err != nil {
					t.Fatal(err)
				}
				if c.ShardBackend != tc.want {
					t.Errorf("args %q: backend %q, want %q", args, c.ShardBackend, tc.want)
				}
			}
		})
	}
}
