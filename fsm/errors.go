package fsm

import (
	"errors"
	"fmt"
)

// Error is a domain error decided by Apply. Code is the snake_case error code
// the REST API answers with; Description names the offending object.
type Error struct {
	Code        string `json:"error_code"`
	Description string `json:"description"`
	// cause is what Errorf's %w verbs wrapped, so that errors.As still
	// finds the lower-level error (the planner's, say) behind the code.
	cause error
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

// Unwrap returns the error that Errorf's format wrapped with %w, if any.
func (e *Error) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.cause
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
	// ErrUnsupportedAction: an action name that no planner knows.
	ErrUnsupportedAction = &Error{Code: "unsupported_action"}
	// ErrInternal: something failed that is no fault of the request (a
	// node left mid-step, a step the state refused); the action fails.
	ErrInternal = &Error{Code: "internal_error"}
)

// Errorf returns an error with kind's code, described by format and args
// as fmt.Errorf would; an error wrapped with %w stays reachable through
// errors.Is and errors.As.
func Errorf(kind *Error, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	e := &Error{Code: kind.Code, Description: err.Error()}
	if errors.Unwrap(err) != nil {
		e.cause = err
	} else if _, ok := err.(interface{ Unwrap() []error }); ok {
		e.cause = err
	}
	return e
}
