package daemon

import (
	"log/slog"
	"net"
	"net/http"
	"slices"
	"testing"
)

type fakeConn struct {
	net.Conn
	name   string
	closed *[]string
}

func (c *fakeConn) Close() error { *c.closed = append(*c.closed, c.name); return nil }

// The cap closes the connection idle longest, never one busy with a
// request, and the newcomer only when every other one is busy.
func TestConnLimiter_ClosesTheLongestIdle(t *testing.T) {
	type ev struct {
		conn  string
		state http.ConnState
	}
	tests := []struct {
		name   string
		events []ev
		want   []string // closed by the limiter, in order
	}{
		{"oldest new connection goes",
			[]ev{{"a", http.StateNew}, {"b", http.StateNew}, {"c", http.StateNew}},
			[]string{"a"}},
		{"busy ones stay, the newcomer goes",
			[]ev{{"a", http.StateNew}, {"a", http.StateActive}, {"b", http.StateNew}, {"b", http.StateActive}, {"c", http.StateNew}},
			[]string{"c"}},
		{"idle keep-alive goes before busy",
			[]ev{{"a", http.StateNew}, {"a", http.StateActive}, {"b", http.StateNew}, {"b", http.StateActive}, {"b", http.StateIdle}, {"c", http.StateNew}},
			[]string{"b"}},
		{"idle longest goes first",
			[]ev{{"a", http.StateNew}, {"b", http.StateNew}, {"b", http.StateActive}, {"b", http.StateIdle}, {"a", http.StateActive}, {"a", http.StateIdle}, {"c", http.StateNew}},
			[]string{"b"}},
		{"a closed connection frees its place",
			[]ev{{"a", http.StateNew}, {"b", http.StateNew}, {"a", http.StateClosed}, {"c", http.StateNew}},
			nil},
		{"a connection closed by the cap is not counted twice",
			[]ev{{"a", http.StateNew}, {"b", http.StateNew}, {"c", http.StateNew}, {"a", http.StateClosed}, {"d", http.StateNew}},
			[]string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var closed []string
			conns := map[string]*fakeConn{}
			l := newConnLimiter(2, slog.New(slog.DiscardHandler))
			for _, e := range tc.events {
				c, ok := conns[e.conn]
				if !ok {
					c = &fakeConn{name: e.conn, closed: &closed}
					conns[e.conn] = c
				}
				l.track(c, e.state)
			}
			if !slices.Equal(closed, tc.want) {
				t.Fatalf("closed %v, want %v", closed, tc.want)
			}
		})
	}
}
