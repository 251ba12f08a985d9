package agent_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// countingBackend counts Info calls per shard.
type countingBackend struct {
	*agent.FileBackend
	mu    sync.Mutex
	infos map[string]int
}

func (c *countingBackend) Info(uid string) (agent.Info, error) {
	c.mu.Lock()
	c.infos[uid]++
	c.mu.Unlock()
	return c.FileBackend.Info(uid)
}

func (c *countingBackend) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.infos
	c.infos = map[string]int{}
	return out
}

// After a state change the agent looks only at the shards the change
// touched; a full pass (a kick) still looks at every shard and repairs one
// changed behind its back.
func TestReconcileAfterAChangeLooksOnlyAtWhatChanged(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	fb, dir := newBackend(t, nil)
	b := &countingBackend{FileBackend: fb, infos: map[string]int{}}
	a := agent.New(agent.Config{NodeUID: 1, FSM: l.f, Backend: b, Scale: testScale, Resync: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, 10*time.Second, func() error { return holdsExactly(fb, dir, l.shardsOn(1)) })
	old := l.shardsOn(1)

	b.reset()
	later := l.createBDB(t, fsm.BDB{Name: "later", MemorySize: 4 << 20, ShardsCount: 1, DataPersistence: fsm.PersistenceDisabled}, []int{1})
	eventually(t, 10*time.Second, func() error { return holdsExactly(fb, dir, l.shardsOn(1)) })
	seen := b.reset()
	for uid := range old {
		if seen[uid] > 0 {
			t.Errorf("a database created elsewhere had the agent look at unchanged shard %s %d times", uid, seen[uid])
		}
	}

	// A role changed behind the agent's back is repaired by a full pass.
	var victim string
	for uid, sh := range old {
		if sh.Role == fsm.RoleMaster {
			victim = uid
			break
		}
	}
	if err := fb.SwitchRole(t.Context(), victim, fsm.RoleSlave); err != nil {
		t.Fatal(err)
	}
	a.Kick()
	eventually(t, 10*time.Second, func() error {
		if err := holdsExactly(fb, dir, l.shardsOn(1)); err != nil {
			return fmt.Errorf("after a kick: %w", err)
		}
		return nil
	})
	if seen := b.reset(); seen[victim] == 0 {
		t.Errorf("the kick's pass did not look at shard %s", victim)
	}

	// A deleted database's shards leave at the pass after the change, not
	// at the next full one (an hour away).
	l.apply(t, &fsm.DeleteBDB{UID: later})
	eventually(t, 10*time.Second, func() error { return holdsExactly(fb, dir, l.shardsOn(1)) })
}
