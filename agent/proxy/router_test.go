package proxy

import (
	"errors"
	"testing"
)

func TestRouterRoutesHoldsAndRefuses(t *testing.T) {
	r, err := newRouter([]Shard{
		{ID: "s0", Master: "m0:1", Slots: []SlotRange{{0, 99}}},
		{ID: "s1", Master: "m1:1", Slots: []SlotRange{{100, 199}, {300, 399}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		slots    []int
		wantAddr string
		wantErr  string
	}{
		{"one slot", []int{5}, "m0:1", ""},
		{"second range", []int{350}, "m1:1", ""},
		{"slots of one shard", []int{150, 399}, "m1:1", ""},
		{"slots of two shards", []int{5, 150}, "", string(errCrossSlot)},
		{"unowned slot", []int{250}, "", "CLUSTERDOWN Hash slot 250 not served"},
	} {
		got, held, _, err := r.route(tc.slots)
		if held {
			t.Errorf("%s: held with no mark", tc.name)
		}
		if tc.wantErr != "" {
			var re replyError
			if !errors.As(err, &re) || string(re) != tc.wantErr {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.addr != tc.wantAddr {
			t.Errorf("%s: routed to %q, %v; want %q", tc.name, got.addr, err, tc.wantAddr)
		}
	}

	ranges, ok := r.shardSlots("s1")
	if !ok || len(ranges) != 2 {
		t.Fatalf("shardSlots(s1) = %v, %v", ranges, ok)
	}
	sw, err := r.mark(ranges)
	if err != nil {
		t.Fatal(err)
	}
	_, held, changed, _ := r.route([]int{350})
	if !held {
		t.Fatal("a marked slot is not held")
	}
	if _, held, _, _ := r.route([]int{5}); held {
		t.Fatal("an unmarked slot is held")
	}
	sw.Done()
	select {
	case <-changed:
	default:
		t.Fatal("lifting the mark did not wake held commands")
	}
	if _, held, _, _ := r.route([]int{350}); held {
		t.Fatal("slot still held after Done")
	}

	_, _, changed, _ = r.route([]int{5})
	if err := r.replace([]Shard{{ID: "s0", Master: "m2:1", Slots: []SlotRange{{0, 16383}}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("replacing the table did not wake held commands")
	}
	if got, _, _, _ := r.route([]int{5, 350}); got.addr != "m2:1" {
		t.Fatalf("after replace routed to %q, want m2:1", got.addr)
	}
	if m := r.masters(); len(m) != 1 || m[0] != "m2:1" {
		t.Fatalf("masters() = %v", m)
	}
}
