package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"cnm/fsm"
)

// Prefix is where the agent's node-to-node API is mounted.
const Prefix = "/v1/internal/agent"

// CopyRequest asks an agent to copy a shard from another node's agent.
type CopyRequest struct {
	Spec   Spec   `json:"spec"`
	Source string `json:"source"` // API address of the node holding the shard
	// Op names the action step the copy is for; it goes to the op log.
	Op Op `json:"op"`
}

// Handler serves the node-to-node shard API. The caller must mount it
// behind a check that the client presented a node certificate.
func (a *Agent) Handler() http.Handler {
	m := mux.NewRouter()
	r := m.PathPrefix(Prefix).Subrouter()
	r.HandleFunc("/shards", a.list).Methods("GET")
	r.HandleFunc("/stats", a.stats).Methods("GET")
	r.HandleFunc("/ops", a.ops).Methods("GET")
	r.HandleFunc("/shards/{uid}", a.info).Methods("GET")
	r.HandleFunc("/shards/{uid}", a.drop).Methods("DELETE")
	r.HandleFunc("/shards/{uid}/data", a.data).Methods("GET")
	r.HandleFunc("/shards/{uid}/copy", a.copyShard).Methods("POST")
	r.HandleFunc("/shards/{uid}/promote", a.promoteShard).Methods("POST")
	r.HandleFunc("/shards/{uid}/role", a.role).Methods("POST")
	r.HandleFunc("/shards/{uid}/persist", a.persist).Methods("POST")
	r.HandleFunc("/endpoints/{uid}", a.endpointUp).Methods("GET")
	// A call that may change a shard makes a reconcile look at it soon,
	// whatever the state says: a replica whose backend follows a process
	// learns its master there.
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method != http.MethodGet {
				if uid := mux.Vars(req)["uid"]; uid != "" {
					defer a.nudge()
					defer a.unsettle(uid)
				}
			}
			next.ServeHTTP(w, req)
		})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		a.inflight.Add(1)
		defer a.inflight.Done()
		ctx, cancel := requestContext(req)
		defer cancel()
		m.ServeHTTP(w, req.WithContext(ctx))
	})
}

// Wait blocks until every request the agent is serving has returned; the
// node calls it after closing its API, so that nothing writes shard files
// once the node is stopped.
func (a *Agent) Wait() { a.inflight.Wait() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	kind := fsm.ErrInternal
	switch {
	case errors.Is(err, ErrNoShard):
		kind = fsm.ErrShardNotFound
	case errors.Is(err, ErrChecksum):
		kind = fsm.ErrChecksumMismatch
	case errors.Is(err, ErrStaleTerm):
		kind = fsm.ErrStaleTerm
	case errors.Is(err, ErrNotInSync):
		kind = fsm.ErrNotInSync
	case errors.Is(err, ErrBadPersistence), errors.Is(err, errBadRequest):
		kind = fsm.ErrInvalidParameter
	}
	writeJSON(w, kind.Status(), kind.With(err.Error()))
}

var errBadRequest = errors.New("bad request")

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return nil
}

func (a *Agent) list(w http.ResponseWriter, _ *http.Request) {
	out, err := infoAll(a.cfg.Backend)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// infoAll is the Info of every local shard of b; a shard that goes
// meanwhile is left out.
func infoAll(b Backend) ([]Info, error) {
	uids, err := b.List()
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(uids))
	for _, uid := range uids {
		if info, err := b.Info(uid); err == nil {
			out = append(out, info)
		}
	}
	return out, nil
}

// stats answers what the local shards' processes report: none from a
// backend whose shards are no processes (see StatsReporter).
func (a *Agent) stats(w http.ResponseWriter, _ *http.Request) {
	out := []Info{}
	if r, ok := a.cfg.Backend.(StatsReporter); ok {
		got, err := r.Stats()
		if err != nil {
			writeErr(w, err)
			return
		}
		out = append(out, got...)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) info(w http.ResponseWriter, r *http.Request) {
	info, err := a.cfg.Backend.Info(mux.Vars(r)["uid"])
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// drop deletes a shard the state does not assign here. A shard that is
// assigned here (by this node's view) is kept: 409 shard_assigned. A copy a
// running action still has to move here is only unstaged: the leader says
// it is not needed, but this node's state has not caught up yet, and the
// reconcile that follows the catch-up drops it.
func (a *Agent) drop(w http.ResponseWriter, r *http.Request) {
	uid := mux.Vars(r)["uid"]
	mu := a.placing.get(uid)
	mu.Lock()
	defer mu.Unlock()
	want, pending := a.assigned()
	if _, ok := want[uid]; ok {
		writeJSON(w, fsm.ErrShardAssigned.Status(), fsm.ErrShardAssigned.With("shard "+uid+" is assigned to this node"))
		return
	}
	a.unstage(uid)
	if pending[uid] {
		a.Kick()
		writeJSON(w, http.StatusOK, map[string]any{"uid": uid, "deferred": true})
		return
	}
	if err := a.cfg.Backend.Drop(r.Context(), uid); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"uid": uid})
}

// data streams a shard to another node, capped by this node's limiter.
func (a *Agent) data(w http.ResponseWriter, r *http.Request) {
	rc, info, err := a.cfg.Backend.Open(mux.Vars(r)["uid"])
	if err != nil {
		writeErr(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.Header().Set(checksumHeader, info.Checksum)
	w.Header().Set(sizeHeader, strconv.FormatInt(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := copyCtx(r.Context(), w, rc, a.cfg.Limiter); err != nil {
		a.log.Warn("sending shard", "shard_uid", info.UID, "error", err)
	}
}

// Headers of a shard data stream: the checksum the receiver verifies and
// the size (Content-Length is not always visible to the client).
const (
	checksumHeader = "X-Cnm-Checksum"
	sizeHeader     = "X-Cnm-Size"
)

func (a *Agent) copyShard(w http.ResponseWriter, r *http.Request) {
	var req CopyRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	uid := mux.Vars(r)["uid"]
	if req.Spec.UID != uid || req.Source == "" {
		writeErr(w, fmt.Errorf("%w: spec uid %q for shard %q, source %q", errBadRequest, req.Spec.UID, uid, req.Source))
		return
	}
	// One copy of a shard at a time; a replayed step finds it done.
	release, ok := a.claim(w, req.Op, uid)
	if !ok {
		return
	}
	defer release()
	if prev, ok := a.copiedFor(req.Op); ok {
		if cur, err := a.cfg.Backend.Info(uid); err == nil && cur.Checksum == prev.Checksum {
			writeJSON(w, http.StatusOK, cur)
			return
		}
	}
	a.stage(uid)
	// The fence is checked again when the copy becomes visible: a leader
	// deposed while its copy was in flight must not leave its effect
	// behind for the new leader to find.
	commit := func(install func() error) error { return a.underFence(req.Op, install) }
	spec := a.withFacts(r.Context(), req.Spec)
	if err := a.cfg.Backend.CopyFrom(r.Context(), spec, a.client.Source(req.Source), commit); err != nil {
		// An earlier good copy may still be here; keep it staged.
		if _, ierr := a.cfg.Backend.Info(uid); ierr != nil {
			a.unstage(uid)
		}
		writeErr(w, err)
		return
	}
	// Staged from the end of the copy: a long copy must not age out.
	a.stage(uid)
	info, err := a.cfg.Backend.Info(uid)
	if err != nil {
		writeErr(w, err)
		return
	}
	a.rememberCopy(req.Op, info)
	a.record(OpRecord{Op: req.Op, Kind: "copy", Shard: uid, From: req.Source, Time: time.Now().Unix()})
	a.log.Info("copied shard", "shard_uid", uid, "from", req.Source, "bytes", info.Size, "task_id", req.Op.TaskID, "step", req.Op.Step, "term", req.Op.Term)
	writeJSON(w, http.StatusOK, info)
}

func (a *Agent) ops(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Ops())
}

func (a *Agent) role(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Role string `json:"role"`
	}
	a.setOne(w, r, &req, "role", &req.Role, a.cfg.Backend.SwitchRole)
}

func (a *Agent) persist(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Mode string `json:"mode"`
	}
	a.setOne(w, r, &req, "mode", &req.Mode, a.cfg.Backend.Persist)
}

// setOne sets one property of a shard with set: the request body decodes
// into body, whose field v is the property, named field in the answer.
func (a *Agent) setOne(w http.ResponseWriter, r *http.Request, body any, field string, v *string, set func(ctx context.Context, uid, v string) error) {
	if err := decode(r, body); err != nil {
		writeErr(w, err)
		return
	}
	if err := set(r.Context(), mux.Vars(r)["uid"], *v); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{field: *v})
}

// claim admits op under the term fence and takes shard uid's lock, which
// copies and promotions of the shard share; when it cannot, it has written
// the refusal and ok is false.
func (a *Agent) claim(w http.ResponseWriter, op Op, uid string) (release func(), ok bool) {
	if err := a.admit(op); err != nil {
		writeErr(w, err)
		return nil, false
	}
	lock := a.copying.get(uid)
	lock.Lock()
	return lock.Unlock, true
}

// EndpointWait bounds how long GET /endpoints/{uid} waits for the proxy.
const EndpointWait = 5 * time.Second

// endpointUp answers once the proxy of the endpoint runs on this node, so
// that an action that rebinds an endpoint ends with its new address
// serving; after EndpointWait it answers all the same, saying so. A node
// that runs no proxies (a file backend) answers at once.
func (a *Agent) endpointUp(w http.ResponseWriter, r *http.Request) {
	uid := mux.Vars(r)["uid"]
	if !a.cfg.Endpoints {
		writeJSON(w, http.StatusOK, map[string]any{"uid": uid, "proxy": false})
		return
	}
	err := poll(r.Context(), EndpointWait, func() (bool, error) {
		_, ok := a.Endpoints()[uid]
		return ok, nil
	})
	writeJSON(w, http.StatusOK, map[string]any{"uid": uid, "proxy": true, "running": err == nil})
}
