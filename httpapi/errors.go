package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"cnm/fsm"
)

// apiError is an error with the status and error_code the client sees.
type apiError struct {
	Status      int
	Code        string
	Description string
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return e.Code + ": " + e.Description }

func errBadRequest(code, desc string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Description: desc}
}

func errNotFound(code, desc string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: code, Description: desc}
}

// fsmStatus maps domain error codes decided by Apply to HTTP statuses.
var fsmStatus = map[string]int{
	fsm.ErrUserExists.Code:          http.StatusConflict,
	fsm.ErrForbidden.Code:           http.StatusForbidden,
	fsm.ErrActionInProgress.Code:    http.StatusConflict,
	fsm.ErrActionNotFound.Code:      http.StatusNotFound,
	fsm.ErrStaleTerm.Code:           http.StatusConflict,
	fsm.ErrBDBExists.Code:           http.StatusConflict,
	fsm.ErrBDBNotFound.Code:         http.StatusNotFound,
	fsm.ErrPlacementConflict.Code:   http.StatusConflict,
	fsm.ErrSnapshotNotFound.Code:    http.StatusNotFound,
	fsm.ErrSnapshotInUse.Code:       http.StatusForbidden,
	fsm.ErrUserNotFound.Code:        http.StatusNotFound,
	fsm.ErrNodeNotFound.Code:        http.StatusNotFound,
	fsm.ErrNodeExists.Code:          http.StatusConflict,
	fsm.ErrLastAdmin.Code:           http.StatusConflict,
	fsm.ErrUnauthorized.Code:        http.StatusUnauthorized,
	fsm.ErrInvalidParameter.Code:    http.StatusBadRequest,
	fsm.ErrAlreadyBootstrapped.Code: http.StatusConflict,
	fsm.ErrNotBootstrapped.Code:     http.StatusServiceUnavailable,
}

type errorBody struct {
	Code        string `json:"error_code"`
	Description string `json:"description"`
}

// writeError is the one place where errors become responses.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var fe *fsm.Error
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &fe):
		st, ok := fsmStatus[fe.Code]
		if !ok {
			st = http.StatusInternalServerError
		}
		ae = &apiError{Status: st, Code: fe.Code, Description: fe.Description}
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		ae = &apiError{Status: http.StatusInternalServerError, Code: "internal_error",
			Description: "an internal error occurred; see the node's log"}
	}
	writeAPIError(w, ae, s.hold)
}

// writeAPIError writes ae with the headers its status calls for; a 503
// asks the client to retry after hold.
func writeAPIError(w http.ResponseWriter, ae *apiError, hold time.Duration) {
	switch ae.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="cnm"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(hold.Seconds()))))
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ae.RetryAfter.Seconds()))))
	}
	writeJSON(w, ae.Status, errorBody{Code: ae.Code, Description: ae.Description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error_code":"internal_error","description":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
