package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"cnm/fsm"
	"cnm/raftnode"
)

// errNotLeaderHere answers a forwarded request that reached a node which no
// longer leads. Only peers see it: it tells the forwarding node that nothing
// was applied and that it may try the new leader.
var errNotLeaderHere = fsm.ErrNotLeader.With("this node is not the leader")

// forwardedHeader marks a request forwarded by a follower. It is honoured
// only on connections that present a cluster certificate.
const forwardedHeader = "X-Cnm-Forwarded-By"

// serveWrite runs a write on the leader: here if this node leads, otherwise
// by forwarding the request. While there is no leader it keeps trying for the
// hold period, then answers 503 no_quorum. It retries only when it knows the
// write was not applied, so a write is never applied twice.
func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request, rt route) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	p, err := s.authorizeLinearized(r, rt.perm)
	if err != nil {
		return err
	}
	forwarded := r.Header.Get(forwardedHeader) != "" && s.fromPeer(r)
	if !s.fromPeer(r) {
		// A client does not choose task ids: a reused one would answer
		// with an old record instead of starting the action.
		r.Header.Del(taskHeader)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.hold)
	defer cancel()
	for {
		if s.raft.IsLeader() {
			r.Body = io.NopCloser(bytes.NewReader(body))
			err := rt.h(w, r.WithContext(ctx), p)
			var again *retryAs
			if errors.As(err, &again) {
				// The write may have landed; send it again under the same
				// identity, which Apply recognises.
				r.Header.Set(taskHeader, again.taskID)
				forwarded = false
			} else if !errors.Is(err, raftnode.ErrNotLeader) {
				return s.mapWriteErr(ctx, err)
			}
		} else if forwarded {
			return errNotLeaderHere
		} else if addr, err := s.leaderAPIAddr(); err == nil {
			done, err := s.peers.Forward(ctx, w, r, addr, body, s.raft.ID())
			if done {
				s.metrics.forwarded.Inc()
				return nil
			}
			if err != nil && !errors.Is(err, errRetryable) {
				return s.noQuorum(ctx, "the leader stopped answering; the write may or may not have been applied")
			}
		}
		if err := pause(ctx); err != nil {
			return s.noQuorum(ctx, "no leader with a quorum answered within "+s.hold.String())
		}
	}
}

// taskHeader carries the task id of an action submission that is being
// retried after a leader change, so that the next leader stores it once.
// It is honoured only from peers (or set by this node itself).
const taskHeader = "X-Cnm-Task-Id"

// retryAs asks serveWrite to run an idempotent write again on the current
// leader, identified by taskID.
type retryAs struct{ taskID string }

func (e *retryAs) Error() string { return "retry task " + e.taskID }

// mapWriteErr turns raft errors of a write into API errors.
func (s *Server) mapWriteErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftnode.ErrLeadershipLost):
		return errNoQuorum("leadership was lost while the write was being committed; it may or may not have been applied")
	case errors.Is(err, context.DeadlineExceeded):
		return s.noQuorum(ctx, "the write was not committed within "+s.hold.String()+"; it may or may not have been applied")
	}
	return err
}

// submit encodes a command, applies it on this (leading) node and returns
// the FSM's result. Domain errors come back as *fsm.Error.
func (s *Server) submit(ctx context.Context, payload any) (*fsm.Result, error) {
	cmd, err := fsm.Encode(payload)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := s.raft.Apply(ctx, cmd)
	if err == nil {
		s.metrics.apply.Observe(time.Since(start).Seconds())
	}
	return res, err
}

// readBody reads a request body of at most maxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fsm.ErrRequestTooLarge.With(fmt.Sprintf("request body exceeds %d bytes", maxBodyBytes))
	}
	if err != nil {
		return nil, fsm.ErrInvalidRequest.With("read request body: " + err.Error())
	}
	return b, nil
}

// decodeBody parses a JSON object into dst, strictly: an empty body is {},
// and anything but one JSON object with known fields of the right types is
// a 400 that names the problem. Any Content-Type is accepted.
func decodeBody(r *http.Request, dst any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return fsm.ErrInvalidRequest.With("read request body: " + err.Error())
	}
	return decodeObject(b, dst)
}

// decodeObject is decodeBody for a body already read. Field names must
// match dst's json tags exactly (encoding/json alone would also take
// "WAIT_FOR_PERSISTENCE" for "wait_for_persistence"), and no field may be
// null: a null would silently read as "not given".
func decodeObject(b []byte, dst any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		b = []byte("{}")
	}
	if b[0] != '{' {
		return fsm.ErrInvalidJSON.With("the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fsm.ErrInvalidJSON.With("the request body holds more than one JSON value")
	}
	if err := checkFields(raw, reflect.TypeOf(dst), ""); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return bodyError(err)
	}
	return nil
}

// checkFields walks the JSON value raw alongside the Go type t it will be
// decoded into: every object key must be one of the struct's json names,
// spelt exactly, and no value may be null. Values of the wrong type are
// left for the decoder to report.
func checkFields(raw json.RawMessage, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil || obj == nil {
			return nil
		}
		fields := jsonFields(t)
		// Sorted, so that of several bad keys the same one is named each time.
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			name := k
			if path != "" {
				name = path + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				return fsm.ErrInvalidParameter.With("unknown field " + strconv.Quote(name))
			}
			if isNull(obj[k]) {
				return fsm.ErrInvalidParameter.With("field " + strconv.Quote(name) + " must not be null")
			}
			if err := checkFields(obj[k], ft, name); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return nil
		}
		for i, el := range elems {
			name := path + "[" + strconv.Itoa(i) + "]"
			if isNull(el) {
				return fsm.ErrInvalidParameter.With("field " + strconv.Quote(name) + " must not hold null")
			}
			if err := checkFields(el, t.Elem(), name); err != nil {
				return err
			}
		}
	}
	return nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// jsonFields maps the json names of struct t's exported fields to their
// types, as encoding/json names them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func bodyError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		return fsm.ErrInvalidParameter.With(fmt.Sprintf("field %q must be of type %s, got %s", field, te.Type, te.Value))
	case errors.As(err, &se):
		return fsm.ErrInvalidJSON.With("the request body is not valid JSON: " + se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fsm.ErrInvalidJSON.With("the request body is truncated JSON")
	}
	msg := err.Error()
	const unknown = "json: unknown field "
	if len(msg) > len(unknown) && msg[:len(unknown)] == unknown {
		return fsm.ErrInvalidParameter.With("unknown field " + msg[len(unknown):])
	}
	return fsm.ErrInvalidJSON.With("the request body is not valid JSON: " + msg)
}

// pathUID parses a positive integer uid from the route variable name. Only
// plain decimal is a uid: "+1" and "01" would otherwise name node 1 under
// another spelling.
func pathUID(r *http.Request, what string) (int, error) {
	v := muxVar(r, "uid")
	n, ok := plainUID(v)
	if !ok {
		return 0, fsm.ErrInvalidParameter.With(what + " uid must be a positive integer, got " + strconv.Quote(v))
	}
	return n, nil
}

// plainUID parses a positive uid written in plain decimal: no sign, no
// leading zero, no space, no exponent.
func plainUID(v string) (int, bool) {
	n, err := strconv.Atoi(v)
	return n, err == nil && n > 0 && strconv.Itoa(n) == v
}
