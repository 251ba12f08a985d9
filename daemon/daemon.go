package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"cnm/agent"
	"cnm/cluster"
	"cnm/fsm"
	"cnm/httpapi"
	"cnm/peer"
	"cnm/pki"
	"cnm/raftnode"
)

// Version is the software version nodes report.
var Version = "0.1.0"

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

// Defaults for the capacity flags (SPEC §1.1).
const (
	DefaultMemory      = 16 << 30
	DefaultMaxShards   = 100
	DefaultClusterName = "cnm.local"
)

// ErrNoClusterState is returned when a node has no state and was told
// neither to bootstrap nor to join.
var ErrNoClusterState = errors.New("no cluster state in the data dir: start with --bootstrap or --join")

// Node is a running cnm node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	raft  *raftnode.Node
	api   *httpapi.Server
	peers *peer.Client
	agent *agent.Agent
	gate  *agentGate
	id    *pki.Identity
	// peerHTTP carries every node-to-node call (peers and agents).
	peerHTTP *http.Client
	srv      *http.Server
	ln       net.Listener
	served   chan error

	// background work: the agent, the leader loop, the membership watch.
	stopBG  context.CancelFunc
	bg      sync.WaitGroup
	removed chan struct{}
	// restart is closed when the node should be started again on its data
	// dir (RestartWanted).
	restart     chan struct{}
	restartOnce sync.Once
	// started is when this cnmd began; the leader records it for uptime.
	started time.Time
	// peersWritten is the peers file's content (membership watch only).
	peersWritten string
}

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

// Start brings a node up: it resumes from the data dir, or creates a cluster
// (Bootstrap), or joins one (Join). It returns once the node serves its API
// and is a member of the cluster.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	// Every check of the flags comes before anything is created or started.
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := cfg.validateMode(); err != nil {
		return nil, err
	}
	id, err := cfg.checkIdentity()
	if err != nil {
		return nil, err
	}
	cfg.withDefaults()
	log := cfg.Logger.With("node_uid", cfg.UID)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", cfg.DataDir, err)
	}
	hasState, err := raftnode.HasState(cfg.raftDir())
	if err != nil {
		return nil, err
	}
	if err := pki.RecoverReplacing(cfg.tlsDir()); err != nil {
		return nil, err
	}
	if err := cfg.checkNotDiverged(); err != nil {
		return nil, err
	}
	mat, err := pki.Load(cfg.tlsDir())
	haveTLS := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}

	joining := false
	joinMark := filepath.Join(cfg.DataDir, joinMarker)
	switch {
	case hasState && haveTLS:
		log.Info("resuming from data dir", "data_dir", cfg.DataDir)
		if _, err := os.Stat(joinMark); err == nil {
			// Stopped between the two steps of its join (a non-voter,
			// still): finish it, or the node never votes.
			if cfg.Join == "" || cfg.AdminUser == "" || cfg.AdminPassword == "" {
				return nil, fmt.Errorf("the join of node %d did not finish: start it again with --join and the admin credentials", cfg.UID)
			}
			log.Info("finishing the join that was cut short", "join", cfg.Join)
			joining = true
		}
	case cfg.Bootstrap:
		if !haveTLS {
			if id != nil {
				return nil, fmt.Errorf("data dir %s belongs to cluster %s but lost its tls material: refusing to create "+
					"a new cluster in it (use an empty data dir)", cfg.DataDir, short(id.ClusterID))
			}
			if mat, err = newClusterTLS(cfg); err != nil {
				return nil, err
			}
		}
		fp, err := pki.Fingerprint(mat.CAPEM)
		if err != nil {
			return nil, err
		}
		if err := cfg.recordIdentity(fp); err != nil {
			return nil, err
		}
		log.Info("cluster CA: other nodes join with --join and --join-ca-fingerprint",
			"join", "https://"+cfg.APIAddr, "ca_fingerprint", fp, "ca_file", filepath.Join(cfg.tlsDir(), pki.CAFile))
	case cfg.Join != "":
		// Even with a certificate from an earlier attempt, ask again: the
		// answer also confirms the node table entry.
		// Written before the node can become a member, removed once it
		// votes: a restart in between finishes the join.
		if err := os.WriteFile(joinMark, nil, 0o600); err != nil {
			return nil, fmt.Errorf("write join marker: %w", err)
		}
		if mat, err = joinFirstStep(ctx, cfg, id, log); err != nil {
			return nil, err
		}
		joining = true
	case hasState:
		return nil, fmt.Errorf("data dir %s has raft state but no tls material in %s", cfg.DataDir, cfg.tlsDir())
	default:
		return nil, ErrNoClusterState
	}

	n := &Node{cfg: cfg, log: log, served: make(chan error, 1), removed: make(chan struct{}), restart: make(chan struct{}), started: time.Now()}
	if err := n.open(mat); err != nil {
		return nil, err
	}
	if cfg.Bootstrap {
		if err := n.ensureBootstrapped(ctx, hasState, mat); err != nil {
			n.Kill()
			return nil, err
		}
		n.markMember()
	}
	if joining {
		if err := n.joinSecondStep(ctx, mat); err != nil {
			n.Kill()
			return nil, err
		}
		n.markMember()
		if err := os.Remove(joinMark); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.log.Warn("remove join marker", "error", err)
		}
		// The member joined through is one to ask about membership later,
		// should this node be removed before it knows any other.
		if u, err := url.Parse(joinURL(cfg.Join)); err == nil && u.Host != "" {
			n.rememberPeers(u.Host)
		}
	}
	return n, nil
}

// open starts raft and the API on the given TLS identity.
func (n *Node) open(mat pki.Material) error {
	cfg := n.cfg
	f := fsm.New(fsm.WithAdmission(cluster.Admit))
	id, err := pki.NewIdentity(mat, revokedIn(f))
	if err != nil {
		return err
	}
	n.id = id
	rc := cfg.Raft
	rc.ID, rc.RaftAddr, rc.Dir = cfg.UID, cfg.RaftAddr, cfg.raftDir()
	rc.ServerTLS, rc.ClientTLS = id.ServerConfig(true), id.ClientConfig()
	rc.Listen, rc.Dial, rc.Logger = cfg.Listen, cfg.Dial, cfg.Logger
	r, err := raftnode.Open(rc, f)
	if err != nil {
		return err
	}
	n.raft = r

	apiTLS, err := n.apiTLS()
	if err != nil {
		_ = r.Shutdown()
		return err
	}
	peerHTTP := peer.NewHTTPClient(id.PeerAPIClientConfig(), cfg.host(), peer.DialFunc(cfg.Dial))
	n.peerHTTP = peerHTTP
	n.peers = peer.NewClient(peerHTTP)
	limiter := agent.NewLimiter(cfg.MigrationRate)
	backend, err := agent.NewFileBackend(filepath.Join(cfg.DataDir, "shards"), limiter)
	if err != nil {
		_ = r.Shutdown()
		return err
	}
	// The agent must not act on the old snapshot a restart begins from:
	// it waits until the state has caught up with this node's own log.
	_, lastAtStart := r.Indexes()
	caughtUp := new(atomic.Bool)
	caughtUp.Store(lastAtStart == 0)
	n.agent = agent.New(agent.Config{NodeUID: cfg.UID, APIAddr: cfg.APIAddr, FSM: r.FSM(), Backend: backend, Limiter: limiter,
		Scale: cfg.ShardFileScale, Client: peerHTTP, Logger: cfg.Logger, CaughtUp: caughtUp.Load,
		OpLogPath: filepath.Join(cfg.DataDir, "agent-ops.jsonl")})
	n.gate = newAgentGate()
	n.api = httpapi.New(httpapi.Config{
		Raft: r, Peers: n.peers, Hold: cfg.Hold, BcryptCost: cfg.BcryptCost,
		Version: Version, APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr, Logger: cfg.Logger,
		Agent: n.gate.wrap(n.agent.Handler()), AgentPrefix: agent.Prefix,
		PeerCheck: id.VerifiedPeer, CertLifetime: cfg.CertLifetime,
	})
	ln, err := cfg.Listen("tcp", cfg.APIAddr)
	if err != nil {
		_ = r.Shutdown()
		return fmt.Errorf("listen for api on %s: %w", cfg.APIAddr, err)
	}
	n.ln = ln
	n.srv = newAPIServer(n.api, cfg.API, cfg.Logger)
	n.srv.TLSConfig = apiTLS
	n.srv.RegisterOnShutdown(n.api.EndWaits)
	go func() { n.served <- n.srv.Serve(tls.NewListener(ln, apiTLS)) }()

	bg, stop := context.WithCancel(context.Background())
	n.stopBG = stop
	loop := cluster.NewLeaderLoop(r, cfg.Logger,
		&cluster.Liveness{
			Self: cfg.UID, FSM: r.FSM(), Probe: n.peers, Raft: r, Started: n.started,
			Interval: cfg.DownAfter / 6, DownAfter: cfg.DownAfter, Log: cfg.Logger.With("component", "liveness"),
		},
		&cluster.Executor{FSM: r.FSM(), Raft: r, Agents: agent.NewClient(peerHTTP),
			Log: cfg.Logger.With("component", "executor", "node_uid", cfg.UID)},
		&cluster.Checkpointer{FSM: r.FSM(), Raft: r, Interval: cfg.CheckpointInterval,
			Log: cfg.Logger.With("component", "checkpointer")},
	)
	check := &cluster.ConsistencyCheck{Self: cfg.UID, FSM: r.FSM(), Peers: n.peers, Interval: cfg.ConsistencyInterval,
		Log: cfg.Logger.With("component", "consistency", "node_uid", cfg.UID), Diverged: n.diverged}
	n.bg.Add(7)
	go func() { defer n.bg.Done(); check.Run(bg) }()
	go func() { defer n.bg.Done(); n.watchStorage(bg) }()
	go func() { defer n.bg.Done(); n.renewCerts(bg) }()
	go func() {
		defer n.bg.Done()
		if err := r.WaitApplied(bg, lastAtStart); err == nil {
			caughtUp.Store(true)
			n.agent.Kick()
		}
	}()
	go func() { defer n.bg.Done(); n.agent.Run(bg) }()
	go func() { defer n.bg.Done(); loop.Run(bg) }()
	go func() { defer n.bg.Done(); n.watchMembership(bg) }()
	fp, _ := pki.Fingerprint(mat.CAPEM)
	n.log.Info("node started", "api_addr", cfg.APIAddr, "raft_addr", cfg.RaftAddr, "ca_fingerprint", fp)
	return nil
}

// watchMembership notices that the cluster removed this node: a node that
// has been a member and that the leader's committed node table no longer
// holds. The API then answers 503 not_a_member and Removed is closed so
// that cnmd exits. Raft alone cannot say it: a removed node may never
// receive the change, and a change it did receive may not be committed.
func (n *Node) watchMembership(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	marker := filepath.Join(n.cfg.DataDir, memberMarker)
	// was: this node has been a member. The marker keeps that across
	// restarts, and Start writes it as soon as a bootstrap or join is
	// done, so that a removal quicker than this watch's first look still
	// counts.
	_, err := os.Stat(marker)
	was := err == nil
	heard := time.Now() // when this node last knew a leader
	var asked time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		member, err := n.raft.IsMember(n.cfg.UID)
		if err != nil {
			continue
		}
		if !was {
			if _, err := os.Stat(marker); err == nil {
				was = true // Start finished the join or bootstrap
			}
		}
		if member && !was {
			n.markMember()
			was = true
		}
		if member {
			n.rememberPeers()
		}
		if uid, _ := n.raft.Leader(); uid != 0 {
			heard = time.Now()
		}
		if !was {
			continue // still joining
		}
		// Ask the leader when raft says this node is out (the change may
		// not be committed, and a node still catching up after its join
		// may not see itself yet), or when no leader has been heard for a
		// while (the change that removed this node may never have reached
		// it).
		every := leaderlessAsk / 2
		if !member {
			every = time.Second
		}
		if (member && time.Since(heard) <= leaderlessAsk) || time.Since(asked) < every {
			continue
		}
		asked = time.Now()
		if n.removedPerLeader(ctx) {
			n.log.Warn("this node was removed from the cluster")
			n.api.SetRemoved()
			close(n.removed)
			return
		}
	}
}

// peerAPIAddrs lists the API addresses of the other nodes in the state.
func (n *Node) peerAPIAddrs() []string {
	var addrs []string
	n.raft.FSM().Read(func(st *fsm.State, _ uint64) {
		for _, uid := range st.NodeUIDs() {
			if uid != n.cfg.UID {
				addrs = append(addrs, st.Nodes[uid].APIAddr)
			}
		}
	})
	return addrs
}

// rememberPeers keeps the other nodes' API addresses in the data dir, for
// the membership question after a restart.
func (n *Node) rememberPeers(extra ...string) {
	addrs := n.peerAPIAddrs()
	for _, a := range extra {
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return
	}
	data := strings.Join(addrs, "\n") + "\n"
	if data == n.peersWritten {
		return
	}
	if err := os.WriteFile(filepath.Join(n.cfg.DataDir, peersFile), []byte(data), 0o600); err != nil {
		n.log.Warn("remember peers", "error", err)
		return
	}
	n.peersWritten = data
}

// markMember records in the data dir that this node has been a member.
func (n *Node) markMember() {
	if err := os.WriteFile(filepath.Join(n.cfg.DataDir, memberMarker), nil, 0o600); err != nil {
		n.log.Warn("write member marker", "error", err)
	}
}

// leaderlessAsk is how long a member goes without a leader before it asks
// the other nodes whether the cluster still counts it in.
const leaderlessAsk = 4 * time.Second

// removedPerLeader asks the other nodes in this node's view of the node
// table; true when one of them, confirmed as leader, answers with a
// committed node table that lacks this node.
func (n *Node) removedPerLeader(ctx context.Context) bool {
	// The state may know no one: after a restart it is the last snapshot
	// until a leader is heard from, which a removed node never hears.
	addrs := n.peerAPIAddrs()
	if b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, peersFile)); err == nil {
		for _, a := range strings.Fields(string(b)) {
			if !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	for _, addr := range addrs {
		m, err := n.peers.Members(ctx, addr, false)
		if errors.Is(err, fsm.ErrCertRevoked) {
			// A member refused this node's certificate as revoked: the
			// cluster removed this node (or it rotated away from the
			// certificate it still uses, which comes to the same).
			n.log.Warn("a member refused this node's certificate as revoked", "asked", addr)
			return true
		}
		if err != nil {
			continue
		}
		if !slices.Contains(m.Nodes, n.cfg.UID) {
			n.log.Warn("the leader's node table no longer holds this node", "asked", addr, "index", m.Index)
			return true
		}
		return false
	}
	return false
}

// Removed is closed when the cluster removed this node.
func (n *Node) Removed() <-chan struct{} { return n.removed }

// Agent returns the node's agent.
func (n *Node) Agent() *agent.Agent { return n.agent }

// Raft returns the node's raft member.
func (n *Node) Raft() *raftnode.Node { return n.raft }

// Served yields the API server's exit error if it stops on its own.
func (n *Node) Served() <-chan error { return n.served }

// apiTLS is the HTTPS API's server config: the node certificate, or the
// operator's --tls-cert for clients (peers still get the node certificate).
func (n *Node) apiTLS() (*tls.Config, error) {
	var apiCert *tls.Certificate
	if n.cfg.TLSCertFile != "" {
		cert, err := n.cfg.apiCertificate()
		if err != nil {
			return nil, err
		}
		apiCert = &cert
	}
	c := n.id.APIServerConfig(apiCert)
	c.NextProtos = []string{"h2", "http/1.1"}
	return c, nil
}

// Close leaves gracefully (SIGTERM). The order matters: while the node
// still answers, the others count it alive, so it first hands leadership
// over and stops its own work (the executors it leads, the agent's
// reconciling, the shard copies it serves), and only then closes the API
// and raft. Closing the API first had liveness mark a node down that was
// still copying a shard, and the copy's commit then refused it as target.
// The node stays a cluster member.
func (n *Node) Close(ctx context.Context) error {
	if n.raft.IsLeader() {
		tctx, cancel := context.WithTimeout(ctx, remaining(ctx)/3)
		if err := n.raft.TransferLeadership(tctx); err != nil {
			n.log.Warn("leadership transfer on shutdown", "error", err)
		}
		cancel()
	}
	// The leader loop, the agent's reconciling and the membership watch
	// stop at their next step boundary.
	n.stopBG()
	n.bg.Wait()
	// Shard copies and other agent calls in flight finish, with /v1/ping
	// and the rest of the API still answering; new ones wait for the node
	// to be back.
	dctx, cancel := context.WithTimeout(ctx, remaining(ctx)/3)
	if !n.gate.drain(dctx) {
		n.log.Warn("agent calls still running at shutdown will be cut")
	}
	cancel()
	// Requests in flight get half the time left (blocking reads are
	// answered at once); whatever still runs then is cut.
	sctx, cancel := context.WithTimeout(ctx, remaining(ctx)/2)
	if err := n.srv.Shutdown(sctx); err != nil {
		n.log.Warn("requests still running at shutdown were cut", "error", err)
		_ = n.srv.Close()
	}
	cancel()
	n.agent.Wait()
	n.peers.Close()
	err := n.raft.Shutdown()
	n.log.Info("node stopped")
	return err
}

// remaining is the time left before ctx's deadline (a minute without one).
func remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return time.Minute
}

// Kill stops the node abruptly, as a crash would: no leadership transfer,
// connections dropped. Tests use it as an in-process SIGKILL.
func (n *Node) Kill() {
	_ = n.srv.Close()
	n.stopBG()
	n.bg.Wait()
	n.agent.Wait()
	n.peers.Close()
	_ = n.raft.Shutdown()
}

// ensureBootstrapped creates the cluster state on a bootstrapping node: the
// raft configuration (first start only) and the bootstrap command (until it
// has been applied, so a crash between the two is repaired on restart).
func (n *Node) ensureBootstrapped(ctx context.Context, hasState bool, mat pki.Material) error {
	// The marker is written before the raft configuration and removed once
	// the bootstrap command is applied: a restart that finds raft state
	// without the marker must not wait for a leader (a restarting cluster
	// may have none yet).
	marker := filepath.Join(n.cfg.DataDir, bootstrapMarker)
	if hasState {
		if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	} else {
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			return fmt.Errorf("write bootstrap marker: %w", err)
		}
		if err := n.raft.BootstrapSelf(); err != nil {
			return err
		}
	}
	caKey, err := os.ReadFile(filepath.Join(n.cfg.tlsDir(), caKeyFile))
	if err != nil {
		return fmt.Errorf("read ca key: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(n.cfg.AdminPassword), n.cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("hash admin password: %w", err)
	}
	now := time.Now()
	cmd, err := fsm.Encode(&fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: n.cfg.ClusterName, CreatedAt: now.Unix(), CACertPEM: string(mat.CAPEM), CAKeyPEM: string(caKey)},
		Node:    n.nodeRecord(fsm.NodeActive, now),
		Admin:   fsm.User{Email: n.cfg.AdminUser, Name: "admin", PasswordHash: string(hash)},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := n.raft.Apply(ctx, cmd)
		if err == nil || errors.Is(err, fsm.ErrAlreadyBootstrapped) {
			n.log.Info("cluster created", "cluster", n.cfg.ClusterName)
			if err := os.Remove(marker); err != nil {
				return fmt.Errorf("remove bootstrap marker: %w", err)
			}
			return nil
		}
		if !errors.Is(err, raftnode.ErrNotLeader) {
			return fmt.Errorf("apply bootstrap: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leadership to bootstrap: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (n *Node) nodeRecord(status string, now time.Time) fsm.Node {
	return fsm.Node{
		UID: n.cfg.UID, Addr: n.cfg.host(), APIAddr: n.cfg.APIAddr, RaftAddr: n.cfg.RaftAddr,
		Status: status, AcceptServers: true, MaxRedisServers: n.cfg.MaxShards, TotalMemory: n.cfg.Memory,
		RackID: n.cfg.RackID, SoftwareVersion: Version, JoinedAt: now.Unix(), Cores: runtime.NumCPU(),
		Certs: []fsm.CertRef{certRef(n.id.Leaf())},
	}
}

const (
	caKeyFile       = "ca.key"
	bootstrapMarker = "bootstrap-pending"
	joinMarker      = "join-pending"
	memberMarker    = "member"
	peersFile       = "peers"
)

// newClusterTLS makes the cluster CA and this node's certificate.
func newClusterTLS(cfg Config) (pki.Material, error) {
	now := time.Now()
	ca, err := pki.NewCA(cfg.ClusterName, now)
	if err != nil {
		return pki.Material{}, err
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(cfg.UID, pki.HostsOf(cfg.APIAddr, cfg.RaftAddr))
	if err != nil {
		return pki.Material{}, err
	}
	certPEM, err := ca.SignFor(csrPEM, now, cfg.CertLifetime)
	if err != nil {
		return pki.Material{}, err
	}
	mat := pki.Material{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}
	if err := mat.Save(cfg.tlsDir()); err != nil {
		return pki.Material{}, err
	}
	if err := os.WriteFile(filepath.Join(cfg.tlsDir(), caKeyFile), ca.KeyPEM, 0o600); err != nil {
		return pki.Material{}, fmt.Errorf("write ca key: %w", err)
	}
	return mat, nil
}

func joinURL(s string) string {
	s = strings.TrimRight(s, "/")
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	return s
}
