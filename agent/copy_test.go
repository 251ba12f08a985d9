package agent_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

func TestCopyMakesTargetHoldByteIdenticalShard(t *testing.T) {
	ca := newCA(t)
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	cases := []struct {
		uid  string
		size int64
	}{
		{"1", 0},
		{"2", 1},
		{"3", 32 << 10},
		{"4", 300_001},
		{"5", 2 << 20},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dB", c.size), func(t *testing.T) {
			materialise(t, src.backend, agent.Spec{UID: c.uid, BDB: 3, Role: fsm.RoleMaster, Size: c.size})
			srcInfo, err := src.backend.Info(c.uid)
			if err != nil {
				t.Fatal(err)
			}
			spec := agent.Spec{UID: c.uid, BDB: 3, Role: fsm.RoleSlave, Size: c.size, Persistence: fsm.PersistenceSnapshot}
			got, err := src.client.Copy(t.Context(), dst.addr, spec, src.addr, agent.Op{})
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			want := agent.Info{UID: c.uid, BDB: 3, Role: fsm.RoleSlave, Size: c.size, Checksum: srcInfo.Checksum, InSync: true}
			if got != want {
				t.Errorf("Copy answered %+v\nwant          %+v", got, want)
			}
			if local, err := dst.backend.Info(c.uid); err != nil || local != want {
				t.Errorf("target Info = %+v, %v\nwant         %+v", local, err, want)
			}
			srcBytes := readFile(t, src.dataPath(c.uid))
			dstBytes := readFile(t, dst.dataPath(c.uid))
			if !bytes.Equal(srcBytes, dstBytes) {
				t.Errorf("target data differs from source data")
			}
			if sha(dstBytes) != srcInfo.Checksum {
				t.Errorf("target data sha256 %s, want %s", sha(dstBytes), srcInfo.Checksum)
			}
			// The source keeps its copy; dropping it is a separate step.
			if _, err := src.backend.Info(c.uid); err != nil {
				t.Errorf("source lost its copy: %v", err)
			}
		})
	}
}

func TestCopyOfCorruptSourceFailsWithErrChecksumAndLeavesNothing(t *testing.T) {
	ca := newCA(t)
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	const size = 200_000
	cases := []struct {
		uid    string
		offset int64
	}{
		{"10", 0},
		{"11", size / 2},
		{"12", size - 1},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("byte %d", c.offset), func(t *testing.T) {
			materialise(t, src.backend, agent.Spec{UID: c.uid, Role: fsm.RoleMaster, Size: size})
			flipByte(t, src.dataPath(c.uid), c.offset)
			_, err := src.client.Copy(t.Context(), dst.addr, agent.Spec{UID: c.uid, Role: fsm.RoleSlave, Size: size}, src.addr, agent.Op{})
			if !errors.Is(err, agent.ErrChecksum) {
				t.Fatalf("Copy of corrupt shard: %v, want ErrChecksum", err)
			}
			if files := shardFiles(t, dst.dir, c.uid); len(files) != 0 {
				t.Errorf("target kept %v", files)
			}
			if _, err := dst.backend.Info(c.uid); !errors.Is(err, agent.ErrNoShard) {
				t.Errorf("target Info: %v, want ErrNoShard", err)
			}
			if _, err := src.client.Info(t.Context(), dst.addr, c.uid); !errors.Is(err, agent.ErrNoShard) {
				t.Errorf("target Info over the API: %v, want ErrNoShard", err)
			}
		})
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// dyingSource wraps an agent handler: while armed, a shard data stream is
// cut after limit bytes by closing the connection under it, as a node that
// dies mid-copy would.
type dyingSource struct {
	armed atomic.Bool
	limit int
	cuts  atomic.Int32
}

func (d *dyingSource) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.armed.Load() && strings.HasSuffix(r.URL.Path, "/data") {
			w = &cutWriter{ResponseWriter: w, left: d.limit, onCut: func() { d.cuts.Add(1) }}
		}
		h.ServeHTTP(w, r)
	})
}

type cutWriter struct {
	http.ResponseWriter
	left  int
	dead  bool
	onCut func()
}

var errSourceDied = errors.New("source died")

func (w *cutWriter) Write(p []byte) (int, error) {
	if w.dead {
		return 0, errSourceDied
	}
	if len(p) <= w.left {
		w.left -= len(p)
		return w.ResponseWriter.Write(p)
	}
	n, _ := w.ResponseWriter.Write(p[:w.left])
	w.left = 0
	w.dead = true
	w.onCut()
	rc := http.NewResponseController(w.ResponseWriter)
	_ = rc.Flush()
	if conn, _, err := rc.Hijack(); err == nil {
		conn.Close()
	}
	return n, errSourceDied
}

func (w *cutWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestCopyFromSourceThatDiesMidStreamLeavesNothingAndCanBeRetried(t *testing.T) {
	ca := newCA(t)
	dying := &dyingSource{limit: 150_000}
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{wrap: dying.wrap})
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	const size = 600_000
	materialise(t, src.backend, agent.Spec{UID: "20", Role: fsm.RoleMaster, Size: size})
	spec := agent.Spec{UID: "20", Role: fsm.RoleSlave, Size: size}

	dying.armed.Store(true)
	_, err := src.client.Copy(t.Context(), dst.addr, spec, src.addr, agent.Op{})
	if err == nil {
		t.Fatal("Copy succeeded although the source died mid-stream")
	}
	if dying.cuts.Load() != 1 {
		t.Fatalf("the source stream was cut %d times, want 1 (copy error: %v)", dying.cuts.Load(), err)
	}
	if files := shardFiles(t, dst.dir, "20"); len(files) != 0 {
		t.Errorf("target kept %v after the failed copy", files)
	}
	if tmps := tmpFiles(t, dst.dir); len(tmps) != 0 {
		t.Errorf("target kept temporary files %v", tmps)
	}
	if uids := listShards(t, dst.backend); len(uids) != 0 {
		t.Errorf("target lists %v", uids)
	}

	// The source comes back: the same copy now succeeds.
	dying.armed.Store(false)
	info, err := src.client.Copy(t.Context(), dst.addr, spec, src.addr, agent.Op{})
	if err != nil {
		t.Fatalf("Copy after the source came back: %v", err)
	}
	want := readFile(t, src.dataPath("20"))
	if got := readFile(t, dst.dataPath("20")); !bytes.Equal(got, want) {
		t.Errorf("retried copy differs from the source")
	}
	if info.Checksum != sha(want) || info.Size != size {
		t.Errorf("retried copy reports %+v", info)
	}
}

func TestCopyOfShardMissingOnSourceIsErrNoShard(t *testing.T) {
	ca := newCA(t)
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	_, err := src.client.Copy(t.Context(), dst.addr, agent.Spec{UID: "404", Role: fsm.RoleSlave}, src.addr, agent.Op{})
	if !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("Copy of a shard the source lacks: %v, want ErrNoShard", err)
	}
	if names := dirNames(t, dst.dir); len(names) != 0 {
		t.Errorf("target holds %v", names)
	}
}

func TestCopyRequestNotMatchingItsPathIsRefused(t *testing.T) {
	ca := newCA(t)
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	materialise(t, src.backend, agent.Spec{UID: "1", Role: fsm.RoleMaster, Size: 100})
	materialise(t, src.backend, agent.Spec{UID: "2", Role: fsm.RoleMaster, Size: 100})
	cases := []struct {
		name, path, body string
	}{
		{"spec of another shard", "/shards/1/copy", `{"spec":{"uid":"2","role":"slave"},"source":"` + src.addr + `"}`},
		{"no source", "/shards/1/copy", `{"spec":{"uid":"1","role":"slave"}}`},
		{"unknown field", "/shards/1/copy", `{"spec":{"uid":"1"},"source":"` + src.addr + `","extra":1}`},
		{"not json", "/shards/1/copy", `copy please`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := src.http.Post("https://"+dst.addr+agent.Prefix+c.path, "application/json", strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("answered %s, want 400", resp.Status)
			}
		})
	}
	if names := dirNames(t, dst.dir); len(names) != 0 {
		t.Errorf("target holds %v", names)
	}
}

func TestClientManagesShardsOnRemoteAgent(t *testing.T) {
	ca := newCA(t)
	caller := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	remote := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	ctx := t.Context()
	materialise(t, remote.backend, agent.Spec{UID: "1", BDB: 1, Role: fsm.RoleMaster, Size: 1000})
	materialise(t, remote.backend, agent.Spec{UID: "2", BDB: 1, Role: fsm.RoleSlave, Size: 1000})

	list, err := caller.client.List(ctx, remote.addr)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v; want 2 shards", list, err)
	}
	// Shard files are no processes: nothing for the leader's stats poll.
	if stats, err := caller.client.Stats(ctx, remote.addr); err != nil || len(stats) != 0 {
		t.Fatalf("Stats = %+v, %v; want none from the file backend", stats, err)
	}
	if err := caller.client.SwitchRole(ctx, remote.addr, "2", fsm.RoleMaster); err != nil {
		t.Fatalf("SwitchRole: %v", err)
	}
	if err := caller.client.Persist(ctx, remote.addr, "2", "aof"); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	info, err := caller.client.Info(ctx, remote.addr, "2")
	if err != nil || info.Role != fsm.RoleMaster || !info.Persisted {
		t.Errorf("Info after SwitchRole and Persist = %+v, %v", info, err)
	}
	if err := caller.client.Persist(ctx, remote.addr, "2", "bogus"); err == nil {
		t.Errorf("Persist with unknown mode accepted")
	}
	if err := caller.client.SwitchRole(ctx, remote.addr, "9", fsm.RoleMaster); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("SwitchRole of missing shard: %v, want ErrNoShard", err)
	}
	for range 2 {
		if err := caller.client.Drop(ctx, remote.addr, "2"); err != nil {
			t.Fatalf("Drop: %v", err)
		}
	}
	if files := shardFiles(t, remote.dir, "2"); len(files) != 0 {
		t.Errorf("remote kept %v after Drop", files)
	}
	if _, err := caller.client.Info(ctx, remote.addr, "2"); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("Info after Drop: %v, want ErrNoShard", err)
	}
}

func TestAgentAPIRefusesClientsWithoutNodeCertificate(t *testing.T) {
	ca := newCA(t)
	remote := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	materialise(t, remote.backend, agent.Spec{UID: "1", Role: fsm.RoleMaster, Size: 100})

	foreign := nodeMaterial(t, newCA(t), 1, "127.0.0.21")
	foreignCert, err := tls.X509KeyPair(foreign.CertPEM, foreign.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no certificate", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}},
		{"no certificate, TLS 1.2", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}},
		{"certificate of another CA", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{foreignCert}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hc := httpClient(t, c.cfg)
			for _, path := range []string{"/shards", "/shards/1/data"} {
				resp, err := hc.Get("https://" + remote.addr + agent.Prefix + path)
				if err == nil {
					resp.Body.Close()
					t.Errorf("GET %s answered %s", path, resp.Status)
				}
			}
			if _, err := agent.NewClient(hc).List(t.Context(), remote.addr); err == nil {
				t.Errorf("Client.List succeeded")
			}
		})
	}

	// A node of the cluster gets through.
	node := nodeHTTPClient(t, nodeMaterial(t, ca, 1, "127.0.0.21"))
	if list, err := agent.NewClient(node).List(t.Context(), remote.addr); err != nil || len(list) != 1 {
		t.Errorf("List with a node certificate = %+v, %v", list, err)
	}
}

// timedCopy runs one copy of a size-byte shard from src to dst and returns
// how long it took.
func timedCopy(t *testing.T, src, dst *peer, uid string, size int64) time.Duration {
	t.Helper()
	materialise(t, src.backend, agent.Spec{UID: uid, Role: fsm.RoleMaster, Size: size})
	start := time.Now()
	info, err := src.client.Copy(t.Context(), dst.addr, agent.Spec{UID: uid, Role: fsm.RoleSlave, Size: size}, src.addr, agent.Op{})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if want := readFile(t, src.dataPath(uid)); info.Checksum != sha(want) || !bytes.Equal(readFile(t, dst.dataPath(uid)), want) {
		t.Fatalf("copy differs from the source")
	}
	return elapsed
}

func TestCopyHonoursMigrationRate(t *testing.T) {
	const (
		rate  = 512 << 10 // bytes per second
		size  = 1 << 20
		burst = 64 << 10 // what NewLimiter lets through at once
	)
	minLimited := time.Duration(float64(size-burst) / rate * 0.9 * float64(time.Second))
	cases := []struct {
		name string
		opts func() (src, dst peerOpts)
	}{
		{"receiver", func() (peerOpts, peerOpts) {
			return peerOpts{}, peerOpts{recvLimiter: agent.NewLimiter(rate)}
		}},
		{"sender", func() (peerOpts, peerOpts) {
			return peerOpts{sendLimiter: agent.NewLimiter(rate)}, peerOpts{}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ca := newCA(t)
			freeSrc := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
			freeDst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
			so, do := c.opts()
			capSrc := startPeer(t, ca, 3, "127.0.0.23", so)
			capDst := startPeer(t, ca, 4, "127.0.0.24", do)

			unlimited := timedCopy(t, freeSrc, freeDst, "1", size)
			limited := timedCopy(t, capSrc, capDst, "1", size)
			t.Logf("%d bytes: unlimited %v, capped at %d B/s %v", size, unlimited, rate, limited)
			if limited < minLimited {
				t.Errorf("capped copy took %v, want at least %v", limited, minLimited)
			}
			if limited < 3*unlimited {
				t.Errorf("capped copy (%v) is not clearly slower than an uncapped one (%v)", limited, unlimited)
			}
		})
	}
}

func TestCopy_OpLogRecordsTheActionStepAndTerm(t *testing.T) {
	ca := newCA(t)
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	spec := agent.Spec{UID: "31", BDB: 1, Role: fsm.RoleSlave, Size: 4096}
	if err := src.backend.Materialise(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	op := agent.Op{TaskID: "task-1", Step: 3, Term: 7}
	if _, err := src.client.Copy(t.Context(), dst.addr, spec, src.addr, op); err != nil {
		t.Fatal(err)
	}
	ops, err := src.client.Ops(t.Context(), dst.addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].Op != op || ops[0].Kind != "copy" || ops[0].Shard != "31" || ops[0].From != src.addr {
		t.Fatalf("op log %+v", ops)
	}
	if got, _ := src.client.Ops(t.Context(), src.addr); len(got) != 0 {
		t.Fatalf("the source logged %+v for a copy it only sent", got)
	}
}

func TestCopy_ReplayedStepDoesNotCopyAgainAndDeposedLeaderIsRefused(t *testing.T) {
	ca := newCA(t)
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	spec := agent.Spec{UID: "32", BDB: 1, Role: fsm.RoleSlave, Size: 4096}
	if err := src.backend.Materialise(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	// The leader of term 4 copies step 2 and replays it (its answer was
	// lost); the leader of term 5 replays it too, and copies for itself: it
	// never takes a deposed leader's result for its own.
	for _, term := range []uint64{4, 4, 5} {
		if _, err := src.client.Copy(t.Context(), dst.addr, spec, src.addr, agent.Op{TaskID: "t", Step: 2, Term: term}); err != nil {
			t.Fatalf("copy under term %d: %v", term, err)
		}
	}
	ops, err := src.client.Ops(t.Context(), dst.addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 2 || ops[0].Term != 4 || ops[1].Term != 5 {
		t.Fatalf("op log %+v, want one copy of term 4 and one of term 5", ops)
	}
	// A late request of term 3 comes from a deposed leader.
	_, err = src.client.Copy(t.Context(), dst.addr, spec, src.addr, agent.Op{TaskID: "t", Step: 3, Term: 3})
	if !errors.Is(err, agent.ErrStaleTerm) {
		t.Fatalf("copy from a deposed leader: %v, want ErrStaleTerm", err)
	}
}

// TestCopy_LeaderDeposedWhileItsCopyIsInFlightLeavesNothing: the fence is
// checked when the copy becomes visible, not only when it is requested. A
// copy of term 5 that is still streaming when a request of term 6 arrives
// ends with ErrStaleTerm and installs nothing; the term-6 leader's own
// request then copies for itself.
func TestCopy_LeaderDeposedWhileItsCopyIsInFlightLeavesNothing(t *testing.T) {
	ca := newCA(t)
	src := startPeer(t, ca, 1, "127.0.0.21", peerOpts{})
	// 256 KiB/s: the copy of 512 KiB streams for about two seconds.
	dst := startPeer(t, ca, 2, "127.0.0.22", peerOpts{recvLimiter: agent.NewLimiter(256 << 10)})
	spec := agent.Spec{UID: "33", BDB: 1, Role: fsm.RoleSlave, Size: 512 << 10}
	materialise(t, src.backend, spec)

	old := make(chan error, 1)
	go func() {
		_, err := src.client.Copy(t.Context(), dst.addr, spec, src.addr, agent.Op{TaskID: "t", Step: 2, Term: 5})
		old <- err
	}()
	// In flight: its temporary file is on the target.
	eventually(t, 5*time.Second, func() error {
		if len(tmpFiles(t, dst.dir)) == 0 {
			return errors.New("the term-5 copy has not started streaming")
		}
		return nil
	})
	// The leader of term 6 reaches the agent about the same action (a
	// request that fails at once: the source lacks that shard).
	if _, err := src.client.Copy(t.Context(), dst.addr, agent.Spec{UID: "404", Role: fsm.RoleSlave}, src.addr, agent.Op{TaskID: "t", Step: 2, Term: 6}); !errors.Is(err, agent.ErrNoShard) {
		t.Fatalf("term-6 request: %v, want ErrNoShard", err)
	}
	select {
	case err := <-old:
		if !errors.Is(err, agent.ErrStaleTerm) {
			t.Fatalf("the term-5 copy ended with %v, want ErrStaleTerm", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the term-5 copy did not end")
	}
	if files := shardFiles(t, dst.dir, spec.UID); len(files) != 0 {
		t.Fatalf("the deposed leader's copy left %v on the target", files)
	}

	if _, err := src.client.Copy(t.Context(), dst.addr, spec, src.addr, agent.Op{TaskID: "t", Step: 2, Term: 6}); err != nil {
		t.Fatalf("term-6 copy: %v", err)
	}
	if !bytes.Equal(readFile(t, dst.dataPath(spec.UID)), readFile(t, src.dataPath(spec.UID))) {
		t.Error("the term-6 copy differs from the source")
	}
	ops, err := src.client.Ops(t.Context(), dst.addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].Term != 6 || ops[0].Shard != spec.UID {
		t.Errorf("op log %+v, want only the copy of term 6", ops)
	}
}
