package httpapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/http"
	"sync"
	"time"

	"cnm/fsm"
)

// principal is an authenticated user as of the state it was checked against.
type principal struct {
	UID      int
	Email    string
	Role     string
	Revision uint64
}

func (p principal) actor() fsm.Actor { return fsm.Actor{UID: p.UID, Revision: p.Revision} }

// authCache remembers successful password checks so that only the first
// request of a client pays for bcrypt. Entries are keyed by a keyed hash of
// email and password (a stolen cache reveals nothing), bound to the user's
// revision (any change to the user drops them) and expire after ttl.
type authCache struct {
	key []byte
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[[32]byte]authEntry
}

type authEntry struct {
	uid      int
	revision uint64
	expires  time.Time
}

func newAuthCache(ttl time.Duration, max int) *authCache {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("httpapi: read random key: " + err.Error())
	}
	return &authCache{key: key, ttl: ttl, max: max, entries: map[[32]byte]authEntry{}}
}

func (c *authCache) sum(email, password string) [32]byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(email))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

func (c *authCache) hit(k [32]byte, u *fsm.User, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return false
	}
	if e.uid != u.UID || e.revision != u.Revision || now.After(e.expires) {
		delete(c.entries, k)
		return false
	}
	return true
}

func (c *authCache) remember(k [32]byte, u *fsm.User, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Drop expired entries first, then anything: the cache is only a
		// shortcut, and a miss just costs one bcrypt check.
		for ek, e := range c.entries {
			if now.After(e.expires) || len(c.entries) >= c.max {
				delete(c.entries, ek)
			}
		}
	}
	c.entries[k] = authEntry{uid: u.UID, revision: u.Revision, expires: now.Add(c.ttl)}
}

var errUnauthenticated = fsm.ErrUnauthorized.With("missing or wrong credentials: use HTTP Basic authentication with a user's email and password")

// userSeen identifies the version of a user that credentials were checked
// against: checking the same credentials against the same version gives
// the same verdict.
type userSeen struct {
	found    bool
	uid      int
	revision uint64
}

// seenNow is the version of the request's user in the current state.
func (s *Server) seenNow(r *http.Request) userSeen {
	email, _, _ := r.BasicAuth()
	var seen userSeen
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if u := st.UserByEmail(email); u != nil {
			seen = userSeen{found: true, uid: u.UID, revision: u.Revision}
		}
	})
	return seen
}

// authenticate checks the request's Basic credentials against the local
// state, with at most one password check. Credentials proven recently
// (cached) pass at once; any other attempt first passes the failed-login
// limits (SPEC §9), so that a flood of wrong passwords is answered 429
// without costing bcrypt runs.
func (s *Server) authenticate(r *http.Request) (principal, userSeen, error) {
	email, password, ok := r.BasicAuth()
	if !ok || email == "" {
		return principal{}, userSeen{}, errUnauthenticated
	}
	var user fsm.User
	var seen userSeen
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if u := st.UserByEmail(email); u != nil {
			user, seen = *u, userSeen{found: true, uid: u.UID, revision: u.Revision}
		}
	})
	now := time.Now()
	var k [32]byte
	if seen.found {
		k = s.auth.sum(email, password)
		if s.auth.hit(k, &user, now) {
			return principal{UID: user.UID, Email: user.Email, Role: user.Role, Revision: user.Revision}, seen, nil
		}
	}
	keys := keysOf(r, email, s.checker.Allows(r))
	if d := s.logins.wait(keys, now); d > 0 {
		return principal{}, seen, errTooManyLogins(d)
	}
	// An unknown user is checked against a fixed hash, so that timing does
	// not tell which emails exist.
	hash := s.dummyHash
	if seen.found {
		hash = []byte(user.PasswordHash)
	}
	if s.checkPassword(hash, []byte(password)) != nil || !seen.found {
		s.logins.failed(keys, now)
		return principal{}, seen, errUnauthenticated
	}
	s.auth.remember(k, &user, now)
	return principal{UID: user.UID, Email: user.Email, Role: user.Role, Revision: user.Revision}, seen, nil
}

func (s *Server) authorize(r *http.Request, perm string) (principal, error) {
	p, _, err := s.authorizeSeen(r, perm)
	return p, err
}

// authorizeSeen is authorize that also tells which version of the user the
// credentials were checked against.
func (s *Server) authorizeSeen(r *http.Request, perm string) (principal, userSeen, error) {
	// A node that has no cluster state yet (the first node between its
	// start and its bootstrap entry, a joining node catching up) has no
	// users either: that is "not yet", not "wrong credentials".
	ready := false
	s.fsm.Read(func(st *fsm.State, _ uint64) { ready = st.Bootstrapped() })
	if !ready {
		return principal{}, userSeen{}, fsm.ErrNotBootstrapped.With("this node has no cluster state yet; try again in a moment")
	}
	p, seen, err := s.authenticate(r)
	if err != nil {
		return principal{}, seen, err
	}
	if !Allowed(p.Role, perm) {
		return principal{}, seen, fsm.ErrForbidden.With("role " + p.Role + " lacks permission " + perm)
	}
	return p, seen, nil
}

// authorizeLinearized checks credentials against the local state and, if
// they fail there, once more after catching up with the leader: this node
// may not yet have applied a user created or changed moments ago. Without
// a leader, the local verdict stands.
//
// A wrong password is checked only once: if the user is as it was (same
// revision, or still unknown), a second check could only fail again, and
// each one costs a bcrypt run.
func (s *Server) authorizeLinearized(r *http.Request, perm string) (principal, error) {
	p, seen, err := s.authorizeSeen(r, perm)
	if err == nil {
		return p, nil
	}
	var ae *fsm.Error
	if errors.As(err, &ae) && ae.Status() == http.StatusTooManyRequests {
		return principal{}, err
	}
	if s.linearize(r.Context()) != nil {
		return principal{}, err
	}
	if ae != nil && ae.Status() == http.StatusUnauthorized && s.seenNow(r) == seen {
		return principal{}, err
	}
	return s.authorize(r, perm)
}
