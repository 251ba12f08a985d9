//go:build unix

package proxy

import (
	"errors"
	"syscall"
)

// stale reports whether the master has closed this idle connection (a
// restart, CLIENT KILL, its idle timeout). Finding out before sending is
// what makes a redial safe: after sending, a broken connection leaves the
// command's outcome unknown. A master never speaks unasked, so any byte
// waiting here, or EOF, means the connection is unusable.
func (u *upstream) stale() bool {
	if u.br.Buffered() > 0 {
		return true
	}
	sc, ok := u.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	dead := false
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			dead = true // EOF, or data the master sent unasked
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		default:
			dead = true
		}
		return true // never wait: this is a probe
	})
	return dead
}
