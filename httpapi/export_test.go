package httpapi

import (
	"strings"

	"github.com/gorilla/mux"
)

// SetPasswordCheck replaces the password check of s, so that tests can
// count how many a request costs.
func SetPasswordCheck(s *Server, check func(hash, password []byte) error) { s.checkPassword = check }

// WalkRoutes calls fn with the method and path template of every route
// s's router serves, but the node-to-node ones under /v1/internal/.
func WalkRoutes(s *Server, fn func(method, path string)) error {
	return s.router.Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := r.GetPathTemplate()
		if err != nil || strings.HasPrefix(path, "/v1/internal/") {
			return nil
		}
		methods, err := r.GetMethods()
		if err != nil {
			return nil // the 405 answers of a path, and the agent's mount
		}
		for _, m := range methods {
			fn(m, path)
		}
		return nil
	})
}
