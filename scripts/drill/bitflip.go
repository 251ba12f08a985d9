package main

// The bitflip nemesis: a stopped node's log store corrupted under it.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// bitFlip stops a follower, flips one bit in every copy of a marker it
// wrote to its log store (a user created for the purpose), and starts it
// again. The node must not serve the flipped data: it refuses to start,
// or it reports a storage fault and refuses reads, or — when the flip
// only hit stale pages — it serves exactly what the others do. Then its
// log store is put back and it rejoins.
func (c *cluster) bitFlip(ctx context.Context, rng *rand.Rand, victim *proc) error {
	marker := fmt.Sprintf("bitflip-%08x@cnm.local", rng.Uint32())
	if err := c.writeMarker(ctx, victim, marker); err != nil {
		return err
	}
	c.kill(victim, false)
	db := filepath.Join(victim.dir, "raft", "raft.db")
	orig, err := os.ReadFile(db)
	if err != nil {
		return err
	}
	flipped, hits := flipMarker(orig, marker)
	if hits == 0 {
		return fmt.Errorf("the marker is not in node %d's raft.db", victim.uid)
	}
	if err := os.WriteFile(db, flipped, 0o600); err != nil {
		return err
	}
	restore := func() error { return c.restoreLog(ctx, victim, db, orig) }
	if err := c.start(victim); err != nil {
		return err
	}
	outcome, err := c.watchFlipped(ctx, victim, "c"+marker[1:], restore)
	if err != nil {
		return err
	}
	fmt.Printf("drill:   node %d with a flipped bit in %d copies of a log entry %s\n", victim.uid, hits, outcome)
	if err := restore(); err != nil {
		return err
	}
	return c.sees(ctx, victim, marker)
}

// writeMarker creates the marker user through victim and waits until
// victim holds it, so that the entry is in its log store before it stops.
func (c *cluster) writeMarker(ctx context.Context, victim *proc, marker string) error {
	// A write may meet an election (another nemesis's aftermath): retry;
	// 409 means an earlier try was applied.
	err := poll(ctx, 20*time.Second, func() error {
		st, b, err := c.do(ctx, victim, "POST", "/v1/users", map[string]string{"email": marker, "password": "bit-flip-password", "role": "db_viewer", "name": "bit flip"})
		if err != nil || (st != 200 && st != 409) {
			return fmt.Errorf("create the marker user: %v %d %s", err, st, b)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The follower must hold the entry before it stops.
	return poll(ctx, 10*time.Second, func() error { return c.sees(ctx, victim, marker) })
}

// flipMarker returns a copy of data with one bit flipped in every copy of
// marker, and how many there were.
func flipMarker(data []byte, marker string) ([]byte, int) {
	flipped := bytes.Clone(data)
	hits := 0
	for i := 0; ; {
		j := bytes.Index(flipped[i:], []byte(marker))
		if j < 0 {
			break
		}
		// 'b' of "bitflip" becomes 'c': still a valid email.
		flipped[i+j] ^= 0x01
		hits++
		i += j + len(marker)
	}
	return flipped, hits
}

// restoreLog puts victim's original log store back and restarts it.
func (c *cluster) restoreLog(ctx context.Context, victim *proc, db string, orig []byte) error {
	c.kill(victim, false)
	if err := os.WriteFile(db, orig, 0o600); err != nil {
		return err
	}
	if err := c.start(victim); err != nil {
		return err
	}
	return c.waitUp(ctx, victim)
}

// watchFlipped watches victim for 10 s: whatever it answers must not be
// the flipped user. It returns what the node did instead; a node caught
// serving the flipped user is restored before the error returns.
func (c *cluster) watchFlipped(ctx context.Context, victim *proc, flippedMarker string, restore func() error) (string, error) {
	end := time.Now().Add(10 * time.Second)
	outcome := "served the same state as the others"
	for time.Now().Before(end) {
		if c.exitedByItself(victim) {
			outcome = "refused to start"
			break
		}
		st, b, err := c.do(ctx, victim, "GET", "/v1/users", nil)
		if err == nil && st == 200 && bytes.Contains(b, []byte(flippedMarker)) {
			_ = restore()
			return "", fmt.Errorf("node %d serves the bit-flipped user %s", victim.uid, flippedMarker)
		}
		if err == nil && st >= 500 && strings.Contains(string(b), "storage") {
			outcome = "reported a storage fault"
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return outcome, nil
}
