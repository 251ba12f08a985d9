package httpapi

import (
	"net/http"

	"cnm/fsm"
)

// crossNode lets the web view served by one node read and write through
// the others when its own stops answering: a request whose Origin is the
// API of a node of the cluster may be made from a page of that origin.
// Any other origin gets no CORS header, so browsers keep its pages out.
// It reports whether it answered a preflight.
func (s *Server) crossNode(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || !s.isNodeOrigin(origin) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "X-Cnm-Index, X-Cnm-Leader")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Requested-With")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}

func (s *Server) isNodeOrigin(origin string) bool {
	found := false
	s.fsm.Read(func(st *fsm.State, _ uint64) {
		for _, n := range st.Nodes {
			if origin == "https://"+n.APIAddr {
				found = true
				return
			}
		}
	})
	return found
}
