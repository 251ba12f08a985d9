package daemon

import (
	"context"
	"time"

	"cnm/peer"
)

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
	// A crashed node's own goroutines reach its agent no more than others
	// do: its calls to itself now meet the closed API.
	peer.ServeOwn(n.peerHTTP, "", "", nil)
	n.stopBG()
	n.bg.Wait()
	n.agent.Wait()
	n.peers.Close()
	_ = n.raft.Shutdown()
}
