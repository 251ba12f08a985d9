package raftnode

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hashicorp/raft"
)

// BootstrapSelf makes this node the only voter of a new cluster.
func (n *Node) BootstrapSelf() error {
	f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: n.id, Address: raft.ServerAddress(n.cfg.RaftAddr),
	}}})
	if err := f.Error(); err != nil {
		return fmt.Errorf("bootstrap raft cluster: %w", err)
	}
	return nil
}

// Server is a member of the raft configuration.
type Server struct {
	UID      int
	RaftAddr string
	Voter    bool
}

// Servers returns the current raft configuration.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", n.mapErr(err))
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		uid, err := strconv.Atoi(string(s.ID))
		if err != nil {
			continue
		}
		out = append(out, Server{UID: uid, RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds (or confirms) a voting member. Adding a member that is
// already there with the same address is a no-op, so joins can be retried.
func (n *Node) AddVoter(ctx context.Context, uid int, raftAddr string) error {
	return n.addServer(ctx, uid, raftAddr, true)
}

// AddNonvoter adds a server that receives the log but does not vote, so
// that a joining node catches up before it counts towards quorum. A server
// already in the configuration is left as it is (never demoted).
func (n *Node) AddNonvoter(ctx context.Context, uid int, raftAddr string) error {
	return n.addServer(ctx, uid, raftAddr, false)
}

func (n *Node) addServer(ctx context.Context, uid int, raftAddr string, voter bool) error {
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.UID == uid && s.RaftAddr == raftAddr && (s.Voter || !voter) {
			return nil
		}
	}
	id, addr := raft.ServerID(strconv.Itoa(uid)), raft.ServerAddress(raftAddr)
	var f raft.IndexFuture
	kind := "voter"
	if voter {
		f = n.raft.AddVoter(id, addr, 0, 0)
	} else {
		kind, f = "nonvoter", n.raft.AddNonvoter(id, addr, 0, 0)
	}
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("add %s %s at %s: %w", kind, id, raftAddr, n.mapErr(err))
	}
	return nil
}

// RemoveServer takes a member out of the raft configuration.
func (n *Node) RemoveServer(ctx context.Context, uid int) error {
	f := n.raft.RemoveServer(raft.ServerID(strconv.Itoa(uid)), 0, 0)
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("remove server %d: %w", uid, n.mapErr(err))
	}
	return nil
}

// IsMember reports whether uid is in the raft configuration.
func (n *Node) IsMember(uid int) (bool, error) {
	servers, err := n.Servers()
	if err != nil {
		return false, err
	}
	for _, s := range servers {
		if s.UID == uid {
			return true, nil
		}
	}
	return false, nil
}
