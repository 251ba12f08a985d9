package agent

import (
	"context"
	"fmt"
	"sync"
)

// shardLocks is one lock per shard whose waiters give up when their
// context ends: a copy holds its shard's lock while the replica syncs,
// which may take long, and a drop or a role change asked for meanwhile
// must end with its caller rather than wait it out.
type shardLocks struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (l *shardLocks) ch(uid string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]chan struct{}{}
	}
	c, ok := l.m[uid]
	if !ok {
		c = make(chan struct{}, 1)
		l.m[uid] = c
	}
	return c
}

// lock takes uid's lock, or fails when ctx ends first; the func it
// returns releases it.
func (l *shardLocks) lock(ctx context.Context, uid string) (unlock func(), err error) {
	c := l.ch(uid)
	select {
	case c <- struct{}{}:
		return func() { <-c }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("shard %s is busy: %w", uid, ctx.Err())
	}
}

// tryLock takes uid's lock if it is free.
func (l *shardLocks) tryLock(uid string) (unlock func(), ok bool) {
	c := l.ch(uid)
	select {
	case c <- struct{}{}:
		return func() { <-c }, true
	default:
		return nil, false
	}
}

// lockShard takes the lock of shard uid, a plain name.
func (b *RedisBackend) lockShard(ctx context.Context, uid string) (unlock func(), err error) {
	if err := validUID(uid); err != nil {
		return nil, err
	}
	return b.locks.lock(ctx, uid)
}
