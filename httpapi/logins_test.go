package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"cnm/httpapi"
)

// countChecks makes e's server count its password checks.
func countChecks(t testing.TB, e *env) *atomic.Int64 {
	t.Helper()
	s, ok := e.h.(*httpapi.Server)
	if !ok {
		t.Fatalf("handler is a %T, not *httpapi.Server", e.h)
	}
	var n atomic.Int64
	httpapi.SetPasswordCheck(s, func(hash, pw []byte) error {
		n.Add(1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	})
	return &n
}

// callFrom sends email:password from client address addr.
func (e *env) callFrom(addr, email, password, method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, e.expand(target), strings.NewReader(body))
	r.RemoteAddr = addr + ":40000"
	if email != "" {
		r.SetBasicAuth(email, password)
	}
	return e.serve(r)
}

// TestLogin_FailedAttemptCostsOnePasswordCheck: a read used to check a
// wrong password twice (before and after catching up with the leader),
// ~210 ms of bcrypt per attempt (SPEC §9).
func TestLogin_FailedAttemptCostsOnePasswordCheck(t *testing.T) {
	for _, tc := range []struct{ name, method, target, body, email, password string }{
		{"read, wrong password", "GET", "/v1/nodes", "", adminEmail, "wrong"},
		{"read, unknown user", "GET", "/v1/nodes", "", "nobody@cnm.local", "wrong"},
		{"stale read, wrong password", "GET", "/v1/nodes?stale=true", "", adminEmail, "wrong"},
		{"write, wrong password", "POST", "/v1/users", newUserBody, adminEmail, "wrong"},
		{"write, unknown user", "PUT", "/v1/cluster/policy", `{"rack_aware":true}`, "nobody@cnm.local", "wrong"},
		{"local, wrong password", "GET", "/metrics", "", adminEmail, "wrong"},
		{"local, unknown user", "GET", "/metrics", "", "nobody@cnm.local", ""},
		{"right password", "GET", "/v1/nodes", "", adminEmail, adminPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withoutRoleUsers())
			checks := countChecks(t, e)
			w := e.callFrom("192.0.2.10", tc.email, tc.password, tc.method, tc.target, tc.body)
			if tc.password == adminPassword {
				mustStatus(t, w, http.StatusOK)
			} else {
				assertError(t, e, w, http.StatusUnauthorized, "unauthorized")
			}
			if n := checks.Load(); n != 1 {
				t.Errorf("%d password checks, want 1", n)
			}
		})
	}
}

// TestLogin_FloodFromOneAddressIs429AndSparesOtherClients: failed logins
// are limited per client address; once limited, an attempt costs no
// password check, and a user logging in from elsewhere is not affected.
func TestLogin_FloodFromOneAddressIs429AndSparesOtherClients(t *testing.T) {
	const burst = 5
	e := newEnv(t, withoutRoleUsers(), withLoginLimits(httpapi.LoginLimits{PerAddress: 0.001, AddressBurst: burst}))
	checks := countChecks(t, e)
	const flooder = "198.51.100.7"
	for i := range burst {
		// A different user each time: only the address ties them together.
		email := "victim" + strconv.Itoa(i) + "@cnm.local"
		assertError(t, e, e.callFrom(flooder, email, "wrong", "GET", "/v1/nodes", ""), http.StatusUnauthorized, "unauthorized")
	}
	before := checks.Load()
	for _, tc := range []struct{ name, email, password string }{
		{"wrong password", adminEmail, "wrong"},
		{"unknown user", "other@cnm.local", "x"},
		{"even the right password", adminEmail, adminPassword},
	} {
		w := e.callFrom(flooder, tc.email, tc.password, "GET", "/v1/nodes", "")
		assertError(t, e, w, http.StatusTooManyRequests, "too_many_requests")
		if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("%s: Retry-After = %q, want a number of seconds", tc.name, w.Header().Get("Retry-After"))
		}
	}
	if n := checks.Load() - before; n != 0 {
		t.Errorf("limited attempts cost %d password checks, want 0", n)
	}
	mustStatus(t, e.callFrom("203.0.113.5", adminEmail, adminPassword, "GET", "/v1/nodes", ""), http.StatusOK)
	mustStatus(t, e.callFrom("203.0.113.5", adminEmail, adminPassword, "POST", "/v1/users", newUserBody), http.StatusOK)
}

// TestLogin_PerUserLimitHoldsAcrossAddresses: guessing one user's password
// from many addresses is limited too, while credentials the user already
// proved keep working and other users are not affected.
func TestLogin_PerUserLimitHoldsAcrossAddresses(t *testing.T) {
	const burst = 4
	e := newEnv(t, withLoginLimits(httpapi.LoginLimits{PerUser: 0.001, UserBurst: burst}))
	victim := e.users["cluster_viewer"]
	// The victim's own client proved its credentials before the attack.
	mustStatus(t, e.callFrom("203.0.113.1", victim.Email, victim.Password, "GET", "/v1/nodes", ""), http.StatusOK)
	for i := range burst {
		assertError(t, e, e.callFrom("198.51.100."+strconv.Itoa(i+1), victim.Email, "guess"+strconv.Itoa(i), "GET", "/v1/nodes", ""),
			http.StatusUnauthorized, "unauthorized")
	}
	for _, email := range []string{victim.Email, strings.ToUpper(victim.Email)} {
		w := e.callFrom("198.51.100.200", email, "guess", "GET", "/v1/nodes", "")
		assertError(t, e, w, http.StatusTooManyRequests, "too_many_requests")
		if w.Header().Get("Retry-After") == "" {
			t.Errorf("no Retry-After on a 429")
		}
	}
	mustStatus(t, e.callFrom("203.0.113.1", victim.Email, victim.Password, "GET", "/v1/nodes", ""), http.StatusOK)
	other := e.users["db_viewer"]
	mustStatus(t, e.callFrom("198.51.100.200", other.Email, other.Password, "GET", "/v1/nodes", ""), http.StatusOK)
}

// TestLogin_ManyInventedUsersKeepWorking: a client inventing user names
// meets the bounded tables (see TestLoginLimiter_TablesAreBounded) and the
// server keeps answering others.
func TestLogin_ManyInventedUsersKeepWorking(t *testing.T) {
	e := newEnv(t, withoutRoleUsers(), withLoginLimits(httpapi.LoginLimits{PerAddress: 1e6, AddressBurst: 1e6, MaxEntries: 20}))
	for i := range 150 {
		w := e.callFrom("198.51.100."+strconv.Itoa(i%100), "u"+strconv.Itoa(i)+"@cnm.local", "x", "GET", "/v1/nodes", "")
		assertError(t, e, w, http.StatusUnauthorized, "unauthorized")
	}
	mustStatus(t, e.callFrom("203.0.113.9", adminEmail, adminPassword, "GET", "/v1/nodes", ""), http.StatusOK)
}

// BenchmarkLogin_ReadUnderWrongPasswordFlood measures a legitimate client's
// reads while two others send wrong passwords as fast as they can, with
// the real bcrypt cost; it reports the median latency under the flood as a
// multiple of the median without it (p50-ratio).
func BenchmarkLogin_ReadUnderWrongPasswordFlood(b *testing.B) {
	e := newEnv(b, withoutRoleUsers(), withAdminCost(bcrypt.DefaultCost))
	read := func() time.Duration {
		start := time.Now()
		if w := e.callFrom("203.0.113.5", adminEmail, adminPassword, "GET", "/v1/nodes", ""); w.Code != http.StatusOK {
			b.Fatalf("legitimate read: %d %s", w.Code, w.Body)
		}
		return time.Since(start)
	}
	read() // the client proves its credentials once, as a real one does
	quietLat := make([]time.Duration, 200)
	for i := range quietLat {
		quietLat[i] = read()
	}
	slices.Sort(quietLat)
	quiet, quiet99 := quietLat[len(quietLat)/2], quietLat[len(quietLat)*99/100]

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var attempts atomic.Int64
	floodStart := time.Now()
	for i := range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				e.callFrom("198.51.100."+strconv.Itoa(i+1), adminEmail, "wrong", "GET", "/v1/nodes", "")
				attempts.Add(1)
			}
		})
	}
	// Sample for as long as the flood takes to send its first 2,000
	// attempts: the first few per address cost a bcrypt run each.
	var lat []time.Duration
	for b.Loop() {
		lat = append(lat, read())
	}
	for attempts.Load() < 2000 || len(lat) < 200 {
		lat = append(lat, read())
	}
	slices.Sort(lat)
	flooded, flooded99 := lat[len(lat)/2], lat[len(lat)*99/100]
	elapsed := time.Since(floodStart)
	cancel()
	wg.Wait()
	b.ReportMetric(float64(flooded)/float64(quiet), "p50-ratio")
	b.ReportMetric(float64(flooded99)/float64(quiet99), "p99-ratio")
	b.ReportMetric(elapsed.Seconds(), "flood-s")
	b.ReportMetric(float64(quiet.Microseconds()), "quiet-p50-µs")
	b.ReportMetric(float64(flooded.Microseconds()), "flood-p50-µs")
	b.ReportMetric(float64(attempts.Load()), "flood-attempts")
}
