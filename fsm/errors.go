package fsm

import "fmt"

// Error is a domain error decided by Apply. Code is the snake_case error code
// the REST API answers with; Description names the offending object.
type Error struct {
	Code        string `json:"error_code"`
	Description string `json:"description"`
}

func (e *Error) Error() string {
	if e == nil {
		return "<nil>"
	}
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// Is makes errors.Is match any *Error with the same code, so the sentinels
// below work with wrapped, described copies.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e != nil && t != nil && t.Code == e.Code
}

// Sentinel domain errors; compare with errors.Is.
var (
	ErrUserExists          = &Error{Code: "user_exists"}
	ErrUserNotFound        = &Error{Code: "user_not_found"}
	ErrNodeNotFound        = &Error{Code: "node_not_found"}
	ErrNodeExists          = &Error{Code: "node_exists"}
	ErrLastAdmin           = &Error{Code: "last_admin"}
	ErrUnauthorized        = &Error{Code: "unauthorized"}
	ErrInvalidParameter    = &Error{Code: "invalid_parameter"}
	ErrAlreadyBootstrapped = &Error{Code: "already_bootstrapped"}
	ErrNotBootstrapped     = &Error{Code: "not_bootstrapped"}
	ErrForbidden           = &Error{Code: "forbidden"}
	ErrBDBExists           = &Error{Code: "bdb_exists"}
	ErrBDBNotFound         = &Error{Code: "bdb_not_found"}
	// ErrPlacementConflict: the state changed since the placement was
	// planned; plan again.
	ErrPlacementConflict = &Error{Code: "placement_conflict"}
	ErrSnapshotNotFound  = &Error{Code: "snapshot_not_found"}
	ErrSnapshotInUse     = &Error{Code: "snapshot_in_use"}
	ErrActionInProgress  = &Error{Code: "action_in_progress"}
	ErrActionNotFound    = &Error{Code: "action_not_found"}
	// ErrInsufficientResources and ErrQuorumLoss are admission's refusals
	// (SPEC §4.1): the action cannot succeed as the cluster stands.
	ErrInsufficientResources = &Error{Code: "insufficient_resources"}
	ErrQuorumLoss            = &Error{Code: "quorum_loss"}
	// ErrStaleTerm: an executor write from a leader that no longer owns
	// the action (or about a step already done); it changes nothing.
	ErrStaleTerm = &Error{Code: "stale_term"}
)

func errorf(kind *Error, format string, args ...any) *Error {
	return &Error{Code: kind.Code, Description: fmt.Sprintf(format, args...)}
}
