package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"cnm/fsm"
)

const (
	// memberMarker says this node has been a member: without it, across a
	// restart, the watch could not tell a removed node from one still
	// joining.
	memberMarker = "member"
	// peersFile lists the other nodes' API addresses, whom to ask after a
	// restart, when the state may not know anyone yet.
	peersFile = "peers"
)

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
