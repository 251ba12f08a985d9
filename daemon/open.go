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
	"cnm/pki"
	"cnm/raftnode"
)

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
	peerHTTP := httpapi.NewPeerHTTPClient(id.PeerAPIClientConfig(), cfg.host(), httpapi.DialFunc(cfg.Dial))
	n.peerHTTP = peerHTTP
	n.peers = httpapi.NewPeerClient(peerHTTP)
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
