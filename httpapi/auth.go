package httpapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

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

var errUnauthenticated = &apiError{Status: http.StatusUnauthorized, Code: "unauthorized",
	Description: "missing or wrong credentials: use HTTP Basic authentication with a user's email and password"}

// authenticate checks the request's Basic credentials against the local
// state.
func (s *Server) authenticate(r *http.Request) (principal, error) {
	email, password, ok := r.BasicAuth()
	if !ok || email == "" {
		return principal{}, errUnauthenticated
	}
	var user fsm.User
	var found bool
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		if u := st.UserByEmail(email); u != nil {
			user, found = *u, true
		}
	})
	if !found {
		// Spend the time a real check would, so that timing does not tell
		// which emails exist.
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return principal{}, errUnauthenticated
	}
	k := s.auth.sum(email, password)
	now := time.Now()
	if !s.auth.hit(k, &user, now) {
		if bcrypt.CompareHashAndPassword([]byte(user.PasswordHash), []byte(password)) != nil {
			return principal{}, errUnauthenticated
		}
		s.auth.remember(k, &user, now)
	}
	return principal{UID: user.UID, Email: user.Email, Role: user.Role, Revision: user.Revision}, nil
}

// HashPassword hashes a password with the server's bcrypt cost.
func (s *Server) hashPassword(pw string) (string, error) {
	b, err := bcrypt.GenerateFromPassword([]byte(pw), s.bcryptCost)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
