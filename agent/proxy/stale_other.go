//go:build !unix

package proxy

// stale cannot probe a socket without blocking here; a closed idle
// connection then shows as a failed command instead of a silent redial.
func (u *upstream) stale() bool { return false }
