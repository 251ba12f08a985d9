package raftnode

import "time"

// StorageFault returns the first storage fault this node met (a
// *StorageFaultError matching ErrStorageFault), or nil. Once it is set,
// raft on this node is shut down: it neither leads nor votes nor applies,
// and Apply, ReadIndex and WaitApplied return the fault. It stays set until
// the node is reopened.
func (n *Node) StorageFault() error {
	if e := n.fault.Load(); e != nil {
		return e
	}
	return nil
}

// StorageFaulted returns a channel closed when a storage fault is recorded.
func (n *Node) StorageFaulted() <-chan struct{} { return n.faulted }

// StorageRecovered returns a channel closed when, after a write fault,
// the raft dir takes writes again (a file written, synced and removed). It
// is never closed for corruption. This node stays stopped: the owner
// reopens it (Shutdown, then Open on the same Config with a fresh FSM,
// which raft rebuilds from the snapshot and log) to rejoin the cluster. A
// raft reopened in place would re-apply entries to an FSM that already
// holds them.
func (n *Node) StorageRecovered() <-chan struct{} { return n.recovered }

// recordFault keeps the first fault and stops raft: a node that cannot
// persist must not lead (raft would just re-elect it, its log being as
// long as anyone's) nor vote, and one whose data is corrupt must not apply
// or serve it.
func (n *Node) recordFault(e *StorageFaultError) {
	if !n.fault.CompareAndSwap(nil, e) {
		return
	}
	n.log.Error("storage fault: raft stopped on this node", "path", e.Path, "op", e.Op, "index", e.Index, "write", e.Write, "error", e.Err)
	n.setReady(0) // leader-only work stops now
	close(n.faulted)
	n.bgMu.Lock()
	defer n.bgMu.Unlock()
	if n.closed {
		return
	}
	if n.started.Load() {
		// Shutdown only closes raft's shutdown channel, so it is called
		// here, to stop raft before it campaigns or answers again; the
		// wait for raft's goroutines is not, as this runs in one of them.
		f := n.raft.Shutdown()
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			if err := f.Error(); err != nil {
				n.log.Warn("shut down raft after a storage fault", "error", err)
			}
		}()
	}
	if e.Write {
		n.bg.Add(1)
		go n.probeUntilWritable()
	}
}

// probeUntilWritable closes recovered once the raft dir takes writes.
func (n *Node) probeUntilWritable() {
	defer n.bg.Done()
	t := time.NewTicker(n.cfg.probeInterval)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		if err := n.cfg.probe(n.cfg.Dir); err != nil {
			n.log.Debug("raft dir still refuses writes", "dir", n.cfg.Dir, "error", err)
			continue
		}
		n.log.Info("raft dir takes writes again; the node must be reopened to rejoin", "dir", n.cfg.Dir)
		close(n.recovered)
		return
	}
}
