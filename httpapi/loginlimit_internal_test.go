package httpapi

import (
	"strconv"
	"testing"
	"time"
)

// TestLoginLimiter_TablesAreBounded: every failure from a new address or
// for a new user name adds an entry; the tables never exceed their cap,
// and the newest attacker stays limited.
func TestLoginLimiter_TablesAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keys    func(i int) loginKeys
		table   func(l *loginLimiter) *bucketTable
		spacing time.Duration // between failures
	}{
		{name: "users", keys: func(i int) loginKeys { return loginKeys{user: "u" + strconv.Itoa(i)} },
			table: func(l *loginLimiter) *bucketTable { return l.users }},
		{name: "addresses", keys: func(i int) loginKeys {
			return loginKeys{addr: "10.0." + strconv.Itoa(i/256%256) + "." + strconv.Itoa(i%256), hasAddr: true, user: "admin"}
		}, table: func(l *loginLimiter) *bucketTable { return l.addrs }},
		{name: "users over time", keys: func(i int) loginKeys { return loginKeys{user: "u" + strconv.Itoa(i)} },
			table: func(l *loginLimiter) *bucketTable { return l.users }, spacing: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxEntries = 100
			l := newLoginLimiter(LoginLimits{PerAddress: 1, AddressBurst: 2, PerUser: 1, UserBurst: 2, MaxEntries: maxEntries})
			now := time.Unix(1_700_000_000, 0)
			var last loginKeys
			for i := range 20000 {
				now = now.Add(tc.spacing)
				last = tc.keys(i)
				l.failed(last, now)
				if n := tc.table(l).size(); n > maxEntries {
					t.Fatalf("after %d failures the table holds %d entries, cap %d", i+1, n, maxEntries)
				}
			}
			l.failed(last, now)
			l.failed(last, now)
			if l.wait(last, now) <= 0 {
				t.Errorf("the newest attacker is no longer limited")
			}
		})
	}
}

// TestClientKey_IPv6SharesOneBucketPerSlash64: one host owns its /64.
func TestClientKey_IPv6SharesOneBucketPerSlash64(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:4000", "[2001:db8:1:2:ffff:1:2:3]:5000"},
		{"192.0.2.1:4000", "192.0.2.1:5000"},
	} {
		if ka, kb := clientKey(tc.a), clientKey(tc.b); ka != kb {
			t.Errorf("%s and %s have keys %q and %q, want one", tc.a, tc.b, ka, kb)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:4000", "[2001:db8:1:3::1]:4000"},
		{"192.0.2.1:4000", "192.0.2.2:4000"},
	} {
		if clientKey(tc.a) == clientKey(tc.b) {
			t.Errorf("%s and %s share the key %q", tc.a, tc.b, clientKey(tc.a))
		}
	}
}
