package clustertest_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

type shard struct {
	UID     string `json:"uid"`
	BDBUID  int    `json:"bdb_uid"`
	NodeUID string `json:"node_uid"`
	Role    string `json:"role"`
	Slots   string `json:"assigned_slots"`
}

type bdb struct {
	UID       int    `json:"uid"`
	Name      string `json:"name"`
	ShardList []int  `json:"shard_list"`
	Endpoints []struct {
		NodeUID string `json:"node_uid"`
	} `json:"endpoints"`
}

// filesOn lists the shard uids whose data files are in node uid's data dir,
// and whether each has a persistence file.
func filesOn(c *clustertest.Cluster, uid int) (data []string, persisted map[string]bool) {
	dir := filepath.Join(c.Member(uid).Cfg.DataDir, "shards")
	entries, _ := os.ReadDir(dir)
	persisted = map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		switch filepath.Ext(name) {
		case ".data":
			data = append(data, strings.TrimSuffix(name, ".data"))
		case ".rdb", ".aof":
			persisted[strings.TrimSuffix(name, filepath.Ext(name))] = true
		}
	}
	sort.Strings(data)
	return data, persisted
}

// expectFiles polls until every node's shard files are exactly what the
// state assigns to it (with persistence files when persist is true).
func expectFiles(t *testing.T, c *clustertest.Cluster, via int, persist bool) []shard {
	t.Helper()
	var shards []shard
	clustertest.Eventually(t, 10*time.Second, func() error {
		r, err := c.Do(via, "GET", "/v1/shards", nil)
		if err != nil {
			return err
		}
		shards = nil
		if err := jsonUnmarshal(r.Body, &shards); err != nil {
			return err
		}
		for _, uid := range c.Running() {
			var want []string
			for _, s := range shards {
				if s.NodeUID == strconv.Itoa(uid) {
					want = append(want, s.UID)
				}
			}
			sort.Strings(want)
			got, pers := filesOn(c, uid)
			if !slices.Equal(got, want) {
				return fmt.Errorf("node %d holds shard files %v, state assigns %v", uid, got, want)
			}
			for _, id := range want {
				if persist && !pers[id] {
					return fmt.Errorf("node %d: shard %s has no persistence file", uid, id)
				}
			}
		}
		return nil
	})
	return shards
}

func TestBDB_ShardFilesFollowTheStateOnEveryNode(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	via := followers(c, leader)[0]
	var b bdb
	c.MustDo(via, "POST", "/v1/bdbs", map[string]any{"name": "db1", "memory_size": 6 << 30, "shards_count": 3,
		"replication": true, "data_persistence": "snapshot"}, http.StatusOK).JSON(t, &b)
	if len(b.ShardList) != 6 || len(b.Endpoints) != 1 {
		t.Fatalf("created %+v, want 6 shards and one endpoint", b)
	}
	shards := expectFiles(t, c, leader, true)
	masters := map[string]string{}
	for _, s := range shards {
		if s.Role == "master" {
			masters[s.Slots] = s.NodeUID
		}
	}
	for _, s := range shards {
		if s.Role == "slave" && masters[s.Slots] == s.NodeUID {
			t.Fatalf("shard %s shares node %s with its master", s.UID, s.NodeUID)
		}
	}
	hostsMaster := false
	for _, n := range masters {
		hostsMaster = hostsMaster || n == b.Endpoints[0].NodeUID
	}
	if !hostsMaster {
		t.Fatalf("endpoint on node %s, which hosts no master of the database", b.Endpoints[0].NodeUID)
	}

	c.MustDo(via, "DELETE", "/v1/bdbs/"+strconv.Itoa(b.UID), nil, http.StatusOK)
	if got := expectFiles(t, c, leader, false); len(got) != 0 {
		t.Fatalf("shards left after delete: %v", got)
	}
}

func TestBDB_RestartedNodeReconcilesItsFiles(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	victim := followers(c, leader)[0]
	var first bdb
	c.MustDo(leader, "POST", "/v1/bdbs", map[string]any{"name": "old", "memory_size": 3 << 30, "shards_count": 3,
		"replication": true}, http.StatusOK).JSON(t, &first)
	expectFiles(t, c, leader, false)
	c.Kill(victim)
	c.MustDo(leader, "DELETE", "/v1/bdbs/"+strconv.Itoa(first.UID), nil, http.StatusOK)
	c.MustDo(leader, "POST", "/v1/bdbs", map[string]any{"name": "new", "memory_size": 2 << 30, "shards_count": 2}, http.StatusOK)
	if got, _ := filesOn(c, victim); len(got) == 0 {
		t.Fatal("the stopped node held no files of the deleted database; the test proves nothing")
	}
	c.StartNode(victim)
	expectFiles(t, c, leader, false)
}

func TestBDB_TooBigIs406AndStoresNothing(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	r := c.MustDo(followers(c, leader)[0], "POST", "/v1/bdbs", map[string]any{"name": "huge",
		"memory_size": int64(200) << 30, "shards_count": 2, "replication": true}, http.StatusNotAcceptable)
	if r.ErrorCode() != "insufficient_resources" || !strings.Contains(string(r.Body), "memory") {
		t.Fatalf("answer %s does not name the missing memory", r.Body)
	}
	var bs []bdb
	c.MustDo(leader, "GET", "/v1/bdbs", nil, http.StatusOK).JSON(t, &bs)
	var ss []shard
	c.MustDo(leader, "GET", "/v1/shards", nil, http.StatusOK).JSON(t, &ss)
	if len(bs) != 0 || len(ss) != 0 {
		t.Fatalf("a refused database left %v and shards %v", bs, ss)
	}
}

func TestLiveness_SilentNodeIsDownThenActiveAgain(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(10 * time.Second)
	victim := followers(c, leader)[0]
	status := func(want string) func() error {
		return func() error {
			var n node
			r, err := c.Do(leader, "GET", "/v1/nodes/"+strconv.Itoa(victim), nil)
			if err != nil {
				return err
			}
			if err := jsonUnmarshal(r.Body, &n); err != nil {
				return err
			}
			if n.Status != want {
				return fmt.Errorf("node %d is %q, want %q", victim, n.Status, want)
			}
			return nil
		}
	}
	c.Kill(victim)
	clustertest.Eventually(t, 10*time.Second, status("down"))
	// A down node receives no shards.
	var b bdb
	c.MustDo(leader, "POST", "/v1/bdbs", map[string]any{"name": "d", "memory_size": 1 << 30, "shards_count": 4}, http.StatusOK).JSON(t, &b)
	var ss []shard
	c.MustDo(leader, "GET", "/v1/shards", nil, http.StatusOK).JSON(t, &ss)
	for _, s := range ss {
		if s.NodeUID == strconv.Itoa(victim) {
			t.Fatalf("shard %s placed on down node %d", s.UID, victim)
		}
	}
	c.StartNode(victim)
	clustertest.Eventually(t, 10*time.Second, status("active"))
}
