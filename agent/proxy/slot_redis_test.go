package proxy

import (
	"context"
	"testing"
)

// TestSlotMatchesRedis asks a cluster-enabled redis-server for the slot of
// keys that exercise every hash-tag rule, so the function is checked
// against the implementation clients are written for.
func TestSlotMatchesRedis(t *testing.T) {
	rs := startRedis(t, "--cluster-enabled", "yes")
	keys := []string{"123456789", "foo", "bar", "", "{user1000}.following",
		"{user1000}.followers", "{}foo", "foo{}{bar}", "foo{{bar}}", "foo{bar}{zap}",
		"{", "}", "a{b", "a}b{c}", "\x00\xff", "a much longer key with spaces and ünïcode"}
	for i := range 200 {
		keys = append(keys, string(rune('a'+i%26))+string(rune(i)))
	}
	for _, k := range keys {
		want, err := rs.Client.ClusterKeySlot(context.Background(), k).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", k, err)
		}
		if got := Slot([]byte(k)); int64(got) != want {
			t.Errorf("Slot(%q) = %d, redis says %d", k, got, want)
		}
	}
}
