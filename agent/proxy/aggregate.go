package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// dbsize sums DBSIZE over the masters of the current table. A slot without
// a master, or any master that does not answer, fails the whole command:
// a partial sum would look like lost keys.
func (s *session) dbsize() {
	if err := s.p.router.whole(); err != nil {
		s.writeErr(err)
		return
	}
	var total int64
	for _, m := range s.p.router.masters() {
		raw, err := s.send(m, [][]byte{[]byte("DBSIZE")})
		if err != nil {
			s.writeErr(fmt.Errorf("DBSIZE on master %s: %w", m, err))
			return
		}
		n, err := intReply(raw)
		if err != nil {
			s.writeErr(err)
			return
		}
		total += n
	}
	s.wr.WriteInt64(total)
}

// info answers a short server section that says this is a cnm proxy and a
// keyspace section summed over the masters. Unlike DBSIZE it answers even
// when masters are down, and says how many, because INFO is what one looks
// at to find out what is wrong.
func (s *session) info() {
	masters := s.p.router.masters()
	var keys, expires int64
	unreachable := 0
	for _, m := range masters {
		k, e, err := s.keyspace(m)
		if err != nil {
			unreachable++
			continue
		}
		keys += k
		expires += e
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Server\r\ncnm_proxy:1\r\nredis_mode:cnm-proxy\r\nproto:2\r\n")
	fmt.Fprintf(&b, "tcp_address:%s\r\nmasters:%d\r\nunreachable_masters:%d\r\nheld_commands:%d\r\n",
		s.p.Addr(), len(masters), unreachable, s.p.router.held.Load())
	b.WriteString("\r\n# Keyspace\r\n")
	if keys > 0 {
		fmt.Fprintf(&b, "db0:keys=%d,expires=%d,avg_ttl=0\r\n", keys, expires)
	}
	s.wr.WriteBulkString(b.String())
}

func (s *session) keyspace(master string) (keys, expires int64, err error) {
	raw, err := s.send(master, [][]byte{[]byte("INFO"), []byte("keyspace")})
	if err != nil {
		return 0, 0, err
	}
	body, err := bulkReply(raw)
	if err != nil {
		return 0, 0, err
	}
	for line := range bytes.Lines(body) {
		rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("db0:"))
		if !ok {
			continue
		}
		for field := range strings.SplitSeq(string(rest), ",") {
			k, v, _ := strings.Cut(field, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "keys":
				keys = n
			case "expires":
				expires = n
			}
		}
	}
	return keys, expires, nil
}

// wait sends WAIT to every master this client wrote to since its last
// WAIT, each on the upstream connection that carried the writes (WAIT
// counts the replicas that acknowledged that connection's last write), and
// answers the smallest count: the number of replicas every write of this
// client reached.
//
// A client that wrote nothing gets 0 at once: there is no write to
// acknowledge, and 0 is the only count the proxy can vouch for. A master
// whose upstream broke after the writes also counts 0, for the same reason.
func (s *session) wait(args [][]byte) {
	if len(args) != 3 {
		s.wr.WriteError("ERR wrong number of arguments for 'wait' command")
		return
	}
	for _, a := range args[1:] {
		if n, err := strconv.ParseInt(string(a), 10, 64); err != nil || n < 0 {
			s.wr.WriteError("ERR value is not an integer or out of range")
			return
		}
	}
	var live []*upstream
	lost := len(s.written) == 0
	for addr, alive := range s.written {
		if u := s.ups[addr]; alive && u != nil {
			live = append(live, u)
		} else {
			lost = true
		}
	}
	counts, errs := s.waitAll(live, args)
	for i, err := range errs {
		var re replyError
		if err != nil && !errors.As(err, &re) {
			s.dropUpstream(live[i].addr, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.writeErr(err)
		return
	}
	clear(s.written)
	least := int64(0)
	if !lost {
		least = counts[0]
		for _, c := range counts[1:] {
			least = min(least, c)
		}
	}
	s.wr.WriteInt64(least)
}

// waitAll runs WAIT on all upstreams at once, so the client waits for the
// slowest master rather than for the sum of their timeouts.
func (s *session) waitAll(ups []*upstream, args [][]byte) ([]int64, []error) {
	counts := make([]int64, len(ups))
	errs := make([]error, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() {
			raw, err := u.do(s.ctx, args)
			if err == nil {
				counts[i], err = intReply(raw)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return counts, errs
}
