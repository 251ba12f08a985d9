package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

func TestFileBackendMaterialiseWritesDataFileOfExactSizeDerivedFromUID(t *testing.T) {
	sizes := []int64{0, 1, 7, 8, 13, 4096, 32<<10 - 1, 32 << 10, 32<<10 + 5, 100_003}
	for _, size := range sizes {
		t.Run(strconv.FormatInt(size, 10)+"B", func(t *testing.T) {
			b1, dir1 := newBackend(t, nil)
			b2, dir2 := newBackend(t, nil)
			materialise(t, b1, agent.Spec{UID: "42", BDB: 1, Role: fsm.RoleMaster, Size: size})
			materialise(t, b2, agent.Spec{UID: "42", BDB: 1, Role: fsm.RoleSlave, Size: size})
			materialise(t, b1, agent.Spec{UID: "43", BDB: 1, Role: fsm.RoleMaster, Size: size})

			d1 := readFile(t, filepath.Join(dir1, "42.data"))
			d2 := readFile(t, filepath.Join(dir2, "42.data"))
			other := readFile(t, filepath.Join(dir1, "43.data"))
			if int64(len(d1)) != size || int64(len(d2)) != size || int64(len(other)) != size {
				t.Fatalf("data files hold %d, %d, %d bytes, want %d", len(d1), len(d2), len(other), size)
			}
			if !bytes.Equal(d1, d2) {
				t.Errorf("shard 42 materialised in two directories differs")
			}
			if size >= 8 && bytes.Equal(d1, other) {
				t.Errorf("shards 42 and 43 hold the same %d bytes", size)
			}
			if size >= 64 && bytes.Count(d1, d1[:1]) == len(d1) {
				t.Errorf("shard data is one repeated byte")
			}
		})
	}
}

func TestFileBackendMaterialiseIsPrefixConsistentAcrossSizes(t *testing.T) {
	// The data is a stream seeded by the uid: a smaller shard of the same
	// uid holds a prefix of a larger one, whatever the chunking.
	long := shardData(t, "9", 70_001)
	for _, size := range []int64{1, 5, 8, 9, 32 << 10, 32<<10 + 3, 65_537} {
		if got := shardData(t, "9", size); !bytes.Equal(got, long[:size]) {
			t.Errorf("shard 9 of %d bytes is not a prefix of shard 9 of %d bytes", size, len(long))
		}
	}
}

func TestFileBackendInfoReportsSizeRoleAndChecksumOfFile(t *testing.T) {
	b, dir := newBackend(t, nil)
	specs := []agent.Spec{
		{UID: "1", BDB: 1, Role: fsm.RoleMaster, Size: 1000},
		{UID: "2", BDB: 7, Role: fsm.RoleSlave, Size: 65_536 + 3},
		{UID: "3", BDB: 7, Role: fsm.RoleMaster, Size: 0},
	}
	for _, s := range specs {
		materialise(t, b, s)
	}
	for _, s := range specs {
		t.Run(s.UID, func(t *testing.T) {
			info, err := b.Info(s.UID)
			if err != nil {
				t.Fatalf("Info: %v", err)
			}
			want := agent.Info{UID: s.UID, BDB: s.BDB, Role: s.Role, Size: s.Size,
				Checksum: fileSHA(t, filepath.Join(dir, s.UID+".data")), InSync: true}
			if info != want {
				t.Errorf("Info = %+v\nwant   %+v", info, want)
			}
		})
	}
}

func TestFileBackendInfoOfMissingShardIsErrNoShard(t *testing.T) {
	b, dir := newBackend(t, nil)
	if _, err := b.Info("5"); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("Info of unknown shard: %v, want ErrNoShard", err)
	}
	// Metadata without data is no shard either.
	materialise(t, b, agent.Spec{UID: "6", Role: fsm.RoleMaster, Size: 10})
	if err := os.Remove(filepath.Join(dir, "6.data")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Info("6"); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("Info of shard without data file: %v, want ErrNoShard", err)
	}
}

func TestFileBackendSwitchRolePersistsAcrossReopen(t *testing.T) {
	b, dir := newBackend(t, nil)
	materialise(t, b, agent.Spec{UID: "1", BDB: 2, Role: fsm.RoleMaster, Size: 2048})
	before, err := b.Info("1")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SwitchRole(t.Context(), "1", fsm.RoleSlave); err != nil {
		t.Fatalf("SwitchRole: %v", err)
	}
	reopened, err := agent.NewFileBackend(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	after, err := reopened.Info("1")
	if err != nil {
		t.Fatalf("Info after reopen: %v", err)
	}
	want := before
	want.Role = fsm.RoleSlave
	if after != want {
		t.Errorf("after SwitchRole and reopen: %+v\nwant %+v", after, want)
	}
	if err := reopened.SwitchRole(t.Context(), "missing", fsm.RoleMaster); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("SwitchRole of missing shard: %v, want ErrNoShard", err)
	}
	// Switched back and forth, the latest role holds; an unknown one is
	// refused and changes nothing.
	for _, role := range []string{fsm.RoleMaster, fsm.RoleSlave, fsm.RoleSlave, fsm.RoleMaster} {
		if err := reopened.SwitchRole(t.Context(), "1", role); err != nil {
			t.Fatal(err)
		}
		if info, err := reopened.Info("1"); err != nil || info.Role != role {
			t.Fatalf("after switching to %s: %+v, %v", role, info, err)
		}
	}
	if err := reopened.SwitchRole(t.Context(), "1", "primary"); err == nil {
		t.Error("a switch to role \"primary\" was accepted")
	}
	// A new copy's metadata holds its own role, whatever was switched
	// before it.
	materialise(t, reopened, agent.Spec{UID: "1", BDB: 2, Role: fsm.RoleSlave, Size: 2048})
	if info, err := reopened.Info("1"); err != nil || info.Role != fsm.RoleSlave {
		t.Errorf("a copy made as a replica after a switch to master: %+v, %v", info, err)
	}
	// A role file cut short is no role: the metadata's stands (a
	// reconcile then switches the shard to the state's role).
	if err := reopened.SwitchRole(t.Context(), "1", fsm.RoleMaster); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "1.role"), []byte("master\nslave \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if info, err := reopened.Info("1"); err != nil || info.Role != fsm.RoleSlave {
		t.Errorf("with a torn role file: %+v, %v; want the metadata's role, slave", info, err)
	}
	if err := reopened.SwitchRole(t.Context(), "1", fsm.RoleMaster); err != nil {
		t.Fatal(err)
	}
	if info, err := reopened.Info("1"); err != nil || info.Role != fsm.RoleMaster {
		t.Errorf("switched to master over a torn role file: %+v, %v", info, err)
	}
}

func TestFileBackendPersistWritesFileOfMode(t *testing.T) {
	cases := []struct {
		mode, ext, otherExt string
	}{
		{"snapshot", ".rdb", ".aof"},
		{"aof", ".aof", ".rdb"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			b, dir := newBackend(t, nil)
			materialise(t, b, agent.Spec{UID: "1", Role: fsm.RoleMaster, Size: 5000})
			if info, _ := b.Info("1"); info.Persisted {
				t.Fatalf("fresh shard reported persisted")
			}
			if err := b.Persist(t.Context(), "1", c.mode); err != nil {
				t.Fatalf("Persist(%s): %v", c.mode, err)
			}
			info, err := b.Info("1")
			if err != nil {
				t.Fatal(err)
			}
			if !info.Persisted {
				t.Errorf("Info.Persisted = false after Persist")
			}
			p := filepath.Join(dir, "1"+c.ext)
			if data := readFile(t, p); !strings.Contains(string(data), info.Checksum) {
				t.Errorf("%s does not name the data checksum %s: %q", p, info.Checksum, data)
			}
			if exists(t, filepath.Join(dir, "1"+c.otherExt)) {
				t.Errorf("Persist(%s) also wrote %s", c.mode, c.otherExt)
			}
			if got := tmpFiles(t, dir); len(got) != 0 {
				t.Errorf("temporary files left: %v", got)
			}
		})
	}
}

func TestFileBackendPersistRefusesUnknownMode(t *testing.T) {
	b, dir := newBackend(t, nil)
	materialise(t, b, agent.Spec{UID: "1", Role: fsm.RoleMaster, Size: 100})
	for _, mode := range []string{"", "disabled", "rdb", "AOF", "Snapshot", "snapshot "} {
		if err := b.Persist(t.Context(), "1", mode); !errors.Is(err, agent.ErrBadPersistence) {
			t.Errorf("Persist(%q): %v, want ErrBadPersistence", mode, err)
		}
	}
	if info, _ := b.Info("1"); info.Persisted {
		t.Errorf("shard persisted after refused modes")
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"1.data", "1.meta", "1.role"}) {
		t.Errorf("files after refused Persist: %v", got)
	}
	if err := b.Persist(t.Context(), "2", "snapshot"); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("Persist of missing shard: %v, want ErrNoShard", err)
	}
}

func TestFileBackendDropRemovesEveryFileAndIsIdempotent(t *testing.T) {
	b, dir := newBackend(t, nil)
	materialise(t, b, agent.Spec{UID: "1", Role: fsm.RoleMaster, Size: 3000})
	materialise(t, b, agent.Spec{UID: "11", Role: fsm.RoleMaster, Size: 3000})
	for _, mode := range []string{"snapshot", "aof"} {
		if err := b.Persist(t.Context(), "1", mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SwitchRole(t.Context(), "1", fsm.RoleSlave); err != nil {
		t.Fatal(err)
	}
	if got := shardFiles(t, dir, "1"); len(got) != 5 {
		t.Fatalf("shard 1 files before Drop: %v, want data, meta, role, rdb, aof", got)
	}
	for i := range 2 {
		if err := b.Drop(t.Context(), "1"); err != nil {
			t.Fatalf("Drop #%d: %v", i+1, err)
		}
		if got := shardFiles(t, dir, "1"); len(got) != 0 {
			t.Errorf("after Drop #%d shard 1 still has %v", i+1, got)
		}
		if _, err := b.Info("1"); !errors.Is(err, agent.ErrNoShard) {
			t.Errorf("Info after Drop: %v, want ErrNoShard", err)
		}
	}
	if err := b.Drop(t.Context(), "never-existed"); err != nil {
		t.Errorf("Drop of a shard that never existed: %v", err)
	}
	// Another shard whose uid starts alike is untouched.
	if got := listShards(t, b); !slices.Equal(got, []string{"11"}) {
		t.Errorf("List after Drop = %v, want [11]", got)
	}
	if _, err := b.Info("11"); err != nil {
		t.Errorf("shard 11 after dropping shard 1: %v", err)
	}
}

func TestFileBackendListReturnsEveryLocalShard(t *testing.T) {
	b, dir := newBackend(t, nil)
	if got := listShards(t, b); len(got) != 0 {
		t.Fatalf("List of empty backend = %v", got)
	}
	for _, uid := range []string{"1", "2", "10", "shard-x"} {
		materialise(t, b, agent.Spec{UID: uid, Role: fsm.RoleMaster, Size: 10})
	}
	// Files that are not shards are not listed.
	for _, junk := range []string{"README", "7.data", "8.rdb"} {
		if err := os.WriteFile(filepath.Join(dir, junk), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := listShards(t, b), []string{"1", "10", "2", "shard-x"}; !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if err := b.Drop(t.Context(), "2"); err != nil {
		t.Fatal(err)
	}
	if got, want := listShards(t, b), []string{"1", "10", "shard-x"}; !slices.Equal(got, want) {
		t.Errorf("List after Drop(2) = %v, want %v", got, want)
	}
}

func TestFileBackendRefusesUIDsThatAreNotPlainNames(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "shards")
	b, err := agent.NewFileBackend(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &bytesSource{fetchErr: errors.New("source must not be asked")}
	ctx := t.Context()
	for _, uid := range []string{"", ".", "..", "../escape", "a/b", "/abs", `a\b`, "x/../y", "..."} {
		t.Run(uid, func(t *testing.T) {
			if err := b.Materialise(ctx, agent.Spec{UID: uid, Role: fsm.RoleMaster, Size: 10}); err == nil {
				t.Errorf("Materialise(%q) accepted", uid)
			}
			if err := b.CopyFrom(ctx, agent.Spec{UID: uid, Role: fsm.RoleMaster}, src, nil); err == nil {
				t.Errorf("CopyFrom(%q) accepted", uid)
			} else if strings.Contains(err.Error(), "must not be asked") {
				t.Errorf("CopyFrom(%q) fetched from the source before refusing", uid)
			}
			if _, err := b.Info(uid); err == nil {
				t.Errorf("Info(%q) accepted", uid)
			}
			if err := b.SwitchRole(ctx, uid, fsm.RoleSlave); err == nil {
				t.Errorf("SwitchRole(%q) accepted", uid)
			}
			if err := b.Persist(ctx, uid, "snapshot"); err == nil {
				t.Errorf("Persist(%q) accepted", uid)
			}
			if err := b.Drop(ctx, uid); err == nil {
				t.Errorf("Drop(%q) accepted", uid)
			}
		})
	}
	if got := dirNames(t, parent); !slices.Equal(got, []string{"shards"}) {
		t.Errorf("files created next to the shard dir: %v", got)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("files created in the shard dir: %v", got)
	}
}

func TestNewFileBackendRemovesLeftoverTempFiles(t *testing.T) {
	b, dir := newBackend(t, nil)
	materialise(t, b, agent.Spec{UID: "1", BDB: 1, Role: fsm.RoleSlave, Size: 4096})
	if err := b.Persist(t.Context(), "1", "snapshot"); err != nil {
		t.Fatal(err)
	}
	before, _ := b.Info("1")
	leftovers := []string{"3.data.tmp", "3.meta.tmp", "1.data.tmp", "1.rdb.tmp", "1.meta.tmp", "x.tmp"}
	for _, name := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reopened, err := agent.NewFileBackend(dir, nil)
	if err != nil {
		t.Fatalf("NewFileBackend: %v", err)
	}
	if got := tmpFiles(t, dir); len(got) != 0 {
		t.Errorf("temporary files after NewFileBackend: %v", got)
	}
	after, err := reopened.Info("1")
	if err != nil || after != before {
		t.Errorf("shard 1 after reopen: %+v, %v; want %+v", after, err, before)
	}
	if got := listShards(t, reopened); !slices.Equal(got, []string{"1"}) {
		t.Errorf("List after reopen = %v, want [1]", got)
	}
}

// A data dir is any path the operator gives (--data-dir); glob
// metacharacters in it must not hide the shards.
func TestFileBackendWorksInDirWithGlobMetacharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node[1]", "shards")
	b, err := agent.NewFileBackend(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	materialise(t, b, agent.Spec{UID: "1", Role: fsm.RoleMaster, Size: 10})
	if got := listShards(t, b); !slices.Equal(got, []string{"1"}) {
		t.Errorf("List in %s = %v, want [1]", dir, got)
	}
	if err := os.WriteFile(filepath.Join(dir, "2.data.tmp"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.NewFileBackend(dir, nil); err != nil {
		t.Fatal(err)
	}
	if got := tmpFiles(t, dir); len(got) != 0 {
		t.Errorf("NewFileBackend in %s left temporary files %v", dir, got)
	}
}

func TestFileBackendCopyFromInstallsVerifiedData(t *testing.T) {
	data := shardData(t, "8", 70_000)
	b, dir := newBackend(t, nil)
	spec := agent.Spec{UID: "8", BDB: 4, Role: fsm.RoleSlave, Size: 1} // size comes from the source
	if err := b.CopyFrom(t.Context(), spec, &bytesSource{data: data, size: int64(len(data)), checksum: sha(data)}, nil); err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "8.data")); !bytes.Equal(got, data) {
		t.Errorf("copied data differs from the source")
	}
	info, err := b.Info("8")
	want := agent.Info{UID: "8", BDB: 4, Role: fsm.RoleSlave, Size: int64(len(data)), Checksum: sha(data), InSync: true}
	if err != nil || info != want {
		t.Errorf("Info = %+v, %v\nwant   %+v", info, err, want)
	}
}

func TestFileBackendFailedCopyLeavesNothingBehind(t *testing.T) {
	data := shardData(t, "8", 70_000)
	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)/2] ^= 0xff
	n := int64(len(data))
	cases := []struct {
		name     string
		src      *bytesSource
		checksum bool // the error is ErrChecksum
	}{
		{"fetch fails", &bytesSource{fetchErr: errors.New("connection refused")}, false},
		{"corrupt data", &bytesSource{data: corrupt, size: n, checksum: sha(data)}, true},
		{"short data", &bytesSource{data: data[:n-1], size: n, checksum: sha(data)}, true},
		{"long data", &bytesSource{data: append(bytes.Clone(data), 0), size: n, checksum: sha(data)}, true},
		{"stream breaks", &bytesSource{data: data[:n/2], size: n, checksum: sha(data), readErr: io.ErrUnexpectedEOF}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, dir := newBackend(t, nil)
			err := b.CopyFrom(t.Context(), agent.Spec{UID: "8", Role: fsm.RoleSlave}, c.src, nil)
			if err == nil {
				t.Fatalf("CopyFrom succeeded")
			}
			if c.checksum && !errors.Is(err, agent.ErrChecksum) {
				t.Errorf("CopyFrom: %v, want ErrChecksum", err)
			}
			if got := dirNames(t, dir); len(got) != 0 {
				t.Errorf("files left after failed copy: %v", got)
			}
		})
	}
}

func TestFileBackendFailedCopyKeepsPreviousCopy(t *testing.T) {
	b, dir := newBackend(t, nil)
	materialise(t, b, agent.Spec{UID: "8", BDB: 1, Role: fsm.RoleMaster, Size: 70_000})
	if err := b.Persist(t.Context(), "8", "aof"); err != nil {
		t.Fatal(err)
	}
	before, _ := b.Info("8")
	data := readFile(t, filepath.Join(dir, "8.data"))
	bad := &bytesSource{data: data[:100], size: int64(len(data)), checksum: sha(data)}
	if err := b.CopyFrom(t.Context(), agent.Spec{UID: "8", BDB: 1, Role: fsm.RoleSlave}, bad, nil); err == nil {
		t.Fatal("CopyFrom of truncated data succeeded")
	}
	if after, err := b.Info("8"); err != nil || after != before {
		t.Errorf("after failed copy: %+v, %v; want %+v", after, err, before)
	}
	if got := readFile(t, filepath.Join(dir, "8.data")); !bytes.Equal(got, data) {
		t.Errorf("failed copy changed the existing data")
	}
}

func TestFileBackendCopyOverPersistedShardDropsStalePersistenceFile(t *testing.T) {
	b, dir := newBackend(t, nil)
	materialise(t, b, agent.Spec{UID: "8", Role: fsm.RoleMaster, Size: 1000})
	if err := b.Persist(t.Context(), "8", "snapshot"); err != nil {
		t.Fatal(err)
	}
	data := shardData(t, "8", 2000)
	if err := b.CopyFrom(t.Context(), agent.Spec{UID: "8", Role: fsm.RoleSlave}, &bytesSource{data: data, size: 2000, checksum: sha(data)}, nil); err != nil {
		t.Fatal(err)
	}
	info, _ := b.Info("8")
	if info.Persisted || exists(t, filepath.Join(dir, "8.rdb")) {
		t.Errorf("replaced shard still reports the old persistence file (Persisted=%v)", info.Persisted)
	}
}

// Every copy a backend receives is checked against the checksum its source
// names (SPEC §4.6); a source naming none gives nothing to verify against.
func TestFileBackendCopyFromRefusesSourceWithoutChecksum(t *testing.T) {
	data := shardData(t, "8", 10_000)
	corrupt := bytes.Clone(data)
	corrupt[17] ^= 0x01
	b, dir := newBackend(t, nil)
	err := b.CopyFrom(t.Context(), agent.Spec{UID: "8", Role: fsm.RoleSlave}, &bytesSource{data: corrupt, size: int64(len(corrupt)), checksum: ""}, nil)
	if err == nil {
		t.Errorf("CopyFrom accepted %d bytes that no checksum vouches for", len(corrupt))
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("files after refused copy: %v", got)
	}
}

// gatedReader hands out data up to gate, then waits for release (or ctx).
type gatedReader struct {
	ctx     context.Context
	data    []byte
	off     int
	gate    int
	release <-chan struct{}
}

func (r *gatedReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	if r.off == r.gate {
		select {
		case <-r.release:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
	end := len(r.data)
	if r.off < r.gate {
		end = r.gate
	}
	n := copy(p, r.data[r.off:end])
	r.off += n
	return n, nil
}

type funcSource func(ctx context.Context, uid string) (io.ReadCloser, int64, string, error)

func (f funcSource) Fetch(ctx context.Context, uid string) (io.ReadCloser, int64, string, error) {
	return f(ctx, uid)
}

// Two copies of one shard may overlap on a node (a retried migration step,
// a reconcile racing a copy). The copy that completes must install exactly
// the bytes it verified.
func TestFileBackendOverlappingCopiesOfOneShardInstallVerifiedBytes(t *testing.T) {
	const size = 512 << 10
	data := shardData(t, "5", size)
	b, dir := newBackend(t, nil)
	ctx := t.Context()

	// Copy A streams half of the shard, then stalls.
	release := make(chan struct{})
	srcA := funcSource(func(ctx context.Context, _ string) (io.ReadCloser, int64, string, error) {
		return io.NopCloser(&gatedReader{ctx: ctx, data: data, gate: size / 2, release: release}), size, sha(data), nil
	})
	errA := make(chan error, 1)
	go func() { errA <- b.CopyFrom(ctx, agent.Spec{UID: "5", Role: fsm.RoleSlave}, srcA, nil) }()
	eventually(t, 5*time.Second, func() error {
		for _, n := range tmpFiles(t, dir) {
			if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && fi.Size() >= size/4 {
				return nil
			}
		}
		return errors.New("copy A has not written a quarter of the shard yet")
	})

	// Copy B starts and stalls before sending anything.
	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	bReading := make(chan struct{})
	srcB := funcSource(func(ctx context.Context, _ string) (io.ReadCloser, int64, string, error) {
		return io.NopCloser(&signalReader{ctx: ctx, started: bReading}), size, sha(data), nil
	})
	errB := make(chan error, 1)
	go func() { errB <- b.CopyFrom(ctxB, agent.Spec{UID: "5", Role: fsm.RoleSlave}, srcB, nil) }()
	select {
	case <-bReading:
	case <-time.After(3 * time.Second):
		// A backend that serialises copies of one shard keeps B waiting.
	}

	close(release)
	select {
	case err := <-errA:
		if err != nil {
			t.Fatalf("copy A: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("copy A did not finish")
	}
	cancelB()
	select {
	case err := <-errB:
		if err == nil {
			t.Errorf("copy B succeeded without data")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("copy B did not return after its context ended")
	}

	got := readFile(t, filepath.Join(dir, "5.data"))
	info, err := b.Info("5")
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Checksum != sha(got) {
		t.Errorf("installed data has sha256 %s but Info reports %s", sha(got), info.Checksum)
	}
	if !bytes.Equal(got, data) {
		i := 0
		for i < len(got) && i < len(data) && got[i] == data[i] {
			i++
		}
		t.Errorf("installed data (%d bytes) differs from the source (%d bytes) from offset %d", len(got), len(data), i)
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// signalReader reports its first Read, then blocks until ctx ends.
type signalReader struct {
	ctx     context.Context
	started chan struct{}
	once    bool
}

func (r *signalReader) Read([]byte) (int, error) {
	if !r.once {
		r.once = true
		close(r.started)
	}
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

func TestLimiterZeroIsUnlimitedAndWaitHonoursContext(t *testing.T) {
	for _, r := range []int64{0, -1} {
		if l := agent.NewLimiter(r); l != nil {
			t.Errorf("NewLimiter(%d) = %v, want nil (unlimited)", r, l)
		}
	}
	var unlimited *agent.Limiter
	if err := unlimited.WaitN(t.Context(), 1<<30); err != nil {
		t.Errorf("nil limiter WaitN: %v", err)
	}
	// A request far beyond the burst is split, not refused; with an ended
	// context it fails instead of blocking.
	l := agent.NewLimiter(1024)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.WaitN(ctx, 1<<20); err == nil {
		t.Errorf("WaitN with ended context succeeded")
	}
	if err := agent.NewLimiter(1<<20).WaitN(t.Context(), 64<<10); err != nil {
		t.Errorf("WaitN within the burst: %v", err)
	}
}
