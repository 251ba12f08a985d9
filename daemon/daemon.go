package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"cnm/agent"
	"cnm/cluster"
	"cnm/httpapi"
	"cnm/peer"
	"cnm/pki"
	"cnm/raftnode"
)

// Version is the software version nodes report.
var Version = "0.1.0"

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
	// steps are the executor's metrics, served with the API's.
	steps *cluster.StepMetrics
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

// joinMarker is in the data dir from before the node can become a member
// until it votes: a restart in between must finish the join, or the node
// stays a non-voter for good.
const joinMarker = "join-pending"

// Start brings a node up: it resumes from the data dir, or creates a cluster
// (Bootstrap), or joins one (Join). It returns once the node serves its API
// and is a member of the cluster.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	// Every check of the flags, and of whose data dir this is, comes before
	// anything is created or started.
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
	dir, err := cfg.prepareDataDir()
	if err != nil {
		return nil, err
	}
	mat, joining, err := cfg.chooseMode(ctx, id, dir, log)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, served: make(chan error, 1), removed: make(chan struct{}), steps: cluster.NewStepMetrics(),
		restart: make(chan struct{}), started: time.Now()}
	if err := n.open(mat); err != nil {
		return nil, err
	}
	if err := n.becomeMember(ctx, dir, mat, joining); err != nil {
		n.Kill()
		return nil, err
	}
	return n, nil
}

// dataDirState is what Start found in the data dir, before the mode flags
// decide what to make of it.
type dataDirState struct {
	hasState bool // raft state
	haveTLS  bool // a TLS identity, in mat
	mat      pki.Material
}

// prepareDataDir creates the data dir and reads what it holds. A
// certificate replacement that a crash cut short is repaired first, so the
// identity read is a whole one, and a state found to have diverged is
// refused before anything opens it.
func (c *Config) prepareDataDir() (dataDirState, error) {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return dataDirState{}, fmt.Errorf("create data dir %s: %w", c.DataDir, err)
	}
	hasState, err := raftnode.HasState(c.raftDir())
	if err != nil {
		return dataDirState{}, err
	}
	if err := pki.RecoverReplacing(c.tlsDir()); err != nil {
		return dataDirState{}, err
	}
	if err := c.checkNotDiverged(); err != nil {
		return dataDirState{}, err
	}
	mat, err := pki.Load(c.tlsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return dataDirState{}, err
	}
	return dataDirState{hasState: hasState, haveTLS: err == nil, mat: mat}, nil
}

// chooseMode settles how the node comes up (resume, create the cluster or
// join one) and returns the TLS identity it comes up on; joining means a
// join, new or cut short, is to be finished once raft is open. The data
// dir wins over the flags: a node with state and identity resumes, whatever
// else it was told.
func (c *Config) chooseMode(ctx context.Context, id *identity, d dataDirState, log *slog.Logger) (pki.Material, bool, error) {
	switch {
	case d.hasState && d.haveTLS:
		joining, err := c.resumeJoining(log)
		return d.mat, joining, err
	case c.Bootstrap:
		mat, err := c.bootstrapTLS(id, d, log)
		return mat, false, err
	case c.Join != "":
		mat, err := c.startJoin(ctx, id, log)
		return mat, true, err
	case d.hasState:
		return pki.Material{}, false, fmt.Errorf("data dir %s has raft state but no tls material in %s", c.DataDir, c.tlsDir())
	default:
		return pki.Material{}, false, ErrNoClusterState
	}
}

// resumeJoining tells whether a node resuming from its data dir stopped
// between the two steps of its join (a non-voter, still): then Start must
// finish the join, or the node never votes, and that needs the flags a
// join needs.
func (c *Config) resumeJoining(log *slog.Logger) (bool, error) {
	log.Info("resuming from data dir", "data_dir", c.DataDir)
	if _, err := os.Stat(filepath.Join(c.DataDir, joinMarker)); err != nil {
		return false, nil
	}
	if c.Join == "" || c.AdminUser == "" || c.AdminPassword == "" {
		return false, fmt.Errorf("the join of node %d did not finish: start it again with --join and the admin credentials", c.UID)
	}
	log.Info("finishing the join that was cut short", "join", c.Join)
	return true, nil
}

// startJoin takes the first step of a join. Even with a certificate from an
// earlier attempt it asks again: the answer also confirms the node table
// entry.
func (c *Config) startJoin(ctx context.Context, id *identity, log *slog.Logger) (pki.Material, error) {
	if err := os.WriteFile(filepath.Join(c.DataDir, joinMarker), nil, 0o600); err != nil {
		return pki.Material{}, fmt.Errorf("write join marker: %w", err)
	}
	return joinFirstStep(ctx, *c, id, log)
}

// becomeMember finishes, on the opened node, what makes it a member: the
// bootstrap, or the second step of its join. Membership is recorded as
// soon as it is done, so that a removal quicker than the membership
// watch's first look still counts.
func (n *Node) becomeMember(ctx context.Context, d dataDirState, mat pki.Material, joining bool) error {
	if n.cfg.Bootstrap {
		if err := n.ensureBootstrapped(ctx, d.hasState, mat); err != nil {
			return err
		}
		n.markMember()
	}
	if joining {
		return n.finishJoin(ctx, mat)
	}
	return nil
}

// finishJoin makes the node a voter and ends the join for good.
func (n *Node) finishJoin(ctx context.Context, mat pki.Material) error {
	if err := n.joinSecondStep(ctx, mat); err != nil {
		return err
	}
	n.markMember()
	if err := os.Remove(filepath.Join(n.cfg.DataDir, joinMarker)); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("remove join marker", "error", err)
	}
	// The member joined through is one to ask about membership later,
	// should this node be removed before it knows any other.
	if u, err := url.Parse(joinURL(n.cfg.Join)); err == nil && u.Host != "" {
		n.rememberPeers(u.Host)
	}
	return nil
}

// Removed is closed when the cluster removed this node.
func (n *Node) Removed() <-chan struct{} { return n.removed }

// Agent returns the node's agent.
func (n *Node) Agent() *agent.Agent { return n.agent }

// Raft returns the node's raft member.
func (n *Node) Raft() *raftnode.Node { return n.raft }

// Served yields the API server's exit error if it stops on its own.
func (n *Node) Served() <-chan error { return n.served }
