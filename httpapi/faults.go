package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"cnm/fsm"
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
	return path == "/metrics" || path == "/v1/internal/checkpoint"
}

// checkpoint answers with this node's hash of its state at a checkpoint.
func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request, _ principal) error {
	index, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if err != nil || index == 0 {
		return fsm.ErrInvalidParameter.With("query parameter \"index\" must be a positive integer")
	}
	h, ok := s.fsm.CheckpointAt(index)
	if !ok {
		return fsm.ErrCheckpointNotFound.With(fmt.Sprintf("this node holds no hash of its state at index %d (not applied yet, or too old)", index))
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

// Checkpoint asks the node at addr for its hash of its state at index;
// found is false when it holds none (it has not applied index yet, or no
// longer keeps it).
func (c *PeerClient) Checkpoint(ctx context.Context, addr string, index uint64) (h fsm.StateHash, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	u := "https://" + addr + "/v1/internal/checkpoint?index=" + url.QueryEscape(strconv.FormatUint(index, 10))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return h, false, fmt.Errorf("checkpoint request: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return h, false, fmt.Errorf("checkpoint from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return h, false, nil
	default:
		return h, false, fmt.Errorf("checkpoint from %s: status %d", addr, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return h, false, fmt.Errorf("checkpoint from %s: %w", addr, err)
	}
	if h.Index != index {
		return h, false, fmt.Errorf("checkpoint from %s: asked for index %d, got %d", addr, index, h.Index)
	}
	return h, true, nil
}
