package proxy

import (
	"errors"
	"reflect"
	"testing"
)

func TestSlotVectors(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"123456789", 12739}, // the CRC16/XMODEM check value 0x31C3, mod 16384
		{"foo", 12182},
		{"", 0},
		{"{user1000}.following", Slot([]byte("user1000"))},
		{"{}foo", Slot([]byte("{}foo"))}, // empty tag: whole key hashed
		{"foo{}{bar}", Slot([]byte("foo{}{bar}"))},
		{"foo{{bar}}", Slot([]byte("{bar"))},
		{"foo{bar}{zap}", Slot([]byte("bar"))},
	} {
		if got := Slot([]byte(tc.key)); got != tc.want {
			t.Errorf("Slot(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
	if Slot([]byte("{user1000}.following")) != Slot([]byte("{user1000}.followers")) {
		t.Error("keys sharing a hash tag must share a slot")
	}
}

func TestParseSlotRanges(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []SlotRange
		wantErr bool
	}{
		{in: "0-8191", want: []SlotRange{{0, 8191}}},
		{in: "0-100,200-300 5", want: []SlotRange{{0, 100}, {200, 300}, {5, 5}}},
		{in: "", want: []SlotRange{}},
		{in: "8192-16384", wantErr: true},
		{in: "10-5", wantErr: true},
		{in: "x-5", wantErr: true},
		{in: "-1", wantErr: true},
	} {
		got, err := ParseSlotRanges(tc.in)
		if tc.wantErr {
			if !errors.Is(err, ErrBadTable) {
				t.Errorf("ParseSlotRanges(%q) error = %v, want ErrBadTable", tc.in, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSlotRanges(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestTableRefusesOverlapsAndBadShards(t *testing.T) {
	for name, shards := range map[string][]Shard{
		"overlap":     {{ID: "a", Master: "x:1", Slots: []SlotRange{{0, 10}}}, {ID: "b", Master: "y:1", Slots: []SlotRange{{10, 20}}}},
		"duplicate":   {{ID: "a", Master: "x:1"}, {ID: "a", Master: "y:1"}},
		"no master":   {{ID: "a"}},
		"bad range":   {{ID: "a", Master: "x:1", Slots: []SlotRange{{5, 1}}}},
		"out of span": {{ID: "a", Master: "x:1", Slots: []SlotRange{{0, NumSlots}}}},
	} {
		if _, err := newRouter(shards); !errors.Is(err, ErrBadTable) {
			t.Errorf("%s: error = %v, want ErrBadTable", name, err)
		}
	}
}
