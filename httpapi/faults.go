package httpapi

import (
	"cnm/fsm"
	"cnm/peer"
)

// A fault is why this node cannot vouch for what it would serve: its state
// diverged from the other nodes', or its disk cannot be written. While a
// fault is set the node answers every request with it, but for the few a
// failing node must still answer (ping, which says so, /metrics, and the
// checkpoint question other nodes compare their state with).

// SetFault sets or, with nil, clears this node's fault.
func (s *Server) SetFault(f *fsm.Error) {
	s.fault.Store(f)
	s.metrics.fault.Reset()
	if f != nil {
		s.metrics.fault.WithLabelValues(f.Code).Set(1)
	}
}

// Fault returns this node's fault, nil when there is none.
func (s *Server) Fault() *fsm.Error { return s.fault.Load() }

// faultPassing lists the paths a node with a fault still serves.
func faultPassing(path string) bool {
	return path == "/metrics" || path == peer.CheckpointPath
}
