package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"cnm/pki"
	"cnm/raftnode"
)

// Config is everything one node needs; cmd/cnmd fills it from flags.
type Config struct {
	UID       int
	DataDir   string
	APIAddr   string
	RaftAddr  string
	Bootstrap bool
	Join      string
	// JoinCAFingerprint (the SHA-256 fingerprint of the cluster CA
	// certificate) or JoinCAFile (that certificate) is what --join checks
	// the member against before it sends the credentials; JoinInsecure
	// sends them to any server instead.
	JoinCAFingerprint string
	JoinCAFile        string
	JoinInsecure      bool
	AdminUser         string
	AdminPassword     string
	ClusterName       string

	Memory    int64
	MaxShards int
	RackID    string

	// MigrationRate caps the bytes per second of shard copies this node
	// sends or receives (0: unlimited); ShardFileScale is bytes of shard
	// data file per byte of shard memory.
	MigrationRate  int64
	ShardFileScale float64
	// ShardBackend is how the node stores its shards: ShardBackendFile
	// (a data file per shard; the default of a Config, whereas cnmd's
	// flag defaults to ShardBackendAuto) or ShardBackendRedis (a
	// redis-server process per shard, listening on the host of APIAddr on
	// a port of ShardPortLow-ShardPortHigh, default 30000-30999).
	ShardBackend                string
	ShardPortLow, ShardPortHigh int
	// DownAfter is how long the leader waits for a silent node before it
	// marks it down (default 3 s); nodes are probed every DownAfter/6.
	DownAfter time.Duration

	// Raft timeouts; zero takes raftnode's LAN defaults.
	Raft raftnode.Config
	// Hold is how long requests wait for a leader before 503 no_quorum.
	Hold       time.Duration
	BcryptCost int
	// TLSCertFile and TLSKeyFile, when set, are the certificate the HTTPS
	// API presents to clients (PEM). Node-to-node traffic keeps the
	// cluster CA's certificates.
	TLSCertFile, TLSKeyFile string
	// CertLifetime is how long the node certificates this node issues (as
	// leader, or for itself at bootstrap) are valid; a node renews its own
	// when a third of it is left (default 90 days).
	CertLifetime time.Duration
	// CheckpointInterval is how often the leader proposes a checkpoint at
	// which the nodes compare state hashes (default 10 s);
	// ConsistencyInterval how often each node compares (default 5 s).
	CheckpointInterval, ConsistencyInterval time.Duration
	// JoinTimeout bounds the whole join (default 60 s).
	JoinTimeout time.Duration
	// SetupJoinTimeout bounds a POST /v1/bootstrap/join_cluster, over all
	// the members it names (default 30 s).
	SetupJoinTimeout time.Duration
	// API bounds the connections clients can hold on the API port.
	API APILimits

	// Listen and Dial replace the network (tests inject faults here).
	Listen func(network, addr string) (net.Listener, error)
	Dial   raftnode.DialFunc

	Logger *slog.Logger
}

// Shard backends.
const (
	ShardBackendFile  = "file"
	ShardBackendRedis = "redis"
	// ShardBackendAuto, a value of the flag only, is redis wherever
	// redis-server is installed, else file.
	ShardBackendAuto = "auto"
)

// Default range of the ports of redis shards.
const (
	DefaultShardPortLow  = 30000
	DefaultShardPortHigh = 30999
)

// Defaults for the capacity flags (SPEC §1.1).
const (
	DefaultMemory      = 16 << 30
	DefaultMaxShards   = 100
	DefaultClusterName = "cnm.local"
)

func (c *Config) validate() error {
	if c.UID <= 0 {
		return fmt.Errorf("--uid must be a positive integer, got %d", c.UID)
	}
	if c.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	for name, a := range map[string]string{"--api-addr": c.APIAddr, "--raft-addr": c.RaftAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%s %q: %w", name, a, err)
		}
	}
	if c.Bootstrap && c.Join != "" {
		return errors.New("--bootstrap and --join exclude each other")
	}
	if c.Join != "" {
		u, err := url.Parse(joinURL(c.Join))
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return fmt.Errorf("--join %q: want https://host:port of a member", c.Join)
		}
	}
	if _, _, err := c.joinPin(); err != nil {
		return err
	}
	if c.API.HandshakeTimeout < 0 || c.API.IdleTimeout < 0 || c.API.MaxConns < 0 ||
		c.Raft.HandshakeTimeout < 0 || c.Raft.MaxHandshakes < 0 || c.Raft.MaxConns < 0 {
		return errors.New("connection limits must not be negative")
	}
	if c.CertLifetime < 0 || (c.CertLifetime > 0 && c.CertLifetime < 5*time.Second) {
		return fmt.Errorf("--cert-lifetime %s: want at least 5s", c.CertLifetime)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.TLSCertFile != "" {
		if _, err := c.apiCertificate(); err != nil {
			return err
		}
	}
	return c.validateShards()
}

// validateShards checks the shard backend flags, and that the redis
// backend finds redis-server, before anything starts.
func (c *Config) validateShards() error {
	switch c.ShardBackend {
	case "", ShardBackendFile:
		return nil
	case ShardBackendRedis:
	default:
		return fmt.Errorf("--shard-backend %q: want file or redis", c.ShardBackend)
	}
	if c.ShardPortLow != 0 || c.ShardPortHigh != 0 {
		if err := checkPortRange(c.ShardPortLow, c.ShardPortHigh); err != nil {
			return fmt.Errorf("--shard-ports %d-%d: %w", c.ShardPortLow, c.ShardPortHigh, err)
		}
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("--shard-backend redis: redis-server not found in PATH (install redis-server, or use --shard-backend file): %w", err)
	}
	return nil
}

// parsePortRange reads LOW-HIGH.
func parsePortRange(s string) (low, high int, err error) {
	l, h, ok := strings.Cut(s, "-")
	if ok {
		low, err = strconv.Atoi(strings.TrimSpace(l))
		if err == nil {
			high, err = strconv.Atoi(strings.TrimSpace(h))
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("--shard-ports %q: want LOW-HIGH, such as 30000-30999", s)
	}
	if err := checkPortRange(low, high); err != nil {
		return 0, 0, fmt.Errorf("--shard-ports %q: %w", s, err)
	}
	return low, high, nil
}

func checkPortRange(low, high int) error {
	if low < 1024 || high > 65535 || low > high {
		return errors.New("want ports within 1024-65535, LOW <= HIGH")
	}
	return nil
}

// validateMode checks what the mode flags need, given what the data dir
// already holds; it only looks, so a refused invocation leaves the data
// dir as it was. Credentials are needed to create a cluster (also when a
// crash left the bootstrap unfinished) and to join one, not to resume.
func (c *Config) validateMode() error {
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }
	hasLog := exists(filepath.Join(c.raftDir(), "raft.db"))
	noCreds := c.AdminUser == "" || c.AdminPassword == ""
	switch {
	case c.Bootstrap && noCreds && (!hasLog || exists(filepath.Join(c.DataDir, bootstrapMarker))):
		return errors.New("--bootstrap needs --admin-user and --admin-password")
	case c.Join != "" && noCreds && !hasLog:
		return errors.New("--join needs --admin-user and --admin-password")
	case c.Join != "" && !hasLog && c.joinsItself():
		return fmt.Errorf("--join %s is this node's own --api-addr: join through another member of the cluster", c.Join)
	case c.Join != "" && !hasLog && !c.JoinInsecure && c.JoinCAFingerprint == "" && c.JoinCAFile == "" &&
		!exists(filepath.Join(c.tlsDir(), pki.CAFile)):
		return errNoJoinPin
	}
	return nil
}

func (c *Config) apiCertificate() (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return cert, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", c.TLSCertFile, c.TLSKeyFile, err)
	}
	return cert, nil
}

func (c *Config) withDefaults() {
	if c.Memory == 0 {
		c.Memory = DefaultMemory
	}
	if c.MaxShards == 0 {
		c.MaxShards = DefaultMaxShards
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = bcrypt.DefaultCost
	}
	if c.ShardFileScale == 0 {
		c.ShardFileScale = 1.0 / 1024
	}
	if c.ShardBackend == "" {
		c.ShardBackend = ShardBackendFile
	}
	if c.ShardPortLow == 0 && c.ShardPortHigh == 0 {
		c.ShardPortLow, c.ShardPortHigh = DefaultShardPortLow, DefaultShardPortHigh
	}
	if c.DownAfter == 0 {
		c.DownAfter = 3 * time.Second
	}
	if c.CertLifetime == 0 {
		c.CertLifetime = pki.DefaultNodeLifetime
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 10 * time.Second
	}
	if c.ConsistencyInterval == 0 {
		c.ConsistencyInterval = 5 * time.Second
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = time.Minute
	}
	if c.SetupJoinTimeout <= 0 {
		c.SetupJoinTimeout = 30 * time.Second
	}
	c.API.withDefaults()
	if c.Listen == nil {
		c.Listen = net.Listen
	}
	if c.Dial == nil {
		c.Dial = raftnode.DefaultDial
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) tlsDir() string  { return filepath.Join(c.DataDir, "tls") }
func (c *Config) raftDir() string { return filepath.Join(c.DataDir, "raft") }
func (c *Config) host() string    { h, _, _ := net.SplitHostPort(c.APIAddr); return h }

func joinURL(s string) string {
	s = strings.TrimRight(s, "/")
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	return s
}
