package raftnode

import (
	"crypto/tls"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Config describes one raft member.
type Config struct {
	// ID is the node uid; raft server ids are its decimal form.
	ID int
	// RaftAddr is the host:port raft listens on and advertises.
	RaftAddr string
	// Dir holds raft.db and snapshots/.
	Dir string

	// ServerTLS and ClientTLS secure the raft stream (mutual TLS).
	ServerTLS, ClientTLS *tls.Config
	// Listen and Dial default to net.Listen and DefaultDial.
	Listen func(network, addr string) (net.Listener, error)
	Dial   DialFunc

	// Timeouts; zero values take the LAN defaults below.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many new entries trigger a snapshot, after
	// which the log is truncated down to TrailingLogs entries.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// Inbound connections to the raft port (SPEC §9): HandshakeTimeout
	// closes a connection that has not completed its TLS handshake (default
	// 5 s); MaxHandshakes caps those still handshaking, closing the oldest
	// at the cap (default 64); MaxConns caps authenticated ones, refusing
	// new ones beyond it (default 256).
	HandshakeTimeout time.Duration
	MaxHandshakes    int
	MaxConns         int

	Logger *slog.Logger

	// barrier commits a barrier; tests replace it to make it fail.
	barrier func(r *raft.Raft, timeout time.Duration) error
	// wrapStores goes between the bolt store and the checks on it; tests
	// inject store failures there.
	wrapStores func(raft.LogStore, raft.StableStore) (raft.LogStore, raft.StableStore)
	// probe tells whether the raft dir takes writes again after a write
	// fault, every probeInterval; tests replace it along with wrapStores.
	probe         func(dir string) error
	probeInterval time.Duration
}

// LAN defaults: a re-election well under a second. CommitTimeout bounds how
// late followers learn a commit index when nothing else is sent, and so how
// long a follower's linearizable read may wait after a write.
const (
	DefaultHeartbeatTimeout   = 200 * time.Millisecond
	DefaultElectionTimeout    = 200 * time.Millisecond
	DefaultLeaderLeaseTimeout = 100 * time.Millisecond
	DefaultCommitTimeout      = 10 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 4096
	DefaultHandshakeTimeout   = 5 * time.Second
	DefaultMaxHandshakes      = 64
	DefaultMaxConns           = 256
)

func (c *Config) withDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	def(&c.CommitTimeout, DefaultCommitTimeout)
	def(&c.SnapshotInterval, DefaultSnapshotInterval)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = DefaultMaxHandshakes
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.Listen == nil {
		c.Listen = net.Listen
	}
	if c.Dial == nil {
		c.Dial = DefaultDial
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.barrier == nil {
		c.barrier = raftBarrier
	}
	if c.probe == nil {
		c.probe = probeDir
	}
	if c.probeInterval == 0 {
		c.probeInterval = time.Second
	}
}

// raftConfig is the raft.Config of this member; raft's own defaults stand
// for everything Config does not set.
// RaftConfig is the raft configuration a node configured by cfg runs (the
// LAN defaults filled in), without its logger and leadership channel: what
// a benchmark of raft itself needs to compare like with like.
func RaftConfig(cfg Config) *raft.Config {
	cfg.withDefaults()
	return raftConfig(cfg, hclog.NewNullLogger(), nil)
}

func raftConfig(cfg Config, hlog hclog.Logger, notify chan bool) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(strconv.Itoa(cfg.ID))
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = hlog
	rc.NotifyCh = notify
	return rc
}
