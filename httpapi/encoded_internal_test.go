package httpapi

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"cnm/fsm"
)

// The cached list is byte for byte what encoding the views at once gives,
// through every change the FSM makes (a record replaced by a changed copy,
// records added, dropped and reordered).
func TestRecordCache_MatchesPlainEncoding(t *testing.T) {
	c := newRecordCache(func(sh *fsm.Shard) any { return viewShard(sh) })
	a := &fsm.Shard{UID: "1", BDBUID: 1, NodeUID: 1, Role: fsm.RoleMaster, Status: fsm.ShardActive, AssignedSlots: "0-8191"}
	b := &fsm.Shard{UID: "2", BDBUID: 1, NodeUID: 2, Role: fsm.RoleSlave, Status: fsm.ShardActive, AssignedSlots: "0-8191"}
	moved := *b
	moved.NodeUID, moved.Role = 3, fsm.RoleMaster
	d := &fsm.Shard{UID: "3", BDBUID: 2, NodeUID: 1, Role: fsm.RoleMaster, Status: fsm.ShardSyncing, AssignedSlots: "<&>"}
	for _, tc := range []struct {
		name string
		recs []*fsm.Shard
	}{
		{"empty", nil},
		{"first list", []*fsm.Shard{a, b}},
		{"the same again", []*fsm.Shard{a, b}},
		{"one replaced by a changed copy", []*fsm.Shard{a, &moved}},
		{"one added, with characters JSON escapes", []*fsm.Shard{a, &moved, d}},
		{"reordered and one dropped", []*fsm.Shard{d, a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			views := []shardView{}
			for _, r := range tc.recs {
				views = append(views, viewShard(r))
			}
			want, err := json.Marshal(views)
			if err != nil {
				t.Fatal(err)
			}
			parts, err := c.list(tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			writeList(w, "", parts, "")
			got := strings.TrimSuffix(w.Body.String(), "\n")
			if string(got) != string(want) {
				t.Fatalf("list = %s\nwant   %s", got, want)
			}
			if n := len(*c.cur.Load()); n != len(tc.recs) {
				t.Fatalf("cache holds %d records after a list of %d", n, len(tc.recs))
			}
		})
	}
}
