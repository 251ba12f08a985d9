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
	"cnm/httpapi"
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
	peers *httpapi.PeerClient
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

const joinMarker = "join-pending"

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

// Removed is closed when the cluster removed this node.
func (n *Node) Removed() <-chan struct{} { return n.removed }

// Agent returns the node's agent.
func (n *Node) Agent() *agent.Agent { return n.agent }

// Raft returns the node's raft member.
func (n *Node) Raft() *raftnode.Node { return n.raft }

// Served yields the API server's exit error if it stops on its own.
func (n *Node) Served() <-chan error { return n.served }
