package main

// The disk-full nemesis and the tmpfs mounts it needs: a node whose disk
// is full must stop leading and come back once there is room.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// diskSize is the size of each node's tmpfs: room for its shard files
// (a few MB each at the drill's scale) and its raft log, small enough to
// fill in an instant.
const diskSize = "256m"

// mountDisks puts every node's data dir on a tmpfs of its own, so that the
// disk-full nemesis can fill one node's disk. Without mount rights (not
// root, or no tmpfs) the data dirs stay where they are and disk-full is
// skipped.
func (c *cluster) mountDisks() {
	var mounted []*proc
	for _, n := range c.nodes {
		disk := filepath.Join(c.dir, fmt.Sprintf("disk-%d", n.uid))
		if err := os.MkdirAll(disk, 0o700); err != nil {
			break
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+diskSize+",mode=0700", "tmpfs", disk).CombinedOutput(); err != nil {
			fmt.Printf("drill: no tmpfs for the data dirs (disk-full is skipped): %v: %s\n", err, bytes.TrimSpace(out))
			for _, m := range mounted {
				_ = exec.Command("umount", m.disk).Run()
				m.disk = ""
				m.dir = filepath.Join(c.dir, fmt.Sprintf("node-%d", m.uid))
			}
			return
		}
		n.disk = disk
		n.dir = filepath.Join(disk, fmt.Sprintf("node-%d", n.uid))
		mounted = append(mounted, n)
	}
}

// unmountDisks releases the tmpfs mounts once every node has stopped;
// with keep, each data dir is first copied out next to the logs, as
// evidence.
func (c *cluster) unmountDisks(keep bool) {
	for _, n := range c.nodes {
		if n.disk == "" {
			continue
		}
		if keep {
			_ = exec.Command("cp", "-a", n.dir, filepath.Join(c.dir, fmt.Sprintf("node-%d", n.uid))).Run()
		}
		if out, err := exec.Command("umount", n.disk).CombinedOutput(); err != nil {
			fmt.Printf("drill: umount %s: %v: %s\n", n.disk, err, bytes.TrimSpace(out))
		}
	}
}

// errNoDisks: the data dirs are not on tmpfs mounts of their own.
var errNoDisks = fmt.Errorf("the data dirs are not on a tmpfs of their own (needs root): %w", errSkipped)

// diskFull fills the victim's disk for a while. A node that cannot write
// must not lead: after a grace period, the cluster keeps a leader other
// than the victim for as long as the disk stays full. Once space is free
// again, the victim comes back by itself.
func (c *cluster) diskFull(ctx context.Context, victim *proc, hold time.Duration) error {
	if victim.disk == "" {
		return errNoDisks
	}
	fill := filepath.Join(victim.disk, "fill")
	defer os.Remove(fill)
	if err := fillDisk(fill); err != nil {
		return err
	}
	// The victim notices on its next write; give it that write.
	if st, b, err := c.do(ctx, victim, "PUT", "/v1/cluster/policy", map[string]string{"default_shards_placement": "sparse"}); err == nil && st == 200 {
		// Through a follower, the write lands on the leader's disk: fine.
		_ = b
	}
	// A node that cannot write says so, on every request. (One that
	// still finds room, in pages its log store already holds, goes on.)
	var last string
	faulted := poll(ctx, 5*time.Second, func() error {
		st, b, err := c.do(ctx, victim, "GET", "/v1/ping", nil)
		if err != nil {
			return err
		}
		last = fmt.Sprintf("%d %s", st, bytes.TrimSpace(b))
		if st != 507 || !bytes.Contains(b, []byte(strconv.Quote("insufficient_storage"))) {
			return fmt.Errorf("node %d with a full disk answers ping with %s", victim.uid, last)
		}
		return nil
	}) == nil
	if !faulted && !strings.HasPrefix(last, "200 ") {
		return fmt.Errorf("node %d with a full disk answers ping with %s, neither healthy nor 507 insufficient_storage", victim.uid, last)
	}
	fmt.Printf("drill:   node %d with a full disk: faulted=%v\n", victim.uid, faulted)
	deadline := time.Now().Add(hold)
	grace := time.Now().Add(5 * time.Second)
	for faulted && time.Now().Before(deadline) {
		if time.Now().After(grace) {
			leader, err := c.leaderAmong(ctx, othersThan(c.running(), victim), 10*time.Second)
			if err != nil {
				return fmt.Errorf("no leader among the others while node %d's disk is full: %w", victim.uid, err)
			}
			if leader == victim {
				return fmt.Errorf("node %d leads with a full disk", victim.uid)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err := os.Remove(fill); err != nil {
		return err
	}
	if c.exitedByItself(victim) {
		// A node may stop on a storage fault it cannot ride out; its
		// supervisor (here, the drill) starts it again.
		if err := c.start(victim); err != nil {
			return err
		}
	}
	if err := c.waitUp(ctx, victim); err != nil {
		return err
	}
	return c.allActive(ctx, 60*time.Second)
}

// fillDisk writes zeros to path until the disk is full.
func fillDisk(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// Big writes first, then page-sized ones for the last bytes.
	for _, size := range []int{1 << 20, 4 << 10} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					break
				}
				return fmt.Errorf("fill %s: %w", path, err)
			}
		}
	}
	return nil
}
