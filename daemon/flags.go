package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"cnm/raftnode"
)

// Options are the command-line settings of cnmd that are not node Config.
type Options struct {
	LogFormat string
	LogLevel  slog.Level
	// PprofAddr, if set, is the loopback address net/http/pprof is served
	// on (ServeProfiles).
	PprofAddr string
}

// ParseFlags reads cnmd's flags (SPEC §1.1), falling back to the CNM_*
// environment variables for those that have one.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, Options, error) {
	var c Config
	var o Options
	fs := flag.NewFlagSet("cnmd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envInt := func(name string, def int64) int64 {
		if v, err := strconv.ParseInt(getenv(name), 10, 64); err == nil {
			return v
		}
		return def
	}
	envFloat := func(name string, def float64) float64 {
		if v, err := strconv.ParseFloat(getenv(name), 64); err == nil {
			return v
		}
		return def
	}
	fs.IntVar(&c.UID, "uid", int(envInt("CNM_UID", 0)), "node uid, a positive integer unique in the cluster (CNM_UID)")
	fs.StringVar(&c.DataDir, "data-dir", env("CNM_DATA_DIR", ""), "raft log, snapshots, TLS material, node-local files (CNM_DATA_DIR)")
	fs.StringVar(&c.APIAddr, "api-addr", env("CNM_API_ADDR", "127.0.0.1:9443"), "HTTPS REST listener (CNM_API_ADDR)")
	fs.StringVar(&c.RaftAddr, "raft-addr", env("CNM_RAFT_ADDR", "127.0.0.1:9444"), "raft transport listener (CNM_RAFT_ADDR)")
	fs.BoolVar(&c.Bootstrap, "bootstrap", false, "create a new cluster with this node as its first member")
	fs.StringVar(&c.Join, "join", env("CNM_JOIN", ""), "https://host:port of any member: join that cluster (CNM_JOIN)")
	fs.StringVar(&c.JoinCAFingerprint, "join-ca-fingerprint", env("CNM_JOIN_CA_FINGERPRINT", ""), "SHA-256 fingerprint of the cluster CA certificate (as openssl x509 -fingerprint -sha256 prints it): --join sends credentials only to a member under that CA (CNM_JOIN_CA_FINGERPRINT)")
	fs.StringVar(&c.JoinCAFile, "join-ca-file", env("CNM_JOIN_CA_FILE", ""), "the cluster CA certificate (a member's tls/ca.crt), instead of --join-ca-fingerprint (CNM_JOIN_CA_FILE)")
	fs.BoolVar(&c.JoinInsecure, "join-insecure", false, "let --join send the credentials to a server it cannot check (neither --join-ca-fingerprint nor --join-ca-file)")
	fs.StringVar(&c.AdminUser, "admin-user", env("CNM_ADMIN_USER", ""), "first admin (with --bootstrap) or credentials to join with (CNM_ADMIN_USER)")
	fs.StringVar(&c.AdminPassword, "admin-password", env("CNM_ADMIN_PASSWORD", ""), "password of --admin-user (CNM_ADMIN_PASSWORD)")
	fs.StringVar(&c.TLSCertFile, "tls-cert", env("CNM_TLS_CERT", ""), "PEM certificate the HTTPS API shows clients, with --tls-key; default: one from the cluster CA (CNM_TLS_CERT)")
	fs.StringVar(&c.TLSKeyFile, "tls-key", env("CNM_TLS_KEY", ""), "PEM private key of --tls-cert (CNM_TLS_KEY)")
	fs.StringVar(&c.ClusterName, "cluster-name", DefaultClusterName, "name of a new cluster (with --bootstrap)")
	fs.DurationVar(&c.CertLifetime, "cert-lifetime", 0, "lifetime of the node certificates this node issues; nodes renew theirs when a third is left (default 2160h, 90 days)")
	fs.Int64Var(&c.Memory, "memory", DefaultMemory, "this node's memory for shards, in bytes")
	fs.IntVar(&c.MaxShards, "max-shards", DefaultMaxShards, "most shards this node hosts")
	fs.StringVar(&c.RackID, "rack-id", "", "this node's rack")
	fs.Int64Var(&c.MigrationRate, "migration-rate", envInt("CNM_MIGRATION_RATE", 0), "bandwidth cap in bytes/s for shard copies; 0 = unlimited (CNM_MIGRATION_RATE)")
	fs.Float64Var(&c.ShardFileScale, "shard-file-scale", envFloat("CNM_SHARD_FILE_SCALE", 1.0/1024), "bytes of shard data file per byte of shard memory (CNM_SHARD_FILE_SCALE)")
	readPorts := shardFlags(fs, &c, env)
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.PprofAddr, "pprof-addr", "", "loopback host:port to serve Go profiles on (net/http/pprof), such as 127.0.0.1:6060; empty: none")
	fs.DurationVar(&c.Raft.HeartbeatTimeout, "raft-heartbeat-timeout", 0, "raft heartbeat timeout (default 200ms)")
	fs.DurationVar(&c.Raft.ElectionTimeout, "raft-election-timeout", 0, "raft election timeout (default 200ms)")
	fs.DurationVar(&c.Raft.LeaderLeaseTimeout, "raft-lease-timeout", 0, "raft leader lease (default 100ms)")
	fs.DurationVar(&c.Raft.CommitTimeout, "raft-commit-timeout", 0, "raft commit timeout (default 10ms)")
	fs.Uint64Var(&c.Raft.SnapshotThreshold, "raft-snapshot-threshold", 0, "log entries between snapshots (default 8192)")
	fs.IntVar(&c.API.MaxConns, "api-max-conns", DefaultAPIMaxConns, "most open API connections; beyond it the one idle longest is closed")
	fs.IntVar(&c.Raft.MaxHandshakes, "raft-max-handshakes", raftnode.DefaultMaxHandshakes, "most raft connections still in their TLS handshake; beyond it the oldest is closed")
	fs.IntVar(&c.Raft.MaxConns, "raft-max-conns", raftnode.DefaultMaxConns, "most authenticated inbound raft connections")
	handshake := fs.Duration("handshake-timeout", DefaultAPIHandshakeTimeout, "TLS handshake deadline on the API and raft ports")
	if err := fs.Parse(args); err != nil {
		return c, o, err
	}
	if fs.NArg() > 0 {
		return c, o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := o.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return c, o, fmt.Errorf("--log-level %q: %w", *level, err)
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return c, o, fmt.Errorf("--log-format must be text or json, got %q", o.LogFormat)
	}
	if o.PprofAddr != "" {
		if err := checkLoopback(o.PprofAddr); err != nil {
			return c, o, err
		}
	}
	c.API.HandshakeTimeout, c.Raft.HandshakeTimeout = *handshake, *handshake
	if c.API.MaxConns <= 0 || c.Raft.MaxHandshakes <= 0 || c.Raft.MaxConns <= 0 || *handshake <= 0 {
		return c, o, errors.New("--api-max-conns, --raft-max-handshakes, --raft-max-conns and --handshake-timeout must be positive")
	}
	if err := readPorts(); err != nil {
		return c, o, err
	}
	if c.MigrationRate < 0 || c.ShardFileScale <= 0 {
		return c, o, errors.New("--migration-rate must be >= 0 and --shard-file-scale > 0")
	}
	return c, o, nil
}

// shardFlags registers the shard backend flags; the func it returns reads
// --shard-ports into c once the flags are parsed.
func shardFlags(fs *flag.FlagSet, c *Config, env func(name, def string) string) func() error {
	fs.StringVar(&c.ShardBackend, "shard-backend", env("CNM_SHARD_BACKEND", ShardBackendAuto), "how shards are stored: redis (a redis-server process per shard, bound to the host of --api-addr; needs redis-server in PATH), file (a data file per shard, for control-plane tests), or auto (redis wherever redis-server is in PATH, else file) (CNM_SHARD_BACKEND)")
	ports := fs.String("shard-ports", env("CNM_SHARD_PORTS", fmt.Sprintf("%d-%d", DefaultShardPortLow, DefaultShardPortHigh)), "LOW-HIGH: the ports redis shards listen on, within 1024-65535 (CNM_SHARD_PORTS)")
	return func() (err error) {
		if c.ShardBackend == ShardBackendAuto {
			c.ShardBackend = AutoShardBackend()
		}
		c.ShardPortLow, c.ShardPortHigh, err = parsePortRange(*ports)
		return err
	}
}

// AutoShardBackend is the backend of --shard-backend auto: real redis
// shards wherever redis-server is installed.
func AutoShardBackend() string {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return ShardBackendFile
	}
	return ShardBackendRedis
}

// Run is cnmd: parse flags, start the node, serve until ctx ends (SIGTERM),
// then leave cleanly.
func Run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, opts, err := ParseFlags(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	hopts := &slog.HandlerOptions{Level: opts.LogLevel}
	var h slog.Handler = slog.NewTextHandler(stderr, hopts)
	if opts.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, hopts)
	}
	cfg.Logger = slog.New(h)
	if opts.PprofAddr != "" {
		_, stop, err := ServeProfiles(opts.PprofAddr, cfg.Logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	n, err := Start(ctx, cfg)
	if errors.Is(err, ErrNoClusterState) {
		// Neither --bootstrap nor --join, and nothing to resume: wait to be
		// set up over REST.
		n, err = StartViaREST(ctx, cfg)
	}
	if err != nil {
		return err
	}
	for {
		again, err := n.wait(ctx)
		if !again {
			return err
		}
		// The disk recovered from a write fault: the same data dir, a
		// fresh raft member and state rebuilt from the log.
		if n, err = Start(ctx, cfg); err != nil {
			return err
		}
	}
}

// wait serves until ctx ends, the cluster removes the node, its API stops,
// or it wants a restart (again, once closed).
func (n *Node) wait(ctx context.Context) (again bool, err error) {
	select {
	case <-n.RestartWanted():
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Close(closeCtx); err != nil {
			n.log.Warn("close before the restart", "error", err)
		}
		return true, nil
	case <-ctx.Done():
	case <-n.Removed():
		// Answer 503 not_a_member for a moment so that clients see why,
		// then leave, with the shard processes, which would otherwise
		// run on unsupervised.
		n.log.Info("leaving: the cluster removed this node")
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
		closeCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := n.Close(closeCtx)
		if serr := n.agent.StopShards(closeCtx); serr != nil {
			n.log.Warn("shard processes of the removed node not all stopped", "error", serr)
		}
		return false, err
	case err := <-n.Served():
		n.log.Error("api server stopped", "error", err)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return false, n.Close(closeCtx)
}
