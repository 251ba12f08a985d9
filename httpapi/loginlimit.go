package httpapi

import (
	"crypto/sha256"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"cnm/fsm"
)

// LoginLimits bound failed logins (SPEC §9). Each failed password check
// takes a token from the client address's bucket and from the user's; while
// either is empty, logins that would need a password check are answered
// 429 at once, without one. A flood from one address therefore spends at
// most that address's rate of the user's tokens: with the per-user rate
// above the per-address rate, only a flood from many addresses locks a
// user out, and credentials a client has already proven (cached) work
// throughout. Zero fields take the defaults.
type LoginLimits struct {
	PerAddress   rate.Limit // sustained failed logins per second per client address
	AddressBurst int
	PerUser      rate.Limit // sustained failed logins per second per user (email)
	UserBurst    int
	// MaxEntries caps each table (addresses, users), so that a client
	// inventing addresses or user names cannot grow memory without bound.
	MaxEntries int
}

// Default login limits.
const (
	DefaultLoginsPerAddress   = rate.Limit(1)
	DefaultLoginAddressBurst  = 10
	DefaultLoginsPerUser      = rate.Limit(2)
	DefaultLoginUserBurst     = 20
	DefaultLoginLimiterTables = 10000
)

func (l LoginLimits) withDefaults() LoginLimits {
	if l.PerAddress == 0 {
		l.PerAddress = DefaultLoginsPerAddress
	}
	if l.AddressBurst == 0 {
		l.AddressBurst = DefaultLoginAddressBurst
	}
	if l.PerUser == 0 {
		l.PerUser = DefaultLoginsPerUser
	}
	if l.UserBurst == 0 {
		l.UserBurst = DefaultLoginUserBurst
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = DefaultLoginLimiterTables
	}
	return l
}

// loginLimiter keeps one token bucket per client address and per user that
// recently failed to log in. Only failures add entries.
type loginLimiter struct {
	addrs, users *bucketTable
}

func newLoginLimiter(l LoginLimits) *loginLimiter {
	l = l.withDefaults()
	return &loginLimiter{
		addrs: newBucketTable(l.PerAddress, l.AddressBurst, l.MaxEntries),
		users: newBucketTable(l.PerUser, l.UserBurst, l.MaxEntries),
	}
}

// loginKeys are the table keys of a login attempt. Users are keyed by a
// hash of the lower-cased email: the header's email may be huge, and case
// variants must share one bucket. Peers (forwarding followers) have no
// address bucket: their clients were checked where they connected.
type loginKeys struct {
	addr    string
	hasAddr bool
	user    string
}

func keysOf(r *http.Request, email string, fromPeer bool) loginKeys {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	k := loginKeys{user: string(sum[:])}
	if !fromPeer {
		k.addr, k.hasAddr = clientKey(r.RemoteAddr), true
	}
	return k
}

// clientKey is the address bucket of a client: its IPv4 address, or the
// /64 of its IPv6 address, since one IPv6 host can pick any address of its
// /64 and would otherwise get a fresh bucket for each attempt.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// wait reports how long the attempt must wait (0: it may go ahead).
func (l *loginLimiter) wait(k loginKeys, now time.Time) time.Duration {
	d := l.users.wait(k.user, now)
	if k.hasAddr {
		d = max(d, l.addrs.wait(k.addr, now))
	}
	return d
}

// failed takes a token from the attempt's buckets.
func (l *loginLimiter) failed(k loginKeys, now time.Time) {
	l.users.take(k.user, now)
	if k.hasAddr {
		l.addrs.take(k.addr, now)
	}
}

// bucketTable is a bounded map of token buckets.
type bucketTable struct {
	limit rate.Limit
	burst int
	max   int
	// refill is how long an untouched bucket takes to fill up again: from
	// then on it is no different from a new one and may be dropped.
	refill time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newBucketTable(limit rate.Limit, burst, maxEntries int) *bucketTable {
	refill := time.Duration(math.Ceil(float64(burst)/float64(limit)*float64(time.Second))) + time.Second
	return &bucketTable{limit: limit, burst: burst, max: maxEntries, refill: refill, buckets: map[string]*bucket{}}
}

func (t *bucketTable) wait(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.buckets[key]
	if !ok {
		return 0
	}
	tokens := b.lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(t.limit) * float64(time.Second))
}

func (t *bucketTable) take(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.buckets[key]
	if !ok {
		if len(t.buckets) >= t.max {
			t.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(t.limit, t.burst)}
		t.buckets[key] = b
	}
	b.last = now
	b.lim.AllowN(now, 1)
}

// evict makes room for one bucket: it drops every bucket that has filled up
// again and, if none has, the one idle longest.
func (t *bucketTable) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, b := range t.buckets {
		if now.Sub(b.last) >= t.refill {
			delete(t.buckets, k)
			continue
		}
		if oldestAt.IsZero() || b.last.Before(oldestAt) {
			oldest, oldestAt = k, b.last
		}
	}
	if len(t.buckets) >= t.max {
		delete(t.buckets, oldest)
	}
}

func (t *bucketTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.buckets)
}

// errTooManyLogins answers a login attempt while its address or user is
// limited; the client may try again after the given time.
func errTooManyLogins(after time.Duration) *fsm.Error {
	secs := max(1, int(math.Ceil(after.Seconds())))
	e := fsm.ErrTooManyRequests.With("too many failed logins from this address or for this user; try again in " + strconv.Itoa(secs) + " s")
	e.RetryAfter = time.Duration(secs) * time.Second
	return e
}
