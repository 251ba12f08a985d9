package raftnode

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// jsonLines decodes what a JSON slog handler wrote, dropping time.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(m, "time")
		out = append(out, m)
	}
	return out
}

func newTestHCLog(buf *bytes.Buffer, now func() time.Time) *hclogAdapter {
	l := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &hclogAdapter{Logger: hclog.NewNullLogger(), l: l, name: "raft", repeats: newRepeatLimiter(now)}
}

type stringer struct{ n int }

func (s *stringer) String() string { return "node-" + string(rune('0'+s.n)) }

func TestHCLog_ArgumentsBecomeSlogAttributes(t *testing.T) {
	tests := []struct {
		name string
		log  func(hclog.Logger)
		want map[string]any
	}{
		{"error as its message",
			func(l hclog.Logger) { l.Info("x", "error", errors.New("connection refused")) },
			map[string]any{"level": "INFO", "msg": "x", "subsystem": "raft", "error": "connection refused"}},
		{"hclog.Fmt applied",
			func(l hclog.Logger) { l.Info("x", "received", hclog.Fmt("%d / %d", 3, 10)) },
			map[string]any{"level": "INFO", "msg": "x", "subsystem": "raft", "received": "3 / 10"}},
		{"raft server as fields",
			func(l hclog.Logger) {
				l.Info("x", "peer", raft.Server{ID: "2", Address: "127.0.0.1:9444", Suffrage: raft.Voter})
			},
			map[string]any{"level": "INFO", "msg": "x", "subsystem": "raft",
				"peer": map[string]any{"id": "2", "address": "127.0.0.1:9444", "suffrage": "Voter"}}},
		{"keys in snake_case, durations and stringers",
			func(l hclog.Logger) {
				l.Debug("x", "backoff time", 10*time.Millisecond, "server-id", raft.ServerID("3"), "leader", &stringer{1})
			},
			map[string]any{"level": "DEBUG", "msg": "x", "subsystem": "raft", "backoff_time": float64(10 * time.Millisecond),
				"server_id": "3", "leader": "node-1"}},
		{"hex, quote and a value without a key",
			func(l hclog.Logger) { l.Info("x", "mask", hclog.Hex(255), "name", hclog.Quote("a b"), "orphan") },
			map[string]any{"level": "INFO", "msg": "x", "subsystem": "raft", "mask": "0xff", "name": `"a b"`, "extra_value": "orphan"}},
		{"With and Named carry over",
			func(l hclog.Logger) {
				l.Named("transport").With("peer", "127.0.0.2:9444").Warn("x", "error", errors.New("eof"))
			},
			map[string]any{"level": "WARN", "msg": "x", "subsystem": "raft.transport", "peer": "127.0.0.2:9444", "error": "eof"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(newTestHCLog(&buf, time.Now))
			lines := jsonLines(t, &buf)
			if len(lines) != 1 || !reflect.DeepEqual(lines[0], tc.want) {
				t.Fatalf("got %v\nwant %v", lines, tc.want)
			}
		})
	}
}

// A dead peer makes raft log "failed to heartbeat to" several times a
// second; one line per message and peer every 10 s is enough, and the next
// one says how many were held back.
func TestHCLog_RateLimitsRepeatedWarnings(t *testing.T) {
	type line struct {
		after time.Duration // since the previous call
		level hclog.Level
		msg   string
		peer  string
	}
	type emitted struct {
		msg, peer  string
		suppressed float64 // 0: no suppressed attribute
	}
	tests := []struct {
		name  string
		lines []line
		want  []emitted
	}{
		{"a dead peer for 25 s at 8 lines a second",
			func() []line {
				var ls []line
				for i := range 200 {
					d := 125 * time.Millisecond
					if i == 0 {
						d = 0
					}
					ls = append(ls, line{d, hclog.Error, "failed to heartbeat to", "127.0.0.2:9444"})
				}
				return ls
			}(),
			[]emitted{
				{"failed to heartbeat to", "127.0.0.2:9444", 0},
				{"failed to heartbeat to", "127.0.0.2:9444", 79},
				{"failed to heartbeat to", "127.0.0.2:9444", 79},
			}},
		{"peers and messages are counted apart",
			[]line{
				{0, hclog.Error, "failed to heartbeat to", "a"},
				{0, hclog.Error, "failed to heartbeat to", "b"},
				{0, hclog.Warn, "appendEntries rejected", "a"},
				{time.Second, hclog.Error, "failed to heartbeat to", "a"},
			},
			[]emitted{
				{"failed to heartbeat to", "a", 0},
				{"failed to heartbeat to", "b", 0},
				{"appendEntries rejected", "a", 0},
			}},
		{"info and debug are not limited",
			[]line{
				{0, hclog.Info, "entering follower state", ""},
				{0, hclog.Info, "entering follower state", ""},
				{0, hclog.Debug, "accepted connection", "a"},
				{0, hclog.Debug, "accepted connection", "a"},
			},
			[]emitted{
				{"entering follower state", "", 0}, {"entering follower state", "", 0},
				{"accepted connection", "a", 0}, {"accepted connection", "a", 0},
			}},
		{"no count when nothing was held back",
			[]line{
				{0, hclog.Warn, "w", "a"},
				{repeatWindow, hclog.Warn, "w", "a"},
			},
			[]emitted{{"w", "a", 0}, {"w", "a", 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			now := time.Unix(1_000_000, 0)
			l := newTestHCLog(&buf, func() time.Time { return now })
			for _, ln := range tc.lines {
				now = now.Add(ln.after)
				var args []any
				if ln.peer != "" {
					args = append(args, "peer", raft.ServerAddress(ln.peer))
				}
				l.Log(ln.level, ln.msg, append(args, "error", errors.New("dial tcp: connection refused"))...)
			}
			var got []emitted
			for _, m := range jsonLines(t, &buf) {
				peer, _ := m["peer"].(string)
				s, _ := m["suppressed"].(float64)
				got = append(got, emitted{m["msg"].(string), peer, s})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}
