package raftnode

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hclogAdapter sends hashicorp/raft's hclog output to slog: hclog's
// key/value pairs become slog attributes with snake_case keys, hclog's
// formatting wrappers are applied, and repeated warnings and errors are
// rate-limited. Methods it does not override fall through to a null logger.
type hclogAdapter struct {
	hclog.Logger
	l       *slog.Logger
	name    string
	args    []any
	repeats *repeatLimiter // shared by every logger derived from one
}

func newHCLog(l *slog.Logger) hclog.Logger {
	return &hclogAdapter{Logger: hclog.NewNullLogger(), l: l, name: "raft", repeats: newRepeatLimiter(time.Now)}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	var lv slog.Level
	switch {
	case level <= hclog.Debug:
		lv = slog.LevelDebug
	case level == hclog.Info:
		lv = slog.LevelInfo
	case level == hclog.Warn:
		lv = slog.LevelWarn
	default:
		lv = slog.LevelError
	}
	ctx := context.Background()
	if !a.l.Enabled(ctx, lv) {
		return
	}
	attrs := make([]slog.Attr, 0, 1+(len(a.args)+len(args))/2+1)
	attrs = append(attrs, slog.String("subsystem", a.name))
	attrs = appendAttrs(attrs, a.args)
	attrs = appendAttrs(attrs, args)
	// A dead peer makes raft log the same failure several times a second
	// for as long as it is down; one line per peer every repeatWindow says
	// as much.
	if lv >= slog.LevelWarn {
		ok, suppressed := a.repeats.allow(msg + "\x00" + peerOf(attrs))
		if !ok {
			return
		}
		if suppressed > 0 {
			attrs = append(attrs, slog.Int("suppressed", suppressed))
		}
	}
	a.l.LogAttrs(ctx, lv, msg, attrs...)
}

// appendAttrs turns hclog's alternating keys and values into attributes.
func appendAttrs(attrs []slog.Attr, kv []any) []slog.Attr {
	for i := 0; i < len(kv); i += 2 {
		if i+1 == len(kv) {
			attrs = append(attrs, slog.Attr{Key: "extra_value", Value: value(kv[i])})
			break
		}
		k, ok := kv[i].(string)
		if !ok {
			k = fmt.Sprint(kv[i])
		}
		attrs = append(attrs, slog.Attr{Key: snakeKey(k), Value: value(kv[i+1])})
	}
	return attrs
}

// snakeKey makes raft's keys ("backoff time", "server-id") snake_case.
func snakeKey(k string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return '_'
		}
		return r
	}, strings.ToLower(k))
}

// value renders one hclog value the way hclog would, but as a slog value:
// errors as their message, hclog's wrappers applied, a raft server as its
// fields, anything with a String method as that.
func value(v any) (out slog.Value) {
	defer func() {
		if recover() != nil { // a String method on a nil pointer
			out = slog.StringValue(fmt.Sprintf("%v", v))
		}
	}()
	switch v := v.(type) {
	case nil:
		return slog.StringValue("<nil>")
	case error:
		return slog.StringValue(v.Error())
	case hclog.Format:
		if len(v) > 0 {
			if f, ok := v[0].(string); ok {
				return slog.StringValue(fmt.Sprintf(f, v[1:]...))
			}
		}
		return slog.StringValue(fmt.Sprint([]any(v)...))
	case hclog.Hex:
		return slog.StringValue("0x" + strconv.FormatUint(uint64(v), 16))
	case hclog.Octal:
		return slog.StringValue("0" + strconv.FormatUint(uint64(v), 8))
	case hclog.Binary:
		return slog.StringValue("0b" + strconv.FormatUint(uint64(v), 2))
	case hclog.Quote:
		return slog.StringValue(strconv.Quote(string(v)))
	case raft.Server:
		return slog.GroupValue(slog.String("id", string(v.ID)), slog.String("address", string(v.Address)),
			slog.String("suffrage", v.Suffrage.String()))
	case raft.ServerAddress:
		return slog.StringValue(string(v))
	case raft.ServerID:
		return slog.StringValue(string(v))
	case time.Duration: // before Stringer: slog has a kind for it
		return slog.DurationValue(v)
	case fmt.Stringer:
		return slog.StringValue(v.String())
	}
	return slog.AnyValue(v)
}

// peerOf names the peer a line is about, if any, for rate limiting.
func peerOf(attrs []slog.Attr) string {
	for _, a := range attrs {
		if a.Key == "peer" {
			return a.Value.String()
		}
	}
	return ""
}

// repeatWindow is how often one warning or error about one peer is logged.
const repeatWindow = 10 * time.Second

// repeatLimiter lets one line per key through every repeatWindow and
// counts the ones it holds back, so the next line can say how many.
type repeatLimiter struct {
	now  func() time.Time
	mu   sync.Mutex
	seen map[string]*repeat
}

type repeat struct {
	last       time.Time // when a line with this key was last logged
	suppressed int
}

func newRepeatLimiter(now func() time.Time) *repeatLimiter {
	return &repeatLimiter{now: now, seen: map[string]*repeat{}}
}

// allow reports whether a line with key may be logged now and how many
// were suppressed since the last one that was.
func (r *repeatLimiter) allow(key string) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if e, ok := r.seen[key]; ok && now.Sub(e.last) < repeatWindow {
		e.suppressed++
		return false, 0
	}
	e := r.seen[key]
	n := 0
	if e != nil {
		n = e.suppressed
	}
	if len(r.seen) >= 1024 {
		// Keys are messages and peers, a small set; this only bounds
		// memory should a peer address churn.
		for k, old := range r.seen {
			if now.Sub(old.last) >= repeatWindow {
				delete(r.seen, k)
			}
		}
	}
	r.seen[key] = &repeat{last: now}
	return true, n
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) IsTrace() bool { return false }
func (a *hclogAdapter) IsDebug() bool { return a.l.Enabled(context.Background(), slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool  { return a.l.Enabled(context.Background(), slog.LevelInfo) }
func (a *hclogAdapter) IsWarn() bool  { return a.l.Enabled(context.Background(), slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool { return true }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(append([]any{}, a.args...), args...)
	return &c
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	c.name = a.name + "." + name
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }
