package agent

import (
	"context"

	"golang.org/x/time/rate"
)

// Limiter caps the bytes per second of shard copies. A nil *Limiter is
// unlimited.
type Limiter struct{ l *rate.Limiter }

// NewLimiter returns a cap of bytesPerSecond, or nil (unlimited) for 0.
func NewLimiter(bytesPerSecond int64) *Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	// A burst of 64 KiB (or the rate, when smaller) keeps the stream
	// smooth and lets every chunk through.
	burst := int(min(bytesPerSecond, 64<<10))
	return &Limiter{l: rate.NewLimiter(rate.Limit(bytesPerSecond), burst)}
}

// WaitN blocks until n bytes may pass.
func (l *Limiter) WaitN(ctx context.Context, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		step := min(n, l.l.Burst())
		if err := l.l.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}
