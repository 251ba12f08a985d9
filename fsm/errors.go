package fsm

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is the one error type every layer of cnm answers with: a domain
// error decided by Apply or the planner, or a refusal of the API itself.
// Code is the snake_case error_code the REST API answers with; Description
// names the offending object.
type Error struct {
	Code        string `json:"error_code"`
	Description string `json:"description"`
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter time.Duration `json:"-"`
	status     int
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

// Status is the HTTP status the API answers e with: its kind's, or, for an
// Error built by hand or decoded, the status of the first kind with its
// code; 500 for a code no kind declares.
func (e *Error) Status() int {
	if e.status != 0 {
		return e.status
	}
	if st, ok := statusOf[e.Code]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// statusOf maps each code to the status of the first kind declaring it.
var statusOf = map[string]int{}

// kind declares an error code with the status the API answers it with.
// The declarations below are the one table of codes and statuses.
func kind(code string, status int) *Error {
	if _, ok := statusOf[code]; !ok {
		statusOf[code] = status
	}
	return &Error{Code: code, status: status}
}

// Domain errors, decided by Apply and the planner; compare with errors.Is.
var (
	ErrUserExists          = kind("user_exists", http.StatusConflict)
	ErrUserNotFound        = kind("user_not_found", http.StatusNotFound)
	ErrNodeNotFound        = kind("node_not_found", http.StatusNotFound)
	ErrNodeExists          = kind("node_exists", http.StatusConflict)
	ErrLastAdmin           = kind("last_admin", http.StatusConflict)
	ErrUnauthorized        = kind("unauthorized", http.StatusUnauthorized)
	ErrInvalidParameter    = kind("invalid_parameter", http.StatusBadRequest)
	ErrAlreadyBootstrapped = kind("already_bootstrapped", http.StatusConflict)
	ErrNotBootstrapped     = kind("not_bootstrapped", http.StatusServiceUnavailable)
	ErrForbidden           = kind("forbidden", http.StatusForbidden)
	ErrBDBExists           = kind("bdb_exists", http.StatusConflict)
	ErrBDBNotFound         = kind("bdb_not_found", http.StatusNotFound)
	// ErrPlacementConflict: the state changed since the placement was
	// planned; plan again.
	ErrPlacementConflict = kind("placement_conflict", http.StatusConflict)
	ErrSnapshotNotFound  = kind("snapshot_not_found", http.StatusNotFound)
	ErrSnapshotInUse     = kind("snapshot_in_use", http.StatusForbidden)
	ErrActionInProgress  = kind("action_in_progress", http.StatusConflict)
	ErrActionNotFound    = kind("action_not_found", http.StatusNotFound)
	// ErrInsufficientResources and ErrQuorumLoss are admission's refusals
	// (SPEC §4.1): the action cannot succeed as the cluster stands.
	ErrInsufficientResources = kind("insufficient_resources", http.StatusNotAcceptable)
	ErrQuorumLoss            = kind("quorum_loss", http.StatusNotAcceptable)
	// ErrStaleTerm: an executor write from a leader that no longer owns
	// the action (or about a step already done); it changes nothing.
	ErrStaleTerm = kind("stale_term", http.StatusConflict)
	// ErrStepBusy: another action's step holds the slots a step would
	// switch (BeginStep); the step waits.
	ErrStepBusy = kind("step_busy", http.StatusConflict)
	// ErrNotInSync: an agent asked to promote only a replica in sync
	// has one that is not yet; the failover waits.
	ErrNotInSync = kind("replica_not_in_sync", http.StatusConflict)
	// ErrInternal: a fault of cnm itself, not of the request.
	ErrInternal = kind("internal_error", http.StatusInternalServerError)
)

// Refusals of the API and of the node-to-node protocol, before or beside
// Apply.
var (
	ErrInvalidJSON       = kind("invalid_json", http.StatusBadRequest)
	ErrInvalidRequest    = kind("invalid_request", http.StatusBadRequest)
	ErrInvalidPath       = kind("invalid_path", http.StatusBadRequest)
	ErrUnsupportedAction = kind("unsupported_action", http.StatusBadRequest)
	// ErrNoSuchSetupAction: the set-up API has no such action, so no such
	// endpoint either.
	ErrNoSuchSetupAction = kind(ErrUnsupportedAction.Code, http.StatusNotFound)
	ErrNotFound          = kind("not_found", http.StatusNotFound)
	ErrMethodNotAllowed  = kind("method_not_allowed", http.StatusMethodNotAllowed)
	ErrRequestTooLarge   = kind("request_too_large", http.StatusRequestEntityTooLarge)
	ErrTooManyRequests   = kind("too_many_requests", http.StatusTooManyRequests)
	ErrCertRevoked       = kind("certificate_revoked", http.StatusForbidden)
	// ErrNotLeader tells a peer that this node does not lead, so that
	// nothing was done and it may ask the leader.
	ErrNotLeader           = kind("not_leader", http.StatusMisdirectedRequest)
	ErrNoQuorum            = kind("no_quorum", http.StatusServiceUnavailable)
	ErrNotAMember          = kind("not_a_member", http.StatusServiceUnavailable)
	ErrShuttingDown        = kind("shutting_down", http.StatusServiceUnavailable)
	ErrBootstrapInProgress = kind("bootstrap_in_progress", http.StatusConflict)
	ErrSetupFailed         = kind("setup_failed", http.StatusInternalServerError)
	ErrCheckpointNotFound  = kind("checkpoint_not_found", http.StatusNotFound)
	ErrStateDiverged       = kind("state_diverged", http.StatusServiceUnavailable)
	ErrStorageFault        = kind("storage_fault", http.StatusServiceUnavailable)
	ErrInsufficientStorage = kind("insufficient_storage", http.StatusInsufficientStorage)
	ErrShardNotFound       = kind("shard_not_found", http.StatusNotFound)
	ErrShardAssigned       = kind("shard_assigned", http.StatusConflict)
	ErrChecksumMismatch    = kind("checksum_mismatch", http.StatusBadGateway)
)

// Errorf returns an error of kind k, described by format and args as
// fmt.Errorf would; an error wrapped with %w stays reachable through
// errors.Is and errors.As.
func Errorf(k *Error, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	e := k.With(err.Error())
	if errors.Unwrap(err) != nil {
		e.cause = err
	} else if _, ok := err.(interface{ Unwrap() []error }); ok {
		e.cause = err
	}
	return e
}

// With is an error of kind k with description desc.
func (k *Error) With(desc string) *Error {
	return &Error{Code: k.Code, Description: desc, status: k.status}
}

// NoSuchNode is the refusal of a request naming node uid, which the
// cluster does not have.
func NoSuchNode(uid int) *Error { return Errorf(ErrNodeNotFound, "node %d does not exist", uid) }
