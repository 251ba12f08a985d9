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
	"sync"

	"github.com/google/uuid"

	"cnm/control"
	"cnm/fsm"
	"cnm/peer"
	"cnm/raftnode"
)

// serveWrite runs a write on the leader: here if this node leads, otherwise
// by forwarding the request. While there is no leader it keeps trying for the
// hold period, then answers 503 no_quorum. It retries only when it knows the
// write was not applied, or when the route's writes are idempotent under
// the id they were given here, so a write is never applied twice.
func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request, rt route) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	p, err := s.authorizeLinearized(r, rt.perm)
	if err != nil {
		return err
	}
	fromPeer := s.checker.Allows(r)
	forwarded := r.Header.Get(peer.ForwardedHeader) != "" && fromPeer
	if _, err := uuid.Parse(r.Header.Get(peer.TaskHeader)); err != nil || !fromPeer {
		// The write's id is given where the client's request arrives (a
		// peer forwarding it has given it one already), so that every
		// leader it reaches sees the same write. A client does not choose
		// it: a reused one would answer with an old record instead of
		// starting the action.
		r.Header.Set(peer.TaskHeader, uuid.NewString())
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.hold)
	defer cancel()
	for {
		if s.raft.IsLeader() {
			r.Body = io.NopCloser(bytes.NewReader(body))
			err := rt.h(w, r.WithContext(ctx), p)
			switch {
			case errors.Is(err, raftnode.ErrNotLeader):
			case rt.idempotent && errors.Is(err, raftnode.ErrLeadershipLost):
				// It may have landed; the next leader knows it by its id.
				forwarded = false
			default:
				return s.mapWriteErr(ctx, err)
			}
		} else if forwarded {
			return peer.ErrNotLeaderHere
		} else if addr, err := s.peer.LeaderAddr(); err == nil {
			outcome, err := s.peers.Forward(ctx, w, r, addr, body, s.raft.ID())
			switch outcome {
			case peer.Answered:
				s.metrics.forwarded.Inc()
				return nil
			case peer.Unknown:
				s.log.Debug("forward", "error", err)
				return s.noQuorum(ctx, "the leader stopped answering; the write may or may not have been applied")
			}
		}
		if err := pause(ctx); err != nil {
			return s.noQuorum(ctx, "no leader with a quorum answered within "+s.hold.String())
		}
	}
}

// taskID is the id serveWrite gave the write on the node the client sent
// it to.
func taskID(r *http.Request) string { return r.Header.Get(peer.TaskHeader) }

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
func decodeBody(r *http.Request, dst any) error { return decodeFields(r, dst, nil) }

// decodeFields is decodeBody for a body that takes, of dst's fields, only
// those allowed names (by json name; nil allows all).
func decodeFields(r *http.Request, dst any, allowed []string) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return fsm.ErrInvalidRequest.With("read request body: " + err.Error())
	}
	return decodeObject(b, dst, allowed)
}

// actionFields lists the body fields of action name: the control.ActionParams
// fields whose actions tag names it.
func actionFields(name string) []string {
	var out []string
	for f := range reflect.TypeFor[control.ActionParams]().Fields() {
		if slices.Contains(strings.Split(f.Tag.Get("actions"), ","), name) {
			json, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			out = append(out, json)
		}
	}
	return out
}

// decodeObject is decodeBody for a body already read. Field names must
// match dst's json tags exactly (encoding/json alone would also take
// "WAIT_FOR_PERSISTENCE" for "wait_for_persistence"), and no field may be
// null: a null would silently read as "not given".
func decodeObject(b []byte, dst any, allowed []string) error {
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
	if err := checkFields(raw, reflect.TypeOf(dst), "", allowed); err != nil {
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
func checkFields(raw json.RawMessage, t reflect.Type, path string, allowed []string) error {
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
			if allowed != nil && !slices.Contains(allowed, k) {
				ok = false
			}
			if !ok {
				return fsm.ErrInvalidParameter.With("unknown field " + strconv.Quote(name))
			}
			if isNull(obj[k]) {
				return fsm.ErrInvalidParameter.With("field " + strconv.Quote(name) + " must not be null")
			}
			if err := checkFields(obj[k], ft, name, nil); err != nil {
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
			if err := checkFields(el, t.Elem(), name, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// jsonFields maps the json names of struct t's exported fields to their
// types, as encoding/json names them. The map is shared: read it only.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	// Walking a type's fields by reflection cost every write about 7 µs
	// of the handler's 47; the answer never changes.
	if m, ok := fieldsOf.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m, _ := fieldsOf.LoadOrStore(t, structFields(t))
	return m.(map[string]reflect.Type)
}

// fieldsOf holds jsonFields' answers by type.
var fieldsOf sync.Map

func structFields(t reflect.Type) map[string]reflect.Type {
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
	n, ok := control.PlainUID(v)
	if !ok {
		return 0, fsm.ErrInvalidParameter.With(what + " uid must be a positive integer, got " + strconv.Quote(v))
	}
	return n, nil
}

func itoa(n int) string { return strconv.Itoa(n) }

func quote(s string) string { return strconv.Quote(s) }
