package peer

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"cnm/fsm"
	"cnm/pki"
	"cnm/raftnode"
)

// Paths of the node-to-node endpoints.
const (
	readIndexPath   = "/v1/internal/read-index"
	membersPath     = "/v1/internal/members"
	checkpointPath  = "/v1/internal/checkpoint"
	certificatePath = "/v1/internal/certificate"
	joinPath        = "/v1/internal/join"
	voterPath       = "/v1/internal/join/voter"
)

// CheckpointPath is served even by a node with a fault: the other nodes
// compare their state with its answer.
const CheckpointPath = checkpointPath

// Raft is what the node-to-node endpoints need of the local raft member.
type Raft interface {
	ID() int
	IsLeader() bool
	Leader() (uid int, raftAddr string)
	Indexes() (commit, last uint64)
	ReadIndex(ctx context.Context) (uint64, error)
	WaitApplied(ctx context.Context, index uint64) error
	AddVoter(ctx context.Context, uid int, raftAddr string) error
	AddNonvoter(ctx context.Context, uid int, raftAddr string) error
	Servers() ([]raftnode.Server, error)
}

// Server is the server side of the node-to-node endpoints.
type Server struct {
	Raft   Raft
	FSM    *fsm.FSM
	Client *Client
	// Propose commits a command through raft on this (leading) node.
	Propose func(ctx context.Context, payload any) (*fsm.Result, error)
	// Decode reads a request body strictly into dst (the API's decoder, so
	// that bad bodies get the same answers everywhere).
	Decode func(r *http.Request, dst any) error
	// NodeView is how the API shows a node; a join's last step answers
	// with the new voter.
	NodeView func(n *fsm.Node) any
	// CertLifetime is how long the node certificates this node issues are
	// valid (default pki.DefaultNodeLifetime).
	CertLifetime time.Duration
	Log          *slog.Logger
}

// Route is a node-to-node endpoint for the API's router to mount.
type Route struct {
	Method, Path string
	// Write routes are authenticated as the cluster's administrator and
	// run on the leader like any write; the others answer peers only.
	Write bool
	// Query lists the query parameters the route takes.
	Query []string
	// Handle answers the request with a value shown as JSON, or an error.
	Handle func(r *http.Request, actor fsm.Actor) (any, error)
}

// Routes lists the node-to-node endpoints.
func (s *Server) Routes() []Route {
	return []Route{
		{Method: "POST", Path: joinPath, Write: true, Handle: s.join},
		{Method: "POST", Path: voterPath, Write: true, Handle: s.joinVoter},
		{Method: "GET", Path: readIndexPath, Handle: s.readIndex},
		{Method: "GET", Path: membersPath, Query: []string{"relayed"}, Handle: s.members},
		{Method: "GET", Path: checkpointPath, Query: []string{"index"}, Handle: s.checkpoint},
		{Method: "POST", Path: certificatePath, Handle: s.renewCert},
	}
}

func (s *Server) certLifetime() time.Duration {
	if s.CertLifetime == 0 {
		return pki.DefaultNodeLifetime
	}
	return s.CertLifetime
}

// ErrNoLeader: this node knows of no other node that leads.
var ErrNoLeader = errors.New("no known leader")

// LeaderAddr returns the API address of the leader as this node knows it.
func (s *Server) LeaderAddr() (string, error) {
	uid, _ := s.Raft.Leader()
	if uid == 0 || uid == s.Raft.ID() {
		return "", ErrNoLeader
	}
	var addr string
	s.FSM.Read(func(st *fsm.State, _ uint64) {
		if n, ok := st.Nodes[uid]; ok {
			addr = n.APIAddr
		}
	})
	if addr == "" {
		return "", ErrNoLeader
	}
	return addr, nil
}

// leaderIndex confirms, for a peer, that this node leads and returns its
// read index: 421 not_leader if it does not lead, 503 if it cannot confirm.
func (s *Server) leaderIndex(ctx context.Context) (uint64, error) {
	idx, err := s.Raft.ReadIndex(ctx)
	if errors.Is(err, raftnode.ErrNotLeader) {
		return 0, ErrNotLeaderHere
	}
	if err != nil {
		return 0, fsm.ErrNoQuorum.With("leadership could not be confirmed: " + err.Error())
	}
	return idx, nil
}

// ErrNotLeaderHere answers a peer's request that needs the leader (a
// forwarded write, a read index): it tells the peer that nothing was done
// and that it may try the new leader.
var ErrNotLeaderHere = fsm.ErrNotLeader.With("this node is not the leader")

// readIndex answers a follower's read-index request.
func (s *Server) readIndex(r *http.Request, _ fsm.Actor) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	idx, err := s.leaderIndex(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]uint64{"index": idx}, nil
}

// members answers, on the leader only, which nodes the committed state
// holds. A node that no longer hears from any leader asks it: a node
// removed while it could not receive the configuration change that removed
// it never learns of it from raft.
func (s *Server) members(r *http.Request, _ fsm.Actor) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	idx, err := s.leaderIndex(ctx)
	if errors.Is(err, ErrNotLeaderHere) && r.URL.Query().Get("relayed") == "" {
		// The asking node's view of who is in the cluster may be old:
		// any member passes the question on to its leader, once.
		addr, aerr := s.LeaderAddr()
		if aerr != nil {
			return nil, err
		}
		m, merr := s.Client.Members(ctx, addr, true)
		if merr != nil {
			return nil, fsm.ErrNoQuorum.With("the leader did not answer: " + merr.Error())
		}
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.Raft.WaitApplied(ctx, idx); err != nil {
		return nil, fsm.ErrNoQuorum.With("the leader did not apply its own read index: " + err.Error())
	}
	out := Members{Nodes: []int{}, Index: idx}
	s.FSM.Read(func(st *fsm.State, _ uint64) { out.Nodes = st.NodeUIDs() })
	return out, nil
}

// checkpoint answers with this node's hash of its state at a checkpoint.
func (s *Server) checkpoint(r *http.Request, _ fsm.Actor) (any, error) {
	index, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if err != nil || index == 0 {
		return nil, fsm.ErrInvalidParameter.With("query parameter \"index\" must be a positive integer")
	}
	h, ok := s.FSM.CheckpointAt(index)
	if !ok {
		return nil, fsm.Errorf(fsm.ErrCheckpointNotFound, "this node holds no hash of its state at index %d (not applied yet, or too old)", index)
	}
	return h, nil
}
