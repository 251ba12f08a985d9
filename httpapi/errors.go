package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"cnm/fsm"
)

// writeError is the one place where errors become responses: an
// *fsm.Error answers with its code and status, anything else is logged and
// answered as an internal error.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *fsm.Error
	if !errors.As(err, &fe) {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		fe = errInternal
	}
	// A script's request (the web view's sign-in) gets no Basic challenge:
	// the browser would prompt for credentials itself.
	writeAPIError(w, fe, s.hold, r.Header.Get("X-Requested-With") != "XMLHttpRequest")
}

// errInternal hides the details of a fault from the client; the node's log
// has them.
var errInternal = fsm.ErrInternal.With("an internal error occurred; see the node's log")

// writeAPIError writes fe with the headers its status calls for: a 401
// challenges for Basic credentials if challenge, a 503 asks the client to
// retry after hold.
func writeAPIError(w http.ResponseWriter, fe *fsm.Error, hold time.Duration, challenge bool) {
	status := fe.Status()
	switch {
	case status == http.StatusUnauthorized && challenge:
		w.Header().Set("WWW-Authenticate", `Basic realm="cnm"`)
	case status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(hold.Seconds()))))
	}
	if fe.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(fe.RetryAfter.Seconds()))))
	}
	writeJSON(w, status, fe)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(fsm.ErrInternal.With("encode response"))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
