package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
)

var sessionIDs atomic.Int64

// session is one client connection. It is served by one goroutine, so its
// maps need no lock: commands from one client run one after another, which
// is also what keeps each client's writes to a master on one upstream
// connection in order.
type session struct {
	p      *Proxy
	id     int64
	nc     net.Conn
	rd     *redcon.Reader
	wr     *redcon.Writer
	ctx    context.Context
	cancel context.CancelFunc
	name   string

	// ups holds this client's own connection to each master, by address;
	// keying by address rather than shard keeps WAIT pointed at the master
	// that took the writes even after the table moves the shard.
	ups map[string]*upstream
	// written lists the masters written to since the last WAIT: true while
	// the upstream that took the writes is alive, false once it broke
	// (WAIT can then no longer vouch for those writes).
	written map[string]bool
}

func newSession(p *Proxy, nc net.Conn) *session {
	ctx, cancel := context.WithCancel(p.ctx)
	return &session{
		p: p, id: sessionIDs.Add(1), nc: nc,
		rd: redcon.NewReader(nc), wr: redcon.NewWriter(nc),
		ctx: ctx, cancel: cancel,
		ups: map[string]*upstream{}, written: map[string]bool{},
	}
}

// wake makes a read blocked on an idle client return, so Close does not
// wait for a client that sends nothing; a session busy with a command sees
// the closing flag when it is done.
func (s *session) wake() { _ = s.nc.SetReadDeadline(time.Now()) }

func (s *session) run() {
	log := s.p.log.With("client", s.nc.RemoteAddr().String(), "session", s.id)
	log.Debug("client connected")
	defer func() {
		s.cancel()
		for _, u := range s.ups {
			u.close()
		}
		_ = s.nc.Close()
		log.Debug("client disconnected")
	}()
	for !s.p.isClosing() {
		cmds, err := s.rd.ReadCommands()
		if err != nil {
			if !errors.Is(err, io.EOF) && !s.p.isClosing() && !errors.Is(err, net.ErrClosed) {
				// redcon reports malformed input as an error worth answering.
				s.wr.WriteError("ERR " + err.Error())
				_ = s.wr.Flush()
			}
			return
		}
		for _, cmd := range cmds {
			if quit := s.handle(cmd.Args); quit || s.p.isClosing() {
				_ = s.wr.Flush()
				return
			}
		}
		if err := s.wr.Flush(); err != nil {
			return
		}
	}
}

func (s *session) writeErr(err error) {
	// A RESP error is one line; joined or wrapped errors may hold several.
	oneLine := strings.NewReplacer("\r", " ", "\n", "; ")
	var re replyError
	if errors.As(err, &re) {
		s.wr.WriteError(oneLine.Replace(string(re)))
		return
	}
	s.wr.WriteError(oneLine.Replace("ERR cnm proxy: " + err.Error()))
}

// handle runs one command and reports whether the client asked to quit.
func (s *session) handle(args [][]byte) (quit bool) {
	if len(args) == 0 {
		return false
	}
	name := strings.ToLower(string(args[0]))
	if handled, quit := s.handleKeyless(name, args); handled {
		return quit
	}
	if reason, ok := refused[name]; ok {
		s.wr.WriteError("ERR " + reason)
		return false
	}
	spec, ok := keyed[name]
	if !ok {
		// Client-supplied text goes through writeErr, which keeps it one line.
		s.writeErr(replyError(fmt.Sprintf("ERR unknown or unsupported command '%s': "+
			"the cnm proxy runs only commands whose keys it knows", name)))
		return false
	}
	keys, err := keysOf(spec, args)
	if err != nil {
		s.writeErr(err)
		return false
	}
	slots := make([]int, len(keys))
	for i, k := range keys {
		slots[i] = Slot(k)
	}
	reply, t, err := s.routeAndSend(slots, args, spec.write)
	if err != nil {
		s.writeErr(err)
		return false
	}
	if spec.write {
		s.written[t.addr] = true
	}
	s.wr.WriteRaw(reply)
	return false
}

// routeAndSend sends args to the master of slots, holding while they are
// marked. A master that cannot be reached is held for too when its slots
// are switching or the table has moved them meanwhile, because that is
// exactly the window in which the old master goes away; the command never
// left the proxy, so trying again is safe. A write refused with READONLY
// was not applied either: its master has just become a replica in a
// switch-over, so the write waits for the table to name another master and
// goes there once; if none is named in time the client gets the READONLY.
func (s *session) routeAndSend(slots []int, args [][]byte, write bool) ([]byte, target, error) {
	deadline := time.Now().Add(s.p.cfg.HoldTimeout)
	var refused *refusal
	for {
		t, held, changed, err := s.p.router.route(slots)
		if err != nil {
			return nil, t, err
		}
		if held || (refused != nil && t.addr == refused.to.addr) {
			if err := s.hold(changed, deadline, slots[0]); err != nil {
				if refused != nil {
					return refused.reply, refused.to, nil
				}
				return nil, t, err
			}
			continue
		}
		reply, err := s.send(t.addr, args)
		if err == nil {
			if write && refused == nil && isReadonly(reply) {
				refused = &refusal{to: t, reply: reply}
				if next := s.promoted(t.addr); next != "" {
					// The refusing master is a replica of the master that
					// took over from it: the write goes there at once
					// rather than waiting for the table to say so.
					if reply, err := s.send(next, args); err == nil && !isReadonly(reply) {
						return reply, target{shard: t.shard, addr: next}, nil
					} else if err != nil && !errors.Is(err, errDial) {
						return nil, t, replyError(fmt.Sprintf("ERR cnm proxy: master %s of shard %s failed "+
							"during the command, which may or may not have run: %v", next, t.shard, err))
					}
				}
				continue
			}
			return reply, t, nil
		}
		if !errors.Is(err, errDial) {
			return nil, t, replyError(fmt.Sprintf("ERR cnm proxy: master %s of shard %s failed "+
				"during the command, which may or may not have run: %v", t.addr, t.shard, err))
		}
		now, heldNow, _, _ := s.p.router.route(slots)
		if heldNow || (now.addr != t.addr && time.Now().Before(deadline)) {
			continue
		}
		return nil, t, replyError(fmt.Sprintf("ERR cnm proxy: master %s of shard %s is unreachable: %v",
			t.addr, t.shard, err))
	}
}

// promoted is the master that the process at addr, which has just refused
// a write as a replica, follows, if that one answers as a master: the copy
// a switch-over promoted in its place. "" otherwise.
func (s *session) promoted(addr string) string {
	next := replicationOf(s.send(addr, [][]byte{[]byte("INFO"), []byte("replication")}))
	if next["role"] != "slave" || next["master_host"] == "" {
		return ""
	}
	to := net.JoinHostPort(next["master_host"], next["master_port"])
	if to == addr || replicationOf(s.send(to, [][]byte{[]byte("INFO"), []byte("replication")}))["role"] != "master" {
		return ""
	}
	return to
}

// replicationOf reads the fields of an INFO replication answer.
func replicationOf(raw []byte, err error) map[string]string {
	out := map[string]string{}
	if err != nil {
		return out
	}
	body, err := bulkReply(raw)
	if err != nil {
		return out
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// refusal is a master's READONLY answer to a write, kept to be passed on
// if no other master takes the write in time.
type refusal struct {
	to    target
	reply []byte
}

func isReadonly(reply []byte) bool { return bytes.HasPrefix(reply, []byte("-READONLY")) }

// hold waits for the next change of table or marks, or fails the command
// with TRYAGAIN at deadline, so a stuck switch-over cannot pile up clients.
func (s *session) hold(changed <-chan struct{}, deadline time.Time, slot int) error {
	s.p.router.held.Add(1)
	defer s.p.router.held.Add(-1)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-changed:
		return nil
	case <-timer.C:
		return replyError(fmt.Sprintf("TRYAGAIN slot %d is switching over to another master "+
			"and was not released within %s", slot, s.p.cfg.HoldTimeout))
	case <-s.ctx.Done():
		return replyError("ERR cnm proxy is shutting down")
	}
}

// send runs args on this client's own connection to addr, dialling it on
// first use. A failed connection is dropped so the next command dials anew.
func (s *session) send(addr string, args [][]byte) ([]byte, error) {
	u := s.ups[addr]
	if u != nil && u.stale() {
		s.dropUpstream(addr, errStale)
		u = nil
	}
	if u == nil {
		var err error
		if u, err = s.p.cfg.dial(s.ctx, addr, s.p.cfg.DialTimeout); err != nil {
			return nil, err
		}
		s.ups[addr] = u
	}
	reply, err := u.do(s.ctx, args)
	if err != nil {
		s.dropUpstream(addr, err)
		return nil, err
	}
	return reply, nil
}

func (s *session) dropUpstream(addr string, cause error) {
	if u := s.ups[addr]; u != nil {
		u.close()
		delete(s.ups, addr)
	}
	if _, ok := s.written[addr]; ok {
		s.written[addr] = false
	}
	s.p.log.Warn("upstream connection lost", "master", addr, "session", s.id, "err", cause)
}
