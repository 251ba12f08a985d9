package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"cnm/agent"
	"cnm/cluster"
	"cnm/fsm"
	"cnm/httpapi"
	"cnm/peer"
	"cnm/pki"
	"cnm/raftnode"
)

// open starts raft and the API on the given TLS identity.
func (n *Node) open(mat pki.Material) error {
	if err := n.openRaft(mat); err != nil {
		return err
	}
	cu, err := n.openAPI()
	if err != nil {
		// Only raft runs yet.
		_ = n.raft.Shutdown()
		return err
	}
	n.startBackground(cu)
	fp, _ := pki.Fingerprint(mat.CAPEM)
	n.log.Info("node started", "api_addr", n.cfg.APIAddr, "raft_addr", n.cfg.RaftAddr, "ca_fingerprint", fp)
	return nil
}

// openRaft opens the raft member. Its TLS identity checks peers against
// the state raft replicates, so that a certificate the cluster revoked is
// refused at every node-to-node door.
func (n *Node) openRaft(mat pki.Material) error {
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
	return nil
}

// openAPI builds what serves on top of raft (the peer clients, the agent,
// the API) and starts serving the API.
func (n *Node) openAPI() (*catchUp, error) {
	cfg := n.cfg
	apiTLS, err := n.apiTLS()
	if err != nil {
		return nil, err
	}
	n.peerHTTP = peer.NewHTTPClient(n.id.PeerAPIClientConfig(), cfg.host(), peer.DialFunc(cfg.Dial))
	n.peers = peer.NewClient(n.peerHTTP)
	cu, err := n.newAgent()
	if err != nil {
		return nil, err
	}
	n.gate = newAgentGate()
	agentAPI := n.gate.wrap(n.agent.Handler())
	peer.ServeOwn(n.peerHTTP, cfg.APIAddr, agent.Prefix, agentAPI)
	n.api = httpapi.New(httpapi.Config{
		Raft: n.raft, Peers: n.peers, Hold: cfg.Hold, BcryptCost: cfg.BcryptCost,
		Version: Version, APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr, Logger: cfg.Logger,
		Agent: agentAPI, AgentPrefix: agent.Prefix,
		PeerCheck: n.id.VerifiedPeer, CertLifetime: cfg.CertLifetime, Collectors: n.steps.Collectors(),
	})
	return cu, n.serveAPI(apiTLS)
}

// catchUp holds the agent back from the old snapshot a restart begins
// from: it may act once the state has caught up with this node's own log.
type catchUp struct {
	done  atomic.Bool
	index uint64 // the last index of this node's log at start
}

// newAgent builds the agent on its shard store in the data dir.
func (n *Node) newAgent() (*catchUp, error) {
	cfg := n.cfg
	limiter := agent.NewLimiter(cfg.MigrationRate)
	backend, err := n.newBackend(limiter)
	if err != nil {
		return nil, err
	}
	_, lastAtStart := n.raft.Indexes()
	cu := &catchUp{index: lastAtStart}
	cu.done.Store(lastAtStart == 0)
	n.agent = agent.New(agent.Config{NodeUID: cfg.UID, APIAddr: cfg.APIAddr, FSM: n.raft.FSM(), Backend: backend, Limiter: limiter,
		Scale: cfg.ShardFileScale, Client: n.peerHTTP, Logger: cfg.Logger, CaughtUp: cu.done.Load,
		OpLogPath: filepath.Join(cfg.DataDir, "agent-ops.jsonl"), Endpoints: cfg.ShardBackend == ShardBackendRedis})
	return cu, nil
}

// newBackend opens the node's shard store in the data dir: shard files, or
// redis-server processes bound to the node's own address (its peers reach
// them where they reach the node).
func (n *Node) newBackend(limiter *agent.Limiter) (agent.Backend, error) {
	cfg := n.cfg
	dir := filepath.Join(cfg.DataDir, "shards")
	if cfg.ShardBackend != ShardBackendRedis {
		return agent.NewFileBackend(dir, limiter)
	}
	return agent.NewRedisBackend(agent.RedisConfig{Dir: dir, Host: cfg.host(), PortLow: cfg.ShardPortLow,
		PortHigh: cfg.ShardPortHigh, Logger: cfg.Logger.With("node_uid", cfg.UID)})
}

// serveAPI listens on the API address and serves the API there until Close
// or Kill.
func (n *Node) serveAPI(apiTLS *tls.Config) error {
	cfg := n.cfg
	ln, err := cfg.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen for api on %s: %w", cfg.APIAddr, err)
	}
	n.ln = ln
	n.srv = newAPIServer(n.api, cfg.API, cfg.Logger)
	n.srv.TLSConfig = apiTLS
	n.srv.RegisterOnShutdown(n.api.EndWaits)
	go func() { n.served <- n.srv.Serve(tls.NewListener(ln, apiTLS)) }()
	return nil
}

// startBackground starts the node's own work. All of it runs under one
// context and one wait group, so that Close and Kill can stop it at once
// and wait for it before they close the API and raft.
func (n *Node) startBackground(cu *catchUp) {
	cfg := n.cfg
	bg, stop := context.WithCancel(context.Background())
	n.stopBG = stop
	loop := n.leaderLoop()
	check := &cluster.ConsistencyCheck{Self: cfg.UID, FSM: n.raft.FSM(), Peers: n.peers, Interval: cfg.ConsistencyInterval,
		Log: cfg.Logger.With("component", "consistency", "node_uid", cfg.UID), Diverged: n.diverged}
	n.bg.Add(7)
	go func() { defer n.bg.Done(); check.Run(bg) }()
	go func() { defer n.bg.Done(); n.watchStorage(bg) }()
	go func() { defer n.bg.Done(); n.renewCerts(bg) }()
	go func() {
		defer n.bg.Done()
		if err := n.raft.WaitApplied(bg, cu.index); err == nil {
			cu.done.Store(true)
			n.agent.Kick()
		}
	}()
	go func() { defer n.bg.Done(); n.agent.Run(bg) }()
	go func() { defer n.bg.Done(); loop.Run(bg) }()
	go func() { defer n.bg.Done(); n.watchMembership(bg) }()
}

// leaderLoop is the work this node does only while it leads: liveness,
// the executor of actions, and checkpoints.
func (n *Node) leaderLoop() *cluster.LeaderLoop {
	cfg, r := n.cfg, n.raft
	return cluster.NewLeaderLoop(r, cfg.Logger,
		&cluster.Liveness{
			Self: cfg.UID, FSM: r.FSM(), Probe: n.peers, Raft: r, Started: n.started,
			Interval: cfg.DownAfter / 6, DownAfter: cfg.DownAfter, Log: cfg.Logger.With("component", "liveness"),
		},
		&cluster.Executor{FSM: r.FSM(), Raft: r, Agents: agent.NewClient(n.peerHTTP), Metrics: n.steps,
			Log: cfg.Logger.With("component", "executor", "node_uid", cfg.UID)},
		&cluster.Checkpointer{FSM: r.FSM(), Raft: r, Interval: cfg.CheckpointInterval,
			Log: cfg.Logger.With("component", "checkpointer")},
		&cluster.ShardStats{FSM: r.FSM(), Agents: agent.NewClient(n.peerHTTP), Raft: r,
			Log: cfg.Logger.With("component", "shard-stats")},
	)
}

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
