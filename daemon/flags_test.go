package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFlags_FlagsEnvAndDefaults(t *testing.T) {
	env := map[string]string{"CNM_UID": "4", "CNM_DATA_DIR": "/env/dir", "CNM_MIGRATION_RATE": "1048576", "CNM_JOIN_CA_FINGERPRINT": "AB:CD"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c Config, o Options)
	}{
		{"env fills what flags leave out", nil, func(t *testing.T, c Config, o Options) {
			if c.UID != 4 || c.DataDir != "/env/dir" || c.MigrationRate != 1<<20 {
				t.Errorf("got uid %d dir %q rate %d", c.UID, c.DataDir, c.MigrationRate)
			}
			if c.APIAddr != "127.0.0.1:9443" || c.RaftAddr != "127.0.0.1:9444" || c.Memory != DefaultMemory || c.MaxShards != DefaultMaxShards {
				t.Errorf("defaults: %+v", c)
			}
			if c.ShardFileScale != 1.0/1024 || o.LogLevel != slog.LevelInfo || o.LogFormat != "text" {
				t.Errorf("option defaults: %+v", o)
			}
		}},
		{"join flags", []string{"--join-ca-file", "/ca.crt", "--join-insecure"}, func(t *testing.T, c Config, o Options) {
			if c.JoinCAFingerprint != "AB:CD" || c.JoinCAFile != "/ca.crt" || !c.JoinInsecure {
				t.Errorf("got fingerprint %q, file %q, insecure %v", c.JoinCAFingerprint, c.JoinCAFile, c.JoinInsecure)
			}
		}},
		{"connection limits", []string{"--api-max-conns", "50", "--raft-max-handshakes", "8", "--raft-max-conns", "32", "--handshake-timeout", "2s"},
			func(t *testing.T, c Config, o Options) {
				if c.API.MaxConns != 50 || c.Raft.MaxHandshakes != 8 || c.Raft.MaxConns != 32 ||
					c.API.HandshakeTimeout != 2*time.Second || c.Raft.HandshakeTimeout != 2*time.Second {
					t.Errorf("got api %+v, raft handshakes %d conns %d timeout %s", c.API, c.Raft.MaxHandshakes, c.Raft.MaxConns, c.Raft.HandshakeTimeout)
				}
			}},
		{"flags win over env", []string{"--uid", "2", "--data-dir", "/flag", "--bootstrap", "--raft-heartbeat-timeout", "300ms", "--log-level", "debug", "--log-format", "json"},
			func(t *testing.T, c Config, o Options) {
				if c.UID != 2 || c.DataDir != "/flag" || !c.Bootstrap || c.Raft.HeartbeatTimeout != 300*time.Millisecond {
					t.Errorf("got %+v", c)
				}
				if o.LogLevel != slog.LevelDebug || o.LogFormat != "json" {
					t.Errorf("got %+v", o)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, o, err := ParseFlags(tc.args, getenv, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c, o)
		})
	}
}

func TestParseFlags_RefusesBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--log-format", "xml"},
		{"--log-level", "loud"},
		{"--migration-rate", "-1"},
		{"--shard-file-scale", "0"},
		{"--uid", "x"},
		{"--api-max-conns", "0"},
		{"--handshake-timeout", "-1s"},
		{"--pprof-addr", "0.0.0.0:6060"},
		{"--pprof-addr", ":6060"},
		{"--pprof-addr", "127.0.0.1"},
		{"stray"},
	} {
		if _, _, err := ParseFlags(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{UID: 1, DataDir: "/d", APIAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no uid":        func(c *Config) { c.UID = 0 },
		"no data dir":   func(c *Config) { c.DataDir = "" },
		"bad api addr":  func(c *Config) { c.APIAddr = "nowhere" },
		"bad raft addr": func(c *Config) { c.RaftAddr = "" },
		"both modes":    func(c *Config) { c.Bootstrap, c.Join = true, "https://x:1" },
	} {
		c := ok
		mut(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStart_WithoutStateOrModeSaysWhatToDo(t *testing.T) {
	_, err := Start(t.Context(), Config{UID: 1, DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0"})
	if err != ErrNoClusterState {
		t.Fatalf("got %v, want ErrNoClusterState", err)
	}
}

func TestStart_RefusesIncompleteOrUnreadableAPICertificate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Config{
		"cert without key": {TLSCertFile: bad},
		"key without cert": {TLSKeyFile: bad},
		"unreadable pair":  {TLSCertFile: bad, TLSKeyFile: bad},
		"missing files":    {TLSCertFile: filepath.Join(dir, "none.crt"), TLSKeyFile: filepath.Join(dir, "none.key")},
	} {
		c.UID, c.DataDir, c.APIAddr, c.RaftAddr, c.Bootstrap = 1, filepath.Join(dir, name), "127.0.0.1:0", "127.0.0.1:0", true
		if _, err := Start(t.Context(), c); err == nil || !strings.Contains(err.Error(), "tls") {
			t.Errorf("%s: Start = %v, want an error naming the tls flags", name, err)
		}
	}
}

// A refused invocation creates nothing: no data dir, no CA, no raft.
func TestRun_RefusesBadInvocationsBeforeTouchingTheDataDir(t *testing.T) {
	certDir := t.TempDir()
	missing := filepath.Join(certDir, "none.pem")
	creds := []string{"--admin-user", "admin@test", "--admin-password", "secret-password"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bootstrap without credentials", []string{"--bootstrap"}, "--admin-user"},
		{"bootstrap without password", []string{"--bootstrap", "--admin-user", "admin@test"}, "--admin-password"},
		{"join without credentials", []string{"--join", "https://127.0.0.1:1"}, "--admin-user"},
		{"join with a bad url", append([]string{"--join", "ftp://127.0.0.1:1"}, creds...), "--join"},
		{"bootstrap and join", append([]string{"--bootstrap", "--join", "https://127.0.0.1:1"}, creds...), "exclude"},
		{"no uid", append([]string{"--uid", "0", "--bootstrap"}, creds...), "--uid"},
		{"bad api addr", append([]string{"--api-addr", "nowhere", "--bootstrap"}, creds...), "--api-addr"},
		{"join without the cluster CA", append([]string{"--join", "https://127.0.0.1:1"}, creds...), "--join-ca-fingerprint"},
		{"join with a bad CA fingerprint", append([]string{"--join", "https://127.0.0.1:1", "--join-ca-fingerprint", "ab:cd"}, creds...), "--join-ca-fingerprint"},
		{"join with a missing CA file", append([]string{"--join", "https://127.0.0.1:1", "--join-ca-file", missing}, creds...), "--join-ca-file"},
		{"join through itself", append([]string{"--join", "https://127.0.0.1:0", "--join-insecure"}, creds...), "own --api-addr"},
		{"unreadable api certificate", append([]string{"--bootstrap", "--tls-cert", missing, "--tls-key", missing}, creds...), "--tls-cert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"--uid", "1", "--data-dir", dir, "--api-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}, tc.args...)
			err := Run(t.Context(), args, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error naming %s", err, tc.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("the data dir was touched: stat = %v", err)
			}
		})
	}
}
