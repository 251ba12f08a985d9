package main

// Pauses (SIGSTOP): a node frozen as a VM would be, alive but silent.

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// pauseFor stops a node's process (SIGSTOP, as a frozen VM) for d, then
// lets it go on. With the leader paused longer than an election takes,
// the others must elect a new one meanwhile.
func (c *cluster) pauseFor(ctx context.Context, n *proc, d time.Duration, wasLeader bool) error {
	if err := c.signal(n, syscall.SIGSTOP); err != nil {
		return err
	}
	resumed := false
	resume := func() {
		if !resumed {
			_ = c.signal(n, syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()
	start := time.Now()
	if wasLeader && d > 5*time.Second {
		if _, err := c.leaderAmong(ctx, othersThan(c.running(), n), 10*time.Second); err != nil {
			return fmt.Errorf("no new leader while leader %d was paused: %w", n.uid, err)
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(start.Add(d))):
	}
	resume()
	if err := c.waitUp(ctx, n); err != nil {
		return err
	}
	_, err := c.leader(ctx, 15*time.Second)
	return err
}
