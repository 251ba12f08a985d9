package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"cnm/fsm"
)

// divergedMarker records in the data dir that this node's state differed
// from the other nodes': the node refuses to start on it again until the
// operator has removed the node and joined it afresh.
const divergedMarker = "state-diverged"

// diverged stops a node whose state differs from the other nodes': it
// answers every request with the reason, stops its raft member (so that it
// neither votes nor stands for election on a state it cannot vouch for)
// and its background work, and marks the data dir.
func (n *Node) diverged(detail string) {
	msg := "this node's state differs from the other nodes' (" + detail + "); it serves nothing. " +
		"Remove it from the cluster and join it again with an empty data dir"
	n.api.SetFault(fsm.ErrStateDiverged.With(msg))
	line := fmt.Sprintf("%s %s\n", time.Now().UTC().Format(time.RFC3339), detail)
	if err := os.WriteFile(filepath.Join(n.cfg.DataDir, divergedMarker), []byte(line), 0o600); err != nil {
		n.log.Error("write the diverged marker", "error", err)
	}
	go func() {
		n.stopBG()
		if err := n.raft.Shutdown(); err != nil {
			n.log.Warn("stop raft after divergence", "error", err)
		}
	}()
}

// checkNotDiverged refuses a data dir whose state was found to differ from
// the other nodes'.
func (c *Config) checkNotDiverged() error {
	b, err := os.ReadFile(filepath.Join(c.DataDir, divergedMarker))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", divergedMarker, err)
	}
	return fmt.Errorf("the state in data dir %s differed from the other nodes' (%s): remove node %d from the cluster "+
		"and join it again with an empty data dir", c.DataDir, strings.TrimSpace(string(b)), c.UID)
}

// watchStorage turns a storage fault of the raft member into the API's
// fault (a full disk is 507, anything else 503, naming the file), and asks
// for a restart once a disk that could not be written takes writes again.
func (n *Node) watchStorage(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-n.raft.StorageFaulted():
	}
	err := n.raft.StorageFault()
	kind := fsm.ErrStorageFault
	if errors.Is(err, syscall.ENOSPC) {
		kind = fsm.ErrInsufficientStorage
	}
	n.api.SetFault(kind.With("this node cannot use its disk (" + err.Error() + "): its raft member has stopped, so it neither " +
		"leads nor votes, and it serves nothing until the disk works again"))
	select {
	case <-ctx.Done():
	case <-n.raft.StorageRecovered():
		n.log.Info("the disk takes writes again: restarting the node")
		n.restartOnce.Do(func() { close(n.restart) })
	}
}

// RestartWanted is closed when the node must be closed and started again
// on the same data dir (its disk recovered from a write fault).
func (n *Node) RestartWanted() <-chan struct{} { return n.restart }
